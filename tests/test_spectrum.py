"""Binning of eigenvalues into the paper's bins, phases and the fine histogram, on hand-made spectra."""
import numpy as np
import pytest
import torch

from eigsweep.spectrum import FINE_EDGES, MAG_EDGES, MAG_LABELS, SpectrumAccumulator


def accumulate(lam, dims=("sample", "head", "time")):
    acc = SpectrumAccumulator()
    acc.update(0, lam, dims)
    return acc.dataset().isel(layer=0)


def test_magnitude_bins_are_right_closed_like_the_paper():
    # one value on each edge, then one inside each open bin, 1 sample, 1 head
    edge_values = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0, 10.0, 100.0, 1000.0], dtype=torch.float64)
    ds = accumulate(edge_values.view(1, 1, -1))
    counts = ds.bin_fraction.sel(head=0).values * len(edge_values)
    # [0,0.1] gets 0 and 0.1; (0.1,0.5] gets 0.5; … ; >100 gets 1000
    np.testing.assert_allclose(counts, [2, 1, 1, 1, 1, 1, 1])


def test_mean_and_std_over_samples_and_nan_ignored():
    lam = torch.tensor([[[np.nan, 0.05, 0.95, 0.95]],      # sample 0: 1/3 in [0,0.1], 2/3 in (0.9,1]
                        [[np.nan, 0.95, 0.95, 0.95]]],     # sample 1: all in (0.9,1]
                       dtype=torch.float64)
    ds = accumulate(lam)
    frac = ds.bin_fraction.sel(head=0)
    assert frac.sel(bin="[0,0.1]").item() == pytest.approx(1 / 6)
    assert frac.sel(bin="(0.9,1]").item() == pytest.approx(5 / 6)
    assert ds.bin_fraction_std.sel(head=0, bin="[0,0.1]").item() == pytest.approx(1 / 6)
    assert ds.n_eigenvalues.sel(head=0).item() == 6


def test_phase_bins_for_complex_and_negative_eigenvalues():
    angles = np.deg2rad([0.5, 5, 30, 60, 120, -120])
    lam = torch.tensor(0.9 * np.exp(1j * angles)).view(1, 1, -1)
    ds = accumulate(lam)
    np.testing.assert_allclose(ds.phase_fraction.sel(head=0).values * 6, [1, 1, 1, 1, 2])
    real = accumulate(torch.tensor([[[0.5, -0.5, 0.2, -0.9]]], dtype=torch.float64))
    np.testing.assert_allclose(real.phase_fraction.sel(head=0, phase_bin=["[0,1]", "(90,180]"]).values, [0.5, 0.5])


def test_fine_histogram_rebins_exactly_to_the_seven_bins():
    g = torch.Generator().manual_seed(0)
    lam = torch.exp(torch.randn(4, 3, 200, generator=g, dtype=torch.float64) * 3)
    lam[0, 0, :5] = torch.tensor(MAG_EDGES, dtype=torch.float64)[:5]   # values exactly on edges
    ds = accumulate(lam)
    upper = ds.fine_upper.values
    coarse_idx = np.searchsorted(np.asarray(MAG_EDGES), upper, side="left")  # fine bin -> paper bin
    for h in range(3):
        rebinned = np.bincount(coarse_idx, weights=ds.fine_count.sel(head=h).values, minlength=len(MAG_LABELS))
        np.testing.assert_allclose(rebinned / rebinned.sum(), ds.bin_fraction.sel(head=h).values, atol=1e-12)


def test_input_independent_spectra_have_no_sample_dim():
    lam = torch.tensor([[0.95, 0.5], [0.05, 0.99]], dtype=torch.float64)   # (head, state)
    ds = accumulate(lam, dims=("head", "state"))
    assert ds.n_samples.item() == 1
    np.testing.assert_allclose(ds.bin_fraction.sel(head=0, bin=["(0.1,0.5]", "(0.9,1]"]).values, [0.5, 0.5])
    assert float(ds.bin_fraction_std.max()) == 0.0


def test_fine_edges_contain_paper_edges_and_resolve_near_one():
    for e in MAG_EDGES:
        assert np.isclose(FINE_EDGES, e, rtol=0, atol=1e-12).any()
    assert ((FINE_EDGES > 0.9) & (FINE_EDGES < 1.0)).sum() >= 30


def test_measure_is_independent_of_the_memory_budget():
    """Online accumulation in small chunks gives exactly the statistics of one big chunk."""
    import eigsweep
    torch.manual_seed(0)
    model = eigsweep.build_model("mamba", vocab_size=32, d_model=16, d_state=4)
    x = torch.randint(0, 32, (10, 20))
    whole = eigsweep.measure(model, x)
    chunked = eigsweep.measure(model, x, max_elements=2000)   # a few samples per chunk
    assert whole.n_samples.item() == chunked.n_samples.item() == 10
    for v in ("bin_fraction", "bin_fraction_std", "fine_count", "phase_fraction"):
        np.testing.assert_allclose(whole[v].values, chunked[v].values, atol=1e-12)
