"""Train one run of a sweep with another initialisation and print its test accuracy curve (a probe, not a result).

The workflow builds every model with PyTorch's default initialisation (embeddings N(0, 1), Kaiming-uniform
linear layers, an untied head with bias). Zoology's models (`zoology/model.py`) start from embeddings and linear
layers N(0, 0.02), out_proj scaled by 1/√(2·layers) and the head tied to the embedding. This script re-initialises
the run's model after the Trainer built it and trains it with the Trainer's own step, so the two can be compared
on one run's data, seed and schedule:

    python benchmarks/init_probe.py zoo mamba2 --init zoology --seed 1      # the zoo's Mamba-2 run, Zoology's init

--init: ``torch`` (as the workflow), ``emb`` (embeddings, and positional embeddings, N(0, 0.02) only) or
``zoology``. Nothing is written; results/README.md quotes what it printed.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time

import torch
from torch import nn

from eigsweep.config import load_config, sweep_runs
from eigsweep.train import Trainer, evaluate


def reinitialise(model, init: str, n_layers: int) -> None:
    with torch.no_grad():
        if init == "emb":
            for emb in (model.embed, model.pos):
                if emb is not None:
                    nn.init.normal_(emb.weight, 0.0, 0.02)
        if init == "zoology":
            for mod in model.modules():
                if isinstance(mod, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(mod.weight, 0.0, 0.02)
                    if getattr(mod, "bias", None) is not None:
                        nn.init.zeros_(mod.bias)
            for name, p in model.named_parameters():
                if name.endswith("out_proj.weight"):
                    p.normal_(0.0, 0.02 / math.sqrt(2 * n_layers))
            model.head.weight = model.embed.weight   # tied (the optimizer keeps the embedding; the old head idles)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep")
    p.add_argument("arch")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--init", choices=["torch", "emb", "zoology"], default="zoology")
    p.add_argument("--seed", type=int, default=0, help="need not be one of the sweep's seeds")
    p.add_argument("--every", type=int, default=100)
    args = p.parse_args()
    spec = next(s for s in sweep_runs(load_config(args.config), args.sweep) if s.arch == args.arch)
    spec = dataclasses.replace(spec, seed=args.seed)       # any seed, the sweep's other settings
    trainer = Trainer(spec)
    reinitialise(trainer.model, args.init, spec.model.n_layers)
    x, positions, y = trainer.tensors.splits["test"]
    t0 = time.perf_counter()
    for step in range(1, spec.train.steps + 1):
        trainer.train_step()
        if step % args.every == 0 or step == spec.train.steps:
            acc = evaluate(trainer.model, x, y, spec.eval.batch_size, trainer.device, positions)["acc"]
            trainer.pending = []
            print(f"{spec.run_id} init {args.init}: step {step} test acc {acc:.4f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)


if __name__ == "__main__":
    main()
