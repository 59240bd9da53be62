"""sCIFAR-10 as in LRA Image: grayscale CIFAR-10 read pixel by pixel (a sequence of 1024), 10 classes.

Data: the standard CIFAR-10 python batches, ``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``
(pickled dicts with b"data" (N, 3072) uint8 — 1024 red, 1024 green, 1024 blue values, each a row-major
32×32 plane — and b"labels"). ``data_dir`` may be that folder or the folder containing it.

Grayscale: round(0.2989 R + 0.5870 G + 0.1140 B) (the ITU-R 601 weights of tf.image.rgb_to_grayscale, as
LRA uses), clipped to 0…255. Inputs: ``input_mode`` "tokens" (default, as LRA: the intensity is a token id,
vocabulary 256, embedded) or "continuous" (intensity/255 as one feature, input_dim 1, linear encoder).
Target "sequence".
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Literal

import numpy as np

from eigsweep.config import Count, Str
from eigsweep.tasks._util import resolve_dir, subsample
from eigsweep.tasks.base import Params, Task, TaskData

TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140])
HOW = ("Obtain the 'CIFAR-10 python version' archive (cifar-10-python.tar.gz, "
       "https://www.cs.toronto.edu/~kriz/cifar.html) yourself and extract it; eigsweep never downloads.")


class SCIFARParams(Params):
    data_dir: Str = ""          # cifar-10-batches-py, or the folder containing it
    input_mode: Literal["tokens", "continuous"] = "tokens"  # tokens (0–255 ids) | continuous (x/255, input_dim 1)
    n_train: Count = 0          # > 0: a fixed random subset of the 50k (for quick runs)
    n_test: Count = 0
    data_seed: Count = 0


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    data = np.asarray(d[b"data"], dtype=np.uint8)
    labels = np.asarray(d[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(f"{path}: expected b'data' (N, 3072) uint8 and N b'labels', got {data.shape}, "
                         f"{labels.shape}")
    return data, labels


def to_gray_sequence(data: np.ndarray) -> np.ndarray:
    """(N, 3072) RGB planes -> (N, 1024) uint8 grayscale, row-major pixel order."""
    rgb = data.reshape(-1, 3, 1024).astype(np.float64)
    gray = np.einsum("c,ncp->np", GRAY_WEIGHTS, rgb)
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


class SCIFAR(Task):
    Params = SCIFARParams
    name = "scifar"

    def _root(self) -> Path:
        return resolve_dir(self.name, self.params.data_dir, TRAIN_BATCHES + [TEST_BATCH],
                           ["cifar-10-batches-py"], HOW)

    def check_available(self) -> None:
        self._root()

    def _split(self, root: Path, names: list[str], limit: int, seed: int):
        import torch

        parts = [read_batch(root / n) for n in names]
        data = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        if limit:
            idx = np.sort(subsample(len(data), limit, seed))
            data, labels = data[idx], labels[idx]
        gray = to_gray_sequence(data)
        if self.params.input_mode == "tokens":
            x = torch.from_numpy(gray.astype(np.int64))
        else:
            x = torch.from_numpy(gray.astype(np.float32) / 255.0).unsqueeze(-1)
        return x, torch.from_numpy(labels)

    def load(self) -> TaskData:
        p = self.params
        root = self._root()
        train_x, train_y = self._split(root, TRAIN_BATCHES, p.n_train, p.data_seed)
        test_x, test_y = self._split(root, [TEST_BATCH], p.n_test, p.data_seed + 1)
        tokens = p.input_mode == "tokens"
        return TaskData(train_x, train_y, test_x, test_y, vocab_size=256 if tokens else 0, n_outputs=10,
                        target="sequence", input_dim=0 if tokens else 1)
