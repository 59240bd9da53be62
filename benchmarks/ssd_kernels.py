"""Launch shapes of Mamba-2's SSD kernels (eigsweep.mixers.ssd_triton) at a pack's size, on CUDA.

    python benchmarks/ssd_kernels.py            # 32 members × 64 sequences, L 512, 8 heads × 32, state 128

Prints ms per call, forward and forward + backward, for each (chunk, warps, stages, products' precision),
and, as the references in the same run, scan.ssd_chunked's torch form (eager and compiled) on the same float32
inputs; each shape's largest error of y against the torch form; with --parts the backward kernels one by one.
"""
from __future__ import annotations

import argparse

import torch

from eigsweep.mixers import scan, ssd_triton
from mamba_scan import timed      # median ms of a call on the GPU

SHAPES = ["32x4x2xtf32", "32x4x1xtf32", "16x4x2xtf32", "64x4x1xtf32", "64x4x2xtf32",
          "64x8x1xtf32"]                          # CHUNKxNUM_WARPSxNUM_STAGESxDOT_PRECISION


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--d-state", type=int, default=128)
    p.add_argument("--shapes", nargs="*", default=SHAPES, help="CHUNKxWARPSxSTAGESxPRECISION")
    p.add_argument("--parts", action="store_true", help="also time the backward's two kernels one by one")
    p.add_argument("--torch-backward", action="store_true", help="also the kernels' forward with the backward's "
                   "formulas in torch ops, compiled (scan.SSD_BACKWARD_BY_KERNELS off)")
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True          # as in training (train.py)
    Z, L, H, P, N = args.members * args.batch, args.seq_len, args.heads, args.head_dim, args.d_state
    gen = torch.Generator(device="cuda").manual_seed(0)
    X = torch.randn(Z, L, H, P, device="cuda", generator=gen).requires_grad_()
    a = (-0.5 * torch.rand(Z, L, H, device="cuda", generator=gen)).requires_grad_()
    B, C = (torch.randn(Z, L, N, device="cuda", generator=gen).requires_grad_() for _ in range(2))
    dy = torch.randn(Z, L, H, P, device="cuda", generator=gen)
    ins = (X, a, B, C)
    print(f"# {torch.cuda.get_device_name()} · torch {torch.__version__} · Z {Z}, L {L}, H {H}, P {P}, N {N}")
    print("| form | forward ms | forward + backward ms | × compiled torch form (forward + backward) |\n"
          "|---|---:|---:|---:|")
    ref = {}

    def row(label, f, reference=False):
        fwd = timed(lambda: f(*ins))
        both = timed(lambda: torch.autograd.grad(f(*ins), ins, dy))
        if reference:
            ref["ms"] = both
        ratio = f"{both / ref['ms']:.2f}" if ref else "–"
        print(f"| {label} | {fwd:.2f} | {both:.2f} | {ratio} |", flush=True)

    def torch_form(*t):
        return scan._ssd_torch(*t, 64)[0]
    row("torch form (chunk 64), eager", torch_form)
    row("torch form (chunk 64), compiled", torch.compile(torch_form), reference=True)
    y_ref = torch_form(*ins).detach()
    for shape in args.shapes:
        torch._dynamo.reset()      # the op's fake impl reads CHUNK when traced: no graph of another chunk size
        chunk, warps, stages, ssd_triton.DOT_PRECISION = shape.split("x")
        ssd_triton.CHUNK, ssd_triton.NUM_WARPS, ssd_triton.NUM_STAGES = int(chunk), int(warps), int(stages)
        try:
            row(f"kernels, chunk {chunk}, {warps} warps, {stages} stages, {ssd_triton.DOT_PRECISION}",
                lambda *t: scan.ssd_op(*t)[0])
            err = ((scan.ssd_op(*ins)[0] - y_ref).abs().max() / y_ref.abs().max()).item()
            print(f"|   (max error against the torch form {err:.1e}) | | | |", flush=True)
            if args.parts:      # the backward's three kernels, each by itself
                m = ssd_triton._meta(X, B)
                x, a_, b, c, g = (ssd_triton._padded(t, L) for t in (X, a, B, C, dy))
                S = scan.ssd_op(*ins)[1].detach()
                dS, dx, da, db, dc = (torch.empty_like(t) for t in (S, x, a_, b, c))
                states, chunk_dx, chunk_dbc = ssd_triton.backward_launches(Z, H, m)
                states_ms = timed(lambda: states(a_, c, g, dS))
                dx_ms = timed(lambda: chunk_dx(x, a_, b, c, g, S, dS, dx, da))
                dbc_ms = timed(lambda: chunk_dbc(x, a_, b, c, g, S, dS, db, dc))
                print(f"|   backward kernels: bwd_states {states_ms:.2f}, bwd_dx {dx_ms:.2f}, bwd_dbc {dbc_ms:.2f} "
                      "ms | | | |", flush=True)
            if args.torch_backward:
                scan.SSD_BACKWARD_BY_KERNELS = False
                row("  kernels forward, compiled torch backward", torch.compile(lambda *t: scan.ssd_op(*t)[0]))
                scan.SSD_BACKWARD_BY_KERNELS = True
        except Exception as e:  # noqa: BLE001  a shape that does not fit is reported, not fatal
            print(f"| {shape} | failed: {type(e).__name__}: {str(e)[:80]} | | |", flush=True)


if __name__ == "__main__":
    main()
