"""GPU check that running a mixer under bf16 autocast trains like float32: the same run (seed, data order) with
the mixer in float32 (TF32 matmuls) and in bf16 autocast (model.BF16_MIXERS), loss curves compared.

    python benchmarks/bf16_check.py --models mamba2 deltanet --steps 300      # CUDA; a minute on an H200

Prints, per model, the training loss averaged over windows of 50 steps on both paths, the largest difference of
those window means, and the test accuracy at the end.
"""
from __future__ import annotations

import argparse

import torch

from eigsweep.config import EvalConfig, ModelConfig, RunSpec, TrainConfig
from eigsweep.train import Trainer

import throughput as tp


def run(arch, args, bf16: bool):
    spec = RunSpec(sweep="bf16", arch=arch, task="mqar_check", modification="none", seed=0, lr=args.lr,
                   task_params=dict(name="mqar", vocab_size=8192, seq_len=args.seq_len, num_kv_pairs=args.kv,
                                    n_train=20_000, n_test=1000),
                   model=ModelConfig(d_model=128, n_layers=2, n_heads=1, d_state=128, head_dim=64, expand=2),
                   train=TrainConfig(steps=args.steps, batch_size=64, warmup_steps=50, eval_every=10**9,
                                     device="cuda"),
                   eval=EvalConfig(n_samples=4, batch_size=250))
    with tp.bf16_mixer(arch, on=bf16):
        trainer = Trainer(spec)
    for _ in range(args.steps):
        trainer.train_step()
    trainer.read_losses()
    return trainer.curve["train_loss"], trainer.evaluate()["acc"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["mamba2", "deltanet"])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--kv", type=int, default=8)
    p.add_argument("--window", type=int, default=50)
    args = p.parse_args()
    tp.cache_task_data()
    print(f"# MQAR vocab 8192, L {args.seq_len}, {args.kv} pairs, d 128, 2 layers, state 128, batch 64, lr {args.lr}, "
          f"{args.steps} steps; training loss, means over {args.window}-step windows: float32 mixer / bf16 mixer")
    for arch in args.models:
        (a, acc_a), (b, acc_b) = run(arch, args, False), run(arch, args, True)
        w = args.window
        ma = [sum(a[i:i + w]) / w for i in range(0, len(a) - w + 1, w)]
        mb = [sum(b[i:i + w]) / w for i in range(0, len(b) - w + 1, w)]
        pairs = " ".join(f"{x:.3f}/{y:.3f}" for x, y in zip(ma, mb))
        worst = max(abs(x - y) for x, y in zip(ma, mb))
        print(f"{arch}: {pairs} | max |Δ window mean| {worst:.4f} ({100 * worst / ma[-1]:.1f}% of the last) | "
              f"test acc {acc_a:.4f} / {acc_b:.4f}", flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
