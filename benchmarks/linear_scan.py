"""The element-wise linear scan's users with the fused Triton scan and with the torch form, in one run on a GPU.

    PYTHONPATH=src python benchmarks/linear_scan.py          # from the repository root

At the paper's MQAR size (batch 64, L 512, d_model 128, expand 2, 2 layers, vocab 8192, fp32 with TF32
matmuls, as mamba_scan.py): ms per training step (forward + backward + AdamW, median of --repeat after 3
warm-ups) of softmax attention and of RG-LRU, qLSTM and GLA (GLA's scan across chunks) on each scan, as
ratios to softmax in the same run; then the scan alone (forward + backward, batch 64, L 512, 256 channels).
First run on the H200 on 2026-11-29: `benchmarks/README.md`, fourth round.
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from mamba_scan import timed, train_step  # noqa: E402

from eigsweep.config import ModelConfig  # noqa: E402
from eigsweep.mixers import scan  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="*", default=["rglru", "qlstm", "gla"])
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    vocab, Bt, L = 8192, 64, 512
    cfg = ModelConfig(d_model=128, n_layers=2, n_heads=1, d_state=128, expand=2, head_dim=64)
    x = torch.randint(0, vocab, (Bt, L), device="cuda")
    y = torch.randint(0, vocab, (Bt, L), device="cuda")
    fused = scan.fused_available
    print(f"# {datetime.date.today()} {torch.cuda.get_device_name()} torch {torch.__version__}")
    soft, _ = train_step("softmax", cfg, vocab, x, y, args.repeat)
    print(f"softmax: {soft:.2f} ms/step")
    print("| model | scan | ms/step | × softmax | peak GiB |\n|---|---|---:|---:|---:|")
    for arch in args.models:
        for name, avail in [("torch form", lambda t: False), ("fused Triton", fused)]:
            scan.fused_available = avail
            ms, peak = train_step(arch, cfg, vocab, x, y, args.repeat)
            print(f"| {arch} | {name} | {ms:.2f} | {ms / soft:.2f} | {peak:.2f} |", flush=True)
    scan.fused_available = fused
    a = torch.rand(Bt, L, 256, device="cuda", requires_grad=True)
    b = torch.randn(Bt, L, 256, device="cuda", requires_grad=True)
    for name, fn in [("torch form", scan._LinearScan.apply), ("fused Triton", scan.fused_linear_scan)]:
        ms = timed(lambda: fn(a, b).sum().backward(), repeat=args.repeat)
        print(f"scan alone ({Bt}, {L}, 256), {name}: {ms:.3f} ms forward + backward")


if __name__ == "__main__":
    main()
