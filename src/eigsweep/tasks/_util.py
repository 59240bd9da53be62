"""Small helpers shared by the task modules (paths, padding, deterministic splits)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def resolve_dir(task: str, data_dir: str, markers: list[str], subdirs: list[str], how: str) -> Path:
    """The folder under ``data_dir`` that holds all ``markers`` (data_dir itself or one of ``subdirs``).

    Raises FileNotFoundError naming the expected layout and how to obtain the data; never downloads.
    """
    if not data_dir:
        raise FileNotFoundError(
            f"task {task!r}: no data_dir set. Set the preset's data_dir to a folder holding "
            f"{' + '.join(markers)} (directly or in {' or '.join(subdirs)}/). {how}")
    root = Path(os.path.expanduser(data_dir))
    for cand in [root] + [root / s for s in subdirs]:
        if all((cand / m).exists() for m in markers):
            return cand
    tried = ", ".join(str(c) for c in [root] + [root / s for s in subdirs])
    missing = [m for m in markers if not (root / m).exists()]
    raise FileNotFoundError(
        f"task {task!r}: expected {' + '.join(markers)} in {tried}; missing e.g. {root / missing[0]}. {how}")


def pad_rows(rows: list, length: int, pad: int = 0) -> torch.Tensor:
    """Right-pad (and truncate) integer sequences to ``length``: (N, length) int64."""
    import torch

    out = np.full((len(rows), length), pad, dtype=np.int64)
    for i, r in enumerate(rows):
        r = np.asarray(r, dtype=np.int64)[:length]
        out[i, : len(r)] = r
    return torch.from_numpy(out)


def subsample(n_total: int, limit: int, seed: int) -> np.ndarray:
    """Indices of a deterministic shuffle of range(n_total), cut to ``limit`` (0: keep all)."""
    idx = np.random.default_rng(seed).permutation(n_total)
    return idx[:limit] if limit and limit > 0 else idx
