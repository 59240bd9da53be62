"""Which runs a figure shows (eigsweep.figures.selection), on constructed summaries with known answers."""
import numpy as np
import pytest
from figure_data import run, summary

from eigsweep.figures import selection


def test_best_lr_is_the_best_mean_over_seeds_and_diverged_counts_as_zero():
    runs = [run("softmax", lr=1e-3, seed=0, acc=0.5), run("softmax", lr=1e-3, seed=1, acc=0.7),      # mean 0.6
            run("softmax", lr=1e-2, seed=0, acc=0.9), run("softmax", lr=1e-2, seed=1, acc=0.95, status="diverged"),
            run("linear", lr=1e-3, acc=0.4, best=0.9), run("linear", lr=1e-2, acc=0.6, best=0.6),
            run("mamba2", lr=1e-3, acc=0.5), run("mamba2", lr=1e-2, acc=0.5)]                         # a tie
    ds = summary(runs)
    best = selection.best_lr_runs(ds)
    got = {(a, float(lr)) for a, lr in zip(best.arch.values, best.lr.values)}
    assert got == {("softmax", 1e-3), ("linear", 1e-2), ("mamba2", 1e-3)}    # 0.6 > (0.9 + 0)/2; tie: smaller lr
    assert best.sizes["run"] == 4                                               # both softmax seeds
    by_best = selection.best_lr_runs(ds, acc=selection.accuracy_var({"accuracy": "best"}))
    assert ("linear", 1e-3) in {(a, float(lr)) for a, lr in zip(by_best.arch.values, by_best.lr.values)}
    with pytest.raises(ValueError, match="accuracy"):
        selection.accuracy_var({"accuracy": "mean"})


def test_best_lr_is_chosen_on_the_validation_split_when_the_runs_have_one():
    runs = [run("softmax", lr=1e-3, seed=s, acc=0.9) for s in (0, 1)] + \
           [run("softmax", lr=1e-2, seed=s, acc=0.5) for s in (0, 1)]
    ds = summary(runs)
    assert {float(lr) for lr in selection.best_lr_runs(ds).lr.values} == {1e-3}     # on test
    assert "test accuracy" in selection.lr_note(ds) and "no validation split" in selection.lr_note(ds)
    ds["final_val_acc"] = ("run", np.array([0.2, 0.3, 0.8, 0.7]))                   # validation prefers 1e-2
    assert {float(lr) for lr in selection.best_lr_runs(ds).lr.values} == {1e-2}
    assert "validation accuracy" in selection.lr_note(ds)
    ds["final_val_acc"] = ("run", np.array([0.2, np.nan, 0.8, 0.7]))               # one run without: test decides
    assert {float(lr) for lr in selection.best_lr_runs(ds).lr.values} == {1e-3}
    assert selection.lr_note(summary([run("softmax", lr=1e-3, seed=s) for s in (0, 1)])) == ""   # one lr


def test_baseline_modification_and_order():
    ds = summary([run("softmax", "gate"), run("mamba2", "none"), run("linear", "conv_qk")])
    assert selection.baseline_modification(ds) == "none"
    assert selection.baseline_modification(selection.where(ds, arch="softmax")) == "gate"
    assert selection.unique(ds.arch.values) == ["softmax", "linear", "mamba2"]      # registry order
    assert selection.unique(["gate", "none", "gate"]) == ["none", "gate"]


def test_duplicates_are_runs_of_one_model():
    runs = [run("softmax", "none"), run("softmax", "beta2", options={"beta_range": 2.0}),        # β: not read
            run("deltanet", "none"), run("deltanet", "beta2", options={"beta_range": 2.0}),      # different models
            run("deltanet", "beta1", options={"beta_range": 1.0}),                               # = the default
            run("mamba2", "none", n_heads=1), run("mamba2", "heads4", n_heads=4),                # mamba2 ignores heads
            run("softmax", "heads4", n_heads=4),                                                 # softmax reads them
            run("softmax", "none", seed=1)]                                                      # another seed
    ds = summary(runs)
    dups = selection.duplicates(ds)
    assert dups == {"softmax-t-none-s0-lr1.00e-03": ["softmax-t-beta2-s0-lr1.00e-03"],
                    "deltanet-t-none-s0-lr1.00e-03": ["deltanet-t-beta1-s0-lr1.00e-03"],
                    "mamba2-t-none-s0-lr1.00e-03": ["mamba2-t-heads4-s0-lr1.00e-03"]}
    kept = selection.collapse_duplicates(ds)
    assert kept.sizes["run"] == 6 and kept.attrs["duplicates_dropped"] == 3
    assert "deltanet-t-beta2-s0-lr1.00e-03" in kept.run.values


def test_informative_view_for_structural_models():
    runs = [run("deltanet", near0=0.1, informative=0.8), run("softmax", near0=0.2)]
    ds = selection.informative_view(summary(runs))
    assert ds.spectrum_view.values.tolist() == ["informative", "full"]
    np.testing.assert_allclose(ds.bin_fraction.sel(stage="trained", bin="[0,0.1]").values[:, 0, 0], [0.8, 0.2])
    assert selection.view_note(ds) == "deltanet: informative eigenvalue only"
    absent = selection.informative_view(summary([run("gated_deltanet"), run("softmax")]))
    assert absent.spectrum_view.values.tolist() == ["full (informative view absent)", "full"]
    assert selection.view_note(absent) == "gated_deltanet: " + selection.ABSENT_NOTE


def test_spectrum_runs_drop_diverged_and_duplicates():
    runs = [run("softmax", "none", acc=0.9), run("softmax", "beta2", acc=0.9, options={"beta_range": 2.0}),
            run("deltanet", "none", status="diverged"), run("deltanet", "none", lr=1e-2, acc=0.3)]
    ds = selection.spectrum_runs(summary(runs))
    assert ds.run.values.tolist() == ["softmax-t-none-s0-lr1.00e-03", "deltanet-t-none-s0-lr1.00e-02"]


def test_informative_view_covers_the_sign_of_structural_models():
    """The share of λ < 0 of a DeltaNet-family run is its informative eigenvalue's, never the full spectrum's
    (whose d_k − 1 structural eigenvalues α > 0 dilute it)."""
    ds = summary([run("deltanet", informative=0.8), run("softmax")])
    shape = (ds.sizes["run"], ds.sizes["stage"])
    ds["negative_fraction"] = (("run", "stage"), np.full(shape, 0.02))
    ds["informative_negative_fraction"] = (("run", "stage"), np.where(ds.arch.values[:, None] == "deltanet", 0.6, np.nan)
                                           * np.ones(shape))
    view = selection.informative_view(ds)
    np.testing.assert_allclose(view.negative_fraction.values[:, 0], [0.6, 0.02])


def test_lr_note_names_the_models_at_chance_at_every_learning_rate():
    """Parity: chance 0.5; a model whose best lr reaches 0.504 (< 0.5 + 1% of 0.5) chose among chance-level
    accuracies, one at 0.52 did not; a non-baseline modification is named with it."""
    runs = [run("softmax", lr=lr, seed=s, acc=a) for lr, a in ((1e-3, 0.52), (1e-2, 0.5)) for s in (0, 1)] + \
           [run("lru", lr=lr, seed=s, acc=a) for lr, a in ((1e-3, 0.504), (1e-2, 0.49)) for s in (0, 1)] + \
           [run("lru", "gate", lr=lr, seed=s, acc=0.5) for lr in (1e-3, 1e-2) for s in (0, 1)]
    ds = summary(runs)
    assert selection.chance_level(str(ds.spec_json.values[0])) == 0.5
    assert selection.at_chance(ds) == ["lru", "lru/gate"]
    assert selection.lr_note(ds).endswith("so their lr is arbitrary: lru, lru/gate.")
    assert "arbitrary" not in selection.lr_note(selection.where(ds, arch="softmax"))
