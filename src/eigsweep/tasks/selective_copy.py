"""Selective copying (Mamba, Gu & Dao 2023, §4.1.1): remember the data tokens scattered among noise
tokens, in order, and emit them after the context.

Vocabulary: 0 = noise/blank, 1…n_values = data tokens, n_values+1 = the copy marker.
Each example: a context of ``context_len`` positions holding ``n_memorize`` data tokens (uniform from
1…n_values) at uniformly random distinct positions (kept in order) and blanks elsewhere, then
``n_memorize`` markers. Label at the j-th marker = the j-th data token; all other labels −100.
Sequence length context_len + n_memorize. Target "token" (n_outputs = vocabulary size).
Mamba's setting: context 4096, 16 tokens to memorise, vocabulary 16.
"""
from __future__ import annotations

import numpy as np
from pydantic import model_validator

from eigsweep.config import ConfigError, Count, PosInt
from eigsweep.tasks.base import IGNORE, Params, Task, TaskData


class SelectiveCopyParams(Params):
    context_len: PosInt = 4096
    n_memorize: PosInt = 16
    n_values: PosInt = 16       # data tokens 1…n_values
    n_train: PosInt = 100_000
    n_test: PosInt = 3_000
    data_seed: Count = 0

    @model_validator(mode="after")
    def _fits(self):
        if self.n_memorize > self.context_len:
            raise ValueError(f"n_memorize: {self.n_memorize} exceeds context_len ({self.context_len})")
        return self


def generate_selective_copy(n: int, context_len: int, n_memorize: int, n_values: int, seed: int):
    """Returns (inputs, labels), each (n, context_len + n_memorize) int64."""
    if n_memorize > context_len:
        raise ConfigError(f"selective_copy: n_memorize ({n_memorize}) exceeds context_len ({context_len})")
    import torch

    rng = np.random.default_rng(seed)
    L = context_len + n_memorize
    data = rng.integers(1, n_values + 1, size=(n, n_memorize))
    pos = np.sort(np.argsort(rng.random((n, context_len)), axis=1)[:, :n_memorize], axis=1)
    x = np.zeros((n, L), dtype=np.int64)
    np.put_along_axis(x, pos, data, axis=1)
    x[:, context_len:] = n_values + 1
    y = np.full((n, L), IGNORE, dtype=np.int64)
    y[:, context_len:] = data
    return torch.from_numpy(x), torch.from_numpy(y)


class SelectiveCopy(Task):
    Params = SelectiveCopyParams
    name = "selective_copy"

    def load(self) -> TaskData:
        p = self.params
        kw = dict(context_len=p.context_len, n_memorize=p.n_memorize, n_values=p.n_values)
        tx, ty = generate_selective_copy(p.n_train, seed=p.data_seed, **kw)
        vx, vy = generate_selective_copy(p.n_test, seed=p.data_seed + 1_000_003, **kw)
        V = p.n_values + 2
        return TaskData(tx, ty, vx, vy, vocab_size=V, n_outputs=V, target="token")
