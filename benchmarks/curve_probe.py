"""Train a sweep's runs as one pack for at most a wall-time slice and print every member's accuracy curve.

For a first look at a long sweep inside one short GPU slice (e.g. whether attention learns MQAR at the
paper's size, and at which learning rate): members that finish write their result files as usual; at the
end of the slice the others stop and their curves so far are printed and saved (CSV), nothing else.

    python benchmarks/curve_probe.py mqar_attention_baseline --minutes 3 --out /tmp/probe
"""
from __future__ import annotations

import argparse
import csv
import threading
import time
from pathlib import Path

from eigsweep.config import load_config, sweep_runs
from eigsweep.pack import train_pack
from eigsweep.train import Preempted


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--out", default="probe")
    p.add_argument("--compile", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    specs = sweep_runs(load_config(args.config), args.sweep)
    held = {}

    def on_start(pack):
        held["pack"] = pack
        threading.Timer(args.minutes * 60, lambda: setattr(pack, "stop_requested", True)).start()

    t0 = time.perf_counter()
    try:
        train_pack(specs, [out / "runs" / f"{s.run_id}.nc" for s in specs], None, on_start, compile=args.compile)
    except Preempted as e:
        print(f"slice over: {e}")
    wall = time.perf_counter() - t0
    pack = held["pack"]
    rows = []
    for m in pack.members:
        for step, acc in zip(m.curve["eval_step"], m.curve["test_acc"]):
            rows.append(dict(run=m.spec.run_id, lr=m.spec.lr, seed=m.spec.seed, step=step, test_acc=acc))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{args.sweep}_curves.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["run", "lr", "seed", "step", "test_acc"])
        w.writeheader()
        w.writerows(rows)
    print(f"{len(specs)} members, {pack.step} steps in {wall:.0f} s ({len(specs) * pack.step / wall:.0f} run-steps/s "
          f"including evaluations)")
    for m in pack.members:
        accs = m.curve["test_acc"]
        print(f"{m.spec.run_id}: status {m.status}, step {m.step}, best {max(accs, default=float('nan')):.4f}, "
              f"curve " + " ".join(f"{s}:{a:.3f}" for s, a in zip(m.curve["eval_step"], accs)))


if __name__ == "__main__":
    main()
