"""Where a pack's (or a solo run's) step spends its GPU time: the top kernels of a few profiled steps, per model.

    python benchmarks/profile_pack.py --members 32 --models softmax mamba2 deltanet
    python benchmarks/profile_pack.py --solo --models s4 gla deltanet gated_deltanet mamba   # Trainer.train_step
    python benchmarks/profile_pack.py --solo --sort cpu --models s4                          # host time first
"""
from __future__ import annotations

import argparse
import contextlib
from unittest import mock

import torch
from torch.profiler import ProfilerActivity, profile

import throughput as tp
from eigsweep.pack import Pack


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--members", type=int, default=32)
    p.add_argument("--models", nargs="*", default=["softmax", "mamba2", "deltanet"])
    p.add_argument("--rows", type=int, default=18)
    p.add_argument("--compile", action="store_true", help="profile compiled packs (Pack(compile=True))")
    p.add_argument("--solo", action="store_true", help="profile the solo path (Trainer.train_step), not a pack")
    p.add_argument("--sort", choices=["device", "cpu"], default="device",
                   help="rows by GPU time (default) or by host time (a host-bound step: where its launches go)")
    p.add_argument("--conv-op", action="store_true", help="ShortConv by the conv_triton op "
                   "(blocks.FUSED_CONV_ON_CUDA on)")
    p.add_argument("--scan-ceiling", action="store_true", help="the scan replaced by throughput.SCAN_STAND_INS' "
                   "element-wise work (Mamba-2, the DeltaNets): where the rest of the step goes")
    p.add_argument("--bf16", action="store_true", help="the mixer under bf16 autocast (throughput.bf16_mixer)")
    args, rest = p.parse_known_args()
    bench = tp.argparse.Namespace(vocab=8192, seq_len=512, kv=64, n_train=4096, d_model=128, layers=2, d_state=128,
                                  batch=64, device="cuda")
    tp.cache_task_data()
    if args.conv_op:
        tp.blocks.FUSED_CONV_ON_CUDA = True
    for arch in args.models:
        with contextlib.ExitStack() as stack:
            if args.scan_ceiling:
                stack.enter_context(mock.patch.object(*tp.SCAN_STAND_INS[arch]))
            stack.enter_context(tp.bf16_mixer(arch if args.bf16 else None))
            profile_one(args, bench, arch)


def profile_one(args, bench, arch):
    """Profiles 3 steps of ``arch``'s pack (or solo run) after 3 warm-up steps; prints the top kernels."""
    if args.solo:
        pack = tp.Trainer(tp.make_spec(bench, arch), compile=args.compile)
    else:
        pack = Pack([tp.make_spec(bench, arch, seed=s) for s in range(args.members)], ["-"] * args.members,
                    compile=args.compile)
    for _ in range(3):
        pack.train_step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            pack.train_step()
        torch.cuda.synchronize()
    print(f"## {arch}, {'solo' if args.solo else f'pack of {args.members}'}, 3 steps"
          f"{', compiled' if args.compile else ''}{', conv op' if args.conv_op else ''}"
          f"{', bf16 mixer' if args.bf16 else ''}{', scan stand-in' if args.scan_ceiling else ''}")
    try:
        table = prof.key_averages().table(sort_by=f"self_{args.sort}_time_total", row_limit=args.rows,
                                          max_name_column_width=70)
    except (KeyError, AttributeError, ValueError):
        table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=args.rows,
                                          max_name_column_width=70)
    print(table)
    del pack
    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
