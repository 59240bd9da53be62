"""Building blocks the mixers share: head layout, convolutions, norms, read-outs and initialisations.

Each is written once here; a mixer file holds only what is its own.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers.conv_triton import causal_conv, shifted_conv
from eigsweep.mixers.triton_support import runs_fused


# --- head layout -----------------------------------------------------------------------------------

def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, L, H*P) -> (B, H, L, P)."""
    B, L, D = x.shape
    return x.view(B, L, n_heads, D // n_heads).transpose(1, 2)


def at_positions(x: torch.Tensor, positions: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """x's rows at positions (B, K) along ``dim`` (the time axis): (B, L, d) -> (B, K, d) by default,
    (B, H, L, P) -> (B, H, K, P) with dim 2."""
    B, K = positions.shape
    shape = [B] + [1] * (x.dim() - 1)
    shape[dim] = K
    return x.gather(dim, positions.view(shape).expand(*x.shape[:dim], K, *x.shape[dim + 1:]))


def float32_scan(fn):
    """fn, a scan, in float32 at least and outside autocast whatever its caller runs under: cumulative sums and
    exponentials of log-decays, and matmuls that build on each other chunk by chunk, are what bf16 cannot carry.
    A mixer whose projections run under bf16 autocast (model.BF16_MIXERS) keeps its scan as in float32; outside
    autocast nothing changes (float32 and float64 tensors pass as they are)."""
    def up(t):
        return t.to(torch.promote_types(t.dtype, torch.float32)) if torch.is_tensor(t) and t.is_floating_point() else t

    @functools.wraps(fn)
    def scan(*args, **kwargs):
        device = next(t.device.type for t in args if torch.is_tensor(t))
        with torch.autocast(device, enabled=False):
            return fn(*map(up, args), **{k: up(v) for k, v in kwargs.items()})
    return scan


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, L, P) -> (B, L, H*P)."""
    B, H, L, P = x.shape
    return x.transpose(1, 2).reshape(B, L, H * P)


def causal_mask(L: int, device=None) -> torch.Tensor:
    """(L, L) boolean, True on and below the diagonal (j ≤ i)."""
    return torch.ones(L, L, dtype=torch.bool, device=device).tril()


def pad_to_chunks(T: int, dim: int, *xs: torch.Tensor) -> list[torch.Tensor]:
    """Zero-pad each x along ``dim`` to a multiple of T (the chunked kernels' preamble).

    The padding comes after the last token, so a causal computation's outputs at real tokens are unchanged;
    callers cut the result back to the original length.
    """
    pad = (-xs[0].shape[dim]) % T
    if not pad:
        return list(xs)
    return [F.pad(x, [0, 0] * (x.dim() - 1 - dim) + [0, pad]) for x in xs]


# --- convolutions and norms --------------------------------------------------------------------------

# ShortConv on CUDA by the conv_triton op (conv and SiLU fused): its GPU tests passed on an H200 and a compiled
# Mamba-2 pack of 32 ran 352 run-steps/s with it against 339 with the torch form in the same run
# (benchmarks/README.md, thirteenth session; benchmarks/throughput.py --conv-forms times it on and off)
FUSED_CONV_ON_CUDA = True


class ShortConv(nn.Module):
    """Depthwise causal convolution over (B, L, C), followed by SiLU unless ``activation=False``
    (Hawk's Conv1D, used by rglru and qlstm, has no activation)."""

    def __init__(self, channels: int, kernel: int = 4, activation: bool = True):
        super().__init__()
        self.kernel, self.activation = kernel, activation
        self.conv = nn.Conv1d(channels, channels, kernel, groups=channels, padding=kernel - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.conv.weight[:, 0, :], self.conv.bias                     # (C, K), (C,)
        if FUSED_CONV_ON_CUDA and runs_fused(x):
            # CUDA with Triton: the conv and its SiLU as one op (conv_triton), eagerly and under torch.compile
            return causal_conv(x, w, b, self.activation)
        # CUDA without Triton, eagerly: one grouped convolution; under torch.compile, and on CPU, the K products
        # (Inductor fuses them into one pass forward and one backward)
        y = self.depthwise(x) if x.is_cuda and not torch.compiler.is_compiling() else shifted_conv(x, w, b)
        return F.silu(y) if self.activation else y

    def shifted(self, x: torch.Tensor) -> torch.Tensor:
        """y_t = Σ_k w_k x_{t-K+1+k} + b as K shifted products (conv_triton.shifted_conv): much faster than
        Conv1d's backward on CPU."""
        return shifted_conv(x, self.conv.weight[:, 0, :], self.conv.bias)

    def depthwise(self, x: torch.Tensor) -> torch.Tensor:
        """The same as one grouped convolution (cuDNN; on a GPU the K products are K memory-bound passes, a
        third of a packed Mamba-2 step). (B, L, C) -> (B, L, C)."""
        L = x.shape[1]
        w, b = self.conv.weight.to(x.dtype), self.conv.bias.to(x.dtype)   # bf16 q/k of a packed step: one dtype
        return F.conv1d(x.transpose(1, 2), w, b, padding=self.kernel - 1, groups=x.shape[2])[..., :L].transpose(1, 2)


class QKVConv(nn.Module):
    """The 'short convolution' modification of attention-like mixers: on q, k (mode "qk") and v ("qkv")."""

    def __init__(self, mode: str, d_q: int, d_k: int, d_v: int, kernel: int):
        super().__init__()
        self.mode = mode
        self.q = ShortConv(d_q, kernel) if mode in ("qk", "qkv") else nn.Identity()
        self.k = ShortConv(d_k, kernel) if mode in ("qk", "qkv") else nn.Identity()
        self.v = ShortConv(d_v, kernel) if mode == "qkv" else nn.Identity()

    def forward(self, q, k, v):
        return self.q(q), self.k(k), self.v(v)


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


# --- read-outs ---------------------------------------------------------------------------------------

def gated_readout(y: torch.Tensor, u: torch.Tensor, norm: nn.Module, gate: nn.Module, out: nn.Module):
    """out(merge_heads(norm(y)) ⊙ SiLU(gate(u))): per-head norm of y (B, H, L, P), output gate, projection."""
    return out(merge_heads(norm(y)) * F.silu(gate(u)))


class GLUOutput(nn.Module):
    """The position-wise output of the S4/S5/LRU layers ("full GLU"): GELU, then W₁y ⊙ σ(W₂y)."""

    def __init__(self, d: int):
        super().__init__()
        self.proj = nn.Linear(d, 2 * d)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return F.glu(self.proj(F.gelu(y)), dim=-1)


# --- eigenvalues and DSF forms -------------------------------------------------------------------------

def log_ratio_eigenvalues(log_eta: torch.Tensor) -> torch.Tensor:
    """λ_i = η_{i-1}/η_i = exp(log η_{i-1} − log η_i) over the last (time) dim; NaN at i = 0 (no λ).

    A log ratio above ~709 overflows to +inf in float64: that λ is genuinely > 100 and is binned there."""
    lam = torch.exp(log_eta[..., :-1] - log_eta[..., 1:])
    return torch.cat([torch.full_like(log_eta[..., :1], float("nan")), lam], dim=-1)


def channelwise_dsf(lam: torch.Tensor, inp: torch.Tensor, C: torch.Tensor, n_heads: int) -> DSF:
    """DSF of channel-wise recurrences h_i = lam_i ⊙ h_{i-1} + inp_i, y_i = C_i ⊙ h_i, all (B, L, H*N).

    To read a channel-wise output through the common form y_i[p] = Σ_n C_i[n] h_i[n, p], each head's state
    is an N x N matrix kept diagonal: inp = diag(inp_i)."""
    lam, inp, C = (split_heads(t, n_heads) for t in (lam, inp, C))     # (B, H, L, N)
    return DSF(lam=lam, inp=torch.diag_embed(inp), C=C)


# --- initialisations and complex parameters ---------------------------------------------------------------

def inv_softplus(x: torch.Tensor) -> torch.Tensor:
    """softplus⁻¹(x) = x + log(1 − e^{−x}), for x > 0."""
    return x + torch.log(-torch.expm1(-x))


def log_uniform(n: int, lo: float = 1e-3, hi: float = 1e-1) -> torch.Tensor:
    """log Δ with Δ log-uniform on [lo, hi] (the S4/S5/Mamba step-size initialisation)."""
    return torch.empty(n).uniform_(math.log(lo), math.log(hi))


def hippo_legs(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-LegS (A, B): A_nk = −√(2n+1)√(2k+1) (n>k), −(n+1) (n=k), 0 (n<k); B_n = √(2n+1).
    A is lower triangular, so its eigenvalues are exactly −1, −2, …, −N."""
    r = torch.sqrt(2 * torch.arange(N, dtype=torch.float64) + 1)
    A = -(r[:, None] * r[None, :]).tril(-1) - torch.diag(torch.arange(1, N + 1, dtype=torch.float64))
    return A, r.clone()


def hippo_n_eig(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of HiPPO-N (the normal part of HiPPO-LegS): A_N = −½ I + S, S skew-symmetric
    with S_nk = −√(n+½)√(k+½) sign(n−k). Returns (eigenvalues −½ + iω, unitary eigenvectors) sorted by ω."""
    r = torch.sqrt(torch.arange(N, dtype=torch.float64) + 0.5)
    S = -(r[:, None] * r[None, :]) * torch.sign(torch.arange(N)[:, None] - torch.arange(N)[None, :]).double()
    w, V = torch.linalg.eigh(-1j * S.to(torch.complex128))     # −iS is Hermitian: S = V diag(i w) Vᴴ
    return -0.5 + 1j * w, V


def complex_param(z: torch.Tensor) -> nn.Parameter:
    """A complex initial value stored as a real (..., 2) parameter, so that .double()/.float() and every
    optimiser treat it like any other weight; read it back with ``as_complex``."""
    return nn.Parameter(torch.view_as_real(z.to(torch.complex128)).float().contiguous())


def as_complex(p: torch.Tensor) -> torch.Tensor:
    return torch.complex(p[..., 0], p[..., 1])


def with_conjugates(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """[x, x̄] along dim: the modes of a conjugate-symmetric (real) system."""
    return torch.cat([x, x.conj()], dim=dim)
