"""Parity of a bit string: the canonical task that needs negative (or complex) eigenvalues — a diagonal
recurrence with λ ∈ [0, 1] provably cannot represent it at arbitrary length (Grazzi et al. 2024).

Inputs: bits 0/1 (vocabulary 2), ``seq_len`` uniform random bits. ``mode``:
- "running": label at position t = parity of bits 0…t (target "token", every position labelled);
- "final": one label per sequence = parity of all bits (target "sequence"; use pooling "last" — mean
  pooling discards the order that parity needs).
n_outputs 2.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from eigsweep.config import Count, PosInt
from eigsweep.tasks.base import Params, Task, TaskData


class ParityParams(Params):
    seq_len: PosInt = 64
    mode: Literal["running", "final"] = "running"
    n_train: PosInt = 20_000
    n_test: PosInt = 2_000
    data_seed: Count = 0


def generate_parity(n: int, seq_len: int, mode: str, seed: int):
    import torch

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, size=(n, seq_len))
    running = np.cumsum(x, axis=1) % 2
    y = running if mode == "running" else running[:, -1]
    return torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))


class Parity(Task):
    Params = ParityParams
    name = "parity"

    def load(self) -> TaskData:
        p = self.params
        tx, ty = generate_parity(p.n_train, p.seq_len, p.mode, p.data_seed)
        vx, vy = generate_parity(p.n_test, p.seq_len, p.mode, p.data_seed + 1_000_003)
        return TaskData(tx, ty, vx, vy, vocab_size=2, n_outputs=2,
                        target="token" if p.mode == "running" else "sequence")
