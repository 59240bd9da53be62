"""The scan kernels of the mixers: every parallel or chunked form of h_i = Λ_i h_{i-1} + x_i lives here.

- ``linear_scan``: element-wise h_i = a_i ⊙ h_{i-1} + b_i (Mamba-1, RG-LRU, qLSTM, GLA across chunks), a
  log-depth parallel scan with a hand-written backward (memory: a few tensors of b's size); on CUDA the
  one-pass Triton scan of ``linear_scan_triton`` (as the op ``linear_scan_op``, eagerly and compiled);
- ``diagonal_scan``/``causal_fft_conv``: the same for a constant diagonal λ, by FFT (S5, LRU, S4, S4D);
- ``chunked_linear_attention``: Σ_{j≤i} (q_i·k_j) v_j (linear and norm attention);
- ``chunked_decay_attention``: decay per token and key channel (GLA; CUDA: ``decay_scores_triton``) or head (RetNet);
- ``ssd_chunked``: Mamba-2's state space duality form, scalar decay per head (on CUDA: flash-linear-attention's
  kernels where fla_ops.available, never yet on a GPU: fla refuses them on Hopper with Triton < 3.7.1; or with
  FUSED_SSD_ON_CUDA ``ssd_op``, the Triton kernels of ``ssd_triton``, off by default, slower than the compiled
  torch form).
The DeltaNet family's chunked delta rule stays in deltanet.py (its one user; on CUDA fla's kernels). None of
these loops over tokens in Python, and none updates a tensor in place, so they compose with torch.func.vmap.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from eigsweep.mixers.blocks import causal_mask, float32_scan, pad_to_chunks
from eigsweep.mixers.decay_scores_triton import decay_scores, reference_scores
from eigsweep.mixers import fla_ops, linear_scan_triton, ssd_triton
from eigsweep.mixers.triton_support import runs_fused as decay_scores_available
from eigsweep.mixers.triton_support import runs_fused as linear_scan_available
from eigsweep.mixers.triton_support import runs_fused as ssd_available
from eigsweep.mixers.triton_support import vmapped_folded


# --- element-wise linear recurrence ------------------------------------------------------------------

def _local_scan(a: torch.Tensor, b: torch.Tensor):
    """Inclusive scan over the T (≤ 8) tokens of dim 1, one step per token: prefix products of a and
    h_i = a_i h_{i-1} + b_i. a, b (B, T, ...) -> (prefix products (B, T, ...), h (B, T, ...))."""
    A, h = [a[:, 0]], [b[:, 0]]
    for t in range(1, a.shape[1]):
        A.append(A[-1] * a[:, t])
        h.append(a[:, t] * h[-1] + b[:, t])
    return torch.stack(A, dim=1), torch.stack(h, dim=1)


def _scan(a: torch.Tensor, b: torch.Tensor, T: int = 8) -> torch.Tensor:
    """h_i = a_i h_{i-1} + b_i over dim 1 of a, b (B, L, ...) -> h (B, L, ...), hierarchically: a local scan
    inside chunks of T tokens, the same scan (recursively) over the chunks' end states, then one pass adding
    the carried state: O(L) work, log_T(L) levels, no Python loop over the sequence."""
    L = a.shape[1]
    if L <= T:
        return _local_scan(a, b)[1]
    a, b = pad_to_chunks(T, 1, a, b)
    B, n, rest = a.shape[0], a.shape[1] // T, a.shape[2:]
    A_loc, h_loc = _local_scan(a.reshape(B * n, T, *rest), b.reshape(B * n, T, *rest))
    A_loc, h_loc = A_loc.view(B, n, T, *rest), h_loc.view(B, n, T, *rest)      # (B, n, T, ...)
    ends = _scan(A_loc[:, :, -1], h_loc[:, :, -1], T)                         # (B, n, ...) chunk end states
    entering = torch.cat([torch.zeros_like(ends[:, :1]), ends[:, :-1]], dim=1)
    h = h_loc + A_loc * entering[:, :, None]
    return h.reshape(B, n * T, *rest)[:, :L]


def _scan_backward(a: torch.Tensor, h: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dL/da, dL/db) of h = scan(a, b) for dL/dh = g: the adjoint G_i = g_i + a_{i+1} G_{i+1} (a reverse
    scan); dL/db = G, dL/da_i = G_i h_{i-1}."""
    a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], dim=1)
    G = _scan(a_next.flip(1), g.flip(1)).flip(1)
    h_prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
    return G * h_prev, G


class _LinearScan(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(a, b):
        return _scan(a, b)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], output)

    @staticmethod
    def backward(ctx, g):
        return _scan_backward(*ctx.saved_tensors, g)


@torch.library.custom_op("eigsweep::linear_scan", mutates_args=())
def linear_scan_op(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h (batch, L, ...) in b's dtype for a, b of one shape, time on dim 1: the fused kernels of
    linear_scan_triton where they run, the torch form otherwise. An op torch.compile keeps as one call."""
    if linear_scan_triton.fused_available(b):
        return linear_scan_triton.fused_scan(a, b)
    return _scan(a, b).to(b.dtype).contiguous()


@linear_scan_op.register_fake
def _(a, b):
    return b.new_empty(b.shape)


@torch.library.custom_op("eigsweep::linear_scan_backward", mutates_args=())
def linear_scan_backward(a: torch.Tensor, h: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dL/da, dL/db) in a's and h's dtypes (_scan_backward)."""
    if linear_scan_triton.fused_available(h):
        return linear_scan_triton.fused_scan_backward(a, h, g)
    da, db = _scan_backward(a, h, g)
    return da.to(a.dtype).contiguous(), db.to(h.dtype).contiguous()


@linear_scan_backward.register_fake
def _(a, h, g):
    return a.new_empty(a.shape), h.new_empty(h.shape)


def _scan_setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], output)


def _scan_op_backward(ctx, g):
    return linear_scan_backward(*ctx.saved_tensors, g)


linear_scan_op.register_autograd(_scan_op_backward, setup_context=_scan_setup_context)


@linear_scan_op.register_vmap
def _(info, in_dims, a, b):
    (a, b), lead = vmapped_folded(info, in_dims, a, b)
    return linear_scan_op(a, b).unflatten(0, lead), 0


@linear_scan_backward.register_vmap
def _(info, in_dims, a, h, g):
    (a, h, g), lead = vmapped_folded(info, in_dims, a, h, g)
    return tuple(d.unflatten(0, lead) for d in linear_scan_backward(a, h, g)), (0, 0)


def linear_scan(a: torch.Tensor, b: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """h_i = a_i ⊙ h_{i-1} + b_i along ``dim`` (time), h_{-1} = 0, for real a, b broadcastable to one shape
    (..., L, ...); returns h of that shape. On CUDA (float32/16, Triton installed; eagerly and compiled) the
    op with the fused Triton scan of linear_scan_triton, else the torch form above, differentiated by its own
    backward."""
    a, b = (t.movedim(dim, 1) for t in torch.broadcast_tensors(a, b))
    scan = linear_scan_op if linear_scan_available(b) else _LinearScan.apply
    return scan(a, b).movedim(1, dim)


# --- constant diagonal recurrence (LTI) -----------------------------------------------------------------

def causal_fft_conv(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y_i = Σ_{j≤i} k_{i-j} x_j along the last dim (length L); x (..., L) and k (..., L) broadcast, real or
    complex; returns y (..., L)."""
    L = x.shape[-1]
    n = 2 * L
    if x.is_complex() or k.is_complex():
        y = torch.fft.ifft(torch.fft.fft(x, n=n) * torch.fft.fft(k, n=n), n=n)
    else:
        y = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(k, n=n), n=n)
    return y[..., :L]


def diagonal_scan(x: torch.Tensor, log_lam: torch.Tensor) -> torch.Tensor:
    """h_i = λ ⊙ h_{i-1} + x_i with constant diagonal λ = exp(log_lam) (N,), x (B, L, N) -> h (B, L, N):
    a causal convolution of x with the kernel λ^l, by FFT in O(L log L)."""
    L = x.shape[1]
    powers = torch.exp(torch.arange(L, device=x.device, dtype=log_lam.real.dtype)[None, :] * log_lam[:, None])
    return causal_fft_conv(x.transpose(1, 2), powers).transpose(1, 2)


# --- chunked attention forms ------------------------------------------------------------------------------

def chunked_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int) -> torch.Tensor:
    """y_i = Σ_{j≤i} (q_i·k_j) v_j in chunks: quadratic inside a chunk, a running k vᵀ sum across chunks.
    q, k (B, H, L, N), v (B, H, L, P) -> y (B, H, L, P)."""
    B, H, L, _ = q.shape
    T = min(chunk, L)
    q, k, v = pad_to_chunks(T, 2, q, k, v)
    n = q.shape[2] // T
    q, k, v = (t.reshape(B, H, n, T, t.shape[-1]) for t in (q, k, v))       # (B, H, n, T, ·)
    kv = k.transpose(-1, -2) @ v                                            # (B, H, n, N, P)
    kv_before = kv.cumsum(dim=2) - kv
    y = q @ kv_before + (q @ k.transpose(-1, -2)).tril() @ v
    return y.reshape(B, H, n * T, -1)[:, :, :L]


def chunked_decay_attention(q, k, v, log_a, chunk):
    """y_i = S_iᵀ q_i for S_i = diag(exp(log_a_i)) S_{i-1} + k_i v_iᵀ, S_{-1} = 0.

    q, k (B, H, L, N), v (B, H, L, P), log_a ≤ 0 of shape (B, H, L, N) (per key channel) or (B, H, L, 1)
    (scalar per head). Returns y (B, H, L, P).
    """
    B, H, L, N = q.shape
    T = min(chunk, L)
    q, k, v, log_a = pad_to_chunks(T, 2, q, k, v, log_a)
    n = q.shape[2] // T
    q, k, v, log_a = (t.reshape(B, H, n, T, t.shape[-1]) for t in (q, k, v, log_a))
    g = log_a.cumsum(dim=3)                                            # (B, H, n, T, Nd), inclusive
    # inside a chunk: y_i = Σ_{j≤i} Σ_n q_in k_jn exp(g_in − g_jn) v_j
    if log_a.shape[-1] > 1:
        # fused (the op): no (…, T, T, N) decays; off CUDA the torch form, differentiated by autograd
        scores = (decay_scores if decay_scores_available(q) else reference_scores)(q, k, g)
    else:
        diff = g[..., :, None, 0] - g[..., None, :, 0]                 # (B, H, n, T, T)
        scores = (q @ k.transpose(-1, -2)) * torch.exp(diff.masked_fill(~causal_mask(T, q.device), float("-inf")))
    y = scores @ v                                                      # (B, H, n, T, P)
    # each chunk's own contribution to the state at its end
    g_end = g[..., -1:, :]                                              # (B, H, n, 1, Nd)
    states = (k * torch.exp(g_end - g)).transpose(-1, -2) @ v          # (B, H, n, N, P)
    # state entering chunk c: S_c = exp(G_{c-1}) ⊙ S_{c-1} + states_{c-1}, a parallel scan over chunks
    chunk_decay = torch.exp(g_end).transpose(-1, -2)                   # (B, H, n, Nd, 1)
    ends = linear_scan(chunk_decay, states, dim=2)                      # (B, H, n, N, P) state at chunk ends
    entering = F.pad(ends[:, :, :-1], (0, 0, 0, 0, 1, 0))
    y = y + (q * torch.exp(g)) @ entering
    return y.reshape(B, H, n * T, -1)[:, :, :L]


def segsum(a: torch.Tensor) -> torch.Tensor:
    """a (..., T) -> S (..., T, T): S[..., i, j] = a_{j+1} + … + a_i for j ≤ i, −inf above the diagonal
    (masked before any exp)."""
    cum = a.cumsum(dim=-1)
    diff = cum[..., :, None] - cum[..., None, :]
    return diff.masked_fill(~causal_mask(a.shape[-1], a.device), float("-inf"))


# Mamba-2's SSD by the ssd_triton kernels on CUDA: off, since on an H200 they were slower than Inductor's compiled
# torch form at a pack's size (forward + backward 31.6 ms at best against 22.6 ms with TF32 products;
# benchmarks/README.md, fourteenth session; benchmarks/ssd_kernels.py and throughput.py --ssd-forms time both)
FUSED_SSD_ON_CUDA = False
# its backward by the kernels (the op ssd_backward), or by the same formulas in torch ops, which torch.compile
# traces into the backward graph for Inductor (benchmarks/ssd_kernels.py times both)
SSD_BACKWARD_BY_KERNELS = True


@float32_scan
def ssd_chunked(X, log_lam, Bm, Cm, chunk):
    """Chunked scan of h_i = exp(log_lam_i) h_{i-1} + B_i X_iᵀ, y_i = C_iᵀ h_i (Mamba-2's SSD), in float32 at
    least and outside autocast (blocks.float32_scan).

    X (b, L, H, P), log_lam (b, L, H), Bm and Cm (b, L, N). Returns y (b, L, H, P). On CUDA where fla's gated
    kernels run (fla_ops.available, fla_ops.SSD_ON_CUDA) the op ``fla_ops.ssd`` (bf16 storage); else with
    FUSED_SSD_ON_CUDA, on CUDA (Triton installed; eagerly and compiled; float32, as this scan runs in float32 at
    least) the op ``ssd_op`` with the kernels of ssd_triton (their own chunk size); else the torch form below,
    differentiated by autograd.
    """
    if fla_ops.SSD_ON_CUDA and fla_ops.available(X, gated=True):
        return fla_ops.ssd(X, log_lam, Bm, Cm)
    if FUSED_SSD_ON_CUDA and ssd_available(X):
        return ssd_op(X, log_lam, Bm, Cm)[0]
    return _ssd_torch(X, log_lam, Bm, Cm, chunk)[0]


def _ssd_torch(X, log_lam, Bm, Cm, chunk):
    """ssd_chunked's torch form: (y (b, L, H, P), the state entering each chunk (b, n, N, H, P)).

    B and C are shared by the heads, so the products with the states take the heads side by side, one matmul
    of (N, H·P) columns a chunk, and each head's decay scales their results: no (b, H, n, T, N) copy of B or C
    is ever formed (on an H200 those were the bulk of a compiled Mamba-2 pack's memory traffic).
    """
    b, L, H, P = X.shape
    N = Bm.shape[-1]
    T = min(chunk, L)
    X, log_lam, Bm, Cm = pad_to_chunks(T, 1, X, log_lam, Bm, Cm)
    n = X.shape[1] // T
    X = X.reshape(b, n, T, H, P)
    Bm, Cm = Bm.reshape(b, n, T, N), Cm.reshape(b, n, T, N)
    log_lam = log_lam.reshape(b, n, T, H)
    a_cum = log_lam.cumsum(dim=2)                                        # (b, n, T, H)
    # inside each chunk: y_i = Σ_{j≤i} (C_i·B_j) exp(a_{j+1}+…+a_i) X_j, a T × T matrix per head
    a = log_lam.permute(0, 3, 1, 2)                                      # (b, H, n, T)
    scores = (Cm @ Bm.transpose(-1, -2))[:, None] * torch.exp(segsum(a))   # (b, H, n, T, T)
    y = (scores @ X.permute(0, 3, 1, 2, 4)).permute(0, 2, 3, 1, 4)     # (b, n, T, H, P)
    # state at the end of each chunk from that chunk's inputs alone: Σ_j B_j (exp(a_{j+1..T}) X_j)ᵀ
    to_end = torch.exp(a_cum[:, :, -1:] - a_cum)[..., None]              # (b, n, T, H, 1)
    states = (Bm.transpose(-1, -2) @ (to_end * X).reshape(b, n, T, H * P)).view(b, n, N, H, P)
    # carry states across chunks: state entering chunk c = Σ_{c'<c} decay(c'→c) states_{c'}
    chunk_decay = a_cum[:, :, -1]                                        # (b, n, H)
    if torch.compiler.is_compiling():
        # as its recurrence, entering_{c+1} = exp(A_c) entering_c + states_c: element-wise steps that Inductor
        # fuses; the n × n matmul below ran on an H200 as float32 GEMV kernels over (N, P) columns, likely the
        # 8.6% of a compiled Mamba-2 pack's step that those kernels took (benchmarks/README.md)
        decay = torch.exp(chunk_decay)[:, :, None, :, None]             # (b, n, 1, H, 1)
        entering = [torch.zeros_like(states[:, 0])]
        for decay_c, states_c in zip(decay.unbind(1)[:-1], states.unbind(1)[:-1]):
            entering.append(decay_c * entering[-1] + states_c)
        entering = torch.stack(entering, dim=1)                          # (b, n, N, H, P)
    else:
        carry = torch.exp(segsum(F.pad(chunk_decay.transpose(1, 2), (1, 0))))[..., :-1, 1:]   # (b, H, n, n)
        entering = torch.einsum("bhzc,bcnhp->bznhp", carry, states)      # (b, n, N, H, P)
    # the entering state's output, C_iᵀ S scaled by exp(a_1+…+a_i) per head after the product
    y = y + (Cm @ entering.reshape(b, n, N, H * P)).view(b, n, T, H, P) * torch.exp(a_cum)[..., None]
    return y.reshape(b, n * T, H, P)[:, :L], entering


def _ssd_backward_torch(X, log_lam, Bm, Cm, S, dy):
    """(dX, dlog_lam, dBm, dCm) of Σ dy·y for y = ssd_chunked(X, log_lam, Bm, Cm) from the states S (b, n, H, N,
    P) entering ssd_triton's chunks: the kernels' adjoint formulas (ssd_triton's docstring) in torch, the op's
    body where the kernels do not run."""
    T, L = ssd_triton.CHUNK, X.shape[1]
    x, a, B, C, g = pad_to_chunks(T, 1, *(t.to(S.dtype) for t in (X, log_lam, Bm, Cm, dy)))
    b, n, H, P, N = x.shape[0], x.shape[1] // T, x.shape[2], x.shape[3], B.shape[-1]
    x, g = (t.reshape(b, n, T, H, P).transpose(2, 3) for t in (x, g))      # (b, n, H, T, P)
    a = a.reshape(b, n, T, H).transpose(2, 3)                              # (b, n, H, T)
    B, C = (t.reshape(b, n, 1, T, N) for t in (B, C))                      # shared by the heads
    s = a.cumsum(-1)
    A = s[..., -1:]                                                        # (b, n, H, 1)
    Ld = torch.exp(segsum(a))                                              # (b, n, H, T, T)
    es, w = torch.exp(s), torch.exp(A - s)
    # the gradient of the state leaving each chunk, backwards: dS_end_{c-1} = e^{A_c} dS_end_c + Cᵀ(e^s ⊙ dy)_c
    inc = C.transpose(-1, -2) @ (es[..., None] * g)                        # (b, n, H, N, P)
    dS = [torch.zeros_like(inc[:, 0])]
    for c in range(n - 1, 0, -1):
        dS.append(torch.exp(A[:, c])[..., None] * dS[-1] + inc[:, c])
    dS = torch.stack(dS[::-1], dim=1)                                      # (b, n, H, N, P)
    M = (C @ B.transpose(-1, -2)) * Ld
    BdS, CS = B @ dS, C @ S                                                # (b, n, H, T, P)
    G = g @ x.transpose(-1, -2)                                            # (b, n, H, T, T)
    dx = M.transpose(-1, -2) @ g + w[..., None] * BdS
    dC = ((G * Ld) @ B + es[..., None] * (g @ S.transpose(-1, -2))).sum(2)   # (b, n, T, N)
    dB = ((G * Ld).transpose(-1, -2) @ C + w[..., None] * (x @ dS.transpose(-1, -2))).sum(2)
    R, xBdS = G * M, (x * BdS).sum(-1)
    ds = R.sum(-1) - R.sum(-2) + es * (g * CS).sum(-1) - w * xBdS
    dA = torch.exp(A[..., 0]) * (dS * S).sum((-1, -2)) + (w * xBdS).sum(-1)
    ds = ds + F.pad(dA[..., None], (T - 1, 0))
    da = ds.flip(-1).cumsum(-1).flip(-1)                                   # Σ_{i ≥ k} ds_i
    out = (dx.transpose(2, 3).reshape(b, n * T, H, P), da.transpose(2, 3).reshape(b, n * T, H),
           dB.reshape(b, n * T, N), dC.reshape(b, n * T, N))
    return tuple(d[:, :L].to(t.dtype).contiguous() for d, t in zip(out, (X, log_lam, Bm, Cm)))


@torch.library.custom_op("eigsweep::ssd", mutates_args=())
def ssd_op(X: torch.Tensor, log_lam: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor) -> tuple[torch.Tensor,
                                                                                                  torch.Tensor]:
    """(y (b, L, H, P) in X's dtype, the states entering ssd_triton's chunks (b, n, H, N, P), kept for the
    backward, in float32 (float64 for float64 X)): the kernels where they run, the torch form otherwise.
    torch.compile keeps it as one call."""
    if ssd_triton.fused_available(X):
        return ssd_triton.fused_forward(X, log_lam, Bm, Cm)
    y, entering = _ssd_torch(*(t.to(_state_dtype(X)) for t in (X, log_lam, Bm, Cm)), ssd_triton.CHUNK)
    return y.to(X.dtype).contiguous(), entering.transpose(2, 3).contiguous()


def _state_dtype(X):
    return torch.promote_types(X.dtype, torch.float32)


@ssd_op.register_fake
def _(X, log_lam, Bm, Cm):
    b, L, H, P = X.shape
    return X.new_empty(X.shape), X.new_empty(b, ssd_triton.n_chunks(L), H, Bm.shape[-1], P, dtype=_state_dtype(X))


@torch.library.custom_op("eigsweep::ssd_backward", mutates_args=())
def ssd_backward(X: torch.Tensor, log_lam: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor, S: torch.Tensor,
                 dy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dX, dlog_lam, dBm, dCm), each in its input's dtype."""
    if ssd_triton.fused_available(X):
        return ssd_triton.fused_backward(X, log_lam, Bm, Cm, S, dy)
    return _ssd_backward_torch(X, log_lam, Bm, Cm, S, dy)


@ssd_backward.register_fake
def _(X, log_lam, Bm, Cm, S, dy):
    return tuple(t.new_empty(t.shape) for t in (X, log_lam, Bm, Cm))


def _ssd_setup_context(ctx, inputs, output):
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(*inputs, output[1])


def _ssd_op_backward(ctx, dy, _):
    if SSD_BACKWARD_BY_KERNELS:
        return ssd_backward(*ctx.saved_tensors, dy)
    return _ssd_backward_torch(*ctx.saved_tensors, dy)     # torch ops: compiled, Inductor fuses them


ssd_op.register_autograd(_ssd_op_backward, setup_context=_ssd_setup_context)


@ssd_op.register_vmap
def _(info, in_dims, X, log_lam, Bm, Cm):
    tensors, lead = vmapped_folded(info, in_dims, X, log_lam, Bm, Cm)
    return tuple(t.unflatten(0, lead) for t in ssd_op(*tensors)), (0, 0)


@ssd_backward.register_vmap
def _(info, in_dims, X, log_lam, Bm, Cm, S, dy):
    tensors, lead = vmapped_folded(info, in_dims, X, log_lam, Bm, Cm, S, dy)
    return tuple(d.unflatten(0, lead) for d in ssd_backward(*tensors)), (0, 0, 0, 0)
