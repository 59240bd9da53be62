"""Launch shapes of the fused cross-entropy kernels (eigsweep.cross_entropy) at a pack's size, on CUDA.

    python benchmarks/cross_entropy_kernels.py          # 32 members × 4096 rows × 8192 classes, bf16 logits

Prints ms per call and GB/s moved (forward: reads the logits; backward: reads them and writes their gradient)
for each launch shape, as a fraction of a plain copy of the logits timed in the same run (read + write: what
the GPU's memory does at best), and, as the reference, torch's own loss on the same logits (the one-hot form
train.loss_fn gives torch.compile, compiled: forward, and forward + backward).
"""
from __future__ import annotations

import argparse

import torch

from eigsweep import cross_entropy as ce
from eigsweep import train
from mamba_scan import timed      # median ms of a call on the GPU

FWD = [(4, 2048, 4), (16, 1024, 8), (8, 1024, 4), (2, 4096, 8), (2, 2048, 4), (4, 1024, 4), (4, 4096, 8),
       (8, 2048, 8), (1, 8192, 16)]
BWD = [(128, 4, 2048, 8), (128, 8, 1024, 8), (64, 4, 1024, 4), (64, 4, 2048, 8), (128, 2, 2048, 4),
       (256, 4, 2048, 8), (128, 4, 1024, 4), (64, 2, 4096, 8)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=32)
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--classes", type=int, default=8192)
    p.add_argument("--repeat", type=int, default=20)
    args = p.parse_args()
    P, N, V = args.members, args.rows, args.classes
    gen = torch.Generator(device="cuda").manual_seed(0)
    z = torch.randn(P, N, V, device="cuda", generator=gen).to(torch.bfloat16)
    bias = torch.randn(P, V, device="cuda", generator=gen)
    y = torch.randint(0, V, (P, N), device="cuda", generator=gen)
    grad = torch.rand(P, N, device="cuda", generator=gen)
    gbytes = z.numel() * z.element_size() / 1e9
    copy_ms = timed(lambda: z.clone(), repeat=args.repeat)
    copy_rate = 2 * gbytes / copy_ms * 1e3
    print(f"# {torch.cuda.get_device_name()} · torch {torch.__version__} · logits {P}×{N}×{V} bf16 ({gbytes:.2f} GB)")
    print(f"# copy of the logits: {copy_ms:.3f} ms, {copy_rate:,.0f} GB/s (read + write)")

    def torch_loss(zz, bb):
        logits = (zz + bb[:, None].to(zz.dtype)).flatten(0, 1)
        return train.loss_fn(logits, y.flatten())

    compiled = torch.compile(torch_loss)
    zl = z.detach().requires_grad_()
    ref_fwd = timed(lambda: compiled(z, bias), repeat=args.repeat)
    ref_both = timed(lambda: compiled(zl, bias).backward(), repeat=args.repeat)
    print(f"# torch's loss, compiled (one-hot form, bias added): forward {ref_fwd:.3f} ms, forward + backward "
          f"{ref_both:.3f} ms")
    print("| kernel | rows a program, (rows a tile,) columns, warps | ms | GB/s | × copy rate |")
    print("|---|---|---:|---:|---:|")
    nll, lse = ce.fused_rows(z, bias, y)
    for rows, block, warps in FWD:
        ce.FWD_ROWS, ce.FWD_BLOCK, ce.FWD_WARPS = rows, block, warps
        ms = timed(lambda: ce.fused_rows(z, bias, y), repeat=args.repeat)
        print(f"| forward | {rows}, {block}, {warps} | {ms:.3f} | {gbytes / ms * 1e3:,.0f} | "
              f"{gbytes / ms * 1e3 / copy_rate:.2f} |", flush=True)
    for rows, tile, block, warps in BWD:
        ce.BWD_ROWS, ce.BWD_TILE, ce.BWD_BLOCK, ce.BWD_WARPS = rows, tile, block, warps
        ms = timed(lambda: ce.fused_rows_backward(grad, z, bias, y, lse), repeat=args.repeat)
        print(f"| backward | {rows}, {tile}, {block}, {warps} | {ms:.3f} | {2 * gbytes / ms * 1e3:,.0f} | "
              f"{2 * gbytes / ms * 1e3 / copy_rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
