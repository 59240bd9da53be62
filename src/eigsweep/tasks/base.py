"""What a task provides to training and analysis.

Torch-free at import (so are the task modules): the Snakefile validates task parameters and checks data
without importing torch; each task imports torch and numpy-heavy code inside load().
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from eigsweep.config import SETTINGS, ConfigError, error_lines

if TYPE_CHECKING:
    import torch

IGNORE = -100      # the label of a position without one (F.cross_entropy's ignore_index; the losses skip it)


@dataclass
class TaskData:
    """Tensors of a task's train and test splits, and of its validation split where it has one (training
    then early-stops on it and the learning rate is chosen on it; the test split is only reported).

    Inputs are token ids (N, L) long, or continuous features (N, L, input_dim) float.
    ``target`` is "token" (labels (N, L), IGNORE (−100) where unlabelled; next-token or per-position targets) or
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
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None


class Params(BaseModel):
    """A task's parameters (a `tasks:` preset of config.yaml, all but `name`): strict types, finite numbers,
    unknown keys refused. A cross-field check raises ValueError("<key>: <problem>")."""
    model_config = SETTINGS


class Task:
    """A named task. Parameters come from a `tasks:` preset in config.yaml (all but `name`).

    Subclasses declare their parameters as a pydantic model ``Params``; unknown or mistyped keys raise a
    ConfigError naming the key.
    """

    Params: type[Params] = Params
    name: str = ""   # the registry name

    def __init__(self, **params):
        try:
            self.params = self.Params(**params)
        except ValidationError as e:
            raise ConfigError("; ".join(error_lines(e, f"task {self.name!r}", self.Params, what="parameter"))) \
                from None

    def check_available(self) -> None:
        """Raise FileNotFoundError naming the expected path and layout when the data is missing."""

    def load(self) -> TaskData:
        raise NotImplementedError
