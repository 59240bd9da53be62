"""GLA's intra-chunk scores with a decay per key channel, fused in Triton (no (…, T, T, N) decay tensor).

Per chunk of T tokens and N key channels, with g the inclusive cumsum of log a inside the chunk (so
g_in − g_jn ≤ 0 for j ≤ i: every exp below is at most 1, whatever the decay):

    S_ij = Σ_n q_in k_jn e_ijn,   e_ijn = exp(g_in − g_jn) for j ≤ i, 0 for j > i.

Backward, for dS (entries above the diagonal ignored):

    dq_in = Σ_j dS_ij k_jn e_ijn,   dk_jn = Σ_i dS_ij q_in e_ijn,   dg_tn = q_tn dq_tn − k_tn dk_tn

(g_t enters S with + in row t and with − in column t; the diagonal, where e = 1, cancels). One program per
chunk loops over N in blocks of BLOCK_N with a (T, T, BLOCK_N) tile in registers: q, k, g (and dS) are read
once, S (or dq, dk, dg) written once. T is padded to a power of two and masked, so any chunk size works.
Computation in float32; outputs in the inputs' dtype.

``decay_scores`` is a custom op (with ``decay_scores_backward``: an autograd formula, vmap rules, fake impls), so
torch.compile keeps it as one call: `scan.chunked_decay_attention` takes it on CUDA for float32/16 inputs where
Triton is installed, eagerly and compiled (before it was an autograd Function, compiled GLA fell back to the
torch form, whose K = 1 products were 55% of its step on an H200, benchmarks/README.md, twelfth session). Its
body is the torch form where the kernels cannot run. Triton is imported lazily (CI has no GPU and may have no
Triton). Packs: chunks are independent, so the vmap rules move a pack's member dim to the front, where it joins
the chunks: one launch for all members.
"""
from __future__ import annotations

import functools
import types

import torch

from eigsweep.mixers.blocks import causal_mask
from eigsweep.mixers.triton_support import backward_by, build_kernels, fused, next_pow2, vmapped_first

BLOCK_N = 32        # key channels per step: a (T, T, 32) tile, 8192 floats for T = 16
NUM_WARPS = 4


@functools.cache
def _triton():
    """Our kernels, or None where Triton cannot be imported."""
    return build_kernels(_build_kernels)


def fused_available(t: torch.Tensor) -> bool:
    """True where the op runs its kernels for tensors like t (triton_support.fused)."""
    return fused(t, _triton)


def _decays(g: torch.Tensor) -> torch.Tensor:
    """e (..., T, T, N): exp(g_in − g_jn) for j ≤ i, 0 above the diagonal."""
    causal = causal_mask(g.shape[-2], g.device)[..., None]
    return torch.exp((g[..., :, None, :] - g[..., None, :, :]).masked_fill(~causal, float("-inf")))


def reference_scores(q: torch.Tensor, k: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """S (..., T, T) by torch, through a (..., T, T, N) decay tensor: the op's definition, its body where the
    kernels do not run, and the form scan.chunked_decay_attention differentiates off CUDA."""
    return torch.einsum("...in,...jn,...ijn->...ij", q, k, _decays(g))


def reference_scores_backward(q, k, g, dS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dg) of Σ dS·S by torch (the module docstring's formulas)."""
    w = dS[..., None] * _decays(g)                                          # (..., T, T, N), 0 for j > i
    dq = torch.einsum("...ijn,...jn->...in", w, k)
    dk = torch.einsum("...ijn,...in->...jn", w, q)
    return dq, dk, q * dq - k * dk


@torch.library.custom_op("eigsweep::decay_scores", mutates_args=())
def decay_scores(q: torch.Tensor, k: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """S (..., T, T) for q, k, g (..., T, N) of one shape (g: the in-chunk cumsum of log a), in q's dtype."""
    if fused_available(q):
        return fused_scores(q, k, g)
    return reference_scores(q, k, g).contiguous()


@decay_scores.register_fake
def _(q, k, g):
    return q.new_empty(*q.shape[:-1], q.shape[-2])


@torch.library.custom_op("eigsweep::decay_scores_backward", mutates_args=())
def decay_scores_backward(q: torch.Tensor, k: torch.Tensor, g: torch.Tensor,
                          dS: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dg) of Σ dS·S (entries of dS above the diagonal ignored), each in its input's dtype."""
    if fused_available(q):
        return fused_scores_backward(q, k, g, dS)
    return tuple(d.contiguous() for d in reference_scores_backward(q, k, g, dS))


@decay_scores_backward.register_fake
def _(q, k, g, dS):
    return q.new_empty(q.shape), k.new_empty(k.shape), g.new_empty(g.shape)


backward_by(decay_scores, decay_scores_backward)


@decay_scores.register_vmap
def _(info, in_dims, q, k, g):
    return decay_scores(*vmapped_first(info, in_dims, q, k, g)), 0   # members: more chunks


@decay_scores_backward.register_vmap
def _(info, in_dims, q, k, g, dS):
    return decay_scores_backward(*vmapped_first(info, in_dims, q, k, g, dS)), (0, 0, 0)


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(..., T, X) -> contiguous float32 (chunks, T, X)."""
    return t.detach().float().reshape(-1, t.shape[-2], t.shape[-1]).contiguous()


def _launch(kernel, q, *args):
    """Runs `kernel` with one program per chunk of q (chunks, T, N)."""
    C, T, N = q.shape
    kernel[(C,)](q, *args, T, N, TP=next_pow2(T), BLOCK_N=BLOCK_N, num_warps=NUM_WARPS)


def fused_scores(q, k, g) -> torch.Tensor:
    """reference_scores by the forward kernel (on CUDA, or on CPU under TRITON_INTERPRET=1)."""
    qf, kf, gf = _flat(q), _flat(k), _flat(g)
    C, T, _ = qf.shape
    S = qf.new_empty(C, T, T)
    _launch(_triton().fwd, qf, kf, gf, S)
    return S.view(*q.shape[:-1], T).to(q.dtype)


def fused_scores_backward(q, k, g, dS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """reference_scores_backward by the backward kernel."""
    qf, kf, gf, dSf = _flat(q), _flat(k), _flat(g), _flat(dS)
    dq, dk, dg = torch.empty_like(qf), torch.empty_like(qf), torch.empty_like(qf)
    _launch(_triton().bwd, qf, kf, gf, dSf, dq, dk, dg)
    return tuple(d.view(t.shape).to(t.dtype) for d, t in zip((dq, dk, dg), (q, k, g)))


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
