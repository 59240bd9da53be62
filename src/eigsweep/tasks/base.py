"""What a task provides to training and analysis."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from eigsweep.config import ConfigError


@dataclass
class TaskData:
    """Tensors of a task's train and test splits.

    Inputs are token ids (N, L) long, or continuous features (N, L, input_dim) float.
    ``target`` is "token" (labels (N, L), −100 where unlabelled; next-token or per-position targets) or
    "sequence" (labels (N,), one class per sequence, the model pools before its head).
    """
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    vocab_size: int            # input vocabulary; 0 for continuous inputs
    n_outputs: int             # size of the model's head (classes or output vocabulary)
    target: str = "token"
    input_dim: int = 0         # feature size of continuous inputs
    metric: str = "accuracy"   # the headline metric; language modelling also reports perplexity
    pad_id: int = -1           # right-padding token id of variable-length inputs (-1: none); pooling skips it


class Task:
    """A named task. Parameters come from a `tasks:` preset in config.yaml (all but `name`).

    Subclasses declare their parameters as a dataclass ``Params``; unknown or mistyped keys raise a
    ConfigError naming the key.
    """

    Params: type = None
    name: str = ""   # the registry name

    def __init__(self, **params):
        fields = {f.name for f in dataclasses.fields(self.Params)}
        unknown = sorted(set(params) - fields)
        if unknown:
            raise ConfigError(f"task {self.name!r}: unknown parameter(s) {unknown}; allowed: {sorted(fields)}")
        self.params = self.Params(**params)

    def check_available(self) -> None:
        """Raise FileNotFoundError naming the expected path and layout when the data is missing."""

    def load(self) -> TaskData:
        raise NotImplementedError
