"""Which runs may train together in one pack, and the packs of a sweep (pure Python: the Snakefile uses it).

Members of a pack share everything but their seed, learning rate, warm-up, final lr ratio and target accuracy
(and the names of their sweep and modification): architecture, task, model shape and training settings.
See eigsweep.pack for the engine.
"""
from __future__ import annotations

import hashlib
import json

from eigsweep import registry


def pack_key(spec) -> str:
    """Runs with equal keys may share a pack; a mixer marked ``packable=False`` gets a key of its own per run."""
    d = json.loads(spec.to_json())
    for k in ("sweep", "modification", "seed", "lr"):
        d.pop(k)
    for k in ("warmup_steps", "min_lr_ratio", "target_acc"):   # per member in the pack engine
        d["train"].pop(k)
    if not registry.mixer_info(spec.arch).packable:
        d["solo"] = spec.run_id
    return f"{spec.arch}-{spec.task}-" + hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def group_packs(runs: list, size: int) -> dict[str, list]:
    """The packs of a sweep, {pack id: runs}: its runs grouped by pack_key, keys in order of their first run
    in the grid, each group cut in grid order into packs of at most ``size`` runs. Deterministic: the same
    runs always give the same packs (the Snakefile's pack jobs and `eigsweep sweep` use this). A pack's id is
    ``<arch>-<task>-pack<i>``, ``i`` its index in the sweep (zero-padded)."""
    if size < 1:
        raise ValueError(f"pack size must be at least 1, not {size}")
    groups: dict[str, list] = {}
    for r in runs:
        groups.setdefault(pack_key(r), []).append(r)
    packs = [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]
    width = len(str(max(len(packs) - 1, 0)))
    return {f"{p[0].arch}-{p[0].task}-pack{i:0{width}d}": p for i, p in enumerate(packs)}
