"""Does a sweep's pack compile on this GPU, and how fast does it step? Builds each named pack (Pack with
compile=True), runs ``--steps`` training steps and prints steps/s, or the error. ``--no-loop-reorder`` turns off
Inductor's loop reordering after fusion (torch 2.11 on an H200 failed an assertion there, in
``reorder_loops_by_dep_pair``, for the output-gate packs of softmax and linear attention).

    python benchmarks/compile_probe.py mqar_modifications softmax-mqar_paper-pack01 --no-loop-reorder
"""
from __future__ import annotations

import argparse
import time

import torch


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep")
    p.add_argument("packs", nargs="+")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--no-loop-reorder", action="store_true")
    args = p.parse_args()
    from eigsweep.config import load_config, pack_size, sweep_runs
    from eigsweep.pack import Pack
    from eigsweep.packs import group_packs

    if args.no_loop_reorder:
        torch._inductor.config.loop_ordering_after_fusion = False
    config = load_config(args.config)
    packs = group_packs(sweep_runs(config, args.sweep), pack_size(config, args.sweep))
    for pid in args.packs:
        pack = Pack(packs[pid], ["-"] * len(packs[pid]), compile=True)
        try:
            t0 = time.perf_counter()
            for _ in range(20):
                pack.train_step()
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            for _ in range(args.steps):
                pack.train_step()
            torch.cuda.synchronize()
            rate = args.steps / (time.perf_counter() - t1)
            on = torch._inductor.config.loop_ordering_after_fusion   # compiled() turns it off after a failure
            print(f"{pid}: compiled in {t1 - t0:.0f} s, {rate:.1f} steps/s (loop reordering {'on' if on else 'off'})",
                  flush=True)
        except Exception as e:   # noqa: BLE001 - the probe reports what failed
            print(f"{pid}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300], flush=True)
        del pack
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
