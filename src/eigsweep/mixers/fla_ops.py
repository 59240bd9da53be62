"""flash-linear-attention's chunked kernels (the ``fla-core`` package, optional) as custom ops: the delta rule of
DeltaNet and gated DeltaNet, and Mamba-2's SSD, on CUDA.

On an H200 at a pack's size (2048 sequences × L 512, one DeltaNet layer) fla's delta rule took 7.9 ms forward +
backward against 22.5 ms for deltanet.py's chunked form compiled (benchmarks/fla_probe.py). Its kernels take
bf16 (16-bit storage, float32 accumulation and state): the ops cast their inputs to bf16 (a no-op for the bf16
projections of a mixer in model.BF16_MIXERS) and their results back to the inputs' dtype, so they differ from
the float32 form by bf16 rounding (relative 6e-3 on y in the probe) where the mixer's own form differs by TF32's
(6e-4). Eigenvalues never pass through them (they come from ``features`` in
float64).

- ``delta_rule(q, k, v, beta, log_alpha, gated)``: deltanet.chunked_delta_rule's recurrence, in its layout
  (q, k (B, H, L, N), v (B, H, L, P), beta and log_alpha (B, H, L)); fla's ``chunk_delta_rule`` (log_alpha
  unused) or ``chunk_gated_delta_rule``, with scale 1 (q comes scaled);
- ``ssd(X, log_lam, Bm, Cm)``: scan.ssd_chunked's recurrence (X (b, L, H, P), log_lam (b, L, H), Bm and Cm
  (b, L, N), shared by the heads) as fla's ``chunk_simple_gla`` with q = C and k = B given to every head.

Each is an op with an autograd formula (a backward op that recomputes fla's forward intermediates, then runs its
backward kernels), vmap rules (a pack's members become more sequences of one launch) and fake tensors, so it
runs eagerly, vmapped and under torch.compile (one opaque call). Off CUDA, or where fla or Triton cannot be
imported, the op bodies compute the mixers' own torch forms (forward, and torch.func.vjp for the backward): the
CPU tests check the ops' plumbing through them. The mixers call the ops where ``available`` and their switch
(DELTA_RULE_ON_CUDA, SSD_ON_CUDA) is on; fla's internal entry points are those of fla-core 0.6.0. The kernels
with a decay (gated DeltaNet, the SSD) are not available on Hopper GPUs with Triton from 3.4.0 to before 3.7.1,
where fla refuses them (``gated_kernels_right``): they have never run on this project's H200 (Triton 3.6.0).
"""
from __future__ import annotations

import functools
import importlib.util

import torch

from eigsweep.mixers.triton_support import backward_by, fused, runs_fused, vmapped_folded

FLA_INSTALLED = importlib.util.find_spec("fla") is not None     # looked up, not imported
DELTA_RULE_ON_CUDA = True     # deltanet.chunked_delta_rule by fla on CUDA
SSD_ON_CUDA = True            # scan.ssd_chunked by fla on CUDA
DTYPE = torch.bfloat16        # what fla's kernels take (chunk_delta_rule refuses float32)
CHUNK = 64                    # fla's chunk size; the torch bodies use it too (it splits work, not results)


def available(t: torch.Tensor, gated: bool) -> bool:
    """Whether the ops would run fla's kernels for tensors like t (``gated``: with a decay, as gated DeltaNet's
    and the SSD), decided without importing fla or Triton (so torch.compile can trace the decision)."""
    return FLA_INSTALLED and runs_fused(t) and _gate_allowed(t, gated)


def _runs_fla(t, gated):
    """The op bodies' check, with the import: fla's kernels run for tensors like t."""
    return fused(t, kernels) and _gate_allowed(t, gated)


def _gate_allowed(t, gated):
    return not gated or gated_kernels_right(t.device.index)


@torch.compiler.assume_constant_result
def gated_kernels_right(device_index) -> bool:
    """False where fla refuses its gated kernels' backward (fla's issue 640: Triton from 3.4.0 to before 3.7.1
    gives wrong results on Hopper GPUs, compute capability 9.x), read from the versions and the device without importing
    either package; fla checks the same itself and raises."""
    from importlib.metadata import version
    from packaging.version import Version
    triton = Version(version("triton"))
    hopper = torch.cuda.get_device_capability(device_index)[0] == 9
    return not (hopper and Version("3.4.0") <= triton < Version("3.7.1"))


@functools.cache
def kernels():
    """fla's forward and backward functions, or None where they cannot be imported."""
    try:
        from fla.ops.delta_rule.chunk import chunk_delta_rule_bwd, chunk_delta_rule_fwd
        from fla.ops.gated_delta_rule.chunk import chunk_gated_delta_rule_bwd, chunk_gated_delta_rule_fwd
        from fla.ops.simple_gla.chunk import chunk_simple_gla_bwd, chunk_simple_gla_fwd
        from fla.ops.utils import chunk_local_cumsum
        from fla.ops.utils.constant import RCP_LN2
    except Exception:  # noqa: BLE001 - any import failure means: the torch forms
        return None
    return dict(delta_fwd=chunk_delta_rule_fwd, delta_bwd=chunk_delta_rule_bwd, gated_fwd=chunk_gated_delta_rule_fwd,
                gated_bwd=chunk_gated_delta_rule_bwd, gla_fwd=chunk_simple_gla_fwd, gla_bwd=chunk_simple_gla_bwd,
                cumsum=chunk_local_cumsum, rcp_ln2=RCP_LN2)


def _to_fla(t, dtype=DTYPE):
    """(B, H, L, …) → fla's (B, L, H, …), contiguous, in dtype."""
    return t.transpose(1, 2).to(dtype).contiguous()


def _from_fla(t, like):
    return t.transpose(1, 2).to(like.dtype).contiguous()


# --- the delta rule ------------------------------------------------------------------------------------------

def _delta_torch(q, k, v, beta, log_alpha, gated):
    """The own form; log α taken as 0 unless gated (so it gets no gradient)."""
    from eigsweep.mixers.deltanet import delta_rule_torch
    return delta_rule_torch(q, k, v, beta, log_alpha if gated else torch.zeros_like(log_alpha), CHUNK).contiguous()


@torch.library.custom_op("eigsweep::fla_delta_rule", mutates_args=())
def delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, log_alpha: torch.Tensor,
               gated: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(o (B, H, L, P) in v's dtype, fla's in-chunk factor A (B, L, H, CHUNK) in DTYPE, kept for the backward;
    zeros off fla). log_alpha unused unless gated."""
    B, H, L, _ = q.shape
    if _runs_fla(q, gated):
        K = kernels()
        qf, kf, vf, bf = (_to_fla(t) for t in (q, k, v, beta))
        if gated:     # the raw log α: the function takes its cumulative sums itself
            _, o, A, *_ = K["gated_fwd"](q=qf, k=kf, v=vf, g=_to_fla(log_alpha, torch.float32), beta=bf, scale=1.0,
                                         initial_state=None, output_final_state=False, chunk_size=CHUNK)
        else:
            o, A, _ = K["delta_fwd"](q=qf, k=kf, v=vf, beta=bf, scale=1.0, initial_state=None,
                                     output_final_state=False, chunk_size=CHUNK)
        return _from_fla(o, v), A.to(DTYPE)
    return _delta_torch(q, k, v, beta, log_alpha, gated), q.new_zeros(B, L, H, CHUNK, dtype=DTYPE)


@delta_rule.register_fake
def _(q, k, v, beta, log_alpha, gated):
    B, H, L, _ = q.shape
    return v.new_empty(v.shape), q.new_empty(B, L, H, CHUNK, dtype=DTYPE)


@torch.library.custom_op("eigsweep::fla_delta_rule_backward", mutates_args=())
def delta_rule_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                        log_alpha: torch.Tensor, A: torch.Tensor, do: torch.Tensor,
                        gated: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv, dbeta, dlog_alpha), each in its input's dtype (dlog_alpha zero unless gated)."""
    ins = (q, k, v, beta, log_alpha)
    if _runs_fla(q, gated):
        K = kernels()
        qf, kf, vf, bf = (_to_fla(t) for t in (q, k, v, beta))
        if gated:     # the chunks' cumulative log α over ln 2, as the forward function made it (fla takes exp2)
            g = K["cumsum"](_to_fla(log_alpha, torch.float32), chunk_size=CHUNK, scale=K["rcp_ln2"])
            dq, dk, dv, db, dg, *_ = K["gated_bwd"](q=qf, k=kf, v=vf, g=g, beta=bf, A=A, scale=1.0,
                                                    initial_state=None, do=_to_fla(do), dht=None, chunk_size=CHUNK)
            dg = _from_fla(dg, log_alpha)
        else:
            dq, dk, dv, db, _ = K["delta_bwd"](q=qf, k=kf, v=vf, beta=bf, A=A, scale=1.0, initial_state=None,
                                               do=_to_fla(do), dht=None, chunk_size=CHUNK)
            dg = torch.zeros_like(log_alpha)
        return tuple(_from_fla(d, t) for d, t in zip((dq, dk, dv, db), ins)) + (dg,)
    _, vjp = torch.func.vjp(functools.partial(_delta_torch, gated=gated), *ins)
    return tuple(d.contiguous() for d in vjp(do))


@delta_rule_backward.register_fake
def _(q, k, v, beta, log_alpha, A, do, gated):
    return tuple(t.new_empty(t.shape) for t in (q, k, v, beta, log_alpha))


def _delta_setup_context(ctx, inputs, output):
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(*inputs[:5], output[1])
    ctx.gated = inputs[5]


def _delta_op_backward(ctx, do, _):
    return delta_rule_backward(*ctx.saved_tensors, do, ctx.gated) + (None,)


delta_rule.register_autograd(_delta_op_backward, setup_context=_delta_setup_context)


@delta_rule.register_vmap
def _(info, in_dims, q, k, v, beta, log_alpha, gated):
    tensors, lead = vmapped_folded(info, in_dims[:5], q, k, v, beta, log_alpha)
    return tuple(t.unflatten(0, lead) for t in delta_rule(*tensors, gated)), (0, 0)


@delta_rule_backward.register_vmap
def _(info, in_dims, q, k, v, beta, log_alpha, A, do, gated):
    tensors, lead = vmapped_folded(info, in_dims[:7], q, k, v, beta, log_alpha, A, do)
    return tuple(d.unflatten(0, lead) for d in delta_rule_backward(*tensors, gated)), (0,) * 5


# --- Mamba-2's SSD -------------------------------------------------------------------------------------------

def _ssd_torch(X, log_lam, Bm, Cm):
    from eigsweep.mixers.scan import _ssd_torch
    return _ssd_torch(X, log_lam, Bm, Cm, CHUNK)[0].contiguous()


def _ssd_fla_inputs(X, log_lam, Bm, Cm):
    """q = C and k = B for every head, v = X (bf16), g = the chunks' cumulative log λ over ln 2 (fla's exp2)."""
    K = kernels()
    H = X.shape[2]
    q, k = (t[:, :, None].expand(-1, -1, H, -1).to(DTYPE).contiguous() for t in (Cm, Bm))
    g = K["cumsum"](log_lam.float().contiguous(), chunk_size=CHUNK, scale=K["rcp_ln2"])
    return q, k, X.to(DTYPE).contiguous(), g


@torch.library.custom_op("eigsweep::fla_ssd", mutates_args=())
def ssd(X: torch.Tensor, log_lam: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor) -> torch.Tensor:
    """y (b, L, H, P) in X's dtype."""
    if _runs_fla(X, gated=True):
        q, k, v, g = _ssd_fla_inputs(X, log_lam, Bm, Cm)
        o, _ = kernels()["gla_fwd"](q=q, k=k, v=v, g=g, scale=1.0, initial_state=None, output_final_state=False,
                                    chunk_size=CHUNK)
        return o.to(X.dtype)
    return _ssd_torch(X, log_lam, Bm, Cm)


@ssd.register_fake
def _(X, log_lam, Bm, Cm):
    return X.new_empty(X.shape)


@torch.library.custom_op("eigsweep::fla_ssd_backward", mutates_args=())
def ssd_backward(X: torch.Tensor, log_lam: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor,
                 dy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dX, dlog_lam, dBm, dCm), each in its input's dtype."""
    if _runs_fla(X, gated=True):
        K = kernels()
        q, k, v, g = _ssd_fla_inputs(X, log_lam, Bm, Cm)
        dq, dk, dv, dg, _ = K["gla_bwd"](q=q, k=k, v=v, g=g, g_gamma=None, initial_state=None,
                                          do=dy.to(DTYPE).contiguous(), dht=None, scale=1.0, chunk_size=CHUNK)
        dg = K["cumsum"](dg, chunk_size=CHUNK, reverse=True)
        return (dv.to(X.dtype), dg.to(log_lam.dtype), dk.float().sum(2).to(Bm.dtype),
                dq.float().sum(2).to(Cm.dtype))
    _, vjp = torch.func.vjp(_ssd_torch, X, log_lam, Bm, Cm)
    return tuple(d.contiguous() for d in vjp(dy))


@ssd_backward.register_fake
def _(X, log_lam, Bm, Cm, dy):
    return tuple(t.new_empty(t.shape) for t in (X, log_lam, Bm, Cm))


backward_by(ssd, ssd_backward)


@ssd.register_vmap
def _(info, in_dims, X, log_lam, Bm, Cm):
    tensors, lead = vmapped_folded(info, in_dims, X, log_lam, Bm, Cm)
    return ssd(*tensors).unflatten(0, lead), 0


@ssd_backward.register_vmap
def _(info, in_dims, X, log_lam, Bm, Cm, dy):
    tensors, lead = vmapped_folded(info, in_dims, X, log_lam, Bm, Cm, dy)
    return tuple(d.unflatten(0, lead) for d in ssd_backward(*tensors)), (0,) * 4
