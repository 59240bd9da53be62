"""Run a train job where the workflow says: in this process (the embedded default) or on Slurm."""
from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

from eigsweep.config import RunSpec


@functools.lru_cache(maxsize=None)
def _check(task_params_json: str) -> None:
    from eigsweep import registry

    params = json.loads(task_params_json)
    task = registry.task_class(params["name"])(**{k: v for k, v in params.items() if k != "name"})
    task.check_available()


def check_task_data(task_params: dict) -> None:
    """Raise (FileNotFoundError naming the expected path) if a task's data is missing. Cached per preset."""
    _check(json.dumps(task_params, sort_keys=True))


def run_local(spec: RunSpec, out: str | Path, checkpoint: str | Path | None, log_file: str | Path | None = None):
    handlers = [logging.StreamHandler()]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", handlers=handlers, force=True)
    from eigsweep.train import train_run

    train_run(spec, out, checkpoint)
