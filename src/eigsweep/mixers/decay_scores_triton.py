"""GLA's intra-chunk scores with a decay per key channel, fused in Triton (no (…, T, T, N) decay tensor).

Per chunk of T tokens and N key channels, with g the inclusive cumsum of log a inside the chunk (so
g_in − g_jn ≤ 0 for j ≤ i: every exp below is at most 1, whatever the decay):

    S_ij = Σ_n q_in k_jn e_ijn,   e_ijn = exp(g_in − g_jn) for j ≤ i, 0 for j > i.

Backward, for dS (entries above the diagonal ignored):

    dq_in = Σ_j dS_ij k_jn e_ijn,   dk_jn = Σ_i dS_ij q_in e_ijn,   dg_tn = q_tn dq_tn − k_tn dk_tn

(g_t enters S with + in row t and with − in column t; the diagonal, where e = 1, cancels). One program per
chunk loops over N in blocks of BLOCK_N with a (T, T, BLOCK_N) tile in registers: q, k, g (and dS) are read
once, S (or dq, dk, dg) written once. T is padded to a power of two and masked, so any chunk size works.
Computation in float32; outputs in the inputs' dtype. `scan.chunked_decay_attention` calls this on CUDA for
float32/16 inputs where Triton imports, outside torch.compile (whose graph keeps the torch form); Triton is
imported lazily (CI has no GPU and may have no Triton). Packs: chunks are independent, so the vmap rule moves
a pack's member dim to the front, where it joins the chunks: one launch for all members.
"""
from __future__ import annotations

import functools
import types

import torch

from eigsweep.mixers.triton_support import build_kernels, eager_fused, next_pow2

BLOCK_N = 32        # key channels per step: a (T, T, 32) tile, 8192 floats for T = 16
NUM_WARPS = 4


@functools.cache
def _triton():
    """Our kernels, or None where Triton cannot be imported."""
    return build_kernels(_build_kernels)


def fused_available(t: torch.Tensor) -> bool:
    """True where the fused scores run for tensors like t (triton_support.eager_fused)."""
    return eager_fused(t, _triton)


def decay_scores(q: torch.Tensor, k: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """S (..., T, T) for q, k, g (..., T, N) of one shape (g: the in-chunk cumsum of log a), with no dispatch
    check. Vmappable."""
    return _DecayScores.apply(q, k, g)


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(..., T, X) -> contiguous float32 (chunks, T, X)."""
    return t.detach().float().reshape(-1, t.shape[-2], t.shape[-1]).contiguous()


def _launch(kernel, q, *args):
    """Runs `kernel` with one program per chunk of q (chunks, T, N)."""
    C, T, N = q.shape
    kernel[(C,)](q, *args, T, N, TP=next_pow2(T), BLOCK_N=BLOCK_N, num_warps=NUM_WARPS)


class _DecayScores(torch.autograd.Function):
    @staticmethod
    def forward(q, k, g):
        qf, kf, gf = _flat(q), _flat(k), _flat(g)
        C, T, _ = qf.shape
        S = qf.new_empty(C, T, T)
        _launch(_triton().fwd, qf, kf, gf, S)
        return S.view(*q.shape[:-1], T).to(q.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, dS):
        q, k, g = ctx.saved_tensors
        qf, kf, gf, dSf = _flat(q), _flat(k), _flat(g), _flat(dS)
        dq, dk, dg = torch.empty_like(qf), torch.empty_like(qf), torch.empty_like(qf)
        _launch(_triton().bwd, qf, kf, gf, dSf, dq, dk, dg)
        return tuple(d.view(t.shape).to(t.dtype) for d, t in zip((dq, dk, dg), (q, k, g)))

    @staticmethod
    def vmap(info, in_dims, q, k, g):
        """A pack's members moved to the front, where the forward folds them into the chunks."""
        q, k, g = (t.movedim(d, 0) if d is not None else t.expand(info.batch_size, *t.shape)
                   for t, d in zip((q, k, g), in_dims))
        return _DecayScores.apply(q, k, g), 0


def _build_kernels(triton, tl):
    # Both kernels, per block of channels n: q, k, g (TP, BLOCK_N) of the chunk's tokens, and the masked
    # decays e (TP, TP, BLOCK_N), exp(−inf) = 0 above the diagonal.
    @triton.jit
    def fwd(q_ptr, k_ptr, g_ptr, S_ptr, T, N, TP: tl.constexpr, BLOCK_N: tl.constexpr):
        c = tl.program_id(0).to(tl.int64)
        t = tl.arange(0, TP)
        causal = (t[None, :] <= t[:, None])[:, :, None]                     # (TP, TP, 1): j ≤ i
        S = tl.zeros((TP, TP), dtype=tl.float32)
        for n0 in range(0, N, BLOCK_N):
            n = n0 + tl.arange(0, BLOCK_N)
            m = (t[:, None] < T) & (n[None, :] < N)
            p = c * T * N + t[:, None] * N + n[None, :]                    # (TP, BLOCK_N)
            q = tl.load(q_ptr + p, mask=m, other=0.0)
            k = tl.load(k_ptr + p, mask=m, other=0.0)
            g = tl.load(g_ptr + p, mask=m, other=0.0)
            e = tl.exp(tl.where(causal, g[:, None, :] - g[None, :, :], float("-inf")))
            S += tl.sum(q[:, None, :] * k[None, :, :] * e, axis=2)          # (TP, TP)
        mS = (t[:, None] < T) & (t[None, :] < T)
        tl.store(S_ptr + c * T * T + t[:, None] * T + t[None, :], S, mask=mS)

    @triton.jit
    def bwd(q_ptr, k_ptr, g_ptr, dS_ptr, dq_ptr, dk_ptr, dg_ptr, T, N, TP: tl.constexpr, BLOCK_N: tl.constexpr):
        c = tl.program_id(0).to(tl.int64)
        t = tl.arange(0, TP)
        causal = (t[None, :] <= t[:, None])[:, :, None]
        mS = (t[:, None] < T) & (t[None, :] < T)
        dS = tl.load(dS_ptr + c * T * T + t[:, None] * T + t[None, :], mask=mS, other=0.0)   # (TP, TP)
        for n0 in range(0, N, BLOCK_N):
            n = n0 + tl.arange(0, BLOCK_N)
            m = (t[:, None] < T) & (n[None, :] < N)
            p = c * T * N + t[:, None] * N + n[None, :]
            q = tl.load(q_ptr + p, mask=m, other=0.0)
            k = tl.load(k_ptr + p, mask=m, other=0.0)
            g = tl.load(g_ptr + p, mask=m, other=0.0)
            e = tl.exp(tl.where(causal, g[:, None, :] - g[None, :, :], float("-inf")))
            w = dS[:, :, None] * e                                          # (TP, TP, BLOCK_N), 0 for j > i
            dq = tl.sum(w * k[None, :, :], axis=1)                          # (TP, BLOCK_N)
            dk = tl.sum(w * q[:, None, :], axis=0)
            tl.store(dq_ptr + p, dq, mask=m)
            tl.store(dk_ptr + p, dk, mask=m)
            tl.store(dg_ptr + p, q * dq - k * dk, mask=m)

    return types.SimpleNamespace(fwd=fwd, bwd=bwd)
