"""Forward+backward time and peak memory of the models-b mixers' models at the paper's MQAR size (batch 64,
L 512, d 128, 2 layers), relative to softmax attention. Usage: python benchmarks/models_b_speed.py [n_heads ...]"""
import sys
import time

import torch

from eigsweep.model import build_model

ARCHS = ["softmax", "gla", "retnet", "rglru", "qlstm", "deltanet", "gated_deltanet"]


def bench(arch, n_heads, B=64, L=512, d=128, iters=10, amp=False):
    torch.manual_seed(0)
    m = build_model(arch, vocab_size=8192, d_model=d, n_layers=2, n_heads=n_heads).cuda()
    x = torch.randint(0, 8192, (B, L), device="cuda")
    torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = m(x).float().logsumexp(-1).mean()
        loss.backward()
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / iters * 1e3, torch.cuda.max_memory_allocated() / 2 ** 30


if __name__ == "__main__":
    heads = [int(s) for s in sys.argv[1:]] or [1, 4]
    print(torch.__version__, torch.cuda.get_device_name())
    for amp in (False, True):
        for h in heads:
            base = None
            for arch in ARCHS:
                try:
                    ms, gb = bench(arch, h, amp=amp)
                except Exception as e:  # report and go on
                    print(f"amp={amp} heads={h} {arch:15s} FAILED {type(e).__name__}: {str(e)[:200]}", flush=True)
                    continue
                base = base or ms
                print(f"amp={amp} heads={h} {arch:15s} {ms:8.2f} ms  x{ms / base:5.2f}  peak {gb:6.2f} GiB", flush=True)
