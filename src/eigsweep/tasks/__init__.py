"""Tasks: each module defines one Task subclass, registered by name in eigsweep.registry.

| name           | data                                    | inputs                     | target   |
|----------------|-----------------------------------------|----------------------------|----------|
| mqar           | generated (Zoology)                     | tokens, vocab V            | token    |
| listops        | LRA TSVs in data_dir, or generated      | tokens, vocab 16, pad 0    | sequence |
| scifar         | cifar-10-batches-py (user)              | gray pixel tokens 0–255    | sequence |
| imdb           | aclImdb (user)                          | bytes+1, vocab 257, pad 0  | sequence |
| wikitext       | wiki.*.tokens (user); BPE from local files | bytes or GPT-2 BPE      | token (next), perplexity |
| digits         | sklearn load_digits (bundled)           | pixel tokens 0–16 (or x/16)| sequence |
| mnist1d        | mnist1d.make_dataset (generated)        | continuous, input_dim 1    | sequence |
| selective_copy | generated (Mamba)                       | tokens                     | token    |
| induction      | generated                               | tokens                     | token    |
| parity         | generated                               | bits                       | token (running) / sequence (final) |

Data a user brings is never downloaded: check_available() raises FileNotFoundError naming the expected
path, layout and where to obtain it. Presets: the `tasks:` section of config.yaml.
"""
from __future__ import annotations

import functools
import json


@functools.lru_cache(maxsize=None)
def _check(task_params_json: str) -> None:
    from eigsweep import registry

    params = json.loads(task_params_json)
    task = registry.task_class(params["name"])(**{k: v for k, v in params.items() if k != "name"})
    task.check_available()


def check_task_data(task_params: dict, preset: str | None = None) -> None:
    """Raise if a task preset's data is missing: FileNotFoundError naming the preset and the expected path
    (ConfigError for bad parameters). Torch-free; cached per preset."""
    try:
        _check(json.dumps(task_params, sort_keys=True))
    except FileNotFoundError as e:
        where = f"config key tasks.{preset}" if preset else f"task preset {task_params}"
        raise FileNotFoundError(f"{where}: {e}") from None
