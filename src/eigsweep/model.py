"""The token model: embedding → pre-norm residual blocks (mixer [+ output gate] [+ MLP]) → norm → head.

Under CUDA bf16 autocast (training) only mixers in BF16_MIXERS compute in bf16; the others run in float32 (TF32
matmuls), since their scans take cumulative sums and exponentials of log-decays, which bf16 cannot carry
(a cumsum of 64 log-decays near −100 loses about 0.5 in bf16). The embedding, gate, MLP and head use bf16.
Mamba-2's and DeltaNet's chunked scans keep themselves in float32 (blocks.float32_scan), or, where fla's kernels
take them on CUDA (mixers/fla_ops), in fla's bf16 storage with float32 accumulation; so those mixers can run in
BF16_MIXERS with their projections in bf16 (an H200, fifteenth session: the same loss curves as in float32 over
300 steps, benchmarks/bf16_check.py; compiled packs 1.10× (Mamba-2) and 1.23× (DeltaNet) faster). DeltaNet is in
it; Mamba-2 is not, so that Mamba-2 runs still to train (mqar_mamba2_long) compute as the cached mqar_paper ones.
"""
from __future__ import annotations

import dataclasses
import functools

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep import registry
from eigsweep.config import ModelConfig
from eigsweep.mixers.blocks import RMSNorm, at_positions

# mixers whose forward runs in bf16 autocast: SDPA keeps its softmax statistics in float32, the chunked scans
# their own precision (above)
BF16_MIXERS = frozenset({"softmax", "deltanet"})
# with the logits at positions (B, K) only (train.labelled_positions), the last block already computes its output
# at those positions alone (Block.forward, Mixer.forward_at): softmax attention's last layer then takes K queries
# instead of L. Off: the last block over every position, its output gathered (the same values; for benchmarks)
LAST_BLOCK_AT_POSITIONS = True


def make_norm(kind: str, d: int) -> nn.Module:
    return RMSNorm(d) if kind == "rmsnorm" else nn.LayerNorm(d)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, mixer_cls, layer_idx: int, bf16_safe: bool = False):
        super().__init__()
        d = cfg.d_model
        self.bf16_safe = bf16_safe
        self.norm = make_norm(cfg.norm, d)
        self.mixer = mixer_cls(cfg, layer_idx)
        self.gate = None
        if cfg.output_gate:  # block output ⊙ SiLU(W_z x_in), bias initialised to 1
            self.gate = nn.Linear(d, d)
            nn.init.ones_(self.gate.bias)
        self.mlp = None
        if cfg.mlp_ratio > 0:
            hidden = int(cfg.mlp_ratio * d)
            self.mlp_norm = make_norm(cfg.norm, d)
            self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))

    def mixer_input(self, x: torch.Tensor) -> torch.Tensor:
        """The tensor the mixer actually receives (after the pre-norm)."""
        return self.norm(x)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, d) -> (B, L, d); with positions (B, K), the output at those positions only (B, K, d): the
        mixer's forward_at, then the rest per position."""
        u = self.mixer_input(x)
        mix = self.mixer if positions is None else functools.partial(self.mixer.forward_at, positions=positions)
        if not self.bf16_safe and u.device.type == "cuda" and torch.is_autocast_enabled("cuda"):
            with torch.autocast("cuda", enabled=False):
                y = mix(u.float())
        else:
            y = mix(u)
        if positions is not None:
            x, u = at_positions(x, positions), at_positions(u, positions)
        if self.gate is not None:
            y = y * F.silu(self.gate(u))
        x = x + y
        if self.mlp is not None:
            x = x + self.mlp(self.mlp_norm(x))
        return x


class SequenceModel(nn.Module):
    """``target`` "token": logits per position (B, L, n_outputs), or at ``positions`` (B, K) only (B, K,
    n_outputs): training needs logits at labelled positions alone, and the last block computes only those
    (LAST_BLOCK_AT_POSITIONS); "sequence": pooled logits (B, n_outputs)."""

    def __init__(self, arch: str, cfg: ModelConfig, vocab_size: int, n_outputs: int,
                 target: str = "token", input_dim: int = 0, max_len: int = 0, pad_id: int = -1):
        super().__init__()
        self.arch, self.cfg, self.target, self.pad_id = arch, cfg, target, pad_id
        mixer_cls = registry.mixer_class(arch)
        self.embed = nn.Linear(input_dim, cfg.d_model) if input_dim else nn.Embedding(vocab_size, cfg.d_model)
        self.pos = None
        if cfg.pos_embedding == "learned":
            if max_len <= 0:
                raise ValueError("pos_embedding 'learned' needs max_len (the task's sequence length)")
            self.pos = nn.Embedding(max_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, mixer_cls, i, arch in BF16_MIXERS) for i in range(cfg.n_layers))
        self.norm = make_norm(cfg.norm, cfg.d_model)
        self.head = nn.Linear(cfg.d_model, n_outputs)

    def embed_tokens(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        if self.pos is not None:
            h = h + self.pos(torch.arange(x.shape[1], device=x.device))
        return h

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None, head: bool = True) -> torch.Tensor:
        """Logits; with head=False the head's input instead (train.head_loss applies the head itself)."""
        h = self.embed_tokens(x)
        at = positions if self.target == "token" else None
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            h = block(h, at if i == last and LAST_BLOCK_AT_POSITIONS else None)
        if self.target == "sequence":
            h = self.pool(self.norm(h), x)
        else:
            if at is not None and not LAST_BLOCK_AT_POSITIONS:   # the norm is per position: gathered first
                h = at_positions(h, at)
            h = self.norm(h)
        return self.head(h) if head else h

    def pool(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Mean over, or last of, the non-padding positions (inputs are right-padded with pad_id)."""
        if self.pad_id < 0 or x.is_floating_point():
            return h[:, -1] if self.cfg.pooling == "last" else h.mean(dim=1)
        keep = (x != self.pad_id).to(h.dtype)                       # (B, L)
        if self.cfg.pooling == "last":
            last = (keep * torch.arange(1, x.shape[1] + 1, device=x.device)).argmax(dim=1)
            return h[torch.arange(len(h), device=h.device), last]
        return (h * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)

    def mixer_inputs(self, x: torch.Tensor):
        """Yield (layer index, block, the mixer's real input) for each layer."""
        h = self.embed_tokens(x)
        for i, block in enumerate(self.blocks):
            yield i, block, block.mixer_input(h)
            h = block(h)


def build_model(arch: str, vocab_size: int = 0, n_outputs: int | None = None, target: str = "token",
                input_dim: int = 0, max_len: int = 0, pad_id: int = -1, cfg: ModelConfig | None = None,
                **model_settings) -> SequenceModel:
    """Build a model by registry name, e.g. ``build_model("mamba2", vocab_size=256, d_model=64)``."""
    cfg = dataclasses.replace(cfg or ModelConfig(), **model_settings)
    return SequenceModel(arch, cfg, vocab_size, n_outputs if n_outputs is not None else vocab_size, target, input_dim,
                         max_len, pad_id)
