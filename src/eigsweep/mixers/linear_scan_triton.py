"""The element-wise linear recurrence h_t = a_t ⊙ h_{t-1} + b_t fused in Triton (RG-LRU, qLSTM, GLA across chunks).

One program per (sample, block of BLOCK channels) steps through time with h in registers: the forward reads a
and b once and writes h; the backward reads a, h and dL/dh once, running the adjoint backwards in time,

    G_t = g_t + a_{t+1} G_{t+1},   dL/db_t = G_t,   dL/da_t = G_t h_{t-1},

and writes both gradients. That is one pass each way, where `scan.linear_scan` (the torch form, log-depth)
makes several. Computation in float32; outputs in the inputs' dtype. These are the launchers; the op that
calls them is `scan.linear_scan_op` (an autograd formula, vmap rules that fold a pack's members into the batch,
fake impls: torch.compile keeps it as one call), which `scan.linear_scan` takes on CUDA for float32/16 inputs
where Triton is installed, eagerly and compiled (before the twelfth session compiled graphs kept the torch
form). Triton is imported lazily (CI has no GPU and may have no Triton).
"""
from __future__ import annotations

import functools
import types

import torch

from eigsweep.mixers.triton_support import build_kernels, fused

BLOCK = 128         # channels per program (one warp: 4 per thread)


@functools.cache
def _triton():
    """Our kernels, or None where Triton cannot be imported."""
    return build_kernels(_build_kernels)


def fused_available(t: torch.Tensor) -> bool:
    """True where scan.linear_scan_op runs these kernels for tensors like t (triton_support.fused)."""
    return fused(t, _triton)


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(batch, L, ...) -> contiguous float32 (batch, L, channels)."""
    return t.detach().float().reshape(t.shape[0], t.shape[1], -1).contiguous()


def fused_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h (batch, L, ...) in b's dtype for a, b (batch, L, ...) of one shape, time on dim 1, by the forward
    kernel (on CUDA, or on CPU under TRITON_INTERPRET=1)."""
    af, bf = _flat(a), _flat(b)
    Bt, L, D = af.shape
    h = torch.empty_like(af)
    if af.numel():
        _triton().fwd[(Bt, -(-D // BLOCK))](af, bf, h, L, D, BLOCK=BLOCK, num_warps=1)
    return h.view(b.shape).to(b.dtype)


def fused_scan_backward(a: torch.Tensor, h: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dL/da, dL/db) for dL/dh = g, in a's and h's dtypes, by the backward kernel."""
    af, hf, gf = _flat(a), _flat(h), _flat(g)
    Bt, L, D = af.shape
    da, db = torch.empty_like(af), torch.empty_like(af)
    if af.numel():
        _triton().bwd[(Bt, -(-D // BLOCK))](af, hf, gf, da, db, L, D, BLOCK=BLOCK, num_warps=1)
    return da.view(a.shape).to(a.dtype), db.view(a.shape).to(h.dtype)


def _build_kernels(triton, tl):
    @triton.jit
    def fwd(a_ptr, b_ptr, h_ptr, L, D, BLOCK: tl.constexpr):
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        m = offs < D
        p = tl.program_id(0).to(tl.int64) * L * D + offs                   # (sample, 0, channel)
        h = tl.zeros((BLOCK,), dtype=tl.float32)
        a_n = tl.load(a_ptr + p, mask=m, other=0.0)
        b_n = tl.load(b_ptr + p, mask=m, other=0.0)
        for t in range(0, L):                                              # loads of t+1 overlap step t
            a, b = a_n, b_n
            nxt = m & (tl.full((BLOCK,), t + 1, tl.int32) < L)                 # a block mask (interpreter)
            a_n = tl.load(a_ptr + p + (t + 1) * D, mask=nxt, other=0.0)
            b_n = tl.load(b_ptr + p + (t + 1) * D, mask=nxt, other=0.0)
            h = a * h + b
            tl.store(h_ptr + p + t * D, h, mask=m)

    @triton.jit
    def bwd(a_ptr, h_ptr, g_ptr, da_ptr, db_ptr, L, D, BLOCK: tl.constexpr):
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        m = offs < D
        p = tl.program_id(0).to(tl.int64) * L * D + offs
        G = tl.zeros((BLOCK,), dtype=tl.float32)
        a_next = tl.zeros((BLOCK,), dtype=tl.float32)                      # a_{t+1}; 0 past the end
        for j in range(0, L):
            t = L - 1 - j
            G = tl.load(g_ptr + p + t * D, mask=m, other=0.0) + a_next * G
            h_prev = tl.load(h_ptr + p + (t - 1) * D, mask=m & (tl.full((BLOCK,), t, tl.int32) > 0), other=0.0)
            tl.store(db_ptr + p + t * D, G, mask=m)
            tl.store(da_ptr + p + t * D, G * h_prev, mask=m)
            a_next = tl.load(a_ptr + p + t * D, mask=m, other=0.0)

    return types.SimpleNamespace(fwd=fwd, bwd=bwd)
