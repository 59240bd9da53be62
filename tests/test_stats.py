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
    acc = np.linspace(0.9, 0.3, n_runs)
    return xr.Dataset(
        dict(bin_fraction=(("run", "stage", "layer", "head", "bin"), frac),
             fine_count=(("run", "stage", "layer", "head", "fine_bin"), 1000 * frac),
             final_acc=("run", acc), best_acc=("run", acc[::-1].copy()),
             status=("run", ["ok"] * (n_runs - 1) + ["diverged"])),
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
    np.testing.assert_allclose(rs.accuracy.values, _summary().final_acc.values)      # the final model by default
    np.testing.assert_allclose(stats.run_statistics(_summary(), acc="best_acc").accuracy.values,
                               _summary().best_acc.values)
    table, by_arch = stats.correlations(rs, n_boot=200, n_perm=200)
    row = table.set_index("statistic").loc["mass_near_0"]
    assert row.n_runs == 3 and row.n_architectures == 2
    assert row.rho_pooled == pytest.approx(-1.0)     # more mass near 0, less accuracy
    assert "one architecture" not in row.note and "2 architectures" in row.note   # too few to resample
    assert np.isnan(row.ci_pooled_low) and np.isnan(row.p_stratified)      # b has one run, a has two
    assert np.isnan(table.set_index("statistic").loc["mass_above_1"].rho_pooled)   # constant statistic
    assert set(by_arch.arch) == {"a", "b"} and (by_arch.n_runs.values > 0).all()
    ds = stats.correlations_dataset(table, by_arch, rs)
    assert ds.rho_pooled.sel(task="t", statistic="mass_near_0") == pytest.approx(-1.0)
    assert "run_mass_near_0" in ds and "arch_rho" in ds


# -- model identity: constructed runs where the answer is known ----------------------------------

def _runstats(x, y, arch, task="t"):
    n = len(x)
    data = {name: ("run", np.asarray(x, dtype=float)) for name in stats.STATISTICS}
    return xr.Dataset(dict(data, accuracy=("run", np.asarray(y, dtype=float))),
                      coords=dict(run=[f"r{i}" for i in range(n)], arch=("run", list(arch)), task=("run", [task] * n)))


def _simpson(n_arch=6, n_per=5):
    """Within every architecture accuracy rises with the statistic (ρ = +1); across architectures the one
    with more of it is worse, so the naive pooled ρ is negative."""
    x = np.concatenate([10 * a + np.arange(n_per) for a in range(n_arch)])
    y = np.concatenate([1 - 0.1 * a + 0.01 * np.arange(n_per) for a in range(n_arch)])
    arch = np.repeat([f"m{a}" for a in range(n_arch)], n_per)
    return x, y, arch


def test_simpsons_paradox_within_architecture_is_reported():
    x, y, arch = _simpson()
    rho, _ = stats.spearman(x, y)
    assert rho < -0.5                                                # the naive pooled ρ: negative
    assert stats.within_rho(x, y, arch) == (pytest.approx(1.0), 6)
    w, p = stats.stratified_permutation_test(x, y, arch, n_perm=999)
    assert w == pytest.approx(1.0) and p == pytest.approx(1 / 1000)  # no permutation within arch reaches +1
    boot = stats.cluster_bootstrap(x, y, arch, n_boot=500)
    assert boot["within"] == (pytest.approx(1.0), pytest.approx(1.0))
    assert boot["pooled"][1] < 0                                     # resampling architectures keeps it negative
    table, by_arch = stats.correlations(_runstats(x, y, arch), n_boot=300, n_perm=999)
    row = table.iloc[0]
    assert row.rho_pooled < -0.5 and row.rho_within == pytest.approx(1.0) and row.p_stratified < 0.01
    assert row.n_runs == 30 and row.n_architectures == 6 and row.n_arch_within == 6 and row.note == ""
    np.testing.assert_allclose(by_arch[by_arch.statistic == "mass_near_0"].rho.values, 1.0)


def test_stratified_test_ignores_between_architecture_differences():
    # one run per architecture: a perfect pooled ρ, but nothing within any architecture to test
    x, y, arch = np.arange(8.0), np.arange(8.0) / 10, [f"m{i}" for i in range(8)]
    assert stats.spearman(x, y)[0] == pytest.approx(1.0)
    assert all(np.isnan(v) for v in stats.stratified_permutation_test(x, y, arch))
    row = stats.correlations(_runstats(x, y, arch), n_boot=200, n_perm=200)[0].iloc[0]
    assert "compares architectures, not spectra" in row.note and np.isnan(row.rho_within)
    assert np.isfinite(row.ci_pooled_low)                   # 8 architectures: the cluster bootstrap runs


def test_stratified_permutation_test_is_exact_for_few_permutations():
    # two architectures of 3 runs, both ρ = +1: of the 3!·3! = 36 within-stratum permutations only the
    # identity (ρ̄ = +1) and reversing both (ρ̄ = −1) reach |ρ̄| = 1: p = 2/36 exactly
    x = np.array([1.0, 2, 3, 1, 2, 3])
    y = np.array([1.0, 2, 3, 4, 5, 6])
    w, p = stats.stratified_permutation_test(x, y, ["a"] * 3 + ["b"] * 3, n_perm=100)
    assert w == pytest.approx(1.0) and p == pytest.approx(2 / 36)


def test_one_architecture_reports_pooled_tests_as_na():
    x = np.arange(6.0)
    table, by_arch = stats.correlations(_runstats(x, x[::-1], ["softmax"] * 6), n_boot=200, n_perm=1000)
    row = table.iloc[0]
    assert row.rho_pooled == pytest.approx(-1.0) and row.n_architectures == 1
    assert np.isnan(row.p_stratified) and np.isnan(row.ci_pooled_low) and "one architecture" in row.note
    arch = by_arch.iloc[0]
    assert arch.rho == pytest.approx(-1.0) and arch.p_permutation == pytest.approx(2 / 720)   # exact, 6! pairings


def test_statistics_tables_collapse_duplicates(tmp_path):
    from figure_data import run, summary

    runs = [run("softmax", "none", seed=s, acc=0.5 + 0.1 * s, near0=0.1 * s) for s in range(3)]
    runs += [run("softmax", "beta2", seed=s, acc=0.5 + 0.1 * s, near0=0.1 * s, options={"beta_range": 2.0})
             for s in range(3)]                                                     # copies: softmax has no β
    runs += [run("deltanet", m, seed=s, acc=0.3 + 0.2 * s + (m == "beta2") * 0.05, near0=0.3 - 0.1 * s,
                 options={"beta_range": 2.0} if m == "beta2" else {}) for m in ("none", "beta2") for s in range(3)]
    ds = summary(runs)
    runstats, table, by_arch = stats.statistics_tables(ds, {"n_boot": 100, "n_perm": 100})
    assert runstats.sizes["run"] == 9 and set(runstats.arch.values[runstats.modification.values == "beta2"]) == {"deltanet"}
    row = table.set_index("statistic").loc["mass_near_0"]
    assert row.n_runs == 9 and row.n_duplicates_dropped == 3 and row.accuracy == "final"
    arch = by_arch[by_arch.statistic == "mass_near_0"].set_index("arch")
    assert arch.n_runs.to_dict() == {"softmax": 3, "deltanet": 6}
    assert arch.rho["softmax"] == pytest.approx(1.0)
    paths = stats.write_tables(ds, tmp_path, {"n_boot": 100, "n_perm": 100})
    assert [p.name for p in paths] == ["correlations.csv", "correlations_by_arch.csv", "correlations.nc",
                                       "accuracy.csv", "correlations_learned.csv", "correlations_by_arch_learned.csv",
                                       "outcome_split_by_arch.csv"]
    assert (tmp_path / "correlations.csv").read_text().count("\nt,") == 4
    assert len((tmp_path / "accuracy.csv").read_text().splitlines()) == 1 + 9 + 3      # duplicates kept


def test_learned_correlations_leave_out_the_runs_at_chance():
    from figure_data import run, summary

    from eigsweep.figures import selection

    # the test task's chance level is 0.5 (a parity task): below 0.505 a run is at chance. Softmax: 3 runs that
    # learned (mass near 0 rising with accuracy) and 3 at chance (mass near 0 falling as their accuracy rises)
    assert selection.task_chance(summary([run("softmax")]), "t") == 0.5
    runs = [run("softmax", seed=s, acc=0.6 + 0.1 * s, near0=0.1 * s) for s in range(3)]
    runs += [run("softmax", seed=3 + s, acc=0.5 + 0.001 * s, near0=0.9 - 0.1 * s) for s in range(3)]
    runs += [run("linear", seed=s, acc=0.6 + 0.1 * s, near0=0.5 - 0.1 * s) for s in range(3)]
    ds = summary(runs)
    runstats, table, by_arch = stats.statistics_tables(ds, {"n_boot": 100, "n_perm": 100})
    learned, learned_by_arch = stats.learned_correlations(runstats, ds, {"n_boot": 100, "n_perm": 100})
    row = learned.set_index("statistic").loc["mass_near_0"]
    assert row.n_runs == 6 and row.n_at_chance_dropped == 3 and table.set_index("statistic").n_runs["mass_near_0"] == 9
    rho = learned_by_arch[learned_by_arch.statistic == "mass_near_0"].set_index("arch").rho
    assert rho["softmax"] == pytest.approx(1.0) and rho["linear"] == pytest.approx(-1.0)
    all_softmax = by_arch[(by_arch.statistic == "mass_near_0") & (by_arch.arch == "softmax")].rho.item()
    assert all_softmax < 0                      # over all six runs, the three at chance dominate
    at_chance = summary([run("softmax", seed=s, acc=0.5) for s in range(3)])  # nothing learned: empty tables
    empty, _ = stats.learned_correlations(stats.statistics_tables(at_chance, {"n_boot": 10, "n_perm": 10})[0],
                                          at_chance)
    assert empty.empty and {"n_runs", "n_at_chance_dropped", "rho_pooled"} <= set(empty.columns)


def test_accuracy_table_marks_the_lr_the_figures_choose():
    from figure_data import run, summary

    # softmax: lr 1e-3 has the better mean over seeds (0.6, 0.8 against 0.9, 0.3); linear: one lr
    runs = [run("softmax", seed=s, lr=lr, acc=a) for lr, accs in ((1e-3, (0.6, 0.8)), (1e-2, (0.9, 0.3)))
            for s, a in enumerate(accs)]
    runs += [run("linear", seed=s, lr=1e-2, acc=0.1 * s) for s in range(2)]
    table = stats.accuracy_table(summary(runs))
    assert list(table.columns) == ["run_id", "task", "arch", "modification", "lr", "seed", "status", "final_acc",
                                   "best_acc", "lr_chosen"]
    assert table.final_acc.tolist() == [0.6, 0.8, 0.9, 0.3, 0.0, 0.1]
    assert table.lr_chosen.tolist() == [True, True, False, False, True, True]
    # choosing on the best accuracy during training instead: softmax's 1e-2 runs peaked higher
    best = summary([dict(r, best=r["acc"] + (0.5 if r["lr"] == 1e-2 and r["arch"] == "softmax" else 0))
                    for r in runs])
    assert stats.accuracy_table(best, {"accuracy": "best"}).lr_chosen.tolist()[:4] == [False, False, True, True]


def test_mean_interval():
    v = np.array([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]])
    mean, sd = stats.mean_interval(v, kind="std")
    np.testing.assert_allclose(mean, [3, 2])
    np.testing.assert_allclose(sd, [np.std([1, 3, 5]), 0])
    _, half = stats.mean_interval(v, kind="ci95")
    assert half[0] == pytest.approx(4.302653 * 2 / np.sqrt(3), rel=1e-5)   # t(0.975, 2) · s/√n
    _, half1 = stats.mean_interval(v[:1], kind="ci95")
    assert np.isnan(half1).all()                                           # one seed: no CI, not a zero-width one
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


def test_statistics_use_the_informative_eigenvalue_of_structural_models():
    from figure_data import run, summary

    ds = summary([run("deltanet", seed=0, near0=0.05, informative=0.8), run("softmax", seed=0, near0=0.1)])
    runstats = stats.statistics_tables(ds, {"n_boot": 50, "n_perm": 50})[0]
    np.testing.assert_allclose(runstats.mass_near_0.values, [80.0, 10.0])        # deltanet: its informative λ
    assert runstats.spectrum_view.values.tolist() == ["informative", "full"]
    full = stats.statistics_tables(summary([run("deltanet", near0=0.05)]), {"n_boot": 50, "n_perm": 50})[0]
    assert full.mass_near_0.values.tolist() == [5.0] and full.spectrum_view.values[0].startswith("full (informative")


def test_a_bootstrap_over_three_architectures_is_called_coarse():
    """k = 3: 3 · 3⁻³ = 11% of the resamples draw one architecture three times (above the 2.5% tail), and the
    pooled interval's lower end is then exactly that architecture's own ρ; k = 4: 1.6%, no note."""
    x3 = np.concatenate([np.arange(4.0), np.arange(4.0) + 10, np.arange(4.0) + 20])
    y3 = np.concatenate([-np.arange(4.0), np.arange(4.0) + 10, np.arange(4.0) + 20])   # m0: ρ = −1 alone
    arch3 = np.repeat(["m0", "m1", "m2"], 4)
    row = stats.correlations(_runstats(x3, y3, arch3), n_boot=2000, n_perm=200)[0].iloc[0]
    assert "3 architectures: 11% of the bootstrap resamples hold one architecture only" in row.note
    assert row.ci_pooled_low == pytest.approx(-1.0)                      # m0's own ρ
    assert stats._one_cluster_share(3) == pytest.approx(1 / 9) and stats._one_cluster_share(4) < 0.025
    x, y, arch = _simpson(n_arch=4)
    assert stats.correlations(_runstats(x, y, arch), n_boot=300, n_perm=200)[0].iloc[0].note == ""


# -- runs that learned against runs at chance ----------------------------------------------------

def test_outcome_split_counts_ranges_and_an_exact_permutation_p():
    # chance 0.5 (accuracy at least 0.505 learned): 3 learned runs, all with more mass near 1 than 2 at chance
    rs = _runstats([90, 95, 100, 50, 60], [0.9, 0.95, 0.99, 0.5, 0.501], "aaaaa")
    row = stats.outcome_split(rs, chance=0.5).set_index("statistic").loc["mass_near_1"]
    assert (row.n_learned, row.n_chance) == (3, 2)
    assert (row.learned_min, row.learned_max, row.chance_min, row.chance_max) == (90, 100, 50, 60)
    assert row.U == 6                                    # every learned run above every run at chance
    assert row.p_permutation == pytest.approx(2 / 10)    # 2 of the C(5, 2) = 10 splits are as extreme
    # ties across the groups (as runs at 100%): U counts a tie as 1/2, and nothing separates
    tied = stats.outcome_split(_runstats([100, 100, 90, 100], [0.9, 0.9, 0.5, 0.5], "aaaa"), 0.5)
    tied = tied.set_index("statistic").loc["mass_near_1"]
    assert tied.U == 3 and tied.p_permutation == pytest.approx(1.0)
    # an infinite median horizon (half the λ at |λ| ≥ 1) ranks above every finite one; NaN (diverged) is left out
    inf = _runstats([np.inf, np.inf, 10, 20, np.nan], [0.9, 0.9, 0.5, 0.5, 0.5], "aaaaa")
    inf = stats.outcome_split(inf, 0.5).set_index("statistic").loc["median_horizon"]
    assert (inf.n_learned, inf.n_chance, inf.learned_max, inf.U) == (2, 2, np.inf, 4)
    # one group empty, or a constant statistic: no test
    none = stats.outcome_split(_runstats([1, 2, 3], [0.9, 0.9, 0.9], "aaa"), 0.5).set_index("statistic")
    assert none.n_chance["mass_near_1"] == 0 and np.isnan(none.p_permutation["mass_near_1"])


def test_split_summaries_keeps_each_run_once_and_the_asked_architectures_and_lrs(tmp_path, capsys):
    from figure_data import run, summary

    # sweep A: arch a at two lrs, arch b; sweep B holds a copy of one of A's runs and a run of its own
    a = [run("softmax", seed=s, lr=lr, acc=0.9 if s else 0.5, near0=0.0 if s else 0.3)
         for s in (0, 1) for lr in (1e-3, 1e-2)] + [run("linear", seed=0, acc=0.9)]
    b = [a[1], run("norm", seed=0, lr=1e-3, acc=0.5, near0=0.4)]
    summary(a).to_netcdf(tmp_path / "a.nc")
    summary(b).to_netcdf(tmp_path / "b.nc")
    rs, chance = stats.split_summaries([tmp_path / "a.nc", tmp_path / "b.nc"], archs=["softmax", "norm"], lrs=[1e-3])
    assert chance == 0.5
    assert sorted(rs.run.values.tolist()) == ["norm-t-none-s0-lr1.00e-03", "softmax-t-none-s0-lr1.00e-03",
                                             "softmax-t-none-s1-lr1.00e-03"]
    row = stats.outcome_split(rs, chance).set_index("statistic").loc["mass_near_0"]
    assert (row.n_learned, row.n_chance, row.U) == (1, 2, 0)       # the learned run has the least mass near 0
    assert np.isnan(row.p_permutation)                             # one run alone: no permutation test
    everything, _ = stats.split_summaries([tmp_path / "a.nc", tmp_path / "b.nc"])
    assert everything.sizes["run"] == 6                            # the copy counted once
    with pytest.raises(ValueError, match="no run matches"):
        stats.split_summaries([tmp_path / "a.nc"], archs=["mamba2"])
    stats.main(["split", str(tmp_path / "a.nc"), str(tmp_path / "b.nc"), "--arch", "softmax", "norm", "--lr", "1e-3"])
    out = capsys.readouterr().out
    assert out.startswith("3 runs (norm, softmax: pooled, a family)") and "mass_near_0" in out


def test_outcome_split_by_arch_never_pools_architectures():
    from figure_data import run, summary

    # chance 0.5. softmax: 2 learned runs with less mass near 0 than its 2 at chance; linear: the opposite
    runs = [run("softmax", seed=s, acc=0.9, near0=0.1 * s) for s in range(2)]
    runs += [run("softmax", seed=2 + s, acc=0.5, near0=0.5 + 0.1 * s) for s in range(2)]
    runs += [run("linear", seed=s, acc=0.9, near0=0.5 + 0.1 * s) for s in range(2)]
    runs += [run("linear", seed=2 + s, acc=0.5, near0=0.1 * s) for s in range(2)]
    runs += [run("norm", seed=s, acc=0.9, near0=0.1 * s) for s in range(3)]          # nothing at chance
    ds = summary(runs)
    runstats = stats.run_statistics(ds)
    table = stats.outcome_split_by_arch(runstats, ds, {"n_perm": 100})
    near0 = table[table.statistic == "mass_near_0"].set_index("arch")
    assert near0.U["softmax"] == 0 and near0.U["linear"] == 4 and np.isnan(near0.U["norm"])   # each on its own
    assert near0.p_permutation["softmax"] == pytest.approx(2 / 6)          # 2 of the C(4, 2) = 6 splits
    assert (near0.n_learned["norm"], near0.n_chance["norm"]) == (3, 0) and np.isnan(near0.p_permutation["norm"])
    assert set(table.task) == {"t"} and len(table) == 3 * len(stats.STATISTICS)
