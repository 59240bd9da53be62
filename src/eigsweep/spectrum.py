"""Eigenvalues of a trained model, and the statistics kept in the result files.

All eigenvalues are computed in float64 on a double-precision copy of the model, from each layer's real
mixer input (the block's own pre-norm applied; mixers apply their own convolutions).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import xarray as xr

from eigsweep import registry

# The paper's magnitude bins: [0,0.1], (0.1,0.5], (0.5,0.9], (0.9,1], (1,10], (10,100], >100
MAG_EDGES = (0.1, 0.5, 0.9, 1.0, 10.0, 100.0)
MAG_LABELS = ("[0,0.1]", "(0.1,0.5]", "(0.5,0.9]", "(0.9,1]", "(1,10]", "(10,100]", ">100")
# Phase bins of |arg λ| in degrees: [0,1], (1,10], (10,45], (45,90], (90,180]
PHASE_EDGES = (1.0, 10.0, 45.0, 90.0)
PHASE_LABELS = ("[0,1]", "(1,10]", "(10,45]", "(45,90]", "(90,180]")


def _fine_edges() -> np.ndarray:
    """Upper edges of the fine |λ| histogram: log-spaced from 1e-8 to 1e4 (16 per decade), denser near 1
    (1 ∓ 10^−k for k in 1…6, 8 per decade), and every paper edge exactly, so the 7 bins re-bin exactly."""
    log_spaced = 10.0 ** np.linspace(-8, 4, 12 * 16 + 1)
    k = np.linspace(1, 6, 5 * 8 + 1)
    near_one = np.concatenate([1 - 10.0 ** -k, 1 + 10.0 ** -k])
    edges = np.unique(np.round(np.concatenate([log_spaced, near_one, MAG_EDGES]), 12))
    return np.append(edges, np.inf)


FINE_EDGES = _fine_edges()
# LTI spectra (from parameters alone) are also kept as the eigenvalues themselves, for complex-plane figures:
# a fixed-width, NaN-padded `lti_mode` dim (no coordinate, so runs of any model stack into summary.nc), at most
# this many per layer (an evenly strided subset beyond that), stored as real and imaginary parts.
MAX_LTI_EIGENVALUES = 1024


def float64_copy(model):
    return copy.deepcopy(model).double().eval()


@torch.no_grad()
def layer_eigenvalues(model64, x: torch.Tensor):
    """[(eigenvalues, dims)] per layer for inputs x; ``model64`` is a float64 copy (see float64_copy)."""
    x = x.to(next(model64.parameters()).device)
    if x.is_floating_point():
        x = x.double()
    return [(block.mixer.eigenvalues(u), tuple(block.mixer.eig_dims)) for _, block, u in model64.mixer_inputs(x)]


def eigenvalues(model, x: torch.Tensor) -> xr.DataArray:
    """Every eigenvalue of every layer for inputs x, as a DataArray with dims (layer, sample, head, time, …).

    LTI mixers have no sample/time dims. Attention has no λ at time 0 (NaN there).
    """
    per_layer = layer_eigenvalues(float64_copy(model), x)
    arrays = [xr.DataArray(lam.cpu().numpy(), dims=dims) for lam, dims in per_layer]
    return xr.concat(arrays, dim="layer").assign_coords(layer=np.arange(len(arrays)))


def _per_sample_head(lam: torch.Tensor, dims: tuple[str, ...]) -> torch.Tensor:
    """Arrange as (sample, head, rest) with a size-1 sample dim for input-independent spectra."""
    if "sample" not in dims:
        lam, dims = lam.unsqueeze(0), ("sample",) + dims
    if "head" not in dims:
        lam, dims = lam.unsqueeze(1), dims[:1] + ("head",) + dims[1:]
    order = [dims.index("sample"), dims.index("head")] + [i for i, d in enumerate(dims) if d not in ("sample", "head")]
    lam = lam.permute(order)
    return lam.reshape(lam.shape[0], lam.shape[1], -1)


def _bin_counts(values: torch.Tensor, valid: torch.Tensor, edges, n_bins: int) -> torch.Tensor:
    """Counts per (sample, head, bin); bins are right-closed like the paper's, and +inf falls in the last."""
    idx = torch.bucketize(values.contiguous(), torch.as_tensor(edges, dtype=values.dtype, device=values.device), right=False)
    idx = torch.where(valid, idx, torch.full_like(idx, n_bins))  # invalid values go to a dropped extra bin
    counts = torch.zeros(*values.shape[:2], n_bins + 1, dtype=torch.float64, device=values.device)
    counts.scatter_add_(2, idx, torch.ones_like(values, dtype=torch.float64))
    return counts[..., :n_bins]


def _undefined(lam: torch.Tensor, dims: tuple[str, ...], lam0_undefined: bool) -> torch.Tensor:
    """NaN eigenvalues that are genuinely undefined, i.e. all but the structural NaN at time 0 of mixers whose
    λ_0 multiplies h_{-1} = 0 (the attention mixers)."""
    nan = torch.isnan(lam.abs())
    if lam0_undefined and "time" in dims:
        nan = nan.clone()
        nan.select(dims.index("time"), 0).fill_(False)
    return nan


class SpectrumAccumulator:
    """Accumulates per-(sample, head) bin counts and a fine histogram, chunk by chunk (online).

    Magnitudes are binned as they are: +inf (a log ratio that overflowed float64, e.g. softmax attention with
    huge weights) counts in '>100' and in the last fine bin; NaN eigenvalues are not binned and are counted in
    ``n_nonfinite`` (the structural NaN at time 0 of the attention mixers excepted).
    """

    def __init__(self):
        self.mag, self.phase, self.fine, self.n = {}, {}, {}, {}
        self.negative, self.nonfinite, self.complex = {}, {}, {}
        self.lti = {}   # layer -> the eigenvalues of an input-independent (LTI) spectrum, flattened

    def update(self, layer: int, lam: torch.Tensor, dims: tuple[str, ...], lam0_undefined: bool = False):
        if "sample" not in dims and "time" not in dims:
            flat = lam.detach().reshape(-1).cpu()
            stride = -(-len(flat) // MAX_LTI_EIGENVALUES)
            self.lti[layer] = flat[::stride].to(torch.complex128).numpy()
        nonfinite = _per_sample_head(_undefined(lam, dims, lam0_undefined), dims).sum((0, 2)).double()
        lam = _per_sample_head(lam, dims)
        mag = lam.abs().double()
        valid = ~torch.isnan(mag)
        phase = torch.rad2deg(torch.angle(lam)).abs().double() if lam.is_complex() else \
            torch.where(lam < 0, 180.0, 0.0).double()
        mag_counts = _bin_counts(mag, valid, MAG_EDGES, len(MAG_LABELS))
        phase_counts = _bin_counts(phase, valid, PHASE_EDGES, len(PHASE_LABELS))
        fine = _bin_counts(mag, valid, FINE_EDGES[:-1], len(FINE_EDGES)).sum(0)
        negative = torch.zeros(lam.shape[1], dtype=torch.float64) if lam.is_complex() else \
            ((lam < 0) & valid).sum((0, 2)).double().cpu()
        for store, new in ((self.mag, mag_counts), (self.phase, phase_counts)):
            store.setdefault(layer, []).append(new.cpu())
        for store, new in ((self.fine, fine), (self.negative, negative), (self.nonfinite, nonfinite)):
            store[layer] = store.get(layer, 0) + new.cpu()
        self.complex[layer] = lam.is_complex()

    def dataset(self) -> xr.Dataset:
        """bin_fraction (+_std), phase_fraction (+_std) over samples, fine_count, n_eigenvalues (the binned,
        i.e. not NaN, eigenvalues), negative_fraction (share of the binned real eigenvalues that are < 0; NaN
        for complex spectra) and n_nonfinite (NaN eigenvalues, not binned), all per (layer, head)."""
        layers = sorted(self.mag)
        out = {}
        for name, store, labels, dim in (("bin_fraction", self.mag, MAG_LABELS, "bin"),
                                          ("phase_fraction", self.phase, PHASE_LABELS, "phase_bin")):
            counts = np.stack([torch.cat(store[l]).numpy() for l in layers])        # (layer, sample, head, bin)
            total = counts.sum(-1, keepdims=True)
            frac = np.divide(counts, total, out=np.full_like(counts, np.nan), where=total > 0)
            out[name] = (("layer", "head", dim), frac.mean(1))
            out[name + "_std"] = (("layer", "head", dim), frac.std(1))
            if name == "bin_fraction":
                n = total[..., 0].sum(1)                                              # (layer, head)
                out["n_eigenvalues"] = (("layer", "head"), n)
                out["n_samples"] = ((), counts.shape[1])
        neg = np.stack([np.full(n.shape[1], np.nan) if self.complex[l] else self.negative[l].numpy() for l in layers])
        out["negative_fraction"] = (("layer", "head"), np.divide(neg, n, out=np.full_like(n, np.nan), where=n > 0))
        out["n_nonfinite"] = (("layer", "head"), np.stack([self.nonfinite[l].numpy() for l in layers]))
        out["fine_count"] = (("layer", "head", "fine_bin"), np.stack([self.fine[l].numpy() for l in layers]))
        lower = np.concatenate([[0.0], FINE_EDGES[:-1]])
        ds = xr.Dataset(out, coords=dict(
            layer=layers, head=np.arange(out["bin_fraction"][1].shape[1]), bin=list(MAG_LABELS),
            phase_bin=list(PHASE_LABELS), fine_bin=np.arange(len(FINE_EDGES)),
            fine_lower=("fine_bin", lower), fine_upper=("fine_bin", FINE_EDGES)))
        return ds.merge(self.lti_dataset(layers)) if self.lti else ds

    def lti_dataset(self, layers) -> xr.Dataset:
        """lti_eigenvalue_real/imag (layer, lti_mode), NaN-padded: the eigenvalues of LTI layers."""
        n = MAX_LTI_EIGENVALUES
        re, im = np.full((len(layers), n), np.nan), np.full((len(layers), n), np.nan)
        for i, l in enumerate(layers):
            if l in self.lti:
                re[i, : len(self.lti[l])], im[i, : len(self.lti[l])] = self.lti[l].real, self.lti[l].imag
        dims = ("layer", "lti_mode")
        return xr.Dataset({"lti_eigenvalue_real": (dims, re), "lti_eigenvalue_imag": (dims, im)},
                          coords=dict(layer=layers))


# The informative view's variables: the full view's, prefixed "informative_"
INFORMATIVE_VARS = ("bin_fraction", "bin_fraction_std", "phase_fraction", "phase_fraction_std", "fine_count",
                    "negative_fraction")


def informative_eigenvalues(lam: torch.Tensor, dims: tuple[str, ...], arch: str | None):
    """(eigenvalues, dims) of the informative ones for a model with structural eigenvalues (the DeltaNet
    family: α(1 − β‖k‖²) only, not the d_k − 1 copies of α), as ``registry.INFORMATIVE`` declares; None for
    models whose eigenvalues are all informative."""
    structural = registry.mixer_info(arch).structural if arch in registry.MIXERS else None
    if structural is None:
        return None
    for dim, index in registry.INFORMATIVE[structural].items():
        i = dims.index(dim)
        lam, dims = lam.select(i, index), dims[:i] + dims[i + 1:]
    return lam, dims


@torch.no_grad()
def measure(model, x: torch.Tensor, max_elements: int = 2**23) -> xr.Dataset:
    """The spectrum statistics of a model on a fixed evaluation batch x.

    Eigenvalues are computed a few samples at a time and folded into running counts, so that no chunk holds
    more than about ``max_elements`` numbers per layer: neither eigenvalues (Mamba-1: channels × states per
    token) nor the mixer's intermediates while computing them (softmax attention: its L² scores per head,
    ``Mixer.working_elements``). For models with structural eigenvalues (registry ``structural``) the
    informative ones are binned again on their own: the ``informative_*`` variables.
    """
    acc, informative, model64 = SpectrumAccumulator(), SpectrumAccumulator(), float64_copy(model)
    arch = getattr(model, "arch", None)
    mixers = [block.mixer for block in model64.blocks]
    s, chunk = 0, 1   # the first sample tells how many eigenvalues one sample has
    while s < len(x):
        per_layer = layer_eigenvalues(model64, x[s : s + chunk])
        for layer, (lam, dims) in enumerate(per_layer):
            if "sample" not in dims and s > 0:
                continue  # input-independent spectrum: one "sample" is all there is
            acc.update(layer, lam, dims, mixers[layer].lam0_undefined)
            view = informative_eigenvalues(lam, dims, arch)
            if view is not None:
                informative.update(layer, *view, mixers[layer].lam0_undefined)
        if s == 0:
            per_sample = max([lam.numel() for lam, _ in per_layer] + [m.working_elements(x.shape[1]) for m in mixers])
            s, chunk = chunk, max(1, max_elements // per_sample)
        else:
            s += chunk
    ds = acc.dataset()
    if informative.mag:
        view = informative.dataset()[list(INFORMATIVE_VARS)]
        ds = ds.assign({"informative_" + v: view[v] for v in INFORMATIVE_VARS})
    return ds
