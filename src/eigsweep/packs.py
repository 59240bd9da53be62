"""Which runs may train together in one pack (pure Python: the Snakefile groups runs with this).

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
