"""Mamba-2's SSD (scan.ssd_chunked) as Triton kernels: no (b, H, n, T, T) scores, no per-chunk products.

Per sequence z, head h and chunk c of T tokens (a = log λ ≤ 0, s_i = a_1 + … + a_i inside the chunk, A = s_T,
L_ij = exp(s_i − s_j) for j ≤ i and 0 above, w_j = exp(A − s_j); every exp is at most 1), with S the state
entering the chunk (N × P) and x, y (T × P), B, C (T × N):

    y = ((C Bᵀ) ⊙ L) x + exp(s) ⊙ (C S),         S_next = exp(A) S + Bᵀ (w ⊙ x).

- ``fwd``, a program per (z, h), steps through the chunks with S in registers: writes y and each chunk's S
  (kept for the backward);
- ``bwd_states``, a program per (z, h), steps back: dS_end (the gradient of the state leaving chunk c) for every
  chunk, dS_in = exp(A) dS_end + Cᵀ (exp(s) ⊙ dy);
- ``bwd_dx``, a program per (z, c, h): dx and d log λ;
- ``bwd_dbc``, a program per (z, c, block of BLOCK_N states), the heads in turn: dB and dC (B and C are shared
  by the heads, so their gradients are summed over the heads in registers, in order: deterministic).

With G = dy xᵀ, M = (C Bᵀ) ⊙ L and R = G ⊙ M (per chunk and head):

      dx = Mᵀ dy + w ⊙ (B dS_end),   dC = (G ⊙ L) B + exp(s) ⊙ (dy Sᵀ),   dB = (G ⊙ L)ᵀ C + w ⊙ (x dS_endᵀ),
      ds_i = Σ_j R_ij − Σ_j R_ji + exp(s_i) dy_i·(C S)_i − w_i x_i·(B dS_end)_i,
      dA = exp(A) ⟨dS_end, S⟩ + Σ_j w_j x_j·(B dS_end)_j  (added to ds_T),  da_k = Σ_{i≥k} ds_i.

Computation in float32 (products in TF32 on the GPU, as torch's matmuls in training: ``DOT_PRECISION``); the
chunk is the kernels' own (``CHUNK``, a power of two ≥ 16): how work is split, not what is computed. These are
the launchers; the op that calls them is ``scan.ssd_op`` (autograd formula, vmap rules, fake impls), which
``scan.ssd_chunked`` takes on CUDA where Triton is installed if ``scan.FUSED_SSD_ON_CUDA`` is on (off: on an
H200 the forward and backward of a pack's layer took 31.6 ms at best against the compiled torch form's 22.6,
benchmarks/README.md, fourteenth session). Triton is imported lazily.
"""
from __future__ import annotations

import functools
import types

import torch
import torch.nn.functional as F

from eigsweep.mixers.triton_support import build_kernels, fused, next_pow2

CHUNK = 64                 # tokens per chunk in the kernels
DOT_PRECISION = "tf32"     # the products' inputs: "tf32" (as torch's matmuls in training) or "ieee" (exact float32).
                           # bf16 operands (a third mode until the fourteenth session) made Triton's generated code
                           # read shared memory out of bounds on the H200 (compute-sanitizer: bwd_dx, and the
                           # forward at some sizes): removed
NUM_WARPS = 4
NUM_STAGES = 2
BLOCK_N = 32               # states a program of bwd_dbc takes (its dB, dC tiles: T × BLOCK_N each)


@functools.cache
def _triton():
    """Our kernels, or None where Triton cannot be imported."""
    return build_kernels(_build_kernels)


def fused_available(t: torch.Tensor) -> bool:
    """True where scan.ssd_op runs these kernels for tensors like t (triton_support.fused)."""
    return fused(t, _triton)


def n_chunks(L: int) -> int:
    return -(-L // CHUNK)


def _padded(t: torch.Tensor, L: int) -> torch.Tensor:
    """float32, time (dim 1) padded with zeros to whole chunks, contiguous: zeros add nothing to the states, and
    a = 0 decays nothing."""
    t = t.detach().float()
    pad = n_chunks(L) * CHUNK - L
    if pad:
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
    return t.contiguous()


def _meta(X, Bm):
    Z, L, H, P = X.shape
    return dict(H=H, P=P, N=Bm.shape[-1], n=n_chunks(L), T=CHUNK, PP=max(16, next_pow2(P)),
                NP=max(16, next_pow2(Bm.shape[-1])), PREC=DOT_PRECISION, num_warps=NUM_WARPS,
                num_stages=NUM_STAGES)


def fused_forward(X, log_lam, Bm, Cm) -> tuple[torch.Tensor, torch.Tensor]:
    """(y (Z, L, H, P) in X's dtype, S (Z, n, H, N, P) float32: the state entering each chunk) for X (Z, L, H, P),
    log_lam (Z, L, H), Bm and Cm (Z, L, N), by the forward kernel (on CUDA, or on CPU under TRITON_INTERPRET=1)."""
    Z, L, H, P = X.shape
    m = _meta(X, Bm)
    x, a, b, c = (_padded(t, L) for t in (X, log_lam, Bm, Cm))
    y = torch.empty_like(x)
    S = x.new_empty(Z, m["n"], H, m["N"], P)
    if x.numel():
        _triton().fwd[(Z, H)](x, a, b, c, y, S, **m)
    return y[:, :L].to(X.dtype).contiguous(), S


def backward_launches(Z: int, H: int, m: dict):
    """The backward's kernels, bwd_states, bwd_dx and bwd_dbc, as calls of their tensors (grid and launch
    parameters bound) for Z sequences, H heads and the launch parameters m (_meta)."""
    k = _triton()
    m_bc = {key: v for key, v in m.items() if key != "NP"} | {"BN": BLOCK_N}
    return (functools.partial(k.bwd_states[(Z, H)], **m), functools.partial(k.bwd_dx[(Z, m["n"], H)], **m),
            functools.partial(k.bwd_dbc[(Z, m["n"], -(-m["N"] // BLOCK_N))], **m_bc))


def fused_backward(X, log_lam, Bm, Cm, S, dy) -> tuple[torch.Tensor, ...]:
    """(dX, dlog_lam, dBm, dCm), each in its input's dtype, by the three backward kernels."""
    Z, L, H, P = X.shape
    m = _meta(X, Bm)
    x, a, b, c, g = (_padded(t, L) for t in (X, log_lam, Bm, Cm, dy))
    S = S.contiguous()
    dS = torch.empty_like(S)
    dx, da, db, dc = (torch.empty_like(t) for t in (x, a, b, c))
    if x.numel():
        states, chunk_dx, chunk_dbc = backward_launches(Z, H, m)
        states(a, c, g, dS)
        chunk_dx(x, a, b, c, g, S, dS, dx, da)
        chunk_dbc(x, a, b, c, g, S, dS, db, dc)
    return tuple(d[:, :L].to(t.dtype).contiguous() for d, t in zip((dx, da, db, dc), (X, log_lam, Bm, Cm)))


def _build_kernels(triton, tl):
    # Layouts (contiguous, time padded to n·T): x, y (Z, n·T, H, P); a (Z, n·T, H); B, C (Z, n·T, N);
    # S, dS (Z, n, H, N, P). Index vectors: t (T tokens), p (PP ≥ P), k (NP ≥ N), masked beyond P and N.
    @triton.jit
    def fwd(x_ptr, a_ptr, b_ptr, c_ptr, y_ptr, S_ptr, H, P, N, n, T: tl.constexpr, PP: tl.constexpr,
            NP: tl.constexpr, PREC: tl.constexpr):
        z = tl.program_id(0).to(tl.int64)
        h = tl.program_id(1)
        t, p, k = tl.arange(0, T), tl.arange(0, PP), tl.arange(0, NP)
        mp = p[None, :] < P
        mS = (k[:, None] < N) & mp
        mk = k[None, :] < N
        S = tl.zeros((NP, PP), dtype=tl.float32)
        for c in range(0, n):
            row = z * n * T + c * T + t                                      # (T,) token rows
            a = tl.load(a_ptr + row * H + h)
            s = tl.cumsum(a, 0)
            A = tl.sum(a, 0)
            Bc = tl.load(b_ptr + row[:, None] * N + k[None, :], mask=mk, other=0.0)   # (T, NP)
            Cc = tl.load(c_ptr + row[:, None] * N + k[None, :], mask=mk, other=0.0)
            xp = (row[:, None] * H + h) * P + p[None, :]                     # (T, PP)
            x = tl.load(x_ptr + xp, mask=mp, other=0.0)
            tl.store(S_ptr + (((z * n + c) * H + h) * N + k[:, None]) * P + p[None, :], S, mask=mS)
            Ld = tl.exp(tl.where(t[None, :] <= t[:, None], s[:, None] - s[None, :], float("-inf")))   # L, 0 above
            M = tl.dot(Cc, tl.trans(Bc), input_precision=PREC) * Ld                                        # (T, T)
            y = (tl.dot(M, x, input_precision=PREC)
                 + tl.exp(s)[:, None] * tl.dot(Cc, S, input_precision=PREC))
            tl.store(y_ptr + xp, y, mask=mp)
            w = tl.exp(A - s)                                                  # (T,)
            S = tl.exp(A) * S + tl.dot(tl.trans(Bc), w[:, None] * x, input_precision=PREC)

    @triton.jit
    def bwd_states(a_ptr, c_ptr, g_ptr, dS_ptr, H, P, N, n, T: tl.constexpr, PP: tl.constexpr,
                   NP: tl.constexpr, PREC: tl.constexpr):
        z = tl.program_id(0).to(tl.int64)
        h = tl.program_id(1)
        t, p, k = tl.arange(0, T), tl.arange(0, PP), tl.arange(0, NP)
        mp = p[None, :] < P
        mS = (k[:, None] < N) & mp
        mk = k[None, :] < N
        dS = tl.zeros((NP, PP), dtype=tl.float32)
        for i in range(0, n):
            c = n - 1 - i
            row = z * n * T + c * T + t
            a = tl.load(a_ptr + row * H + h)
            s = tl.cumsum(a, 0)
            Cc = tl.load(c_ptr + row[:, None] * N + k[None, :], mask=mk, other=0.0)
            tl.store(dS_ptr + (((z * n + c) * H + h) * N + k[:, None]) * P + p[None, :], dS, mask=mS)
            g = tl.load(g_ptr + (row[:, None] * H + h) * P + p[None, :], mask=mp, other=0.0)
            dS = tl.exp(tl.sum(a, 0)) * dS + tl.dot(tl.trans(Cc), tl.exp(s)[:, None] * g,
                                                    input_precision=PREC)

    @triton.jit
    def bwd_dx(x_ptr, a_ptr, b_ptr, c_ptr, g_ptr, S_ptr, dS_ptr, dx_ptr, da_ptr, H, P, N, n, T: tl.constexpr,
               PP: tl.constexpr, NP: tl.constexpr, PREC: tl.constexpr):
        z = tl.program_id(0).to(tl.int64)
        c = tl.program_id(1)
        h = tl.program_id(2)
        t, p, k = tl.arange(0, T), tl.arange(0, PP), tl.arange(0, NP)
        mp = p[None, :] < P
        mS = (k[:, None] < N) & mp
        mk = k[None, :] < N
        row = z * n * T + c * T + t
        Bc = tl.load(b_ptr + row[:, None] * N + k[None, :], mask=mk, other=0.0)      # (T, NP)
        Cc = tl.load(c_ptr + row[:, None] * N + k[None, :], mask=mk, other=0.0)
        a = tl.load(a_ptr + row * H + h)
        s = tl.cumsum(a, 0)
        A = tl.sum(a, 0)
        xp = (row[:, None] * H + h) * P + p[None, :]
        x = tl.load(x_ptr + xp, mask=mp, other=0.0)                                   # (T, PP)
        g = tl.load(g_ptr + xp, mask=mp, other=0.0)
        sp = (((z * n + c) * H + h) * N + k[:, None]) * P + p[None, :]
        S = tl.load(S_ptr + sp, mask=mS, other=0.0)                                   # (NP, PP)
        dS = tl.load(dS_ptr + sp, mask=mS, other=0.0)
        Ld = tl.exp(tl.where(t[None, :] <= t[:, None], s[:, None] - s[None, :], float("-inf")))   # L, 0 above
        M = tl.dot(Cc, tl.trans(Bc), input_precision=PREC) * Ld          # (T, T)
        es, w = tl.exp(s), tl.exp(A - s)
        BdS = tl.dot(Bc, dS, input_precision=PREC)                      # (T, PP)
        CS = tl.dot(Cc, S, input_precision=PREC)
        dx = tl.dot(tl.trans(M), g, input_precision=PREC) + w[:, None] * BdS
        R = tl.dot(g, tl.trans(x), input_precision=PREC) * M           # G ⊙ M
        xBdS = tl.sum(x * BdS, 1)
        ds = tl.sum(R, 1) - tl.sum(R, 0) + es * tl.sum(g * CS, 1) - w * xBdS
        dA = tl.exp(A) * tl.sum(tl.sum(dS * S, 1), 0) + tl.sum(w * xBdS, 0)
        ds += tl.where(t == T - 1, dA, 0.0)
        tl.store(dx_ptr + xp, dx, mask=mp)
        tl.store(da_ptr + row * H + h, tl.sum(ds, 0) - tl.cumsum(ds, 0) + ds)         # Σ_{i ≥ k} ds_i

    @triton.jit
    def bwd_dbc(x_ptr, a_ptr, b_ptr, c_ptr, g_ptr, S_ptr, dS_ptr, db_ptr, dc_ptr, H, P, N, n, T: tl.constexpr,
                PP: tl.constexpr, BN: tl.constexpr, PREC: tl.constexpr):
        z = tl.program_id(0).to(tl.int64)
        c = tl.program_id(1)
        k = tl.program_id(2) * BN + tl.arange(0, BN)                                  # this program's states
        t, p = tl.arange(0, T), tl.arange(0, PP)
        mp = p[None, :] < P
        mS = (k[:, None] < N) & mp
        mk = k[None, :] < N
        row = z * n * T + c * T + t
        Bc = tl.load(b_ptr + row[:, None] * N + k[None, :], mask=mk, other=0.0)      # (T, BN)
        Cc = tl.load(c_ptr + row[:, None] * N + k[None, :], mask=mk, other=0.0)
        dB = tl.zeros((T, BN), dtype=tl.float32)
        dC = tl.zeros((T, BN), dtype=tl.float32)
        for h in range(0, H):                          # B and C are shared by the heads: their sums, in order
            a = tl.load(a_ptr + row * H + h)
            s = tl.cumsum(a, 0)
            A = tl.sum(a, 0)
            xp = (row[:, None] * H + h) * P + p[None, :]
            x = tl.load(x_ptr + xp, mask=mp, other=0.0)
            g = tl.load(g_ptr + xp, mask=mp, other=0.0)
            sp = (((z * n + c) * H + h) * N + k[:, None]) * P + p[None, :]
            S = tl.load(S_ptr + sp, mask=mS, other=0.0)                               # (BN, PP)
            dS = tl.load(dS_ptr + sp, mask=mS, other=0.0)
            Ld = tl.exp(tl.where(t[None, :] <= t[:, None], s[:, None] - s[None, :], float("-inf")))
            GL = tl.dot(g, tl.trans(x), input_precision=PREC) * Ld       # G ⊙ L
            dC += (tl.dot(GL, Bc, input_precision=PREC)
                   + tl.exp(s)[:, None] * tl.dot(g, tl.trans(S), input_precision=PREC))
            dB += (tl.dot(tl.trans(GL), Cc, input_precision=PREC)
                   + tl.exp(A - s)[:, None] * tl.dot(x, tl.trans(dS), input_precision=PREC))
        tl.store(db_ptr + row[:, None] * N + k[None, :], dB, mask=mk)
        tl.store(dc_ptr + row[:, None] * N + k[None, :], dC, mask=mk)

    return types.SimpleNamespace(fwd=fwd, bwd_states=bwd_states, bwd_dx=bwd_dx, bwd_dbc=bwd_dbc)
