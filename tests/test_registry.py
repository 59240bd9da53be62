"""The registry's facts about each mixer (read by the Snakefile without importing torch) match the mixers."""
import dataclasses

import pytest
import torch

from eigsweep import registry
from eigsweep.config import ModelConfig

CFG = ModelConfig(d_model=32, n_heads=2, d_state=8, expand=2, head_dim=16)
# the model settings a mixer may or may not read, each with a different valid value
VARIED = {"n_heads": 4, "d_state": 4, "expand": 1, "head_dim": 8, "conv_kernel": 3, "short_conv": "qk"}


def _mixer(arch, cfg):
    torch.manual_seed(0)
    return registry.mixer_class(arch)(cfg, 0).double()


@pytest.mark.parametrize("arch", list(registry.MIXERS))
def test_lti_and_complex_match_the_class(arch):
    info, cls = registry.mixer_info(arch), registry.mixer_class(arch)
    assert info.lti == ("time" not in cls.eig_dims)
    assert info.complex == bool(cls.complex_eigenvalues)
    if info.structural == "delta":
        assert "state" in cls.eig_dims


@pytest.mark.parametrize("arch", [a for a in registry.MIXERS if registry.MIXERS[a].structural])
def test_informative_index_is_the_informative_eigenvalue(arch):
    """registry.INFORMATIVE names, for the DeltaNet family, the eigenvalue α(1 − β‖k‖²) (recomputed here from the
    mixer's features); every other eigenvalue of the token is the structural α."""
    mixer = _mixer(arch, dataclasses.replace(CFG, options={"beta_range": 2.0}))
    u = torch.randn(2, 12, CFG.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lam, dims = mixer.eigenvalues(u), mixer.eig_dims
    (dim, index), = registry.INFORMATIVE[registry.MIXERS[arch].structural].items()
    informative = lam.select(dims.index(dim), index)
    f = mixer.features(u)
    alpha = torch.exp(f["log_alpha"])
    torch.testing.assert_close(informative, alpha * (1 - f["beta"] * f["k"].pow(2).sum(-1)))
    rest = torch.cat([lam.narrow(dims.index(dim), 0, index), lam.narrow(dims.index(dim), index + 1, lam.shape[-1] - index - 1)], -1)
    torch.testing.assert_close(rest, alpha[..., None].expand_as(rest))


@pytest.mark.parametrize("arch", list(registry.MIXERS))
def test_model_keys_outside_the_declared_set_change_nothing(arch):
    """A setting the registry says the mixer ignores leaves its output unchanged (same seed, same input)."""
    info = registry.mixer_info(arch)
    u = torch.randn(2, 12, CFG.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = _mixer(arch, CFG)(u)
    for key, value in VARIED.items():
        if key in info.model_keys:
            continue
        other = _mixer(arch, dataclasses.replace(CFG, **{key: value}))(u)
        assert torch.equal(ref, other), f"{arch} reads {key} but the registry does not list it"


@pytest.mark.parametrize("arch", [a for a in registry.MIXERS if registry.MIXERS[a].options])
def test_declared_option_defaults_are_the_mixers_defaults(arch):
    u = torch.randn(2, 12, CFG.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = _mixer(arch, CFG)(u)
    explicit = {k: v for k, v in registry.MIXERS[arch].options.items() if v is not None}
    assert torch.allclose(ref, _mixer(arch, dataclasses.replace(CFG, options=explicit))(u), atol=1e-12)


def test_unknown_names_are_named():
    with pytest.raises(KeyError, match="nonesuch"):
        registry.mixer_info("nonesuch")
    with pytest.raises(KeyError, match="nonesuch"):
        registry.task_class("nonesuch")
