"""Launch shapes of the short convolution's kernels (eigsweep.mixers.conv_triton) at a pack's size, on CUDA.

    python benchmarks/conv_kernels.py      # Mamba-2's conv in a pack of 32: 32 × 64 sequences, L 512, 512 channels

Prints median ms per call of the op's forward and backward (its kernels) for each launch shape (time block ×
channel block × warps; "*" marks conv_triton's own), and, as references in the same run: the torch form (the K
shifted products and the SiLU) compiled, forward and forward + backward; a copy of one activation-sized tensor
(the backward reads x and g and writes dx: about 1.5 copies' worth of memory traffic, its floor). x is a slice
of a wider tensor's channels, as Mamba-2's x, B, C are of its input projection. Each shape's largest error of dx
and dw against the float32 torch form.
"""
from __future__ import annotations

import argparse

import torch

from eigsweep.mixers import conv_triton as ct
from mamba_scan import timed      # median ms of a call on the GPU

SHAPES = ["32x128x4", "16x128x4", "64x128x4", "64x128x8", "128x128x8", "32x64x2", "64x64x4", "128x64x4",
          "32x256x4", "32x256x8"]          # BLOCK_TxBLOCK_CxNUM_WARPS


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--channels", type=int, default=512)
    p.add_argument("--width", type=int, default=776, help="the wider tensor x is a slice of (Mamba-2's in_proj)")
    p.add_argument("--kernel", type=int, default=4)
    p.add_argument("--shapes", nargs="*", default=SHAPES, help="BLOCK_TxBLOCK_CxNUM_WARPS")
    args = p.parse_args()
    M, B, L, C, K = args.members, args.batch, args.seq_len, args.channels, args.kernel
    gen = torch.Generator("cuda").manual_seed(0)
    wide = torch.randn(M, B, L, args.width, device="cuda", generator=gen)
    x = wide[..., 256 : 256 + C]
    w = 0.5 * torch.randn(M, C, K, device="cuda", generator=gen)
    b = 0.1 * torch.randn(M, C, device="cuda", generator=gen)
    g = torch.randn(M, B, L, C, device="cuda", generator=gen)
    print(f"# {torch.cuda.get_device_name()} · torch {torch.__version__} · x ({M}, {B}, {L}, {C}) sliced from "
          f"width {args.width}, K {K}, SiLU, float32")

    def torch_both():
        xr, wr, br = (t.detach().requires_grad_() for t in (x, w, b))
        y = ct.reference_conv(xr, wr, br, True)
        return torch.autograd.grad(y, (xr, wr, br), g)

    ref_fwd = torch.compile(lambda: ct.reference_conv(x, w, b, True))
    ref_both = torch.compile(torch_both)
    dx_ref, dw_ref, _ = ref_both()
    copy = timed(lambda: g.clone())
    print(f"copy of g: {copy:.2f} ms (the backward's floor ≈ 1.5 copies: {1.5 * copy:.2f} ms)")
    rf, rb = timed(ref_fwd), timed(ref_both)
    print(f"torch form compiled: forward {rf:.2f} ms, forward + backward {rb:.2f} ms")
    print("\n| BLOCK_T × BLOCK_C × warps | forward ms | backward ms | backward × copy | err dx | err dw |\n"
          "|---|---:|---:|---:|---:|---:|")
    own = f"{ct.BLOCK_T}x{ct.BLOCK_C}x{ct.NUM_WARPS}"
    for shape in args.shapes:
        ct.BLOCK_T, ct.BLOCK_C, ct.NUM_WARPS = (int(v) for v in shape.split("x"))
        try:
            f = timed(lambda: ct.fused_conv(x, w, b, True))
            bw = timed(lambda: ct.fused_conv_backward(g, x, w, b, True))
            dx, dw, _ = ct.fused_conv_backward(g, x, w, b, True)
            err = [((a - r).abs().max() / r.abs().max()).item() for a, r in ((dx, dx_ref), (dw, dw_ref))]
            print(f"| {shape}{' *' * (shape == own)} | {f:.2f} | {bw:.2f} | {bw / copy:.2f} | {err[0]:.1e} | "
                  f"{err[1]:.1e} |", flush=True)
        except Exception as e:  # noqa: BLE001  a shape that does not compile is reported, not fatal
            print(f"| {shape} | failed: {type(e).__name__}: {str(e)[:80]} | | | | |", flush=True)


if __name__ == "__main__":
    main()
