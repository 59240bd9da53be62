"""Triton, imported on first use only: CI has no GPU and may have no Triton, and importing a mixer never imports it.
Also what the fused ops share: the dispatch checks and their vmap rules' first step."""
from __future__ import annotations

import importlib.util

import torch

FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)   # what the fused kernels take (they compute in fp32)


TRITON_INSTALLED = importlib.util.find_spec("triton") is not None   # looked up, not imported


def runs_fused(t: torch.Tensor) -> bool:
    """Whether a fused op would run its kernels for tensors like t, decided without importing Triton (so that
    torch.compile can trace the decision): CUDA, a float type below float64, Triton installed. (The op's body
    checks again, with the import: ``fused``.)"""
    return t.is_cuda and t.dtype in FUSED_DTYPES and TRITON_INSTALLED


def next_pow2(n: int) -> int:
    """The smallest power of 2 ≥ n (1 for n ≤ 1): Triton block sizes (tl.arange needs powers of 2)."""
    return 1 << max(0, n - 1).bit_length()


def vmapped_first(info, in_dims, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """A vmap rule's tensors, each with its vmapped dimension first (expanded to the batch size where it has
    none): the form in which the fused ops take a pack's members, as more rows, chunks or samples of one launch."""
    return [t.movedim(d, 0) if d is not None else t.expand(info.batch_size, *t.shape)
            for t, d in zip(tensors, in_dims)]


def vmapped_folded(info, in_dims, *tensors: torch.Tensor) -> tuple[list[torch.Tensor], torch.Size]:
    """vmapped_first with the vmapped dim folded into the next one (a pack's members become more rows of one
    launch: nothing per member to keep apart), and the shape to unfold the results with."""
    front = vmapped_first(info, in_dims, *tensors)
    return [t.flatten(0, 1) for t in front], front[0].shape[:2]


def backward_by(op, backward_op) -> None:
    """Registers op's autograd formula as ``backward_op(*op's tensor inputs, the output's gradient)``, op's
    inputs saved as they are (ops with one output; their non-tensor arguments get no gradient)."""
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def backward(ctx, grad):
        return backward_op(*ctx.saved_tensors, grad)
    op.register_autograd(backward, setup_context=setup_context)


def build_kernels(build):
    """``build(triton, triton.language)``, or None where Triton cannot be imported."""
    try:
        import triton
        import triton.language as tl
    except Exception:  # noqa: BLE001 - any import failure means: use the torch scan
        return None
    return build(triton, tl)


def fused(t: torch.Tensor, kernels) -> bool:
    """True where a fused kernel can run for tensors like t: CUDA, a float type below float64, Triton importable
    (``kernels()`` is not None)."""
    return t.is_cuda and t.dtype in FUSED_DTYPES and kernels() is not None
