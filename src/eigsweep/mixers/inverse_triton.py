"""Batched inverse of small matrices with a positive definite symmetric part, one Triton program per matrix.

S4 needs (I − ΔA/2)⁻¹ for every channel (128 matrices of 128 × 128 at the paper's size) at every step. Through
torch.linalg (an LU with partial pivoting, then triangular solves, and the same solves again in the backward)
that was ≈ 80 kernel launches a step on CUDA, most of S4's host time in a step the host bounds
(benchmarks/README.md, twelfth session). Here the forward is one launch: Gauss–Jordan elimination of the whole
matrix held in registers, without pivoting; the backward is two batched matmuls, dM = −M⁻ᵀ (dY) M⁻ᵀ.

Without pivoting: for M whose symmetric part M + Mᵀ is positive definite, every Schur complement met during
elimination has a positive definite symmetric part too, so no pivot is ever 0 and no row exchange is needed
(the growth of the entries is bounded by the skew part's size against the symmetric part's; the kernel is
tested against float64 up to strongly perturbed parameters). S4's M = I − ΔA/2 is such a matrix for any
parameters (A + Aᵀ ≺ 0 by construction, s4.py). Other matrices must use torch.linalg.

``inverse(M)`` is a custom op (an autograd formula, a vmap rule that folds a pack's members into the batch of
matrices, a fake impl for torch.compile, which keeps it as one call). Its body runs the kernel on CUDA for
float32/16 matrices of order ≤ MAX_ORDER where Triton imports, and torch.linalg.inv_ex otherwise (CPU, float64:
the spectra and every CPU test).
"""
from __future__ import annotations

import functools
import types

import torch

from eigsweep.mixers.triton_support import build_kernels, fused, next_pow2

MAX_ORDER = 128     # the whole matrix is a register tile: 128 × 128 float32 over NUM_WARPS warps
NUM_WARPS = 16


@functools.cache
def _triton():
    return build_kernels(_build_kernels)


def fused_available(M: torch.Tensor) -> bool:
    """True where ``inverse`` runs its Triton kernel for matrices like M."""
    return M.shape[-1] <= MAX_ORDER and fused(M, _triton)


@torch.library.custom_op("eigsweep::inverse", mutates_args=())
def inverse(M: torch.Tensor) -> torch.Tensor:
    """M⁻¹ for M (..., n, n) with a positive definite symmetric part (see the module docstring), contiguous
    (torch.linalg's result is column-major; the fake impl promises row-major strides)."""
    return fused_inverse(M) if fused_available(M) else torch.linalg.inv_ex(M)[0].contiguous()


@inverse.register_fake
def _(M):
    return M.new_empty(M.shape)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(output)


def _backward(ctx, dY):
    Y_t = ctx.saved_tensors[0].mT
    return -(Y_t @ dY @ Y_t)


inverse.register_autograd(_backward, setup_context=_setup_context)


@inverse.register_vmap
def _(info, in_dims, M):
    return inverse(M.movedim(in_dims[0], 0)), 0          # the members are more matrices of the batch


def fused_inverse(M: torch.Tensor) -> torch.Tensor:
    """M⁻¹ by the kernel (on CUDA, or on CPU under TRITON_INTERPRET=1), computed in float32, in M's dtype."""
    n = M.shape[-1]
    A = M.detach().float().reshape(-1, n, n).contiguous()
    out = torch.empty_like(A)
    if A.shape[0]:
        _triton().gauss_jordan[(A.shape[0],)](A, out, n, BLOCK=next_pow2(n), num_warps=NUM_WARPS)
    return out.view(M.shape).to(M.dtype)


def _build_kernels(triton, tl):
    @triton.jit
    def gauss_jordan(M_ptr, out_ptr, n, BLOCK: tl.constexpr):
        # in-place Gauss–Jordan on X = M (rows/columns past n padded with the identity): at step k the pivot
        # row is divided by the pivot, its multiple is taken from every other row, and column k is replaced
        # by the column of the inverse (−X_ik/p off the pivot row, 1/p on it); after n steps X = M⁻¹
        b = tl.program_id(0).to(tl.int64)
        i = tl.arange(0, BLOCK)
        rows, cols = i[:, None], i[None, :]
        inside = (rows < n) & (cols < n)
        X = tl.load(M_ptr + b * n * n + rows * n + cols, mask=inside, other=0.0)
        X = tl.where((rows == cols) & (rows >= n), 1.0, X)
        for k in range(n):
            row_k = tl.sum(tl.where(rows == k, X, 0.0), axis=0)           # X[k, :]
            col_k = tl.sum(tl.where(cols == k, X, 0.0), axis=1)           # X[:, k]
            p = tl.sum(tl.where(i == k, row_k, 0.0), axis=0)               # X[k, k]
            r = tl.where(i == k, 1.0, row_k) / p                           # the new pivot row
            f = tl.where(i == k, 0.0, col_k)                               # the multiples of other rows
            X = tl.where(cols == k, 0.0, X) - f[:, None] * r[None, :]
            X = tl.where(rows == k, r[None, :], X)
        tl.store(out_ptr + b * n * n + rows * n + cols, X, mask=inside)

    return types.SimpleNamespace(gauss_jordan=gauss_jordan)
