"""Mamba-1 with the torch scan and with the fused Triton scan, against softmax attention, in one run on a GPU.

    python benchmarks/mamba_scan.py                  # the paper's MQAR size, states 128 and 16
    python benchmarks/mamba_scan.py --sweep          # also time the fused scan alone for other kernel shapes

At the paper's MQAR size (batch 64, L 512, d_model 128, expand 2, 2 layers, vocab 8192, fp32 with TF32
matmuls): ms per training step (forward + backward + AdamW, logits at every position as in step_time.py),
median of --repeat steps after 3 warm-ups, and peak GPU memory over those steps, for softmax, Mamba-1 on the
torch scan of mamba.py and Mamba-1 on the fused scan; ratios to softmax measured in the same run. Then the
scan alone (one layer's x, Δ, A, B, C, forward + backward) for both scans.

Measured 2026-11-29 on an NVIDIA H200 (torch 2.11.0+cu130, triton 3.6.0), default settings:

| model | state | ms/step | × softmax | peak GiB |
|---|---:|---:|---:|---:|
| softmax | – | 6.28 | 1.00 | 3.36 |
| mamba (torch scan) | 128 | 309.94 | 49.36 | 45.88 |
| mamba (fused Triton scan) | 128 | 17.49 | 2.78 | 4.49 |
| softmax | – | 6.19 | 1.00 | 3.36 |
| mamba (torch scan) | 16 | 50.67 | 8.19 | 6.44 |
| mamba (fused Triton scan) | 16 | 10.76 | 1.74 | 3.94 |

The scan alone, one layer: state 128, torch 55.75 ms forward / 150.80 ms forward + backward (37.28 GiB peak),
fused 0.60 / 4.87 ms (1.77 GiB); state 16, torch 7.42 / 21.20 ms (4.85 GiB), fused 0.31 / 1.30 ms (0.47 GiB).
"""
from __future__ import annotations

import argparse
import datetime
import time

import torch
import torch.nn.functional as F

from eigsweep.config import ModelConfig
from eigsweep.mixers import selective_scan_triton as sst
from eigsweep.model import build_model


def timed(fn, warmup=3, repeat=10) -> float:
    """Median milliseconds of fn() on the GPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - t))
    return sorted(times)[len(times) // 2]


def paper_size():
    """(cfg, vocab, x, y) of the paper's MQAR size on CUDA (batch 64, L 512, d_model 128, 2 layers, state 128,
    expand 2, vocab 8192; random tokens: only the step's time is measured), TF32 matmuls on; prints the header."""
    torch.backends.cuda.matmul.allow_tf32 = True
    vocab, Bt, L = 8192, 64, 512
    cfg = ModelConfig(d_model=128, n_layers=2, n_heads=1, d_state=128, expand=2, head_dim=64)
    x = torch.randint(0, vocab, (Bt, L), device="cuda")
    y = torch.randint(0, vocab, (Bt, L), device="cuda")
    print(f"# {datetime.date.today()} {torch.cuda.get_device_name()} torch {torch.__version__}")
    return cfg, vocab, x, y


def train_step(arch, cfg, vocab, x, y, repeat):
    """(ms per step, peak GiB) of one AdamW training step of `arch`."""
    torch.manual_seed(0)
    model = build_model(arch, vocab_size=vocab, cfg=cfg).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    ms = timed(step, repeat=repeat)
    peak = torch.cuda.max_memory_allocated() / 2**30
    step = None          # frees the model and optimizer the closure holds
    torch.cuda.empty_cache()
    return ms, peak


def scan_alone(scan, Bt, L, D, N, repeat, backward=True):
    """(ms, peak GiB) of forward (+ backward) of one layer's selective scan."""
    g = torch.Generator("cuda").manual_seed(0)
    ins = [torch.randn(Bt, L, D, device="cuda", generator=g), F.softplus(torch.randn(Bt, L, D, device="cuda") - 2),
           -torch.arange(1, N + 1.0, device="cuda").repeat(D, 1),
           torch.randn(Bt, L, N, device="cuda", generator=g), torch.randn(Bt, L, N, device="cuda", generator=g)]
    ins = [t.requires_grad_() for t in ins]
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    ms = timed(lambda: scan(*ins).sum().backward() if backward else scan(*ins), repeat=repeat)
    return ms, torch.cuda.max_memory_allocated() / 2**30


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--states", type=int, nargs="*", default=[128, 16])
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--sweep", action="store_true", help="time the fused scan alone for a few kernel shapes")
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    B, L, V = args.batch, args.seq_len, args.vocab
    x = torch.randint(0, V, (B, L), device="cuda")
    y = torch.randint(0, V, (B, L), device="cuda")
    print(f"# {datetime.date.today()} · {torch.cuda.get_device_name()} · torch {torch.__version__} · "
          f"triton {__import__('triton').__version__}")
    print(f"# batch {B}, L {L}, d {args.d_model}, expand 2, {args.layers} layers, vocab {V}, fp32 (TF32 matmul); "
          f"fused scan: CHUNK {sst.CHUNK}, (BLOCK_D, floats per thread) {sst.SHAPE}")
    print("| model | state | ms/step | × softmax | peak GiB |")
    print("|---|---:|---:|---:|---:|")
    fused = sst.fused_available
    for N in args.states:
        cfg = ModelConfig(d_model=args.d_model, n_layers=args.layers, n_heads=1, d_state=N, head_dim=64, expand=2)
        base, peak = train_step("softmax", cfg, V, x, y, args.repeat)
        print(f"| softmax | – | {base:.2f} | 1.00 | {peak:.2f} |", flush=True)
        for label, avail in (("mamba (torch scan)", lambda t: False), ("mamba (fused Triton scan)", fused)):
            sst.fused_available = avail
            try:
                ms, peak = train_step("mamba", cfg, V, x, y, args.repeat)
                print(f"| {label} | {N} | {ms:.2f} | {ms / base:.2f} | {peak:.2f} |", flush=True)
            except torch.OutOfMemoryError:
                print(f"| {label} | {N} | out of memory | – | – |", flush=True)
        sst.fused_available = fused
    D = 2 * args.d_model
    print(f"\nThe scan alone, one layer (batch {B}, L {L}, D {D}):\n")
    print("| scan | state | forward ms | forward + backward ms | peak GiB |")
    print("|---|---:|---:|---:|---:|")
    for N in args.states:
        for label, scan in (("torch", sst.selective_scan_ref), ("fused Triton", sst.fused_scan)):
            fwd_ms, _ = scan_alone(scan, B, L, D, N, args.repeat, backward=False)
            ms, peak = scan_alone(scan, B, L, D, N, args.repeat)
            print(f"| {label} | {N} | {fwd_ms:.2f} | {ms:.2f} | {peak:.2f} |", flush=True)
    if args.sweep:
        sweep(B, L, D, args.states, args.repeat)


def sweep(B, L, D, states, repeat):
    """The fused scan alone for a few kernel shapes (BLOCK_D, state floats per thread) of each kernel, then for
    a few checkpoint intervals (CHUNK)."""
    print("\n| state | kernel | BLOCK_D | warps | forward ms | forward + backward ms |")
    print("|---:|---|---:|---:|---:|---:|")
    default = dict(sst.SHAPE)
    for N in states:
        for kernel, shapes in (("fwd", [(16, 64), (16, 16), (8, 32), (32, 64)]),
                               ("bwd", [(8, 32), (8, 16), (16, 32), (4, 16), (16, 64)])):
            for shape in shapes:
                sst.SHAPE = dict(default, **{kernel: shape})
                fwd_ms, _ = scan_alone(sst.fused_scan, B, L, D, N, repeat, backward=False)
                ms, _ = scan_alone(sst.fused_scan, B, L, D, N, repeat)
                warps = sst._launch_shape(kernel, N)[2]
                print(f"| {N} | {kernel} | {shape[0]} | {warps} | {fwd_ms:.2f} | {ms:.2f} |", flush=True)
    sst.SHAPE = default
    # CHUNK: the backward's per-program buffer of CHUNK + 1 states (BLOCK_D·N floats each; 68 KB at CHUNK 16,
    # BLOCK_D 8, N 128) stays in L2 only while all resident programs' buffers fit (2,048 programs here: 139 MB
    # at CHUNK 16, over the H200's 50 MB L2); a smaller CHUNK shrinks them but writes more checkpoints
    print("\n| state | CHUNK | forward ms | forward + backward ms | peak GiB |\n|---:|---:|---:|---:|---:|")
    chunk = sst.CHUNK
    for N in states:
        for sst.CHUNK in (2, 4, 8, 16, 32):
            fwd_ms, _ = scan_alone(sst.fused_scan, B, L, D, N, repeat, backward=False)
            ms, peak = scan_alone(sst.fused_scan, B, L, D, N, repeat)
            print(f"| {N} | {sst.CHUNK} | {fwd_ms:.2f} | {ms:.2f} | {peak:.2f} |", flush=True)
    sst.CHUNK = chunk


if __name__ == "__main__":
    main()
