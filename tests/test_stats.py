"""eigsweep.stats on hand-made data where the answer is known."""
import numpy as np
import pytest
import xarray as xr

from eigsweep import stats


def test_spearman_perfectly_monotone_is_one():
    x = np.arange(10.0)
    assert stats.spearman(x, np.exp(x))[0] == pytest.approx(1.0)
    assert stats.spearman(x, -x ** 3)[0] == pytest.approx(-1.0)


def test_spearman_ties_and_infinities_are_ranks():
    # ∞ (an infinite memory horizon) is simply the largest rank; NaN pairs are dropped
    x = np.array([1.0, 2.0, np.inf, 3.0, np.nan])
    y = np.array([0.1, 0.2, 0.9, 0.3, 0.5])
    assert stats.spearman(x, y)[0] == pytest.approx(1.0)
    assert np.isnan(stats.spearman([1, 1, 1, 1], [1, 2, 3, 4])[0])       # constant: undefined
    assert np.isnan(stats.spearman([1, 2], [1, 2])[0])                   # fewer than 3 pairs


def test_bootstrap_ci_of_monotone_relation_is_degenerate_at_one():
    x = np.arange(8.0)
    lo, hi = stats.bootstrap_spearman_ci(x, 2 * x + 1, n_boot=500)
    assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)


def test_bootstrap_ci_contains_rho_and_shrinks_with_more_samples():
    rng = np.random.default_rng(1)

    def width(n):
        x = rng.normal(size=n)
        y = x + rng.normal(size=n)
        rho = stats.spearman(x, y)[0]
        lo, hi = stats.bootstrap_spearman_ci(x, y, n_boot=1000, seed=2)
        assert lo <= rho <= hi
        return hi - lo

    w_small, w_large = width(12), width(400)
    assert w_large < w_small / 2.5     # ~1/√n: 400 vs 12 samples → about 5.8× narrower


def test_bootstrap_is_reproducible():
    x, y = np.arange(6.0), np.array([1.0, 3, 2, 5, 4, 6])
    assert stats.bootstrap_spearman_ci(x, y, seed=3) == stats.bootstrap_spearman_ci(x, y, seed=3)


def test_horizon():
    assert stats.horizon(np.exp(-1 / 50)) == pytest.approx(50)
    assert np.isinf(stats.horizon(1.0)) and np.isinf(stats.horizon(3.0))
    assert stats.horizon(0.0) == 0.0


def test_histogram_median_and_median_horizon():
    lower = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    upper = np.array([0.1, 0.5, 0.9, 1.0, np.inf])
    # half the mass below 0.5, the rest in (0.5, 0.9]: the median is the edge 0.5
    assert stats.histogram_median([1, 1, 2, 0, 0], lower, upper) == pytest.approx(0.5)
    # all mass in (0.5, 0.9]: log-linear midpoint √(0.5·0.9)
    assert stats.histogram_median([0, 0, 4, 0, 0], lower, upper) == pytest.approx(np.sqrt(0.45))
    assert stats.median_horizon([0, 0, 4, 0, 0], lower, upper) == pytest.approx(-1 / np.log(np.sqrt(0.45)))
    # most mass at |λ| > 1: infinite median horizon
    assert np.isinf(stats.median_horizon([1, 0, 0, 0, 3], lower, upper))
    assert np.isnan(stats.histogram_median([0, 0, 0, 0, 0], lower, upper))


def test_median_horizon_on_the_real_fine_grid():
    from eigsweep.spectrum import FINE_EDGES, MAG_EDGES

    assert tuple(stats.PAPER_EDGES) == tuple(MAG_EDGES)
    lower = np.concatenate([[0.0], FINE_EDGES[:-1]])
    mags = 1 - 10 ** np.random.default_rng(0).uniform(-3, -1, 10_001)   # horizons from ~10 to ~1000 tokens
    counts = np.histogram(mags, bins=np.concatenate([[0.0], FINE_EDGES[:-1], [1e300]]))[0]
    exact = -1 / np.log(np.median(mags))
    assert stats.median_horizon(counts, lower, FINE_EDGES) == pytest.approx(exact, rel=0.02)


def _summary(n_runs=4):
    """A summary.nc-like dataset whose statistics are known: run r has a share r/10 in [0,0.1]."""
    bins = ["[0,0.1]", "(0.1,0.5]", "(0.5,0.9]", "(0.9,1]", "(1,10]", "(10,100]", ">100"]
    frac = np.zeros((n_runs, 2, 2, 1, 7))                          # run, stage, layer, head, bin
    for r in range(n_runs):
        frac[r, :, :, :, 0] = r / 10
        frac[r, :, :, :, 3] = 1 - r / 10 - 0.05
        frac[r, :, :, :, 4] = 0.05
    lower = np.array([0.0, 0.1, 0.5, 0.9, 1.0, 10.0, 100.0])
    upper = np.array([0.1, 0.5, 0.9, 1.0, 10.0, 100.0, np.inf])
    return xr.Dataset(
        dict(bin_fraction=(("run", "stage", "layer", "head", "bin"), frac),
             fine_count=(("run", "stage", "layer", "head", "fine_bin"), 1000 * frac),
             best_acc=("run", np.linspace(0.9, 0.3, n_runs)), status=("run", ["ok"] * (n_runs - 1) + ["diverged"])),
        coords=dict(run=[f"r{i}" for i in range(n_runs)], stage=["init", "trained"], layer=[0, 1], head=[0],
                    bin=bins, fine_bin=np.arange(7), fine_lower=("fine_bin", lower), fine_upper=("fine_bin", upper),
                    task=("run", ["t"] * n_runs), arch=("run", ["a", "a", "b", "b"][:n_runs]),
                    modification=("run", ["none"] * n_runs), seed=("run", list(range(n_runs))),
                    lr=("run", [1e-3] * n_runs)))


def test_run_statistics_and_correlation_table():
    rs = stats.run_statistics(_summary())
    np.testing.assert_allclose(rs.mass_near_0.values[:3], [0, 10, 20])
    np.testing.assert_allclose(rs.mass_above_1.values[:3], [5, 5, 5])
    assert np.isnan(rs.mass_near_0.values[3])                     # diverged: undefined, not zero
    # median |λ| lies in (0.9, 1] for every ok run: a finite horizon
    assert np.all(np.isfinite(rs.median_horizon.values[:3]))
    table = stats.correlations(rs, n_boot=200)
    row = table.set_index("statistic").loc["mass_near_0"]
    assert row.n_runs == 3 and row.spearman_rho == pytest.approx(-1.0)     # more mass near 0, less accuracy
    assert row.ci_low == pytest.approx(-1.0) and row.ci_high == pytest.approx(-1.0)
    assert np.isnan(table.set_index("statistic").loc["mass_above_1"].spearman_rho)   # constant statistic
    ds = stats.correlations_dataset(table, rs)
    assert ds.spearman_rho.sel(task="t", statistic="mass_near_0") == pytest.approx(-1.0)
    assert "run_mass_near_0" in ds


def test_mean_interval():
    v = np.array([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]])
    mean, sd = stats.mean_interval(v, kind="std")
    np.testing.assert_allclose(mean, [3, 2])
    np.testing.assert_allclose(sd, [np.std([1, 3, 5]), 0])
    _, half = stats.mean_interval(v, kind="ci95")
    assert half[0] == pytest.approx(4.302653 * 2 / np.sqrt(3), rel=1e-5)   # t(0.975, 2) · s/√n
    _, half1 = stats.mean_interval(v[:1], kind="ci95")
    np.testing.assert_allclose(half1, 0)
    with pytest.raises(ValueError):
        stats.mean_interval(v, kind="iqr")


def test_pooled_share_ci_shrinks_with_more_seeds():
    rng = np.random.default_rng(0)

    def half_width(n):
        frac = np.clip(0.5 + 0.1 * rng.normal(size=(n, 1, 1, 1)), 0, 1)
        ds = xr.Dataset(dict(bin_fraction=(("run", "stage", "head", "bin"), frac),
                             bin_fraction_std=(("run", "stage", "head", "bin"), np.zeros_like(frac))),
                        coords=dict(stage=["trained"], bin=["(0.9,1]"]))
        return float(stats.pooled_share(ds, kind="ci95")[1].squeeze())

    assert half_width(50) < half_width(5) / 2
