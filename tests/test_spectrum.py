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


def test_infinite_magnitudes_count_in_the_top_bin_and_nan_is_counted_apart():
    """+inf (an overflowed log ratio) is a λ > 100; a NaN is not binned but counted in n_nonfinite, except the
    structural NaN at time 0 of the attention mixers."""
    lam = torch.tensor([[[np.nan, 0.5, np.inf, 2.0, np.nan, 0.95]]], dtype=torch.float64)   # (sample, head, time)
    acc = SpectrumAccumulator()
    acc.update(0, lam, ("sample", "head", "time"), lam0_undefined=True)
    ds = acc.dataset().isel(layer=0, head=0)
    np.testing.assert_allclose(ds.bin_fraction.values * 4, [0, 1, 0, 1, 1, 0, 1])
    assert ds.bin_fraction.sum().item() == pytest.approx(1.0)
    assert ds.n_eigenvalues.item() == 4 and ds.n_nonfinite.item() == 1
    assert ds.fine_count.values[-1] == 1                       # +inf in the last fine bin (upper edge inf)
    other = SpectrumAccumulator()
    other.update(0, lam, ("sample", "head", "time"))          # λ_0 defined for this mixer: its NaN counts
    assert other.dataset().n_nonfinite.sel(layer=0, head=0).item() == 2


def test_negative_fraction_real_and_complex():
    real = accumulate(torch.tensor([[[0.5, -0.5, -0.2, 0.9]], [[0.1, 0.2, 0.3, -1.5]]], dtype=torch.float64))
    assert real.negative_fraction.sel(head=0).item() == pytest.approx(3 / 8)
    cplx = accumulate(torch.tensor([[[0.5 + 0.1j, -0.5 + 0j]]]))
    assert np.isnan(cplx.negative_fraction.sel(head=0).item())


def _model(arch, **settings):
    import eigsweep
    torch.manual_seed(0)
    return eigsweep.build_model(arch, vocab_size=32, d_model=16, n_heads=2, **settings)


def test_softmax_overflow_lands_in_the_top_bin():
    """With weights scaled huge, λ = exp(lse_{i-1} − lse_i) overflows float64; the '>100' share must still equal
    the share of log ratios > log 100, computed here independently in float64, and the shares sum to 1."""
    import eigsweep
    from eigsweep.spectrum import float64_copy
    model = _model("softmax", n_layers=1)
    with torch.no_grad():
        model.blocks[0].mixer.qkv.weight.mul_(60.0)
    x = torch.randint(0, 32, (6, 40), generator=torch.Generator().manual_seed(1))
    ds = eigsweep.measure(model, x).isel(layer=0)
    m64 = float64_copy(model)
    u = m64.blocks[0].norm(m64.embed_tokens(x))
    q, k, _ = m64.blocks[0].mixer.qkv(u).chunk(3, dim=-1)
    q, k = (t.view(6, 40, 2, 8).transpose(1, 2) for t in (q, k))
    scores = (q @ k.transpose(-1, -2) / 8 ** 0.5).masked_fill(~torch.ones(40, 40, dtype=torch.bool).tril(), -np.inf)
    lse = torch.logsumexp(scores, dim=-1)
    log_ratio = lse[..., :-1] - lse[..., 1:]                                # (sample, head, time 1..L-1)
    assert (log_ratio > 710).any(), "the test must overflow exp in float64"
    expected = (log_ratio > np.log(100)).double().mean(-1).mean(0)        # mean over samples of the share
    np.testing.assert_allclose(ds.bin_fraction.sel(bin=">100").values, expected.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ds.bin_fraction.sum("bin").values, 1.0, atol=1e-12)
    assert (ds.n_eigenvalues.values == 6 * 39).all() and (ds.n_nonfinite.values == 0).all()
    assert (ds.fine_count.sum("fine_bin").values == 6 * 39).all()


@pytest.mark.parametrize("beta_range", [1.0, 2.0])
def test_informative_view_of_the_delta_family(beta_range):
    """DeltaNet's informative eigenvalue 1 − β‖k‖² (first along 'state') is binned on its own; the full view
    is dominated by the d_k − 1 structural ones (exactly 1)."""
    import eigsweep
    model = _model("deltanet", n_layers=1, options={"beta_range": beta_range})
    x = torch.randint(0, 32, (3, 24), generator=torch.Generator().manual_seed(2))
    ds = eigsweep.measure(model, x).isel(layer=0)
    lam = eigsweep.spectrum.layer_eigenvalues(eigsweep.spectrum.float64_copy(model), x)[0][0]   # (B, H, L, d_k)
    one = lam[..., 0]
    assert torch.equal(lam[..., 1:], torch.ones_like(lam[..., 1:]))
    edges = torch.tensor(MAG_EDGES, dtype=torch.float64)
    shares = torch.stack([torch.bucketize(one.abs()[b], edges).view(2, -1) for b in range(3)])  # (B, H, L)
    expected = torch.stack([(shares == j).double().mean(-1) for j in range(7)], -1).mean(0)
    np.testing.assert_allclose(ds.informative_bin_fraction.values, expected.numpy(), atol=1e-12)
    np.testing.assert_allclose(ds.informative_negative_fraction.values, (one < 0).double().mean((0, 2)).numpy())
    np.testing.assert_allclose(ds.negative_fraction.values, (one < 0).double().mean((0, 2)).numpy() / 8)
    assert ds.informative_fine_count.sum("fine_bin").values.tolist() == [3 * 24] * 2
    assert (ds.bin_fraction.sel(bin="(0.9,1]") >= 7 / 8).all()        # the structural ones decide the full view
    if beta_range == 2.0:
        assert (ds.informative_negative_fraction > 0).all()
    for name in ("informative_bin_fraction_std", "informative_phase_fraction", "informative_phase_fraction_std"):
        assert name in ds
    assert "informative_bin_fraction" not in eigsweep.measure(_model("softmax", n_layers=1), x)


def test_measure_memory_is_bounded_by_the_attention_scores(monkeypatch):
    """Softmax holds H·L² scores per sample while computing its λ: the chunks of samples are sized by that,
    and the chunked statistics equal the unchunked ones."""
    import eigsweep
    from eigsweep import spectrum
    model = _model("softmax")
    x = torch.randint(0, 32, (7, 32), generator=torch.Generator().manual_seed(3))
    whole = eigsweep.measure(model, x)
    sizes, inner = [], spectrum.layer_eigenvalues
    monkeypatch.setattr(spectrum, "layer_eigenvalues", lambda m, xs: sizes.append(len(xs)) or inner(m, xs))
    budget = 2 * 2 * 32 * 32                 # two samples' scores (2 heads, L = 32); λ alone would allow 32
    chunked = eigsweep.measure(model, x, max_elements=budget)
    assert sizes == [1, 2, 2, 2]
    for v in whole.data_vars:
        np.testing.assert_allclose(whole[v].values, chunked[v].values, atol=1e-12, err_msg=v)
