"""The element-wise linear scan's users (and GLA's decay scores) fused in Triton and in the torch form, on a GPU.

    PYTHONPATH=src python benchmarks/linear_scan.py          # from the repository root

At the paper's MQAR size (batch 64, L 512, d_model 128, expand 2, 2 layers, vocab 8192, fp32 with TF32
matmuls, as mamba_scan.py): ms per training step (forward + backward + AdamW, median of --repeat after 3
warm-ups) of softmax attention and of RG-LRU, qLSTM and GLA (GLA's scan across chunks) on each scan, as
ratios to softmax in the same run, with the torch form, the fused linear scan (scan.linear_scan_available)
and, for GLA, the fused linear scan plus the fused intra-chunk decay scores (scan.decay_scores_available,
decay_scores_triton); then the scan alone (forward + backward, batch 64, L 512, 256 channels) and GLA's
chunked_decay_attention alone (batch 64, 1 head, L 512, N = P = 128) with the torch and fused scores.
First run on the H200 on 2026-11-29: `benchmarks/README.md`, fourth round.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from mamba_scan import paper_size, timed, train_step  # noqa: E402

from eigsweep.mixers import scan  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="*", default=["rglru", "qlstm", "gla"])
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
    cfg, vocab, x, y = paper_size()
    Bt, L = x.shape
    fused, scores, off = scan.linear_scan_available, scan.decay_scores_available, lambda t: False
    soft, _ = train_step("softmax", cfg, vocab, x, y, args.repeat)
    print(f"softmax: {soft:.2f} ms/step")
    print("| model | kernels | ms/step | × softmax | peak GiB |\n|---|---|---:|---:|---:|")
    for arch in args.models:
        rows = [("torch form", off, off), ("fused linear scan", fused, off)]
        rows += [("fused linear scan + decay scores", fused, scores)] if arch == "gla" else []
        for name, avail, scores_avail in rows:
            scan.linear_scan_available, scan.decay_scores_available = avail, scores_avail
            ms, peak = train_step(arch, cfg, vocab, x, y, args.repeat)
            print(f"| {arch} | {name} | {ms:.2f} | {ms / soft:.2f} | {peak:.2f} |", flush=True)
    scan.linear_scan_available, scan.decay_scores_available = fused, scores
    a = torch.rand(Bt, L, 256, device="cuda", requires_grad=True)
    b = torch.randn(Bt, L, 256, device="cuda", requires_grad=True)
    for name, fn in [("torch form", scan._LinearScan.apply), ("fused Triton", scan.linear_scan_op)]:
        ms = timed(lambda: fn(a, b).sum().backward(), repeat=args.repeat)
        print(f"scan alone ({Bt}, {L}, 256), {name}: {ms:.3f} ms forward + backward")
    qkv = [torch.randn(Bt, 1, L, 128, device="cuda", requires_grad=True) for _ in range(3)]
    log_a = (-torch.rand(Bt, 1, L, 128, device="cuda") / 16).requires_grad_()
    for name, scores_avail in [("torch form", off), ("fused scores", scores)]:
        scan.decay_scores_available = scores_avail
        ms = timed(lambda: scan.chunked_decay_attention(*qkv, log_a, 16).sum().backward(), repeat=args.repeat)
        print(f"chunked_decay_attention alone ({Bt}, 1, {L}, 128), {name}: {ms:.3f} ms forward + backward")
    scan.decay_scores_available = scores


if __name__ == "__main__":
    main()
