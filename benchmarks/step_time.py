"""Time one training step of every registered model at the paper's MQAR size and compare with references.

    python benchmarks/step_time.py                    # batch 64, L 512, d 128, 2 layers, on CUDA if present
    python benchmarks/step_time.py --device cpu --batch 8 --models softmax mamba2

Per model: ms per training step (forward + backward + AdamW) and tokens/s, its ratio to softmax attention
measured in the same run, and a reference measured in the same run: PyTorch's scaled_dot_product_attention
step for softmax, and for recurrent models the naive sequential scan (the mixer's own DSF recurrence, stepped
token by token; forward only, since it is a reference for the scan) against the mixer's parallel forward.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import time

import torch
import torch.nn.functional as F

from eigsweep import registry
from eigsweep.config import ModelConfig
from eigsweep.model import build_model


def timed(fn, device, warmup=3, repeat=10) -> float:
    """Median milliseconds of fn()."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - t))
    return sorted(times)[len(times) // 2]


def train_step_fn(model, x, y):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = F.cross_entropy(model(x).reshape(-1, model.head.out_features), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--d-state", type=int, default=128, help="SSM state size N (the paper's MQAR: 128)")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--models", nargs="*", default=list(registry.MIXERS))
    p.add_argument("--no-reference", action="store_true", help="skip the sequential-scan references")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    cfg = ModelConfig(d_model=args.d_model, n_layers=args.layers, n_heads=1, d_state=args.d_state,
                      head_dim=64, expand=2)
    B, L = args.batch, args.seq_len
    x = torch.randint(0, args.vocab, (B, L), device=device)
    y = torch.randint(0, args.vocab, (B, L), device=device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"# {datetime.date.today()} · {name} · torch {torch.__version__} · threads {torch.get_num_threads()}")
    print(f"# batch {B}, L {L}, d {args.d_model}, {args.layers} layers, state {args.d_state}, 1 head, vocab {args.vocab}, "
          "fp32 (TF32 matmul on CUDA)")
    rows = []
    for arch in args.models:
        torch.manual_seed(0)
        try:
            model = build_model(arch, vocab_size=args.vocab, cfg=cfg).to(device)
            ms = timed(train_step_fn(model, x, y), device, repeat=args.repeat)
        except Exception as e:  # a model that cannot run at this size is reported, not fatal
            rows.append((arch, None, None, f"failed: {type(e).__name__}: {str(e)[:60]}"))
            continue
        ref = ""
        if not args.no_reference:
            ref = reference(arch, model, cfg, B, L, device, args.repeat)
        rows.append((arch, ms, B * L / ms * 1000, ref))
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    base = next((r[1] for r in rows if r[0] == "softmax" and r[1]), None)
    print("| model | ms/step | tokens/s | × softmax | reference (same run) |")
    print("|---|---:|---:|---:|---|")
    for arch, ms, tps, ref in rows:
        if ms is None:
            print(f"| {arch} | – | – | – | {ref} |")
            continue
        ratio = f"{ms / base:.2f}" if base else "–"
        print(f"| {arch} | {ms:.1f} | {tps:,.0f} | {ratio} | {ref} |")


@torch.no_grad()
def reference(arch, model, cfg, B, L, device, repeat) -> str:
    mixer = model.blocks[0].mixer
    u = torch.randn(B, L, cfg.d_model, device=device)
    if arch == "softmax":
        q = torch.randn(B, cfg.n_heads, L, cfg.d_model // cfg.n_heads, device=device, requires_grad=True)
        k, v = torch.randn_like(q, requires_grad=True), torch.randn_like(q, requires_grad=True)

        def sdpa():
            with torch.enable_grad():
                F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
        ref_ms = timed(sdpa, device, repeat=repeat)
        mine_ms = timed(lambda: _fwd_bwd(mixer, u), device, repeat=repeat)
        return f"SDPA fwd+bwd {ref_ms:.2f} ms vs mixer fwd+bwd {mine_ms:.2f} ms"
    try:
        seq_ms = timed(lambda: mixer.recurrence(u), device, warmup=1, repeat=max(1, repeat // 5))
    except (NotImplementedError, RuntimeError) as e:
        return f"sequential scan n/a ({type(e).__name__})"
    par_ms = timed(lambda: mixer(u), device, repeat=repeat)
    return f"sequential scan fwd {seq_ms:.1f} ms vs parallel fwd {par_ms:.2f} ms ({seq_ms / par_ms:.0f}× faster)"


def _fwd_bwd(mixer, u):
    with torch.enable_grad():
        u = u.detach().requires_grad_(True)
        mixer(u).sum().backward()


if __name__ == "__main__":
    main()
