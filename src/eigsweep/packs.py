"""Which runs may train together in one pack (pure Python: the Snakefile groups runs with this).

Members of a pack share everything but their seed and learning rate (and the names of their sweep and
modification): architecture, task, model shape and training settings. See eigsweep.pack for the engine.
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
    if not registry.mixer_info(spec.arch).packable:
        d["solo"] = spec.run_id
    return f"{spec.arch}-{spec.task}-" + hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
