"""Mamba-1's selective scan fused in Triton: the (B, L, D, N) state history never reaches GPU memory.

Per sample, channel d and state n, with a_t = exp(Δ_t A):

    h_t = a_t ⊙ h_{t-1} + Δ_t B_t x_t,      y_t = Σ_n C_{t,n} h_{t,n} (+ D x_t).

Forward: one program per (sample, block of BLOCK_D channels) steps through time with h (BLOCK_D × N) in
registers and writes y; when gradients are needed it also writes the state entering every CHUNK-th token
(a checkpoint: 1/CHUNK of the history). Backward: programs of the same kind (with their own BLOCK_D) walk the
chunks in reverse. Each recomputes its chunk's states from the checkpoint into a per-program buffer of CHUNK+1
states (small, so it stays in cache), then steps backwards in time with the adjoint
G_t = C_t g_t + a_{t+1} G_{t+1} (g = dL/dy):

    dx_t = Δ_t Σ_n G B_t,   dΔ_t = Σ_n G (B_t x_t + A a_t h_{t-1}),   dA = Σ_t G Δ_t a_t h_{t-1},
    dB_t = Σ_d G Δ_t x_t,   dC_t = Σ_d g_t h_t.

Sums over channels (dB, dC) are written per channel block and over samples (dA) per sample, then added by
torch (deterministic; no atomics): 2·B·L·N·D/BLOCK_D floats, alive during the backward only. The D x skip
term stays in torch.

Packs (torch.func.vmap over a pack's members, `eigsweep.pack`): A may be (G, D, N), one A per group of B/G
consecutive samples. The Function's vmap rule folds the members into the batch (member-major) and passes their
stacked A as groups, so a pack of M members is one launch of M·B programs per kernel, not M launches.

Computation is in float32 whatever the input dtype. `selective_scan` falls back to the torch scan
(scan.linear_scan) on CPU, in float64 and where Triton cannot be imported (it is imported lazily: CI has no GPU
and may have no Triton).
"""
from __future__ import annotations

import functools
import types

import torch

from eigsweep.mixers.triton_support import build_kernels, fused, next_pow2, vmapped_first

CHUNK = 16          # tokens between checkpoints (memory: B·L·D·N / CHUNK floats saved for backward)
# per kernel: channels per program (BLOCK_D; the state tile is BLOCK_D × next_pow2(N) floats in registers) and
# state-tile floats per thread (sets the warps per program, 1 to 8). Measured on an H200 at batch 64, L 512,
# D 256, N 128 (benchmarks/mamba_scan.py --sweep): one warp per program is fastest (sums over channels and
# states stay inside the warp); 16 channels for the forward, 8 for the backward (16 spill registers there).
SHAPE = {"fwd": (16, 64), "bwd": (8, 32)}


@functools.cache
def _triton():
    """Our kernels, or None where Triton cannot be imported."""
    return build_kernels(_build_kernels)


def fused_available(t: torch.Tensor) -> bool:
    """True where the fused scan runs for tensors like t: CUDA, a float type below float64, Triton importable."""
    return fused(t, _triton)


def selective_scan(x, dt, A, B, C, D=None):
    """y (batch, L, D) of the selective scan for x, dt (batch, L, D), A (D, N), B, C (batch, L, N), D (D,).

    Fused (Triton, float32, output float32) where `fused_available(x)`, else the torch reference."""
    if not fused_available(x):
        return selective_scan_ref(x, dt, A, B, C, D)
    y = fused_scan(x, dt, A, B, C)
    return y if D is None else y + x * D


def fused_scan(x, dt, A, B, C):
    """The Triton scan's y (float32), with no dispatch check: x, dt (batch, L, D); A (D, N), or (G, D, N) for G
    groups of batch/G consecutive samples, each with its own A; B, C (batch, L, N). Vmappable."""
    # checkpoints for the backward whenever grad mode is on (under vmap, requires_grad is not visible here)
    return _FusedScan.apply(x, dt, A, B, C, torch.is_grad_enabled())[0]


def selective_scan_ref(x, dt, A, B, C, D=None):
    """The torch scan (materialises the (batch, L, D, N) history): scan.linear_scan over λ = exp(Δ A)."""
    from eigsweep.mixers.scan import linear_scan as torch_scan
    log_lam = dt[..., None] * A
    inp = (dt * x)[..., None] * B[:, :, None, :]
    y = torch.einsum("bldn,bln->bld", torch_scan(torch.exp(log_lam), inp), C)
    return y if D is None else y + x * D


def _launch_shape(kernel: str, N: int):
    """(BLOCK_D, BLOCK_N, num_warps) of `kernel` for state size N."""
    bd, per_thread = SHAPE[kernel]
    bn = next_pow2(N)
    return bd, bn, max(1, min(8, bd * bn // (32 * per_thread)))


class _FusedScan(torch.autograd.Function):
    """Outputs (y, checkpoints); `save` says whether to write the checkpoints the backward needs."""

    @staticmethod
    def forward(x, dt, A, B, C, save):
        k = _triton()
        Bt, L, Dm = x.shape
        N = A.shape[-1]
        xs, dts, As, Bs, Cs = (t.detach().float().contiguous() for t in (x, dt, A, B, C))
        bd, bn, warps = _launch_shape("fwd", N)
        n_chunks = -(-L // CHUNK)
        y = torch.empty_like(xs)
        ck = xs.new_empty(Bt, n_chunks, Dm, N) if save else xs.new_empty(Bt, 0)
        k.fwd[(Bt, -(-Dm // bd))](xs, dts, As, Bs, Cs, y, ck, L, Dm, N, _per_group(Bt, A), SAVE=save,
                                  CHUNK=CHUNK, BLOCK_D=bd, BLOCK_N=bn, num_warps=warps)
        return y, ck

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, dt, A, B, C, _ = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(x, dt, A, B, C, output[1])

    @staticmethod
    def backward(ctx, dy, _dck):
        k = _triton()
        x, dt, A, B, C, ck = ctx.saved_tensors
        if ck.numel() == 0:
            raise RuntimeError("fused selective scan: backward without saved checkpoints (forward had save=False)")
        xs, dts, As, Bs, Cs = (t.detach().float().contiguous() for t in (x, dt, A, B, C))
        Bt, L, Dm = xs.shape
        N = As.shape[-1]
        bd, bn, warps = _launch_shape("bwd", N)
        grid = (Bt, -(-Dm // bd))
        dy = dy.float().contiguous()
        buf = xs.new_empty(Bt * grid[1] * (CHUNK + 1) * bd * bn)
        dx, ddt = torch.empty_like(xs), torch.empty_like(xs)
        dA = xs.new_empty(Bt, Dm, N)
        dB, dC = xs.new_empty(grid[1], Bt, L, N), xs.new_empty(grid[1], Bt, L, N)
        k.bwd[grid](xs, dts, As, Bs, Cs, dy, ck, buf, dx, ddt, dA, dB, dC, L, Dm, N, _per_group(Bt, A),
                    CHUNK=CHUNK, BLOCK_D=bd, BLOCK_N=bn, num_warps=warps)
        dA = dA.view(-1, _per_group(Bt, A), Dm, N).sum(1).view(A.shape)   # per group of samples sharing an A
        grads = (dx, ddt, dA, dB.sum(0), dC.sum(0))
        return (*(g.to(t.dtype) for g, t in zip(grads, (x, dt, A, B, C))), None)

    @staticmethod
    def vmap(info, in_dims, x, dt, A, B, C, save):
        """A pack's members folded into the batch, member-major; their A's become the groups."""
        x, dt, A, B, C = vmapped_first(info, in_dims, x, dt, A, B, C)
        x, dt, B, C = (t.flatten(0, 1) for t in (x, dt, B, C))
        if A.dim() == 4:                 # members of groups (nested vmap): every group its own A
            A = A.flatten(0, 1)
        y, ck = _FusedScan.apply(x, dt, A, B, C, save)
        return (y.unflatten(0, (info.batch_size, -1)), ck.unflatten(0, (info.batch_size, -1))), (0, 0)


def _per_group(Bt: int, A: torch.Tensor) -> int:
    """Samples per A: all of them for A (D, N), Bt / G for A (G, D, N)."""
    if A.dim() == 2:
        return Bt
    if Bt % A.shape[0]:
        raise ValueError(f"fused selective scan: {Bt} samples do not split into {A.shape[0]} groups")
    return Bt // A.shape[0]


def _build_kernels(triton, tl):
    # Both kernels load step t+1's (or t-1's) inputs while computing step t, to hide memory latency.
    @triton.jit
    def fwd(x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, y_ptr, ck_ptr, L, D, N, PER_A,
            SAVE: tl.constexpr, CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
        b = tl.program_id(0).to(tl.int64)
        offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        offs_n = tl.arange(0, BLOCK_N)
        md, mn = offs_d < D, offs_n < N
        m2 = md[:, None] & mn[None, :]
        tile = offs_d[:, None] * N + offs_n[None, :]
        A_ptr = A_ptr + (b // PER_A) * D * N                               # this sample's group's A
        A2 = tl.load(A_ptr + tile, mask=m2, other=0.0) * 1.4426950408889634  # exp(ΔA) = exp2(ΔA log2 e)
        xd = b * L * D + offs_d                                            # (b, 0, d) in x, Δ, y
        bn = b * L * N + offs_n                                            # (b, 0, n) in B, C
        n_chunks = (L + CHUNK - 1) // CHUNK
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        dt_n = tl.load(dt_ptr + xd, mask=md, other=0.0)
        x_n = tl.load(x_ptr + xd, mask=md, other=0.0)
        B_n = tl.load(B_ptr + bn, mask=mn, other=0.0)
        C_n = tl.load(C_ptr + bn, mask=mn, other=0.0)
        for c in range(0, n_chunks):
            if SAVE:
                tl.store(ck_ptr + (b * n_chunks + c) * D * N + tile, h, mask=m2)
            for t in range(c * CHUNK, tl.minimum(L, (c + 1) * CHUNK)):
                dt, x, Bv, Cv = dt_n, x_n, B_n, C_n
                nd = md & (tl.full((BLOCK_D,), t + 1, tl.int32) < L)        # block masks (the interpreter
                nn = mn & (tl.full((BLOCK_N,), t + 1, tl.int32) < L)        # takes no scalar ones)
                dt_n = tl.load(dt_ptr + xd + (t + 1) * D, mask=nd, other=0.0)
                x_n = tl.load(x_ptr + xd + (t + 1) * D, mask=nd, other=0.0)
                B_n = tl.load(B_ptr + bn + (t + 1) * N, mask=nn, other=0.0)
                C_n = tl.load(C_ptr + bn + (t + 1) * N, mask=nn, other=0.0)
                h = tl.exp2(dt[:, None] * A2) * h + (dt * x)[:, None] * Bv[None, :]
                tl.store(y_ptr + xd + t * D, tl.sum(h * Cv[None, :], axis=1), mask=md)

    @triton.jit
    def bwd(x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, dy_ptr, ck_ptr, buf_ptr,
            dx_ptr, ddt_ptr, dA_ptr, dB_ptr, dC_ptr, L, D, N, PER_A,
            CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
        b = tl.program_id(0).to(tl.int64)
        pd = tl.program_id(1)
        offs_d = pd * BLOCK_D + tl.arange(0, BLOCK_D)
        offs_n = tl.arange(0, BLOCK_N)
        md, mn = offs_d < D, offs_n < N
        m2 = md[:, None] & mn[None, :]
        tile = offs_d[:, None] * N + offs_n[None, :]
        A = tl.load(A_ptr + (b // PER_A) * D * N + tile, mask=m2, other=0.0)
        xd = b * L * D + offs_d
        bn = b * L * N + offs_n
        part = (pd * tl.num_programs(0) + b) * L * N + offs_n             # (d block, b, 0, n) in dB, dC
        # this program's buffer of CHUNK + 1 states: slot s holds h_{t0 + s - 1}
        SLOT: tl.constexpr = BLOCK_D * BLOCK_N
        buf = buf_ptr + (b * tl.num_programs(1) + pd) * (CHUNK + 1) * SLOT \
            + tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + offs_n[None, :]
        n_chunks = (L + CHUNK - 1) // CHUNK
        Gc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)               # a_{t+1} G_{t+1}
        dA = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        for cr in range(0, n_chunks):
            c = n_chunks - 1 - cr
            t0 = c * CHUNK
            t1 = tl.minimum(L, t0 + CHUNK)
            h = tl.load(ck_ptr + (b * n_chunks + c) * D * N + tile, mask=m2, other=0.0)
            tl.store(buf, h)
            dt_n = tl.load(dt_ptr + xd + t0 * D, mask=md, other=0.0)
            x_n = tl.load(x_ptr + xd + t0 * D, mask=md, other=0.0)
            B_n = tl.load(B_ptr + bn + t0 * N, mask=mn, other=0.0)
            for t in range(t0, t1):                                        # recompute the chunk's states
                dt, x, Bv = dt_n, x_n, B_n
                nd = md & (tl.full((BLOCK_D,), t + 1, tl.int32) < t1)
                dt_n = tl.load(dt_ptr + xd + (t + 1) * D, mask=nd, other=0.0)
                x_n = tl.load(x_ptr + xd + (t + 1) * D, mask=nd, other=0.0)
                B_n = tl.load(B_ptr + bn + (t + 1) * N, mask=mn & (tl.full((BLOCK_N,), t + 1, tl.int32) < t1),
                              other=0.0)
                h = tl.exp(dt[:, None] * A) * h + (dt * x)[:, None] * Bv[None, :]
                tl.store(buf + (t - t0 + 1) * SLOT, h)
            tl.debug_barrier()                                             # buffer written before it is read
            t = t1 - 1
            dt_n = tl.load(dt_ptr + xd + t * D, mask=md, other=0.0)
            x_n = tl.load(x_ptr + xd + t * D, mask=md, other=0.0)
            g_n = tl.load(dy_ptr + xd + t * D, mask=md, other=0.0)
            B_n = tl.load(B_ptr + bn + t * N, mask=mn, other=0.0)
            C_n = tl.load(C_ptr + bn + t * N, mask=mn, other=0.0)
            hp_n = tl.load(buf + (t - t0) * SLOT)
            for j in range(0, t1 - t0):                                    # then backwards in time
                t = t1 - 1 - j
                dt, x, g, Bv, Cv, hp = dt_n, x_n, g_n, B_n, C_n, hp_n      # hp = h_{t-1}
                prev_d = md & (tl.full((BLOCK_D,), t, tl.int32) > t0)
                prev_n = mn & (tl.full((BLOCK_N,), t, tl.int32) > t0)
                dt_n = tl.load(dt_ptr + xd + (t - 1) * D, mask=prev_d, other=0.0)
                x_n = tl.load(x_ptr + xd + (t - 1) * D, mask=prev_d, other=0.0)
                g_n = tl.load(dy_ptr + xd + (t - 1) * D, mask=prev_d, other=0.0)
                B_n = tl.load(B_ptr + bn + (t - 1) * N, mask=prev_n, other=0.0)
                C_n = tl.load(C_ptr + bn + (t - 1) * N, mask=prev_n, other=0.0)
                hp_n = tl.load(buf + (t - t0 - 1) * SLOT, mask=prev_d[:, None] & prev_n[None, :], other=0.0)
                a = tl.exp(dt[:, None] * A)
                dtx = dt * x
                h = a * hp + dtx[:, None] * Bv[None, :]
                G = g[:, None] * Cv[None, :] + Gc                          # dL/dh_t
                gB = tl.sum(G * Bv[None, :], axis=1)
                Gah = G * a * hp
                tl.store(dx_ptr + xd + t * D, dt * gB, mask=md)
                tl.store(ddt_ptr + xd + t * D, x * gB + tl.sum(Gah * A, axis=1), mask=md)
                tl.store(dB_ptr + part + t * N, tl.sum(G * dtx[:, None], axis=0), mask=mn)
                tl.store(dC_ptr + part + t * N, tl.sum(g[:, None] * h, axis=0), mask=mn)
                dA += Gah * dt[:, None]
                Gc = a * G
            tl.debug_barrier()                                             # read before the next chunk writes
        tl.store(dA_ptr + b * D * N + tile, dA, mask=m2)

    return types.SimpleNamespace(fwd=fwd, bwd=bwd)
