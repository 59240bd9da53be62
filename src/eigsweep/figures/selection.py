"""Which runs a figure or a statistic shows, and which of their eigenvalues. Pure numpy/xarray (no plotting),
so eigsweep.stats uses it too.

- ``ok_runs``: the runs that trained (diverged runs have no trained spectrum).
- ``collapse_duplicates``: runs whose specs are identical once the settings their model does not read are
  dropped (softmax attention trained "with DeltaNet's β ∈ (0,2)" is softmax attention) are one run; the one
  with the baseline modification is kept.
- ``best_lr_runs``: for each (task, model, modification), the runs of the learning rate with the best mean
  accuracy over seeds (Zoology's protocol); ties go to the smaller learning rate. ``lr_note`` says how it was
  chosen and names the models at chance at every lr (``at_chance``: their choice is arbitrary).
- ``chance_level``: a uniform guess's accuracy on a run's task.
- ``informative_view``: for models whose registry entry marks structural eigenvalues (the DeltaNet family),
  the informative eigenvalue's statistics in place of the full spectrum's, where the result files have them.
"""
from __future__ import annotations

import json

import numpy as np
import xarray as xr

from eigsweep import registry

# spec keys that name a run but do not change the trained model
NOT_THE_MODEL = ("sweep", "modification", "run_id")
# model settings some mixer reads (registry model_keys); the rest (d_model, n_layers, norm, …) every model reads
MIXER_KEYS = frozenset().union(*(info.model_keys for info in registry.MIXERS.values()))
# full-spectrum variable -> its informative counterpart (DeltaNet family: one eigenvalue per token and head)
INFORMATIVE = {"bin_fraction": "informative_bin_fraction", "bin_fraction_std": "informative_bin_fraction_std",
               "phase_fraction": "informative_phase_fraction", "phase_fraction_std": "informative_phase_fraction_std",
               "fine_count": "informative_fine_count", "negative_fraction": "informative_negative_fraction",
               "bin_fraction_during": "informative_bin_fraction_during"}
VIEW_FULL, VIEW_INFORMATIVE, VIEW_ABSENT = "full", "informative", "full (informative view absent)"
ABSENT_NOTE = "full spectrum: informative view not in these results"


def unique(values) -> list:
    """Distinct values in a stable, meaningful order: models in registry order, the baseline modification
    ``none`` first, everything else in order of appearance."""
    vals = list(dict.fromkeys(np.asarray(values).tolist()))
    order = {a: i for i, a in enumerate(registry.MIXERS)}
    if vals and all(isinstance(v, str) and v in order for v in vals):
        return sorted(vals, key=order.get)
    if "none" in vals:
        return ["none"] + [v for v in vals if v != "none"]
    return vals


def where(ds: xr.Dataset, **sel) -> xr.Dataset:
    """The runs whose run-indexed coordinates equal the given values."""
    keep = np.ones(ds.sizes["run"], dtype=bool)
    for k, v in sel.items():
        keep &= ds[k].values == v
    return ds.isel(run=np.flatnonzero(keep))


def ok_runs(ds: xr.Dataset) -> xr.Dataset:
    return ds.isel(run=np.flatnonzero(ds.status.values == "ok"))


def accuracy_var(options: dict | None = None) -> str:
    """The summary variable that is 'the accuracy' of a run: the final model's (default; its spectrum is the
    one measured) or the best during training (``figures: {accuracy: best}``)."""
    which = (options or {}).get("accuracy", "final")
    if which not in ("final", "best"):
        raise ValueError(f"figures.accuracy: {which!r}; allowed: final, best")
    return f"{which}_acc"


def baseline_modification(ds: xr.Dataset) -> str:
    mods = unique(ds.modification.values)
    return "none" if "none" in mods else mods[0]


def chance_level(spec_json: str) -> float | None:
    """Accuracy of a uniform guess on the task of a run (from its stored spec); None when unknown."""
    try:
        p = json.loads(spec_json)["task_params"]
    except (ValueError, KeyError, TypeError):
        return None
    name = p.get("name")
    if name == "mqar":                       # values are drawn from the upper half of the vocabulary
        return 2.0 / p.get("vocab_size", 8192)
    if name in ("induction", "selective_copy"):
        return 1.0 / p.get("n_values", 16)
    if name in ("parity", "imdb"):
        return 0.5
    if name in ("digits", "mnist1d", "listops", "scifar"):
        return 0.1
    return None


def task_chance(ds, task: str) -> float | None:
    if "spec_json" not in ds:
        return None
    runs = ds.spec_json.values[ds.task.values == task]
    return chance_level(str(runs[0])) if len(runs) else None


def _selection_var(ds: xr.Dataset, idx, acc: str) -> str:
    """The accuracy that picks the learning rate among runs ``idx``: the validation split's (final or best,
    as ``acc``) where every one of them has it, else ``acc`` itself (test)."""
    val = acc.replace("_acc", "_val_acc")
    if val in ds and np.isfinite(ds[val].values[idx].astype(float)).all():
        return val
    return acc


def best_lr_runs(ds: xr.Dataset, acc: str = "final_acc") -> xr.Dataset:
    """For each (task, arch, modification), the runs of the learning rate with the best mean accuracy over
    seeds (a diverged run counts as accuracy 0); ties go to the smaller learning rate. The accuracy is the
    validation split's where the runs have one (``final_val_acc``/``best_val_acc``), so the test accuracy
    the figures report did not choose the learning rate; else the test split's (``acc``)."""
    keep = []
    for idx, lrs, means in _lr_means(ds, acc):
        best = max(means, key=lambda lr: (means[lr], -lr))
        keep.extend(idx[lrs == best].tolist())
    return ds.isel(run=sorted(keep))


def _lr_means(ds: xr.Dataset, acc: str):
    """Per (task, arch, modification): its run indices, their lrs and {lr: mean selection accuracy over seeds}
    (a diverged run counts as 0)."""
    groups = dict.fromkeys(zip(ds.task.values.tolist(), ds.arch.values.tolist(), ds.modification.values.tolist()))
    for task, arch, mod in groups:
        idx = np.flatnonzero((ds.task.values == task) & (ds.arch.values == arch) & (ds.modification.values == mod))
        lrs = ds.lr.values[idx]
        ok = ds.status.values[idx] == "ok"
        score = np.where(ok, np.nan_to_num(ds[_selection_var(ds, idx[ok], acc)].values[idx].astype(float)), 0.0)
        yield idx, lrs, {lr: score[lrs == lr].mean() for lr in sorted(set(lrs.tolist()))}


# "at chance": less than this share of the way from the task's chance level to accuracy 1
CHANCE_MARGIN = 0.01


def learned(accuracy, chance: float | None, margin: float = CHANCE_MARGIN):
    """Accuracy at least ``margin`` of the way from ``chance`` (0 where unknown) to 1: the run learned something."""
    chance = chance or 0.0
    return np.asarray(accuracy, dtype=float) - chance >= margin * (1 - chance)


def at_chance(ds: xr.Dataset, acc: str = "final_acc", margin: float = CHANCE_MARGIN) -> list[str]:
    """Models (``arch``, with ``/modification`` where it is not the baseline) whose best learning rate's mean
    selection accuracy is less than ``margin`` of the way from the task's chance level to 1: their "best" lr is
    picked among chance-level accuracies, so it is arbitrary."""
    out = []
    base = baseline_modification(ds)
    for idx, _, means in _lr_means(ds, acc):
        chance = chance_level(str(ds.spec_json.values[idx[0]])) if "spec_json" in ds else None
        if chance is not None and not learned(max(means.values()), chance, margin):
            arch, mod = str(ds.arch.values[idx[0]]), str(ds.modification.values[idx[0]])
            out.append(arch if mod == base else f"{arch}/{mod}")
    return list(dict.fromkeys(out))


def lr_note(ds: xr.Dataset, acc: str = "final_acc") -> str:
    """How the figures' learning rate per model was chosen, for sweeps with several ("" otherwise)."""
    groups = list(zip(ds.task.values.tolist(), ds.arch.values.tolist(), ds.modification.values.tolist()))
    if len(set(zip(groups, ds.lr.values.tolist()))) == len(set(groups)):   # one lr per group: nothing chosen
        return ""
    on_val = _selection_var(ds, np.flatnonzero(ds.status.values == "ok"), acc) != acc
    chance = at_chance(ds, acc)
    return ("Learning rate per model: the best mean " + ("validation" if on_val else "test") + " accuracy over "
            "seeds" + (" (held-out split; the test accuracy shown did not choose it)." if on_val
                       else " (the task has no validation split).")
            + (f" At chance at every lr (best < 1% of the way from chance to 1), so their lr is arbitrary: "
               f"{', '.join(chance)}."
               if chance else ""))


# -- duplicates ----------------------------------------------------------------------------------

def model_identity(spec_json: str, arch: str) -> str:
    """The run's spec without what does not change the trained model: its name, its sweep, its modification,
    the model settings its mixer does not read (registry ``model_keys``) and the options it does not accept
    (registry ``options``; an accepted option left out means its default). Canonical JSON."""
    spec = json.loads(spec_json)
    for k in NOT_THE_MODEL:
        spec.pop(k, None)
    info = registry.MIXERS.get(arch)
    if info is not None and isinstance(spec.get("model"), dict):
        model = {k: v for k, v in spec["model"].items() if k not in MIXER_KEYS or k in info.model_keys}
        options = spec["model"].get("options") or {}
        model["options"] = {k: options.get(k, default) for k, default in info.options.items()}
        spec["model"] = model
    return json.dumps(spec, sort_keys=True)


def duplicates(ds: xr.Dataset) -> dict[str, list[str]]:
    """{kept run: [its duplicates]} for every group of runs with one model identity (see model_identity);
    the kept run is the one with the baseline modification (then the first by run id). Runs without a stored
    spec are never duplicates."""
    if "spec_json" not in ds or ds.sizes["run"] == 0:
        return {}
    mods = unique(ds.modification.values)
    runs = sorted(range(ds.sizes["run"]), key=lambda i: (mods.index(ds.modification.values[i]), str(ds.run.values[i])))
    groups: dict[str, list[str]] = {}
    for i in runs:
        spec = str(ds.spec_json.values[i])
        key = model_identity(spec, str(ds.arch.values[i])) if spec else str(ds.run.values[i])
        groups.setdefault(key, []).append(str(ds.run.values[i]))
    return {g[0]: g[1:] for g in groups.values() if len(g) > 1}


def collapse_duplicates(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with each group of duplicate runs reduced to its kept run; ``attrs['duplicates_dropped']``
    counts the runs dropped."""
    dropped = {r for rest in duplicates(ds).values() for r in rest}
    out = ds.isel(run=[i for i, r in enumerate(ds.run.values.tolist()) if r not in dropped])
    out.attrs["duplicates_dropped"] = len(dropped)
    return out


# -- the informative eigenvalue ------------------------------------------------------------------

def informative_view(ds: xr.Dataset) -> xr.Dataset:
    """For runs of models with structural eigenvalues (registry ``structural``), their ``informative_*``
    variables in place of the full spectrum's (bins, phase bins, fine histogram), where present. A run
    coordinate ``spectrum_view`` says which: ``full`` (a model without structural eigenvalues),
    ``informative``, or ``full (informative view absent)`` (a structural model whose results lack it)."""
    structural = np.array([bool(getattr(registry.MIXERS.get(a), "structural", None)) for a in ds.arch.values.tolist()],
                          dtype=bool)
    if "informative_bin_fraction" in ds:
        inf = ds.informative_bin_fraction
        has = inf.notnull().any([d for d in inf.dims if d != "run"]).values
    else:
        has = np.zeros(ds.sizes["run"], dtype=bool)
    use = structural & has
    out = ds.copy()
    for full, informative in INFORMATIVE.items():
        if informative in ds and full in ds:   # per variable: older files may lack some informative variables
            v = ds[informative]
            mask = xr.DataArray(structural & v.notnull().any([d for d in v.dims if d != "run"]).values, dims="run",
                                coords={"run": ds.run})
            out[full] = xr.where(mask, v, ds[full]).transpose(*ds[full].dims)
    view = np.where(~structural, VIEW_FULL, np.where(use, VIEW_INFORMATIVE, VIEW_ABSENT))
    return out.assign_coords(spectrum_view=("run", view.astype(str)))


def view_note(ds: xr.Dataset) -> str:
    """What a panel must say about the view its runs show ('' when every run shows its informative or only
    spectrum)."""
    if "spectrum_view" not in ds.coords:
        return ""
    views = set(ds.spectrum_view.values.tolist())
    archs = unique(ds.arch.values[ds.spectrum_view.values == VIEW_ABSENT])
    notes = []
    if VIEW_ABSENT in views:
        notes.append(f"{', '.join(archs)}: {ABSENT_NOTE}")
    if VIEW_INFORMATIVE in views:
        inf = unique(ds.arch.values[ds.spectrum_view.values == VIEW_INFORMATIVE])
        notes.append(f"{', '.join(inf)}: informative eigenvalue only")
    return "; ".join(notes)


def spectrum_runs(ds: xr.Dataset, acc: str = "final_acc") -> xr.Dataset:
    """The runs the spectrum figures show: trained fine, duplicates collapsed, the best learning rate per
    (task, model, modification), in the informative view where it applies."""
    ok = collapse_duplicates(ok_runs(ds))
    return informative_view(best_lr_runs(ok, acc) if ok.sizes["run"] else ok)
