"""The head's cross-entropy per row as one custom op, fused with Triton on CUDA.

``ce_rows(z (N, V), bias (V,), y (N,))`` gives, for the logits z + bias (z: the head's matmul, bias: its bias),
the negative log-likelihood of every row (0 where y is −100) and its log-sum-exp. On CUDA its forward is one
pass over z (an online log-sum-exp in float32, the bias added on the fly) and its backward one more (softmax −
one-hot in z's dtype, from the saved log-sum-exp, with the bias's gradient summed in the same pass). Written in
torch, the loss of a pack of 32 at the paper's MQAR size (1 G bf16 logits) took three passes in Inductor's
kernels and recomputed the log-sum-exp in the backward (21% of the step, H200 profile in
benchmarks/logs/2026-11-30/06-profile_softmax.log); an op on the biased logits made Inductor write them out
(and sum their gradient for the bias) in passes of their own, slower than its own loss (benchmarks/README.md,
eleventh session).

The op has an autograd formula and a vmap rule (rows are independent: a vmapped call is one call on the
stacked rows, each row taking its member's bias, so a pack's members share one launch), and torch.compile
keeps it as one opaque call. Off CUDA, or without Triton, its body is the torch formula; train.head_loss uses
the op only where the kernels run.
"""
from __future__ import annotations

import functools

import torch

from eigsweep.mixers import triton_support
from eigsweep.mixers.triton_support import build_kernels, fused, next_pow2, vmapped_first
from eigsweep.tasks.base import IGNORE

# launch shapes, the fastest of benchmarks/cross_entropy_kernels.py on an H200 (32 × 4096 × 8192 bf16 logits):
# forward: rows a program, columns a step of the online log-sum-exp, warps (0.67 ms: 75% of a copy's rate);
# backward: rows a program, rows a tile, columns a program, warps (1.21 ms: 83%)
FWD_ROWS, FWD_BLOCK, FWD_WARPS = 4, 2048, 4
BWD_ROWS, BWD_TILE, BWD_BLOCK, BWD_WARPS = 128, 4, 2048, 8


@functools.cache
def _triton():
    return build_kernels(_build_kernels)


def fused_available(logits: torch.Tensor) -> bool:
    """True where ce_rows runs its Triton kernels for logits like these."""
    return fused(logits, _triton)


# whether ce_rows would run its kernels for logits like these, decided without importing Triton (so that
# torch.compile can trace train.head_loss's choice); a name of this module, which the tests replace
runs_fused = triton_support.runs_fused


def _biased_logits(z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """z (…, N, V) + bias (…, V) in float32 (float64 for float64 z)."""
    x = z.double() if z.dtype == torch.float64 else z.float()
    return x + bias.to(x.dtype).unsqueeze(-2)


def reference_rows(z: torch.Tensor, bias: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(nll, lse) (…, N) of the logits z (…, N, V) + bias (…, V) in float32 (float64 for float64 z) by torch:
    the op's definition, and its body off CUDA."""
    x = _biased_logits(z, bias)
    lse = torch.logsumexp(x, -1)
    valid = y != IGNORE
    target = x.gather(-1, torch.where(valid, y, 0)[..., None])[..., 0]
    return torch.where(valid, lse - target, 0), lse


def reference_rows_backward(grad, z, bias, y, lse) -> tuple[torch.Tensor, torch.Tensor]:
    """(dz, dbias) of Σ grad·nll by torch."""
    x = _biased_logits(z, bias)
    d = torch.exp(x - lse[..., None]) - (torch.arange(x.shape[-1], device=x.device) == y[..., None]).to(x.dtype)
    d = torch.where((y != IGNORE)[..., None], d * grad[..., None], 0)
    return d.to(z.dtype), d.sum(-2).to(bias.dtype)


def rows(z, bias, y):
    return fused_rows(z, bias, y) if fused_available(z) else reference_rows(z, bias, y)


def rows_backward(grad, z, bias, y, lse):
    return fused_rows_backward(grad, z, bias, y, lse) if fused_available(z) else reference_rows_backward(
        grad, z, bias, y, lse)


@torch.library.custom_op("eigsweep::ce_rows", mutates_args=())
def ce_rows(z: torch.Tensor, bias: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(nll (N,), lse (N,)) of the logits z (N, V) + bias (V,) and targets y (N,) (−100: ignored, nll 0); also
    members stacked: z (P, N, V), bias (P, V), y (P, N) (the vmap rule's call)."""
    return rows(z, bias, y)


@ce_rows.register_fake
def _(z, bias, y):
    dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
    return z.new_empty(y.shape, dtype=dtype), z.new_empty(y.shape, dtype=dtype)


@torch.library.custom_op("eigsweep::ce_rows_backward", mutates_args=())
def ce_rows_backward(grad: torch.Tensor, z: torch.Tensor, bias: torch.Tensor, y: torch.Tensor,
                     lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dz, dbias) of Σ grad·nll: dz = grad·(softmax − one-hot) per row (0 on ignored rows) in z's dtype, and
    dbias = Σ_rows dz summed in float32 (float64 for float64 z), in bias's dtype."""
    return rows_backward(grad, z, bias, y, lse)


@ce_rows_backward.register_fake
def _(grad, z, bias, y, lse):
    return torch.empty_like(z), torch.empty_like(bias)


def _setup_context(ctx, inputs, output):
    z, bias, y = inputs
    ctx.save_for_backward(z, bias, y, output[1])
    ctx.mark_non_differentiable(output[1])   # the log-sum-exp is an output for the backward only


def _backward(ctx, grad_nll, grad_lse):
    dz, dbias = ce_rows_backward(grad_nll, *ctx.saved_tensors)
    return dz, dbias, None


ce_rows.register_autograd(_backward, setup_context=_setup_context)


@ce_rows.register_vmap
def _(info, in_dims, z, bias, y):
    return ce_rows(*vmapped_first(info, in_dims, z, bias, y)), (0, 0)     # one call on (P, N, V), (P, V), (P, N)


@ce_rows_backward.register_vmap
def _(info, in_dims, grad, z, bias, y, lse):
    return ce_rows_backward(*vmapped_first(info, in_dims, grad, z, bias, y, lse)), (0, 0)


def fused_rows(z, bias, y) -> tuple[torch.Tensor, torch.Tensor]:
    """reference_rows by the Triton kernel (on CUDA, or on CPU under TRITON_INTERPRET=1): a program per block of
    FWD_ROWS rows of one member (one load of the bias a column block for all of them), an online log-sum-exp
    over column blocks of FWD_BLOCK."""
    v, n = z.shape[-1], y.shape[-1]
    z, bias, y = z.contiguous(), bias.contiguous(), y.contiguous()
    nll = torch.empty(y.shape, dtype=torch.float32, device=z.device)
    lse = torch.empty_like(nll)
    if y.numel():
        members = y.numel() // n
        _triton().fwd[(_cdiv(n, FWD_ROWS), members)](z, bias, y, nll, lse, v, n, IGNORE, ROWS=FWD_ROWS,
                                                     BLOCK=min(FWD_BLOCK, next_pow2(v)), num_warps=FWD_WARPS)
    return nll, lse


def fused_rows_backward(grad, z, bias, y, lse) -> tuple[torch.Tensor, torch.Tensor]:
    """reference_rows_backward by the Triton kernel: a program per (block of BWD_ROWS rows of one member, block of
    BWD_BLOCK columns), which also sums its rows of dz for the bias; the blocks' sums are added in torch (in a
    fixed order: deterministic, unlike atomic adds)."""
    v, n = z.shape[-1], y.shape[-1]
    z, bias, y, grad, lse = (t.contiguous() for t in (z, bias, y, grad, lse))
    members = y.numel() // max(n, 1)
    dz = torch.empty_like(z)
    row_blocks, block = _cdiv(n, BWD_ROWS), min(BWD_BLOCK, next_pow2(v))
    partial = torch.zeros(members, row_blocks, v, dtype=torch.float32, device=z.device)
    if y.numel():
        _triton().bwd[(row_blocks, _cdiv(v, block), members)](
            z, bias, y, lse, grad, dz, partial, v, n, row_blocks, IGNORE, ROWS=BWD_ROWS, TILE=BWD_TILE,
            BLOCK=block, num_warps=BWD_WARPS)
    return dz, partial.sum(1).view(bias.shape).to(bias.dtype)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _build_kernels(triton, tl):
    @triton.jit
    def fwd(z_ptr, bias_ptr, y_ptr, nll_ptr, lse_ptr, V, N, IGNORE: tl.constexpr, ROWS: tl.constexpr,
            BLOCK: tl.constexpr):
        rb, member = tl.program_id(0), tl.program_id(1).to(tl.int64)
        r = rb * ROWS + tl.arange(0, ROWS)                       # rows of this member
        ok = r < N
        row = member * N + tl.minimum(r, N - 1).to(tl.int64)   # rows past N read the last row, store nothing
        bias_row = bias_ptr + member * V
        m = tl.full([ROWS], float("-inf"), tl.float32)
        s = tl.zeros([ROWS], tl.float32)
        for off in range(0, V, BLOCK):
            cols = off + tl.arange(0, BLOCK)
            inside = cols < V
            b = tl.load(bias_row + cols, mask=inside, other=0.0).to(tl.float32)
            x = tl.load(z_ptr + row[:, None] * V + cols[None, :], mask=inside[None, :], other=float("-inf"))
            x = x.to(tl.float32) + b[None, :]
            m_new = tl.maximum(m, tl.max(x, 1))
            s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new[:, None]), 1)
            m = m_new
        lse = m + tl.log(s)
        y = tl.load(y_ptr + row, mask=ok, other=IGNORE).to(tl.int64)
        valid = y != IGNORE
        t = tl.where(valid, y, 0)
        target = tl.load(z_ptr + row * V + t).to(tl.float32) + tl.load(bias_row + t).to(tl.float32)
        tl.store(nll_ptr + row, tl.where(valid, lse - target, 0.0), mask=ok)
        tl.store(lse_ptr + row, lse, mask=ok)

    @triton.jit
    def bwd(z_ptr, bias_ptr, y_ptr, lse_ptr, grad_ptr, dz_ptr, partial_ptr, V, N, ROW_BLOCKS,
            IGNORE: tl.constexpr, ROWS: tl.constexpr, TILE: tl.constexpr, BLOCK: tl.constexpr):
        rb, member = tl.program_id(0), tl.program_id(2).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        inside = cols < V
        b = tl.load(bias_ptr + member * V + cols, mask=inside, other=0.0).to(tl.float32)
        acc = tl.zeros([BLOCK], tl.float32)
        for r0 in range(0, ROWS, TILE):
            r = rb * ROWS + r0 + tl.arange(0, TILE)               # rows of this member
            ok = r < N
            row = member * N + r.to(tl.int64)
            y = tl.load(y_ptr + row, mask=ok, other=IGNORE).to(tl.int64)
            lse = tl.load(lse_ptr + row, mask=ok, other=0.0)
            g = tl.load(grad_ptr + row, mask=ok, other=0.0)
            at = row[:, None] * V + cols[None, :]
            both = ok[:, None] & inside[None, :]
            x = tl.load(z_ptr + at, mask=both, other=0.0).to(tl.float32) + b[None, :]
            d = (tl.exp(x - lse[:, None]) - (cols[None, :] == y[:, None]).to(tl.float32)) * g[:, None]
            d = tl.where(both & (y != IGNORE)[:, None], d, 0.0)
            tl.store(dz_ptr + at, d.to(dz_ptr.dtype.element_ty), mask=both)
            acc += tl.sum(d, 0)
        tl.store(partial_ptr + (member * ROW_BLOCKS + rb) * V + cols, acc, mask=inside)

    return type("CrossEntropyKernels", (), {"fwd": fwd, "bwd": bwd})
