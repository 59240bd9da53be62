"""The proof that each spectrum is the model's own: for every registered mixer, in float64,
(1) stepping its DSF recurrence token by token reproduces its parallel/chunked forward pass,
(2) the eigenvalues it reports equal the eigenvalues of the Λ_i in that recurrence,
(3) inside a block, the eigenvalues come from the mixer's true input (pre-norm applied)."""
import dataclasses

import pytest
import torch

from eigsweep import registry
from eigsweep.config import ModelConfig
from eigsweep.dsf import DSF, unroll
from eigsweep.model import build_model
from eigsweep.spectrum import layer_eigenvalues, float64_copy

SMALL = ModelConfig(d_model=16, n_layers=2, n_heads=2, d_state=4, expand=2, head_dim=8)
VARIANTS = [(arch, "none") for arch in registry.MIXERS] + [
    (arch, "qkv") for arch in ("softmax", "linear", "linear_unnorm", "norm", "gla", "retnet", "deltanet")] + [
    (arch, "qk") for arch in ("softmax", "gated_deltanet")]


def make_mixer(arch, short_conv="none", seed=0):
    torch.manual_seed(seed)
    cfg = dataclasses.replace(SMALL, short_conv=short_conv)
    return registry.mixer_class(arch)(cfg, 0).double()


def aligned(lam, dims):
    """Eigenvalues arranged as (sample, head, time, rest...) with size-1 dims where absent."""
    for i, d in enumerate(("sample", "head", "time")):
        if d not in dims:
            lam, dims = lam.unsqueeze(i), dims[:i] + (d,) + dims[i:]
    return lam


@pytest.mark.parametrize("arch,short_conv", VARIANTS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recurrence_reproduces_forward(arch, short_conv, seed):
    mixer = make_mixer(arch, short_conv, seed)
    u = torch.randn(2, 23, SMALL.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    y = mixer(u)
    y_rec = mixer.recurrence(u)
    assert y.shape == y_rec.shape == u.shape
    assert not torch.is_complex(y)
    rel = (y - y_rec).abs().max() / y.abs().max()
    assert rel <= 1e-6, f"{arch}: DSF recurrence differs from forward by {rel:.2e}"


@pytest.mark.parametrize("arch,short_conv", VARIANTS)
def test_reported_eigenvalues_are_those_of_the_transition(arch, short_conv):
    mixer = make_mixer(arch, short_conv)
    u = torch.randn(2, 17, SMALL.d_model, dtype=torch.float64)
    lam = mixer.eigenvalues(u)
    assert len(mixer.eig_dims) == lam.dim()
    lam = aligned(lam, tuple(mixer.eig_dims))
    try:
        dsf = mixer.dsf(u)
    except NotImplementedError:
        pytest.skip(f"{arch} proves its eigenvalues through its own recurrence (infinite state)")
    ev = dsf.transition_eigenvalues()            # (B, H, L, N) or broadcastable
    B, H, L = u.shape[0], dsf.inp.shape[1], u.shape[1]
    ev = ev.expand(B, H, L, ev.shape[-1])
    # time 0 multiplies h_{-1} = 0, so models may leave λ_0 undefined (NaN) there
    lam = lam.expand(B, *lam.shape[1:2], L if lam.shape[2] == 1 else lam.shape[2], *lam.shape[3:])
    lam = lam.reshape(B, H, L, -1)[:, :, 1:]
    ev = ev[:, :, 1:]
    if lam.shape[-1] == 1 and ev.shape[-1] > 1:   # scalar per head: Λ_i = λ_i I
        lam = lam.expand_as(ev)
    key = lambda t: torch.sort(t.real + 1e3 * t.imag if torch.is_complex(t) else t, dim=-1).values
    torch.testing.assert_close(key(lam.to(ev.dtype)), key(ev), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("arch", list(registry.MIXERS))
def test_block_eigenvalues_use_the_prenormed_input(arch):
    torch.manual_seed(0)
    model = build_model(arch, vocab_size=32, cfg=SMALL)
    x = torch.randint(0, 32, (2, 12))
    model64 = float64_copy(model)
    before = [lam.clone() for lam, _ in layer_eigenvalues(model64, x)]
    block = model64.blocks[0]
    # the spectrum must equal the mixer's eigenvalues on norm(h), computed by hand
    h = model64.embed_tokens(x)
    expected = block.mixer.eigenvalues(block.norm(h))
    torch.testing.assert_close(before[0], expected, equal_nan=True)
    with torch.no_grad():
        block.norm.weight.mul_(torch.linspace(0.2, 3.0, block.norm.weight.numel(), dtype=torch.float64))
    after = layer_eigenvalues(model64, x)[0][0]
    expected_after = block.mixer.eigenvalues(block.norm(h))
    torch.testing.assert_close(after, expected_after, equal_nan=True)
    if "sample" in block.mixer.eig_dims:  # input-dependent spectra must move with the norm
        assert not torch.allclose(before[0].nan_to_num(), after.nan_to_num())


def test_unroll_full_transition_matches_diagonal_case():
    """A diagonal Λ given as a full matrix steps exactly like its diagonal form."""
    g = torch.Generator().manual_seed(0)
    lam = torch.rand(1, 2, 5, 3, generator=g, dtype=torch.float64)
    inp = torch.randn(1, 2, 5, 3, 4, generator=g, dtype=torch.float64)
    C = torch.randn(1, 2, 5, 3, generator=g, dtype=torch.float64)
    diag = unroll(DSF(lam, inp, C))
    full = unroll(DSF(torch.diag_embed(lam), inp, C))
    torch.testing.assert_close(diag, full)
