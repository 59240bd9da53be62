"""The chunked mixers' training step at each chunk size, against softmax attention, in one run on a GPU.

    PYTHONPATH=src python benchmarks/chunk_sizes.py          # from the repository root
    PYTHONPATH=src python benchmarks/chunk_sizes.py --models deltanet mamba2 --chunks 32 64

The chunk size (a mixer class's ``chunk``) changes how a chunked scan splits the work, not what it computes
(tests/test_spectra_recomputed.py checks the chunked forms against their recurrences across many chunks): inside a chunk the
work grows with the chunk (T² per chunk: L·T in all; for the DeltaNet family a T × T triangular solve per
chunk), across chunks with their number (L/T states; DeltaNet steps through the chunks one by one). Which
balance is fastest is a property of the GPU, so it is measured: ms per training step (forward + backward +
AdamW, median of --repeat after 3 warm-ups; the setting of mamba_scan.py: the paper's MQAR size, fp32 with TF32
matmuls, logits at every position) per model and chunk size, as a ratio to softmax in the same run.
"""
from __future__ import annotations

import argparse

import torch

from eigsweep import registry
from mamba_scan import paper_size, train_step


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="*", default=["deltanet", "gated_deltanet", "mamba2", "gla", "retnet"])
    p.add_argument("--chunks", nargs="*", type=int, default=[16, 32, 64, 128])
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
    cfg, vocab, x, y = paper_size()
    soft, _ = train_step("softmax", cfg, vocab, x, y, args.repeat)
    print(f"softmax: {soft:.2f} ms/step\n| model | chunk | ms/step | × softmax | peak GiB |\n|---|---:|---:|---:|---:|")
    for arch in args.models:
        cls = registry.mixer_class(arch)
        default = cls.chunk
        for chunk in args.chunks:
            cls.chunk = chunk
            try:
                ms, peak = train_step(arch, cfg, vocab, x, y, args.repeat)
                print(f"| {arch} | {chunk}{' (default)' if chunk == default else ''} | {ms:.2f} | {ms / soft:.2f} "
                      f"| {peak:.2f} |", flush=True)
            except torch.OutOfMemoryError:
                print(f"| {arch} | {chunk} | out of memory | | |", flush=True)
                torch.cuda.empty_cache()
            finally:
                cls.chunk = default


if __name__ == "__main__":
    main()
