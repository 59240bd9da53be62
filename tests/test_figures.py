"""Figure bookkeeping that needs no training: which figures apply, LTI eigenvalues kept for the complex plane."""
import numpy as np
import pytest
import torch

import eigsweep
from eigsweep import registry
from eigsweep.figures import catalog as figures_index
from eigsweep.spectrum import MAX_LTI_EIGENVALUES


def test_sweep_figures_apply_by_config():
    base = {"arch": ["softmax", "mamba2"], "task": ["t"]}
    figs = figures_index.sweep_figures(base)
    assert "modifications" not in figs and "complex_plane" not in figs and "spectrum_bars_per_head" not in figs
    assert "modifications" in figures_index.sweep_figures({**base, "modification": ["none", "gate"]})
    lti = [a for a in registry.MIXERS if figures_index.eigen_kind(a)["lti"]]
    if lti:
        assert "complex_plane" in figures_index.sweep_figures({**base, "arch": ["softmax", lti[0]]})
    assert "spectrum_bars_per_head" in figures_index.sweep_figures(base, {"per_head": True})
    assert set(figures_index.FIGURES) == {n for names in figures_index.FAMILIES.values() for n in names}


def test_lti_eigenvalues_are_stored_fixed_width():
    lti = [a for a in registry.MIXERS if figures_index.eigen_kind(a)["lti"]]
    if not lti:
        pytest.skip("no LTI model registered")
    torch.manual_seed(0)
    x = torch.randint(0, 32, (2, 8))
    model = eigsweep.build_model(lti[0], vocab_size=32, d_model=16, n_layers=2)
    ds = eigsweep.measure(model, x)
    assert ds.lti_eigenvalue_real.dims == ("layer", "lti_mode") and ds.sizes["lti_mode"] == MAX_LTI_EIGENVALUES
    lam = ds.lti_eigenvalue_real.values + 1j * ds.lti_eigenvalue_imag.values
    direct = eigsweep.eigenvalues(model, x)
    for layer in range(2):
        got = lam[layer][np.isfinite(lam[layer])]
        want = np.asarray(direct.sel(layer=layer).values).reshape(-1)
        want = want[np.isfinite(want)]
        np.testing.assert_allclose(np.sort_complex(got), np.sort_complex(want.astype(complex)), atol=1e-12)
    assert "lti_eigenvalue_real" not in eigsweep.measure(eigsweep.build_model("softmax", vocab_size=32, d_model=16), x)
