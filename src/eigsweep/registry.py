"""Name -> implementation registries for mixers and tasks.

Entries are import paths ("module:attribute") so that the Snakefile can validate a sweep's names
without importing torch. Adding a model or a task is one file plus one line here.
"""
from __future__ import annotations

import importlib

MIXERS: dict[str, str] = {
    "softmax": "eigsweep.mixers.softmax:SoftmaxAttention",
    "linear": "eigsweep.mixers.linear:LinearAttention",
    "mamba2": "eigsweep.mixers.mamba2:Mamba2",
    "norm": "eigsweep.mixers.norm:NormAttention",
    "mamba2_lti": "eigsweep.mixers.mamba2_lti:Mamba2LTI",
    "s4": "eigsweep.mixers.s4:S4",
    "s4d": "eigsweep.mixers.s4d:S4D",
    "s5": "eigsweep.mixers.s5:S5",
    "lru": "eigsweep.mixers.lru:LRU",
    "mamba": "eigsweep.mixers.mamba:Mamba",
    "gla": "eigsweep.mixers.gla:GatedLinearAttention",
    "retnet": "eigsweep.mixers.retnet:Retention",
    "rglru": "eigsweep.mixers.rglru:RGLRU",
    "qlstm": "eigsweep.mixers.qlstm:QLSTM",
    "deltanet": "eigsweep.mixers.deltanet:DeltaNet",
    "gated_deltanet": "eigsweep.mixers.gated_deltanet:GatedDeltaNet",
}

TASKS: dict[str, str] = {
    "mqar": "eigsweep.tasks.mqar:MQAR",
    "listops": "eigsweep.tasks.listops:ListOps",
    "scifar": "eigsweep.tasks.scifar:SCIFAR",
    "imdb": "eigsweep.tasks.imdb:IMDb",
    "wikitext": "eigsweep.tasks.wikitext:WikiText",
    "digits": "eigsweep.tasks.digits:Digits",
    "mnist1d": "eigsweep.tasks.mnist_1d:MNIST1D",
    "selective_copy": "eigsweep.tasks.selective_copy:SelectiveCopy",
    "induction": "eigsweep.tasks.induction:Induction",
    "parity": "eigsweep.tasks.parity:Parity",
}


def _load(table: dict[str, str], kind: str, name: str):
    if name not in table:
        raise KeyError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}")
    module, attr = table[name].split(":")
    return getattr(importlib.import_module(module), attr)


def mixer_class(name: str):
    return _load(MIXERS, "architecture", name)


def task_class(name: str):
    return _load(TASKS, "task", name)
