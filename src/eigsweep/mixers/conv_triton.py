"""The short causal depthwise convolution (and its SiLU) as one custom op, fused in Triton on CUDA.

    y_t = act(b + Σ_k w_k ⊙ x_{t−K+1+k}),   x, y (B, L, C), w (C, K), b (C), act = SiLU or the identity,

with x_t = 0 for t < 0. Backward, with s = dL/dy ⊙ act'(pre-activation):

    dx_t = Σ_k w_k ⊙ s_{t+K−1−k},   dw_k = Σ_{b,t} s_t ⊙ x_{t−K+1+k},   db = Σ_{b,t} s_t.

Under torch.compile the K shifted products (ShortConv.shifted) became Inductor kernels with the SiLU, and
their weight-gradient reduction over 1 M rows a channel was the largest of them: the conv and SiLU kernels
took ≈ 26 of the ≈ 100 ms of a compiled Mamba-2 pack of 32's step on an H200 (benchmarks/README.md, eleventh
session). Here the forward is one pass (a program per block of time steps and channels of one sequence reads
its K shifted tiles of x, mostly from cache), the backward two: s with each program's partial sums for dw and
db (added in torch in a fixed order: deterministic), then dx from s. Launch shape (benchmarks/conv_kernels.py,
H200, a compiled Mamba-2 pack of 32's conv): 32 time steps × 64 channels, 2 warps, backward 5.4 ms a call
against 6.2 at 32 × 128 with 4 warps (sixteenth session). A one-pass backward (s recomputed at the K shifts, never
stored; a program walking a sequence's time steps) was slower there: 10.6 ms (commit a030d60).

The op ``causal_conv_stacked`` takes a pack's members stacked in front: x (M, B, L, C), w (M, C, K), b (M, C);
``causal_conv`` is one model's call (M = 1), and the vmap rules fold a vmapped call into the stacked form, so a
pack is one launch. It has an autograd formula and fake impls (torch.compile keeps it as one call). Its body
off CUDA, or without Triton, is the torch form (ShortConv's shifted products, per member); `blocks.ShortConv`
calls the op only where its kernels would run (CUDA, Triton installed), eagerly and compiled, and only with
`blocks.FUSED_CONV_ON_CUDA` on (on since its GPU tests passed and it was timed: benchmarks/README.md, thirteenth
session).
"""
from __future__ import annotations

import functools
import types

import torch
import torch.nn.functional as F

from eigsweep.mixers.triton_support import build_kernels, fused, vmapped_folded

BLOCK_T, BLOCK_C, NUM_WARPS = 32, 64, 2      # a program: 32 time steps × 64 channels of one sequence


@functools.cache
def _triton():
    return build_kernels(_build_kernels)


def fused_available(x: torch.Tensor) -> bool:
    """True where the op runs its kernels for inputs like x."""
    return fused(x, _triton)


def shifted_conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """b + Σ_k w_k ⊙ x_{t−K+1+k} for one model: x (B, L, C), w (C, K), b (C), as K shifted products (the form
    torch.compile and the CPU use; ShortConv.shifted)."""
    L, K = x.shape[1], w.shape[-1]
    xp = F.pad(x, (0, 0, K - 1, 0))
    return b + sum(xp[:, k : k + L] * w[:, k] for k in range(K))


def _silu_grad(pre: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(pre)
    return s * (1 + pre * (1 - s))


def _pre_activation(x, w, b) -> torch.Tensor:
    """shifted_conv of each member (members stacked: x (M, B, L, C), w (M, C, K), b (M, C))."""
    return torch.stack([shifted_conv(x[m], w[m], b[m]) for m in range(x.shape[0])])


def reference_conv(x, w, b, silu: bool) -> torch.Tensor:
    """The op's definition in torch, members stacked."""
    pre = _pre_activation(x, w, b)
    return F.silu(pre) if silu else pre


def reference_conv_backward(g, x, w, b, silu: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dw, db) of Σ g·y by torch (the module docstring's formulas), members stacked."""
    L, K = x.shape[2], w.shape[-1]
    s = g * _silu_grad(_pre_activation(x, w, b)) if silu else g
    xp, sp = F.pad(x, (0, 0, K - 1, 0)), F.pad(s, (0, 0, 0, K - 1))
    dx = sum(sp[:, :, K - 1 - k : K - 1 - k + L] * w[:, None, None, :, k] for k in range(K))
    dw = torch.stack([(s * xp[:, :, k : k + L]).sum((1, 2)) for k in range(K)], dim=-1)
    return dx, dw, s.sum((1, 2))


@torch.library.custom_op("eigsweep::causal_conv", mutates_args=())
def causal_conv_stacked(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, silu: bool) -> torch.Tensor:
    """y (M, B, L, C) in x's dtype for x (M, B, L, C), w (M, C, K), b (M, C) (the module docstring)."""
    if fused_available(x):
        return fused_conv(x, w, b, silu)
    return reference_conv(x, w, b, silu).to(x.dtype).contiguous()


@causal_conv_stacked.register_fake
def _(x, w, b, silu):
    return x.new_empty(x.shape)


@torch.library.custom_op("eigsweep::causal_conv_backward", mutates_args=())
def causal_conv_backward(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                         silu: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dw, db) of Σ g·y, each in its input's dtype."""
    if fused_available(x):
        return fused_conv_backward(g, x, w, b, silu)
    return tuple(d.to(t.dtype).contiguous() for d, t in zip(reference_conv_backward(g, x, w, b, silu), (x, w, b)))


@causal_conv_backward.register_fake
def _(g, x, w, b, silu):
    return x.new_empty(x.shape), w.new_empty(w.shape), b.new_empty(b.shape)


def _setup_context(ctx, inputs, output):
    x, w, b, silu = inputs
    ctx.save_for_backward(x, w, b)
    ctx.silu = silu


def _backward(ctx, g):
    return *causal_conv_backward(g, *ctx.saved_tensors, ctx.silu), None


causal_conv_stacked.register_autograd(_backward, setup_context=_setup_context)


@causal_conv_stacked.register_vmap
def _(info, in_dims, x, w, b, silu):
    (x, w, b), lead = vmapped_folded(info, in_dims[:3], x, w, b)      # the vmapped dim folded into the members
    return causal_conv_stacked(x, w, b, silu).unflatten(0, lead), 0


@causal_conv_backward.register_vmap
def _(info, in_dims, g, x, w, b, silu):
    (g, x, w, b), lead = vmapped_folded(info, in_dims[:4], g, x, w, b)
    return tuple(d.unflatten(0, lead) for d in causal_conv_backward(g, x, w, b, silu)), (0, 0, 0)


def causal_conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, silu: bool) -> torch.Tensor:
    """act(conv(x)) (B, L, C) for one model: x (B, L, C), w (C, K), b (C) (vmappable: a pack's call is one)."""
    return causal_conv_stacked(x[None], w[None], b[None], silu)[0]


def _grid(x):
    M, B, L, C = x.shape
    return (M * B, -(-L // BLOCK_T), -(-C // BLOCK_C))


def _rows(x: torch.Tensor) -> torch.Tensor:
    """x (M, B, L, C) as the kernels read it: channels contiguous and the (member, sample) rows one stride apart,
    copied only where it is not (Mamba-2's x, B, C are a slice of its input projection: read in place)."""
    if x.stride(-1) == 1 and (x.shape[0] == 1 or x.stride(0) == x.shape[1] * x.stride(1)):
        return x
    return x.contiguous()


def fused_conv(x, w, b, silu: bool) -> torch.Tensor:
    """reference_conv by the forward kernel (on CUDA, or on CPU under TRITON_INTERPRET=1)."""
    x, w, b = _rows(x), w.float().contiguous(), b.float().contiguous()
    M, B, L, C = x.shape
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.numel():
        _triton().fwd[_grid(x)](x, w, b, y, y, y, x.stride(1), x.stride(2), B, L, C, K=w.shape[-1], SILU=silu,
                                BACKWARD=False, BT=BLOCK_T, BC=BLOCK_C, num_warps=NUM_WARPS)
    return y


def fused_conv_backward(g, x, w, b, silu: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """reference_conv_backward by the two backward kernels: s and the programs' partial sums for dw, db; dx."""
    dtypes = x.dtype, w.dtype, b.dtype
    g, x, w, b = g.contiguous(), _rows(x), w.float().contiguous(), b.float().contiguous()
    M, B, L, C = x.shape
    K = w.shape[-1]
    grid = _grid(x)
    s = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    partial = torch.zeros(M, B * grid[1], K + 1, C, dtype=torch.float32, device=x.device)   # dw_0..K-1, db
    if x.numel():
        k = _triton()
        k.fwd[grid](x, w, b, g, s, partial, x.stride(1), x.stride(2), B, L, C, K=K, SILU=silu, BACKWARD=True,
                    BT=BLOCK_T, BC=BLOCK_C, num_warps=NUM_WARPS)
        k.bwd_x[grid](s, w, dx, B, L, C, K=K, BT=BLOCK_T, BC=BLOCK_C, num_warps=NUM_WARPS)
    sums = partial.sum(1)                                                  # (M, K + 1, C)
    dw, db = sums[:, :K].transpose(1, 2), sums[:, K]
    return dx.to(dtypes[0]), dw.to(dtypes[1]).contiguous(), db.to(dtypes[2]).contiguous()


def _build_kernels(triton, tl):
    # a program: sequence r = member·B + sample (program_id 0), time steps t of block 1, channels c of block 2

    @triton.jit
    def fwd(x_ptr, w_ptr, b_ptr, g_ptr, out_ptr, partial_ptr, SX_R, SX_T, B, L, C, K: tl.constexpr,
            SILU: tl.constexpr, BACKWARD: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
        # forward (BACKWARD false): out = y. Backward: out = s = g ⊙ act'(pre), and this program's row of
        # partial sums (dw_k for k < K, then db) for its channels. x: rows SX_R apart, time steps SX_T apart;
        # g and out contiguous
        r = tl.program_id(0).to(tl.int64)
        m = r // B
        t = tl.program_id(1) * BT + tl.arange(0, BT)
        c = tl.program_id(2) * BC + tl.arange(0, BC)
        cm = c < C
        inside = (t < L)[:, None] & cm[None, :]
        at = (r * L + t[:, None]) * C + c[None, :]
        pre = tl.zeros((BT, BC), tl.float32) + tl.load(b_ptr + m * C + c, mask=cm, other=0.0)[None, :]
        for k in tl.static_range(K):
            ts = t - (K - 1) + k
            ok = (ts >= 0) & (ts < L)
            xk = tl.load(x_ptr + r * SX_R + ts[:, None] * SX_T + c[None, :], mask=ok[:, None] & cm[None, :], other=0.0)
            pre += xk.to(tl.float32) * tl.load(w_ptr + (m * C + c) * K + k, mask=cm, other=0.0)[None, :]
        sig = tl.sigmoid(pre)
        if BACKWARD:
            s = tl.load(g_ptr + at, mask=inside, other=0.0).to(tl.float32)
            if SILU:
                s = s * sig * (1 + pre * (1 - sig))
            tl.store(out_ptr + at, s, mask=inside)
            row = partial_ptr + ((r * tl.num_programs(1) + tl.program_id(1)) * (K + 1)) * C + c
            for k in tl.static_range(K):
                ts = t - (K - 1) + k
                ok = (ts >= 0) & (ts < L)
                xk = tl.load(x_ptr + r * SX_R + ts[:, None] * SX_T + c[None, :], mask=ok[:, None] & cm[None, :],
                             other=0.0)
                tl.store(row + k * C, tl.sum(s * xk.to(tl.float32), 0), mask=cm)
            tl.store(row + K * C, tl.sum(s, 0), mask=cm)
        else:
            y = pre * sig if SILU else pre
            tl.store(out_ptr + at, y.to(out_ptr.dtype.element_ty), mask=inside)

    @triton.jit
    def bwd_x(s_ptr, w_ptr, dx_ptr, B, L, C, K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
        r = tl.program_id(0).to(tl.int64)
        m = r // B
        t = tl.program_id(1) * BT + tl.arange(0, BT)
        c = tl.program_id(2) * BC + tl.arange(0, BC)
        cm = c < C
        acc = tl.zeros((BT, BC), tl.float32)
        for k in tl.static_range(K):
            ts = t + (K - 1 - k)
            sk = tl.load(s_ptr + (r * L + ts[:, None]) * C + c[None, :], mask=(ts < L)[:, None] & cm[None, :],
                         other=0.0)
            acc += sk * tl.load(w_ptr + (m * C + c) * K + k, mask=cm, other=0.0)[None, :]
        at = (r * L + t[:, None]) * C + c[None, :]
        tl.store(dx_ptr + at, acc.to(dx_ptr.dtype.element_ty), mask=(t < L)[:, None] & cm[None, :])

    return types.SimpleNamespace(fwd=fwd, bwd_x=bwd_x)
