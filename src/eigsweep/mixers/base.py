"""The interface every mixer implements (``Mixer``), and two shared mixer skeletons: the attention-like mixers'
input (``QKVMixer``) and the Hawk recurrent block (``HawkMixer``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.config import ModelConfig
from eigsweep.dsf import DSF, unroll
from eigsweep.mixers.blocks import QKVConv, ShortConv, at_positions, split_heads


class Mixer(nn.Module):
    """A sequence mixer u (B, L, d) -> y (B, L, d), readable as a linear time-varying system.

    Subclasses implement ``features``, ``forward``, ``eigenvalues`` and either ``dsf`` + ``readout`` or
    ``recurrence``; the last four all read the mixer's quantities from ``features(u)``, so the spectrum and
    the DSF are those of the forward pass. ``eig_dims`` names the dimensions of the tensor returned by
    ``eigenvalues``; "sample" and "time" are absent for LTI models (eigenvalues from parameters alone).
    """

    eig_dims: tuple[str, ...] = ("sample", "head", "time")
    complex_eigenvalues: bool = False
    # True where λ_0 is undefined (it multiplies h_{-1} = 0) and reported as NaN: the attention mixers
    lam0_undefined: bool = False
    # parameters that define the spectrum (state matrices, step sizes): exempt from weight decay, which
    # would otherwise pull them towards 0 whatever the task (1-D parameters are always exempt)
    no_weight_decay: tuple[str, ...] = ()

    def __init__(self, cfg: ModelConfig, layer_idx: int = 0):
        super().__init__()
        self.cfg = cfg
        self.layer_idx = layer_idx

    def features(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """The mixer's quantities for input u (B, L, d), by name (projections, gates, log λ, discretised
        matrices, …; each mixer documents its keys and shapes). The one place that ``forward``, ``dsf``/
        ``recurrence`` and ``eigenvalues`` read them from. LTI mixers may ignore u for their transition."""
        raise NotImplementedError

    def forward_at(self, u: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The forward's output at positions (B, K) only, (B, K, d): what the model's last block needs when the
        loss reads K labelled positions. Here the whole forward, gathered; a mixer whose output at a position
        costs less than the whole sequence's overrides it (softmax attention: queries at the positions only)."""
        return at_positions(self(u), positions)

    def eigenvalues(self, u: torch.Tensor) -> torch.Tensor:
        """The eigenvalues of Λ_i for input u, with dims ``eig_dims``."""
        raise NotImplementedError

    def dsf(self, u: torch.Tensor) -> DSF:
        raise NotImplementedError

    def readout(self, y: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Map the DSF output y (B, H, L, P) to the mixer output (B, L, d)."""
        raise NotImplementedError

    def recurrence(self, u: torch.Tensor) -> torch.Tensor:
        """The mixer's output computed by stepping its DSF recurrence token by token."""
        return self.readout(unroll(self.dsf(u)), u)

    def working_elements(self, L: int) -> int:
        """How many numbers ``eigenvalues`` holds at once per sample of length L, beyond the eigenvalues
        themselves (spectrum.measure bounds its memory with it); 0 when the eigenvalues dominate."""
        return 0


class QKVMixer(Mixer):
    """An attention-like mixer's input: one bias-free projection of u to q, k, v (plus ``extra`` channels),
    the short convolution (``conv_mode``, default cfg.short_conv) and a split into cfg.n_heads heads."""

    def __init__(self, cfg: ModelConfig, layer_idx: int = 0, extra: int = 0, conv_mode: str | None = None):
        super().__init__(cfg, layer_idx)
        d, self.n_heads, self.extra = cfg.d_model, cfg.n_heads, extra
        self.head_dim = d // cfg.n_heads
        self.qkv = nn.Linear(d, 3 * d + extra, bias=False)
        self.conv = QKVConv(conv_mode or cfg.short_conv, d, d, d, cfg.conv_kernel)

    def qkv_heads(self, u: torch.Tensor):
        """q, k, v (B, H, L, head_dim) after the short convolution, and the extra channels (B, L, extra)."""
        d = u.shape[-1]
        q, k, v, extra = torch.split(self.qkv(u), [d, d, d, self.extra], dim=-1)
        q, k, v = (split_heads(t, self.n_heads) for t in self.conv(q, k, v))
        return q, k, v, extra


class HawkMixer(Mixer):
    """The Hawk recurrent block around a channel-wise recurrence (rglru, qlstm): u → W_in → (gate, x),
    x → Conv1D (depthwise causal, kernel cfg.conv_kernel, no activation), and the recurrence's output y read
    out as W_out(GeLU(gate) ⊙ y). Width cfg.expand · d_model, in cfg.n_heads channel groups (the "heads" of
    its eigenvalues). Subclasses create their gates, then ``self.out = nn.Linear(self.width, d_model)``."""

    def __init__(self, cfg: ModelConfig, layer_idx: int = 0):
        super().__init__(cfg, layer_idx)
        d, self.n_heads = cfg.d_model, cfg.n_heads
        self.width = cfg.expand * d
        if self.width % self.n_heads:
            name = type(self).__name__.lower()
            raise ValueError(f"{name}: expand*d_model={self.width} is not a multiple of n_heads={self.n_heads}")
        self.in_proj = nn.Linear(d, 2 * self.width, bias=False)
        self.conv = ShortConv(self.width, cfg.conv_kernel, activation=False)    # Hawk's Conv1D

    def branches(self, u: torch.Tensor):
        """The gate branch's input and the convolved recurrent branch, both (B, L, width)."""
        gate, x = self.in_proj(u).chunk(2, dim=-1)
        return gate, self.conv(x)

    def _out(self, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(gate) * y)

    def readout(self, y, u):
        return self._out(y.transpose(1, 2).flatten(2), self.features(u)["gate"])
