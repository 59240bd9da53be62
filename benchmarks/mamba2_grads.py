"""Compiled Mamba-2 against eager Mamba-2 on one device: the output's and every parameter's gradient, as the
relative error (max |got − ref| / max |ref|), in float32 and float64, at a few sizes, with the SSD by the torch
form (scan.FUSED_SSD_ON_CUDA off) or by the op (on). A diagnostic: float64 separates a compiler fault from float32
rounding (the op's kernels take float32 only: in float64 the torch form runs either way); the sizes separate the
tests' small mixer from the paper's.

    python3 benchmarks/mamba2_grads.py [--device cuda] [--op]
"""
from __future__ import annotations

import argparse

import torch

from eigsweep.config import ModelConfig
from eigsweep.mixers import scan
from eigsweep.mixers.mamba2 import Mamba2
from last_block_precision import relative_error


def errors(d, head, state, L, dtype, device, batch=3):
    torch.manual_seed(0)
    m = Mamba2(ModelConfig(d_model=d, n_layers=1, d_state=state, head_dim=head)).to(device, dtype)
    u = torch.randn(batch, L, d, device=device, dtype=dtype)
    params = dict(m.named_parameters())
    torch._dynamo.reset()
    y = torch.compile(m)(u)
    grads = torch.autograd.grad(y.square().sum(), list(params.values()))
    y_ref = m(u)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), list(params.values()))
    return relative_error(y, y_ref), {n: relative_error(g, r) for n, g, r in zip(params, grads, grads_ref)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--op", action="store_true", help="the SSD by scan.ssd_op (its kernels on CUDA)")
    args = ap.parse_args()
    scan.FUSED_SSD_ON_CUDA = args.op
    for dtype in (torch.float32, torch.float64):
        for d, head, state, L in [(64, 16, 32, 150), (64, 16, 32, 128), (64, 16, 32, 64), (128, 64, 128, 150),
                                  (128, 64, 128, 512)]:
            y_err, g = errors(d, head, state, L, dtype, args.device)
            worst = sorted(g.items(), key=lambda kv: -kv[1])[:3]
            print(f"{str(dtype)[6:]:8} d {d} head {head} state {state} L {L}: y {y_err:.1e} · worst grads "
                  + ", ".join(f"{n} {e:.1e}" for n, e in worst), flush=True)


if __name__ == "__main__":
    main()
