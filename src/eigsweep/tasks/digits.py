"""Sequential (and permuted) 8×8 digits: sklearn's bundled load_digits, read pixel by pixel (64 steps).

Offline stand-in for sequential/permuted MNIST: 1,797 images of 10 classes that ship with scikit-learn.
Pixels are intensities 0…16. ``input_mode`` "tokens" (default: the intensity is a token id, vocabulary 17)
or "continuous" (intensity/16 as one feature, input_dim 1). ``permuted: true`` applies one fixed pixel
permutation (from ``perm_seed``) to every image — the permuted variant. The split is a fixed shuffle
(``data_seed``), ``test_fraction`` held out. Target "sequence".
"""
from __future__ import annotations

import importlib.util

from typing import Literal

import numpy as np

from eigsweep.config import Bool, Count, Real
from eigsweep.tasks.base import Params, Task, TaskData


class DigitsParams(Params):
    input_mode: Literal["tokens", "continuous"] = "tokens"  # tokens (0–16 ids) | continuous (x/16, input_dim 1)
    permuted: Bool = False
    perm_seed: Count = 0
    test_fraction: Real(gt=0, lt=1) = 0.2
    data_seed: Count = 0


def pixel_permutation(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(64)


class Digits(Task):
    Params = DigitsParams
    name = "digits"

    def check_available(self) -> None:
        if importlib.util.find_spec("sklearn") is None:   # found, not imported (the DAG stays light)
            raise FileNotFoundError("task 'digits': needs scikit-learn (its bundled digits data; "
                                    "pip install scikit-learn) — nothing is downloaded") from None

    def load(self) -> TaskData:
        import torch
        from sklearn.datasets import load_digits

        p = self.params
        self.check_available()
        d = load_digits()
        x = np.asarray(d.data, dtype=np.int64)      # (1797, 64), row-major 8×8
        y = np.asarray(d.target, dtype=np.int64)
        if p.permuted:
            x = x[:, pixel_permutation(p.perm_seed)]
        order = np.random.default_rng(p.data_seed).permutation(len(y))
        n_test = int(round(p.test_fraction * len(y)))
        test_idx, train_idx = order[:n_test], order[n_test:]
        if p.input_mode == "tokens":
            xt = torch.from_numpy(x)
        else:
            xt = torch.from_numpy(x.astype(np.float32) / 16.0).unsqueeze(-1)
        yt = torch.from_numpy(y)
        tokens = p.input_mode == "tokens"
        return TaskData(xt[train_idx], yt[train_idx], xt[test_idx], yt[test_idx],
                        vocab_size=17 if tokens else 0, n_outputs=10, target="sequence",
                        input_dim=0 if tokens else 1)
