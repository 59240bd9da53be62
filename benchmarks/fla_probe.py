"""flash-linear-attention's chunked kernels against the mixers' own scans, one layer at a pack's size, on CUDA.

    python benchmarks/fla_probe.py          # 32 members × 64 sequences, L 512 (the paper's MQAR size)

For DeltaNet (1 head × 128), gated DeltaNet and Mamba-2's SSD (8 heads × 32, state 128, B and C shared by the
heads) it prints ms per call, forward and forward + backward, of the mixer's own scan (eager and compiled,
float32 with TF32 products as in training) and of fla's kernel (`fla.ops`, bf16 inputs; for the SSD also float32),
and each form's largest error of y and of the inputs' gradients against the mixer's scan in float64, on the first
sequences, relative to the float64 values' largest magnitude. fla (pip install fla-core) is optional.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from eigsweep.mixers import deltanet, scan
from mamba_scan import timed      # median ms of a call on the GPU


def inputs(kind, Z, L, gen):
    """Float32 CUDA inputs of one layer's scan, in the mixer's own layout, requiring gradients."""
    r = lambda *s: torch.randn(*s, device="cuda", generator=gen)       # noqa: E731
    if kind == "ssd":
        X, B, C = r(Z, L, 8, 32), r(Z, L, 128) / 4, r(Z, L, 128) / 4
        log_lam = -F.softplus(r(Z, L, 8)) * 0.5
        return [t.requires_grad_() for t in (X, log_lam, B, C)]
    q, k = (F.normalize(r(Z, 1, L, 128), dim=-1) for _ in range(2))
    v, beta = r(Z, 1, L, 128), torch.sigmoid(r(Z, 1, L))
    log_alpha = -F.softplus(r(Z, 1, L)) * 0.1 if kind == "gated" else torch.zeros(Z, 1, L, device="cuda")
    return [t.requires_grad_() for t in (q / 128 ** 0.5, k, v, beta, log_alpha)]


def own_form(kind):
    if kind == "ssd":
        return lambda X, a, B, C: scan._ssd_torch(X, a, B, C, 64)[0]
    chunk = deltanet.GatedDeltaNet.chunk if kind == "gated" else deltanet.DeltaNet.chunk
    return lambda q, k, v, beta, g: deltanet.chunked_delta_rule(q, k, v, beta, g, chunk)


def fla_form(kind, dtype):
    """fla's kernel on the mixer's layout: transposes and casts inside (they are part of its cost)."""
    from fla.ops.delta_rule import chunk_delta_rule
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    from fla.ops.simple_gla import chunk_simple_gla

    def ssd(X, a, B, C):
        H = X.shape[2]
        q, k = (t[:, :, None].expand(-1, -1, H, -1).to(dtype) for t in (C, B))
        return chunk_simple_gla(q, k, X.to(dtype), g=a.float(), scale=1.0)[0].to(X.dtype)

    def delta(q, k, v, beta, g):
        q, k, v = (t.transpose(1, 2).to(dtype) for t in (q, k, v))
        beta = beta.transpose(1, 2).to(dtype)
        if kind == "gated":
            o = chunk_gated_delta_rule(q, k, v, g.transpose(1, 2).float(), beta, scale=1.0)[0]
        else:
            o = chunk_delta_rule(q, k, v, beta, scale=1.0)[0]
        return o.transpose(1, 2).float()
    return ssd if kind == "ssd" else delta


def errors(f, ref64, ins, n):
    """Largest |Δ| of y and of each input's gradient against float64, over the first n sequences, relative."""
    sub = [t.detach()[:n].clone().requires_grad_() for t in ins]
    y = f(*sub)
    dy = torch.randn_like(y, generator=torch.Generator(device="cuda").manual_seed(1))
    grads = torch.autograd.grad(y, sub, dy, allow_unused=True)
    out = [rel(y, ref64[0])]
    for g, r in zip(grads, ref64[1:]):
        out.append(rel(g, r) if g is not None else float("nan"))
    return out


def rel(a, b):
    return ((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--kinds", nargs="*", default=["delta", "gated", "ssd"])
    p.add_argument("--check", type=int, default=16, help="sequences checked against float64")
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True          # as in training (train.py)
    Z, L = args.members * args.batch, args.seq_len
    print(f"# {torch.cuda.get_device_name()} · torch {torch.__version__} · Z {Z} sequences, L {L}")
    print("| scan | form | forward ms | forward + backward ms | × compiled own form | rel. err y | "
          "rel. err grads (largest) |\n|---|---|---:|---:|---:|---:|---:|")
    for kind in args.kinds:
        gen = torch.Generator(device="cuda").manual_seed(0)
        ins = inputs(kind, Z, L, gen)
        own = own_form(kind)
        sub64 = [t.detach()[:args.check].double().requires_grad_() for t in ins]
        y64 = own(*sub64)
        dy64 = torch.randn_like(y64.float(), generator=torch.Generator(device="cuda").manual_seed(1)).double()
        ref64 = [y64.detach()] + list(torch.autograd.grad(y64, sub64, dy64, allow_unused=True))
        ref64 = [r if r is not None else torch.zeros(1, device="cuda", dtype=torch.float64) for r in ref64]
        forms = [("own, eager", own), ("own, compiled", torch.compile(own))]
        try:
            forms += [("fla bf16", fla_form(kind, torch.bfloat16))]
            if kind == "ssd":
                forms += [("fla float32", fla_form(kind, torch.float32))]
        except ImportError as e:
            print(f"| {kind} | fla not importable: {e} | | | | | |")
        ref_ms = None
        for label, f in forms:
            try:
                fwd = timed(lambda: f(*ins))
                y = f(*ins)
                dy = torch.randn_like(y)
                both = timed(lambda: torch.autograd.grad(f(*ins), ins, dy, allow_unused=True))
                err = errors(f, ref64, ins, args.check)
            except Exception as e:  # noqa: BLE001 - a probe: report and go on
                print(f"| {kind} | {label} | failed: {type(e).__name__}: {str(e)[:200]} | | | | |", flush=True)
                continue
            if label == "own, compiled":
                ref_ms = both
            ratio = f"{both / ref_ms:.2f}" if ref_ms else "–"
            print(f"| {kind} | {label} | {fwd:.2f} | {both:.2f} | {ratio} | {err[0]:.1e} | "
                  f"{max(e for e in err[1:] if e == e):.1e} |", flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
