"""GPU check that packing changes nothing that matters: one pack of 8 softmax MQAR runs (4 seeds × 2 learning
rates) against the same 8 runs solo; prints best accuracy of each and the largest difference.

    python benchmarks/pack_equivalence.py --out /tmp/eq        # CUDA; a few minutes on an H200
"""
from __future__ import annotations

import argparse
import time

import torch

from eigsweep.config import EvalConfig, ModelConfig, RunSpec, TrainConfig
from eigsweep.pack import train_pack
from eigsweep.train import train_run


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/pack_equivalence")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--n-train", type=int, default=20_000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    task = dict(name="mqar", vocab_size=8192, seq_len=64, num_kv_pairs=4, n_train=args.n_train, n_test=1000)
    specs = [RunSpec(sweep="eq", arch="softmax", task="mqar_L64_kv4", modification="none", seed=seed, lr=lr,
                     task_params=task, model=ModelConfig(d_model=128, n_layers=2, n_heads=1),
                     train=TrainConfig(steps=args.steps, batch_size=64, warmup_steps=100, eval_every=250,
                                       device=args.device, target_acc=0.99),
                     eval=EvalConfig(n_samples=8, batch_size=256))
             for seed in range(4) for lr in (1e-3, 3e-3)]
    t = time.perf_counter()
    packed = train_pack(specs, [f"{args.out}/pack/{s.run_id}.nc" for s in specs])
    t_pack = time.perf_counter() - t
    t = time.perf_counter()
    solo = [train_run(s, f"{args.out}/solo/{s.run_id}.nc") for s in specs]
    t_solo = time.perf_counter() - t
    print(f"# {torch.cuda.get_device_name() if args.device == 'cuda' else args.device}: 8 softmax runs, MQAR vocab "
          f"8192, L 64, 4 pairs, {args.n_train} train, d 128, 2 layers, ≤ {args.steps} steps, target 0.99")
    print(f"# wall time: 8 solo runs {t_solo:.0f} s, one pack of 8 {t_pack:.0f} s (with evaluations and spectra)")
    print("| run | solo best acc | pack best acc | Δ | solo steps | pack steps |\n|---|---:|---:|---:|---:|---:|")
    worst = 0.0
    for s, a, b in zip(specs, solo, packed):
        d = abs(a.best_acc.item() - b.best_acc.item())
        worst = max(worst, d)
        print(f"| seed {s.seed}, lr {s.lr:g} | {a.best_acc.item():.4f} | {b.best_acc.item():.4f} | {d:.4f} | "
              f"{a.steps_done.item()} | {b.steps_done.item()} |")
    print(f"# largest |Δ best acc| = {worst:.4f} ({'within' if worst <= 0.01 else 'NOT within'} 0.01)")


if __name__ == "__main__":
    main()
