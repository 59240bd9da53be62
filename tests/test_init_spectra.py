"""The documented initial spectra of the models, checked against independent formulas."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from eigsweep import registry
from eigsweep.config import ModelConfig
from eigsweep.mixers.blocks import hippo_legs

CFG = ModelConfig(d_model=32, n_layers=1, n_heads=4, d_state=16, expand=2, head_dim=8)


def make(arch, seed=0, **changes):
    torch.manual_seed(seed)
    return registry.mixer_class(arch)(dataclasses.replace(CFG, **changes), 0).double()


def lti_eigenvalues(m):
    """The spectrum of an LTI mixer (from parameters alone: any input gives the same)."""
    return m.eigenvalues(torch.randn(1, 3, m.cfg.d_model, dtype=torch.float64))


def assert_conjugate_pairs(lam):
    """Eigenvalues of a real system: the second half is the conjugate of the first."""
    half = lam.shape[-1] // 2
    torch.testing.assert_close(lam[..., half:], lam[..., :half].conj(), rtol=0, atol=0)


def test_lru_ring_and_phase():
    m = make("lru", d_state=256)
    lam = lti_eigenvalues(m)
    r = lam.abs()
    assert r.min() >= 0.9 - 1e-12 and r.max() <= 0.99 + 1e-12
    assert r.min() < 0.905 and r.max() > 0.985            # the ring is filled, not a point
    # |λ|² uniform on [0.81, 0.9801] (uniform in area): its mean is near the midpoint
    assert abs((r ** 2).mean().item() - (0.81 + 0.9801) / 2) < 0.01
    phase = torch.exp(m.theta_log)
    assert phase.min() >= 0 and phase.max() <= 2 * math.pi and phase.max() > 1.5 * math.pi
    torch.testing.assert_close(torch.exp(m.gamma_log), torch.sqrt(1 - r ** 2))   # γ normalisation
    assert m.complex_eigenvalues and lam.is_complex()


def test_mamba2_lti_range():
    m = make("mamba2_lti", d_model=256, head_dim=8)       # 64 heads
    lam = lti_eigenvalues(m)
    assert lam.shape == (64,)
    # a ~ U(−8, −2) and λ = exp(−softplus(a)): the built model's λ lie in (0.8808, 0.99966) and fill it
    lo, hi = (torch.exp(-F.softplus(torch.tensor(a, dtype=torch.float64))) for a in (-2.0, -8.0))
    assert 0.8807 < lo < 0.8809 and 0.99966 < hi < 0.99967
    assert (lam > lo).all() and (lam < hi).all()
    assert lam.min() < 0.9 and lam.max() > 0.999
    torch.testing.assert_close(lam, torch.exp(-F.softplus(m.a)), rtol=1e-15, atol=0)
    # constant in time and over samples: the DSF carries the same λ at every token
    u = torch.randn(2, 7, 256, dtype=torch.float64)
    torch.testing.assert_close(m.dsf(u).lam[..., 0], lam[None, :, None].expand(2, 64, 7))
    torch.testing.assert_close(m.eigenvalues(u), lam)


def test_s4_bilinear_legs():
    """At initialisation S4's A is HiPPO-LegS: lower triangular (upper part exactly 0), the LegS entries below
    the diagonal, −(n+1) on it; Ā's eigenvalues are the bilinear images of that diagonal."""
    m = make("s4")
    A = m.state_matrix()
    assert torch.equal(A.triu(1), torch.zeros_like(A))
    legs, _ = hippo_legs(16)
    torch.testing.assert_close(A, legs, rtol=1e-6, atol=0)          # parameters are stored in float32
    lam = lti_eigenvalues(m)
    dt = torch.exp(m.log_dt)[:, None]
    a = torch.diagonal(A)                                   # A triangular: its eigenvalues are its diagonal
    expected = (1 + dt * a / 2) / (1 - dt * a / 2)
    torch.testing.assert_close(torch.sort(lam.real, dim=-1).values, torch.sort(expected, dim=-1).values,
                               rtol=1e-8, atol=1e-10)
    assert lam.imag.abs().max() < 1e-8 and (lam.abs() < 1).all()
    A, _ = hippo_legs(4)
    torch.testing.assert_close(A, torch.tensor([[-1., 0, 0, 0], [-3 ** .5, -2, 0, 0],
                                        [-5 ** .5, -15 ** .5, -3, 0], [-7 ** .5, -21 ** .5, -35 ** .5, -4]],
                                       dtype=torch.float64), rtol=1e-14, atol=0)


def test_s4_kernel_is_markov_parameters():
    """The Krylov-doubled kernel equals C Ā^l B̄ by explicit matrix powers (L not a power of two)."""
    m = make("s4", d_state=6, d_model=3)
    f = m.features(None)                                    # from parameters alone
    K = m.kernel(f, 13)
    for l in (0, 1, 5, 8, 12):
        ref = torch.einsum("hn,hnm,hm->h", m.C, torch.linalg.matrix_power(f["Abar"], l), f["Bbar"])
        torch.testing.assert_close(K[:, l], ref)


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_s4d_stable_conjugate_pairs(init):
    m = make("s4d", options={"s4d_init": init})
    lam = lti_eigenvalues(m)
    assert lam.shape == (32, 16)
    assert_conjugate_pairs(lam)
    dt = torch.exp(m.log_dt)[:, None]
    torch.testing.assert_close(lam.abs(), torch.exp(-dt / 2).expand(32, 16))   # Re A = −½ at init
    assert (lam.abs() < 1).all()
    if init == "lin":                                       # Im A = π n: arg λ = Δ π n (< π for Δ ≤ 0.1, n < 8)
        torch.testing.assert_close(lam[:, :8].angle(), dt * math.pi * torch.arange(8, dtype=torch.float64))


def test_s5_hippo_n_eigenvalues():
    m = make("s5")
    lam = lti_eigenvalues(m)
    assert lam.shape == (16,)
    assert_conjugate_pairs(lam)
    assert (lam.abs() < 1).all()
    # continuous-time Λ (with conjugates) = eig(HiPPO-N) with HiPPO-N = LegS + P Pᵀ, P_n = √(n + ½)
    A, _ = hippo_legs(16)
    P = torch.sqrt(torch.arange(16, dtype=torch.float64) + 0.5)
    ev = torch.linalg.eigvals(A + P[:, None] * P[None, :])
    Lam = torch.complex(-torch.exp(m.log_neg_re), m.lam_im).to(torch.complex128)
    Lam = torch.cat([Lam, Lam.conj()])
    key = lambda t: torch.sort(t.imag).values
    torch.testing.assert_close(key(Lam), key(ev), rtol=1e-5, atol=1e-5)     # parameters are stored in float32
    torch.testing.assert_close(Lam.real, torch.full((16,), -0.5, dtype=torch.float64))


def test_mamba_reversed_sigmoid():
    m = make("mamba")
    u = torch.randn(2, 9, 32, dtype=torch.float64)
    lam = m.eigenvalues(u)                                   # (B, D, L, N)
    assert lam.shape == (2, 64, 9, 16)
    assert (lam > 0).all() and (lam < 1).all()
    s = m.features(u)["s"].transpose(1, 2)                   # Δ pre-activation (B, D, L)
    n = torch.arange(1, 17, dtype=torch.float64)             # A init −n
    torch.testing.assert_close(lam, torch.sigmoid(-s)[..., None] ** n)
    # Δ init log-uniform in [1e-3, 0.1] through the bias: softplus(b_Δ) in that range
    dt0 = F.softplus(m.dt_proj.bias)
    assert dt0.min() >= 1e-3 - 1e-9 and dt0.max() <= 0.1 + 1e-9


@pytest.mark.parametrize("norm_fn", ["exp", "elu", "softplus", "sigmoid"])
def test_norm_attention_offsets_and_eigenvalues(norm_fn):
    m = make("norm", options={"norm_fn": norm_fn})
    torch.testing.assert_close(m.offset.detach(), torch.linspace(4, 9, 4, dtype=torch.float64))
    u = torch.randn(2, 10, 32, dtype=torch.float64)
    lam = m.eigenvalues(u)
    f = {"exp": torch.exp, "elu": F.elu, "softplus": F.softplus, "sigmoid": torch.sigmoid}[norm_fn]
    z = u @ m.qkv.weight[-4:].T + m.offset                  # z_i = w_hᵀu_i + o_h (the last H rows)
    fz = f(z).transpose(1, 2)
    assert torch.isnan(lam[..., 0]).all()
    torch.testing.assert_close(lam[..., 1:], torch.exp(fz[..., :-1] - fz[..., 1:]))
    y, y_rec = m(u), m.recurrence(u)
    assert ((y - y_rec).abs().max() / y.abs().max()) < 1e-10


def test_norm_attention_short_conv_rule():
    from torch import nn
    assert make("norm").conv_mode == "qk"                            # the global default "none" → norm's default
    assert not isinstance(make("norm").conv.q, nn.Identity)
    assert make("norm", short_conv="qkv").conv_mode == "qkv"         # an explicit cfg.short_conv is respected
    m = make("norm", options={"short_conv": "none"})                 # the option switches it off
    assert m.conv_mode == "none" and isinstance(m.conv.q, nn.Identity)
    u = torch.randn(1, 8, 32, dtype=torch.float64)
    assert ((m(u) - m.recurrence(u)).abs().max() / m(u).abs().max()) < 1e-10
