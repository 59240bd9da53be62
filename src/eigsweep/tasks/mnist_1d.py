"""MNIST-1D (Greydanus 2020): procedurally generated 1-D digit signals of length 40, 10 classes.

Built offline with ``mnist1d.data.make_dataset`` and the package's default args object
(``get_dataset_args()``, a plain ObjectView of settings) — never ``get_dataset``, which downloads. Fields of
the args can be overridden here (num_samples, seed, shuffle_seq, ...). make_dataset seeds NumPy's and
Python's global generators; their states are restored afterwards. Inputs are continuous (N, 40, 1),
input_dim 1. Target "sequence".
"""
from __future__ import annotations

import random
import importlib.util

import numpy as np

from eigsweep.config import Bool, Count, PosInt, Real
from eigsweep.tasks.base import Params, Task, TaskData


class MNIST1DParams(Params):
    num_samples: PosInt = 5000   # the package defaults (4000 train / 1000 test)
    train_split: Real(gt=0, lt=1) = 0.8
    seed: Count = 42
    shuffle_seq: Bool = False    # a fixed permutation of the 40 positions
    final_seq_length: PosInt = 40


class MNIST1D(Task):
    Params = MNIST1DParams
    name = "mnist1d"

    def check_available(self) -> None:
        if importlib.util.find_spec("mnist1d") is None:   # found, not imported (the DAG stays light)
            raise FileNotFoundError("task 'mnist1d': needs the 'mnist1d' package (pip install mnist1d); "
                                    "the data is generated locally, nothing is downloaded") from None

    def load(self) -> TaskData:
        self.check_available()
        import torch
        from mnist1d.data import get_dataset_args, make_dataset

        p = self.params
        args = get_dataset_args()                    # ObjectView of defaults; no I/O
        args.num_samples, args.train_split, args.seed = p.num_samples, p.train_split, p.seed
        args.shuffle_seq, args.final_seq_length = p.shuffle_seq, p.final_seq_length
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            d = make_dataset(args)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)

        def xs(a):
            return torch.from_numpy(np.asarray(a, dtype=np.float32)).unsqueeze(-1)

        def ys(a):
            return torch.from_numpy(np.asarray(a, dtype=np.int64))
        return TaskData(xs(d["x"]), ys(d["y"]), xs(d["x_test"]), ys(d["y_test"]), vocab_size=0,
                        n_outputs=10, target="sequence", input_dim=1)
