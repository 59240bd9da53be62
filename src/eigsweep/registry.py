"""Name -> implementation registries for mixers and tasks, with what the workflow must know about each.

Pure Python (no torch): the Snakefile reads this to validate a sweep and to decide which figures and
modifications apply, without importing any model. Adding a model or a task is one file plus one line here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MixerInfo:
    """One registered mixer: where it lives and the facts about it that are needed without importing it.

    ``lti``: eigenvalues from parameters alone (no sample/time dims). ``complex``: complex eigenvalues.
    ``structural``: how many of a token's eigenvalues are fixed by construction rather than informative
    (None: all informative; "delta": the DeltaNet family's Λ_i = α_i(I − β_i k_i k_iᵀ), whose d_k − 1
    eigenvalues orthogonal to k_i all equal α_i; only α_i(1 − β_i‖k_i‖²) carries information). Which of
    the eigenvalues are the informative ones is ``INFORMATIVE[structural]``.
    ``model_keys``: the model settings beyond the shared ones (d_model, n_layers, norm, …) that the mixer
    reads; a modification that changes only keys outside this set does not apply to it.
    ``options``: the keys it accepts under ``model.options``, with their defaults; ``choices``: the values a
    string option accepts (the mixer refuses others when built; checked without torch before any job).
    ``packable``: can train as a member of a pack (stacked parameters, one batched computation).
    """

    path: str
    lti: bool = False
    complex: bool = False
    structural: str | None = None
    model_keys: frozenset = frozenset()
    options: dict = field(default_factory=dict)
    choices: dict = field(default_factory=dict)
    packable: bool = True


# The informative eigenvalues of each structural kind: {eigenvalue dim: index along it}. The DeltaNet family
# reports α(1 − β‖k‖²) first along its "state" dim, then the d_k − 1 copies of α.
INFORMATIVE: dict[str, dict[str, int]] = {"delta": {"state": 0}}

_QKV = frozenset({"n_heads", "short_conv", "conv_kernel"})      # attention-like: heads and the q/k/v conv
_MAMBA2 = frozenset({"d_state", "expand", "head_dim", "conv_kernel"})

MIXERS: dict[str, MixerInfo] = {
    "softmax": MixerInfo("eigsweep.mixers.softmax:SoftmaxAttention", model_keys=_QKV),
    "linear": MixerInfo("eigsweep.mixers.linear:LinearAttention", model_keys=_QKV),
    "linear_unnorm": MixerInfo("eigsweep.mixers.linear:UnnormalisedLinearAttention", lti=True, model_keys=_QKV),
    "mamba2": MixerInfo("eigsweep.mixers.mamba2:Mamba2", model_keys=_MAMBA2, options={"lti": False}),
    "norm": MixerInfo("eigsweep.mixers.norm:NormAttention", model_keys=_QKV,
                      options={"norm_fn": "softplus", "feature_map": "elu", "short_conv": None},
                      choices={"norm_fn": ("exp", "elu", "softplus", "sigmoid"), "feature_map": ("elu", "none"),
                               "short_conv": ("none", "qk", "qkv")}),
    "mamba2_lti": MixerInfo("eigsweep.mixers.mamba2:Mamba2LTI", lti=True, model_keys=_MAMBA2),
    "s4": MixerInfo("eigsweep.mixers.s4:S4", lti=True, complex=True, model_keys=frozenset({"d_state"})),
    "s4d": MixerInfo("eigsweep.mixers.s4d:S4D", lti=True, complex=True, model_keys=frozenset({"d_state"}),
                     options={"s4d_init": "lin"}, choices={"s4d_init": ("lin", "inv")}),
    "s5": MixerInfo("eigsweep.mixers.s5:S5", lti=True, complex=True, model_keys=frozenset({"d_state"})),
    "lru": MixerInfo("eigsweep.mixers.lru:LRU", lti=True, complex=True, model_keys=frozenset({"d_state"}),
                     options={"lru_r_min": 0.9, "lru_r_max": 0.99, "lru_max_phase": 6.283185307179586}),
    "mamba": MixerInfo("eigsweep.mixers.mamba:Mamba", model_keys=frozenset({"d_state", "expand", "conv_kernel"})),
    "gla": MixerInfo("eigsweep.mixers.gla:GatedLinearAttention", model_keys=_QKV),
    "retnet": MixerInfo("eigsweep.mixers.retnet:Retention", lti=True, model_keys=_QKV, options={"rotary": True}),
    "rglru": MixerInfo("eigsweep.mixers.rglru:RGLRU", model_keys=frozenset({"n_heads", "expand", "conv_kernel"})),
    "qlstm": MixerInfo("eigsweep.mixers.qlstm:QLSTM", model_keys=frozenset({"n_heads", "expand", "conv_kernel"}),
                       options={"reversed": True}),
    "deltanet": MixerInfo("eigsweep.mixers.deltanet:DeltaNet", structural="delta", model_keys=_QKV,
                          options={"beta_range": 1.0}),
    "gated_deltanet": MixerInfo("eigsweep.mixers.deltanet:GatedDeltaNet", structural="delta",
                                model_keys=_QKV, options={"beta_range": 1.0}),
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


def _import(path: str):
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


def mixer_info(name: str) -> MixerInfo:
    if name not in MIXERS:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(MIXERS))}")
    return MIXERS[name]


def mixer_class(name: str):
    return _import(mixer_info(name).path)


def task_class(name: str):
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return _import(TASKS[name])
