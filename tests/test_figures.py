"""Figure bookkeeping that needs no training: which figures apply, LTI eigenvalues kept for the complex plane."""
from pathlib import Path

import numpy as np
import pytest
import torch

import eigsweep
from eigsweep import registry
from eigsweep.figures import catalog
from eigsweep.spectrum import MAX_LTI_EIGENVALUES


def test_sweep_figures_apply_by_config():
    base = {"arch": ["softmax", "mamba2"], "task": ["t"]}
    figs = catalog.sweep_figures(base)
    assert "modifications" not in figs and "complex_plane" not in figs and "spectrum_bars_per_head" not in figs
    assert "modifications" in catalog.sweep_figures({**base, "modification": ["none", "gate"]})
    lti = [a for a in registry.MIXERS if catalog.eigen_kind(a)["lti"]]
    if lti:
        assert "complex_plane" in catalog.sweep_figures({**base, "arch": ["softmax", lti[0]]})
    assert "spectrum_bars_per_head" in catalog.sweep_figures(base, {"per_head": True})
    assert set(catalog.FIGURES) == {n for names in catalog.FAMILIES.values() for n in names}


def test_lti_eigenvalues_are_stored_fixed_width():
    lti = [a for a in registry.MIXERS if catalog.eigen_kind(a)["lti"]]
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


# -- figure content: each family built on a small constructed summary ------------------------------

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from figure_data import run, summary  # noqa: E402

from eigsweep import stats  # noqa: E402
from eigsweep.figures import draw, selection, style  # noqa: E402


def texts(fig) -> str:
    """Every string drawn in a figure (titles, labels, tick labels, annotations, legends, notes), whitespace
    (and the line breaks of wrapped text) collapsed to single spaces."""
    out = [t.get_text() for t in fig.texts] + list(getattr(fig, "notes", []))
    for leg in fig.legends:
        out += [leg.get_title().get_text()] + [t.get_text() for t in leg.get_texts()]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_title("left"), ax.xaxis.get_label_text(), ax.yaxis.get_label_text()]
        out += [t.get_text() for t in ax.texts + ax.get_xticklabels() + ax.get_yticklabels()]
        if ax.get_legend():
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    return " ".join(" ".join(out).split())


def visible(fig):
    return [ax for ax in fig.axes if ax.axison]


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _zoo(seeds=(0, 1)):
    """softmax, linear (attention), mamba2 (selective recurrence), deltanet (delta rule), on running parity."""
    return summary([run(a, seed=s, acc=acc + 0.01 * s, near0=n0) for a, acc, n0 in
                    (("softmax", 0.9, 0.1), ("linear", 0.6, 0.3), ("mamba2", 0.7, 0.2), ("deltanet", 0.8, 0.05))
                    for s in seeds])


def test_model_styles_separate_every_registered_model():
    styles = {a: style.model_style(a) for a in registry.MIXERS}
    assert len({(s["color"], s["marker"]) for s in styles.values()}) == len(styles)
    colors = np.array([s["color"] for s in styles.values()])
    dist = np.abs(colors[:, None] - colors[None]).sum(-1) + np.eye(len(colors)) * 9
    assert dist.min() > 0.2                                              # no two models share a colour
    assert style.model_family("deltanet") == "delta rule" and style.model_family("s4") == "LTI, complex λ"
    assert style.model_family("softmax") == "attention (q/k/v)" and style.model_family("mamba") == "selective recurrence"


def test_training_dynamics_draws_each_modification_of_the_shipped_sweeps_with_its_own_dashes():
    from eigsweep.config import load_config
    from eigsweep.figures.dynamics import MOD_STYLES

    sweeps = load_config(Path(__file__).resolve().parents[1] / "config.yaml")["sweeps"].values()
    most = max(len(s.get("modification", ["none"])) for s in sweeps)
    assert most >= 6 and len({str(m) for m in MOD_STYLES[:most]}) == most    # none and depth4 were both solid


def test_training_dynamics_mean_keeps_a_stopped_seeds_last_value():
    from eigsweep.figures.dynamics import carried_forward

    nan = np.nan
    v = np.array([[0.1, 0.5, 0.99, nan, nan, nan],       # stopped early at the target
                  [0.0, nan, 0.2, 0.4, 0.98, nan],       # a gap inside a run stays a gap
                  [nan, nan, nan, nan, nan, nan]])
    out = carried_forward(v)
    np.testing.assert_array_equal(out[0], [0.1, 0.5, 0.99, 0.99, 0.99, nan])   # not past the last seed's end
    np.testing.assert_array_equal(out[1], v[1])
    assert np.isnan(out[2]).all() and np.isnan(v[0, 3])    # the input is left as it was


def test_spectrum_bars_facets_by_family_and_names_interval_and_n():
    fig = draw.build("spectrum_bars", _zoo())
    axes = visible(fig)
    assert len(axes) == 6                                     # 3 families × 2 layers, not one panel per model
    titles = [ax.get_title() for ax in axes]
    assert "t\nattention (q/k/v) · layer 0" in titles and "t\ndelta rule · layer 1" in titles
    assert len(axes[0].patches) == 2 * 7                      # softmax and linear side by side, 7 bins
    t = texts(fig)
    assert stats.INTERVAL_NAMES["std"] in t and "n = 4 runs (2 per model), seeds 0,1" in t
    assert "deltanet: " + selection.ABSENT_NOTE in t          # the structural model says it is the full spectrum
    assert all(k in t for k in ("softmax", "linear", "mamba2", "deltanet", "at initialisation (mean)"))
    one = texts(draw.build("spectrum_bars", _zoo(seeds=(0,)), {"interval": "ci95"}))
    assert stats.INTERVAL_NAMES["ci95"] in one and "95% CI n/a: one seed" in one and "±1 s.d." not in one


def test_accuracy_shows_final_beside_best_and_chance():
    ds = _zoo()
    ds["best_acc"] = ds.final_acc + 0.05
    fig = draw.build("accuracy", ds)
    ax = visible(fig)[0]
    t = texts(fig)
    assert "final model, one run (left)" in t and "best during training (right)" in t and "chance 0.5" in t
    assert ax.yaxis.get_label_text() == "test accuracy (final model)"
    assert any(np.allclose(l.get_ydata(), 0.5) for l in ax.get_lines())          # parity: chance 1/2
    assert [l.get_text() for l in ax.get_xticklabels()] == ["softmax", "linear", "mamba2", "deltanet"]
    bars = sorted(p.get_height() for p in ax.patches)
    np.testing.assert_allclose(bars, [0.605, 0.705, 0.805, 0.905])              # mean final accuracy over seeds
    best = texts(draw.build("accuracy", ds, {"accuracy": "best"}))
    assert "test accuracy (best model)" in best and "final model (right)" in best


def test_lr_sensitivity_draws_accuracy_per_lr_and_rings_the_chosen_one():
    """Softmax: lr 1e-3 best on test (0.9) but 1e-2 on validation: the ring sits on the validation choice; a
    diverged run is a cross at zero; the log panel keeps 0 on its floor (chance / 4)."""
    runs = [run("softmax", lr=lr, seed=s, acc=a, status="diverged" if (lr, s) == (1e-4, 1) else "ok")
            for lr, a in ((1e-4, 0.55), (1e-3, 0.9), (1e-2, 0.7)) for s in (0, 1)] + \
           [run("linear", lr=lr, seed=s, acc=0.5) for lr in (1e-3, 1e-2) for s in (0, 1)]
    ds = summary(runs)
    ds["final_val_acc"] = ds.final_acc + np.where(ds.lr.values == 1e-2, 0.3, 0.0)
    fig = draw.build("lr_sensitivity", ds)
    lin, log = visible(fig)
    assert lin.get_xscale() == "log" and log.get_yscale() == "log" and lin.get_yscale() == "linear"
    test_line = next(l for l in lin.get_lines() if l.get_label() == "softmax")
    np.testing.assert_allclose(test_line.get_xdata(), [1e-4, 1e-3, 1e-2])
    np.testing.assert_allclose(test_line.get_ydata(), [0.275, 0.9, 0.7])        # diverged counts as 0
    val_line = [l for l in lin.get_lines() if l.get_linestyle() == ":"][0]
    np.testing.assert_allclose(val_line.get_ydata(), [0.275, 0.9, 1.0])
    rings = [c for c in lin.collections if c.get_sizes().tolist() == [150]]
    # validation chose 1e-2 for both models (linear: 0.5 on test at each lr)
    assert sorted(tuple(np.round(c.get_offsets()[0], 3)) for c in rings) == [(0.01, 0.5), (0.01, 0.7)]
    crosses = [c for c in lin.collections if c.get_offsets().shape[0] == 1 and c.get_sizes().tolist() == [26]]
    assert [tuple(c.get_offsets()[0]) for c in crosses] == [(1e-4, 0.0)]
    assert log.get_ylim()[0] < 0.5 / 4 and min(log.get_lines()[0].get_ydata()) >= 0.5 / 4   # floor: chance / 4
    t = texts(fig)
    assert "chosen on validation" in t and "validation: mean over seeds" in t and "chance 0.5" in t
    assert "n = 10 runs" in t and "diverged or unstable (drawn at 0)" in t
    assert "lr_sensitivity" not in catalog.sweep_figures({"arch": ["softmax"], "task": ["t"], "lr": [1e-3]})
    assert "lr_sensitivity" in catalog.sweep_figures({"arch": ["softmax", "linear"], "task": ["t"], "lr": [1e-3],
                                                      "lr_by_arch": {"linear": [1e-3, 1e-2]}})


def test_modifications_collapse_duplicates():
    ds = summary([run(a, m, seed=s, acc=0.6 + 0.3 * (m == "beta2" and a == "deltanet"),
                      options={"beta_range": 2.0} if m == "beta2" else {})
                  for a in ("softmax", "deltanet") for m in ("none", "beta2") for s in (0, 1)])
    fig = draw.build("modifications", ds)
    assert len(visible(fig)) == 2                           # deltanet only: softmax under beta2 is softmax
    t = texts(fig)
    assert "t · deltanet: trained spectrum (all layers)" in t and "softmax" not in t
    assert stats.INTERVAL_NAMES["std"] in t and "n = 4 runs, seeds 0,1" in t
    fig = draw.build("modifications", _zoo())
    assert "n/a: no model in this sweep has more than one modification" in texts(fig)


def _tables(ds):
    runstats, table, by_arch = stats.statistics_tables(ds, {"n_boot": 100, "n_perm": 100})
    return stats.correlations_dataset(table, by_arch, runstats)


def test_correlation_panels_state_pooled_and_within_statistics():
    runs = [run(a, seed=s, acc=0.5 + 0.1 * s + d, near0=0.1 * s + d) for s in range(3)
            for a, d in (("softmax", 0.0), ("mamba2", 0.02), ("deltanet", 0.04))]
    runs.append(run("softmax", task="u", acc=0.5))                        # a task with one run: no panel
    ds = summary(runs)
    tables = _tables(ds)
    fig = draw.build("correlation", ds, tables=tables)
    axes = visible(fig)
    assert len(axes) == 4                                                  # task t only, one panel per statistic
    t = texts(fig)
    assert t.count("n = 9 runs, 3 architectures (3 with a within ρ)") == 3    # mass_above_1 is constant: n/a
    assert "within-arch ρ = +1.00" in t and "pooled ρ = " in t and "n/a: constant statistic" in t
    assert "No correlation for 1 task(s)" in t and "u (n = 1)" in t
    heat = draw.build("correlation_heatmap", ds, tables=tables)
    ht = texts(heat)
    assert "pooled over runs" in ht and "within architecture" in ht and "n/a" in ht and "9 runs/3 arch" in ht


def test_correlation_says_when_it_pools_modifications_within_an_architecture():
    runs = [run(a, m, seed=s, acc=0.5 + 0.1 * s + d, near0=0.1 * s + d, output_gate=m == "gate") for s in range(3)
            for m in ("none", "gate") for a, d in (("softmax", 0.0), ("mamba2", 0.02))]
    ds = summary(runs)
    tables = _tables(ds)
    for name in ("correlation", "correlation_heatmap"):
        t = texts(draw.build(name, ds, tables=tables))
        assert "t: modifications pooled within each architecture (softmax: gate, none; mamba2: gate, none)" in t, t
    plain = summary([r for r in runs if r["mod"] == "none"])
    assert "pooled within" not in texts(draw.build("correlation", plain, tables=_tables(plain)))
    # a modification that leaves a model's spec as it is (duplicates, collapsed before correlating) is no pooling
    same = summary([run(a, m, seed=s, acc=0.5 + 0.1 * s) for s in range(3) for m in ("none", "gate")
                    for a in ("softmax", "mamba2")])
    assert "pooled within" not in texts(draw.build("correlation", same, tables=_tables(same)))


def test_correlation_of_one_run_tasks_is_na_not_a_panel():
    ds = summary([run("softmax", task=f"task{i}") for i in range(3)])
    for name in ("correlation", "correlation_heatmap"):
        fig = draw.build(name, ds, tables=_tables(ds))
        assert len(fig.axes) == 1 and "n/a: no task has 3 runs" in texts(fig)


def test_sign_phase_shows_negative_eigenvalues_per_model_and_modification():
    runs = [run("deltanet", m, seed=s, acc=0.7 + 0.3 * (m == "beta2"), negative=0.04 * (m == "beta2"),
                options={"beta_range": 2.0} if m == "beta2" else {}) for m in ("none", "beta2") for s in (0, 1)]
    runs += [run("s4", seed=s, acc=0.3) for s in (0, 1)]
    fig = draw.build("sign_phase", summary(runs))
    real, cplx = visible(fig)
    assert real.get_title() == "t\nshare of λ < 0 (real λ)" and cplx.get_title().startswith("t\nphase distribution (complex λ")
    assert [l.get_text() for l in real.get_xticklabels()] == ["deltanet\nnone\nacc 0.70", "deltanet\nbeta2\nacc 1.00"]
    heights = [p.get_height() for p in real.patches]
    np.testing.assert_allclose(heights, [0, 0, 0, 4.0])                  # beta2, trained: 4% of λ < 0
    t = texts(fig)
    assert "4%" in t and "|arg λ| ∈ (90,180]°" in t and "at initialisation" in t
    assert "deltanet: " + selection.ABSENT_NOTE in t
    inf = summary([run("deltanet", informative=0.5, negative=0.3)])
    assert "deltanet: informative eigenvalue only" in texts(draw.build("sign_phase", inf))


def test_fine_histograms_one_row_per_model():
    fig = draw.build("fine_histograms", _zoo())
    assert len(fig.axes) == 4 * 2                           # (histogram, zoom) per model
    t = texts(fig)
    assert "t · deltanet (n = 2 runs, seeds 0,1)" in t and selection.ABSENT_NOTE in t


def test_complex_plane_draws_unstable_modes_outside_the_circle():
    ds = summary([run("s4", seed=0), run("softmax", seed=0)], lti=True)
    fig = draw.build("complex_plane", ds)
    assert len(fig.axes) == 3                               # s4 only (softmax is not LTI)
    t = texts(fig)
    assert "|λ| > 1: 0 of 16" in t and "|λ| > 1: 16 of 16 (max 1.100)" in t
    trained = fig.axes[1]
    assert trained.get_xlim()[1] > 1.1                       # not clipped to the unit circle
    assert fig.axes[2].get_yscale() == "symlog"


def test_training_dynamics_one_column_per_family():
    fig = draw.build("training_dynamics", _zoo())
    assert len(visible(fig)) == 3 * 4                        # 3 families × (3 shares + accuracy)
    t = texts(fig)
    assert "t delta rule" in t and "test accuracy" in t and "n = 4 runs (2 per model), seeds 0,1" in t


def test_make_family_writes_png_and_pdf_and_names_missing_runs(tmp_path):
    ds = _zoo(seeds=(0,))
    ds.to_netcdf(tmp_path / "summary.nc")
    made = draw.make_family("accuracy", tmp_path / "summary.nc", tmp_path / "figures", expected=["gone-run"])
    assert made == [tmp_path / "figures" / "accuracy.png"] and (tmp_path / "figures" / "accuracy.pdf").exists()
    assert catalog_code_changes_with_the_code()


def catalog_code_changes_with_the_code():
    from eigsweep.figures import catalog

    return len(catalog.code_version()) == 12


def test_training_dynamics_shows_the_informative_eigenvalue_when_stored():
    ds = summary([run("deltanet", seed=s, near0=0.05, informative=0.6) for s in (0, 1)])
    assert "full spectrum: informative view not in these results" in texts(draw.build("training_dynamics", ds))
    inf = ds.bin_fraction_during.copy(data=np.zeros_like(ds.bin_fraction_during.values))
    inf[..., 0] = 0.6                                          # 60% of the informative eigenvalues in [0, 0.1]
    ds["informative_bin_fraction_during"] = inf
    fig = draw.build("training_dynamics", ds)
    assert "deltanet: informative eigenvalue only" in texts(fig)
    near0 = [line.get_ydata() for line in fig.axes[0].get_lines() if len(line.get_ydata()) == 3]
    np.testing.assert_allclose(near0[0], [60, 60, 60])          # the informative share, not the full 5%


def test_an_na_panel_leaves_the_ticks_of_the_panels_sharing_its_axis():
    """The correlation figure's rows share y: an n/a panel (e.g. no run with |λ| > 1) once removed the
    accuracy ticks of its whole row."""
    from eigsweep.figures import style

    fig, axes = plt.subplots(1, 2, sharey="row")
    axes[0].scatter([0.0, 1.0], [0.0, 0.5])
    axes[0].set_ylim(-0.03, 1.05)
    style.na_panel(axes[1], "nothing to show")
    fig.canvas.draw()
    assert [t.get_text() for t in axes[0].get_yticklabels() if t.get_text()]
    plt.close(fig)
