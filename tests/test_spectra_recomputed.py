"""λ recomputed independently from each mixer's parameters by its documented formula (GLA, RetNet, RG-LRU,
qLSTM, the DeltaNet family, unnormalised linear attention), the chunked forms checked across several chunks
(the generic proofs in test_dsf_proofs use one chunk for the longer-chunk models), and every mixer trains."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from eigsweep import registry
from eigsweep.config import ModelConfig
from eigsweep.model import build_model
from eigsweep.mixers.blocks import split_heads

SMALL = ModelConfig(d_model=16, n_layers=2, n_heads=2, d_state=4, expand=2, head_dim=8)


def make(arch, seed=0, **changes):
    torch.manual_seed(seed)
    cfg = dataclasses.replace(SMALL, **changes)
    return registry.mixer_class(arch)(cfg, 0).double()


def rand_u(B=2, L=23, seed=0, scale=1.0):
    return scale * torch.randn(B, L, SMALL.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# --- chunked forward == token-by-token DSF recurrence, across many chunks (with padding) -------------

@pytest.mark.parametrize("arch", ["gla", "retnet", "deltanet", "gated_deltanet"])
@pytest.mark.parametrize("short_conv", ["none", "qk", "qkv"])
def test_multi_chunk_forward_matches_recurrence(arch, short_conv):
    options = {"beta_range": 2.0} if "deltanet" in arch else {}
    mixer = make(arch, short_conv=short_conv, options=options)
    mixer.chunk = 5                      # 23 tokens: 4 full chunks + a padded one
    u = rand_u()
    assert rel_err(mixer(u), mixer.recurrence(u)) <= 1e-9


@pytest.mark.parametrize("arch", ["mamba2", "mamba2_lti", "linear", "linear_unnorm", "norm"])
def test_multi_chunk_forward_matches_recurrence_other_chunked_mixers(arch):
    """The other chunked forms (Mamba-2's SSD, the linear-attention family) across chunks, and the same
    output whatever the chunk size (the chunk size is a speed setting, benchmarks/chunk_sizes.py)."""
    mixer = make(arch)
    mixer.chunk = 5                      # 23 tokens: 4 full chunks + a padded one
    u = rand_u()
    y = mixer(u)
    assert rel_err(y, mixer.recurrence(u)) <= 1e-9
    mixer.chunk = 64                     # one chunk
    assert rel_err(y, mixer(u)) <= 1e-12


def test_short_conv_changes_attention_like_mixers():
    u = rand_u()
    for arch in ("gla", "retnet", "deltanet", "gated_deltanet"):
        assert not torch.allclose(make(arch)(u), make(arch, short_conv="qkv")(u)), arch


# --- RetNet: γ_h = 1 − 2^{−5−h} exactly, input-independent ----------------------------------------

def test_retnet_decays_exact():
    mixer = make("retnet", n_heads=4, d_model=32)
    lam = mixer.eigenvalues(torch.randn(2, 9, 32, dtype=torch.float64))
    assert mixer.eig_dims == ("head",) and lam.shape == (4,)
    expected = torch.tensor([1 - 2.0 ** (-5 - h) for h in range(4)], dtype=torch.float64)
    assert torch.equal(lam, expected)
    assert torch.equal(lam, mixer.dsf(torch.randn(1, 3, 32, dtype=torch.float64)).lam.flatten())


# --- GLA: λ = σ(W x)^{1/16} ∈ (0, 1) per key channel -------------------------------------------------

def test_gla_eigenvalues_are_sigmoid_root_16():
    mixer = make("gla")
    u = rand_u(scale=3.0)
    lam = mixer.eigenvalues(u)
    assert lam.shape == (2, SMALL.n_heads, 23, SMALL.d_model // SMALL.n_heads)
    assert (lam > 0).all() and (lam < 1).all()
    gate = torch.sigmoid(mixer.gate_up(mixer.gate_down(u)))
    torch.testing.assert_close(lam ** 16, split_heads(gate, SMALL.n_heads), rtol=1e-12, atol=0)
    # per key channel: λ varies over the key dim (not a scalar per head)
    assert (lam.std(-1) > 0).all()


def test_gla_float32_is_stable_under_strong_forgetting():
    mixer = make("gla").float()
    mixer.chunk = 8
    with torch.no_grad():
        mixer.gate_up.bias.fill_(-1000.0)        # log λ ≈ −62.5 per token: exp(−g) would overflow
    u = rand_u(L=40).float()
    y = mixer(u)
    assert torch.isfinite(y).all()
    m64 = mixer.double()
    assert rel_err(m64(u.double()), m64.recurrence(u.double())) <= 1e-9


# --- RG-LRU: a = exp(−8 r softplus(Λ)), a^8 init uniform in [0.9, 0.999] ⇒ a ∈ (0.9, 1) --------------

def test_rglru_initial_spectrum():
    mixer = make("rglru", d_model=64, n_heads=4)
    a_c = torch.exp(-8 * F.softplus(mixer.Lambda))
    assert (a_c >= 0.9).all() and (a_c <= 0.999).all()
    assert a_c.min() < 0.92 and a_c.max() > 0.98          # spread over the documented range
    u = torch.randn(4, 50, 64, dtype=torch.float64)
    lam = mixer.eigenvalues(u)
    assert lam.shape == (4, 4, 50, 2 * 64 // 4)
    assert (lam > 0.9).all() and (lam < 1).all()
    # input-dependent through r: log λ / log a^c = r ∈ (0, 1), not constant
    r = torch.log(lam) / torch.log(a_c).view(4, 1, -1)
    assert (r > 0).all() and (r < 1).all() and r.std() > 0.05


def test_rglru_input_normalisation():
    """The input term is √(1 − a²) ⊙ g ⊙ x, recomputed by hand from the conv output and the input gate."""
    mixer = make("rglru")
    u = rand_u()
    f = mixer.features(u)
    a, inp = f["a"], f["inp"]
    _, x = mixer.in_proj(u).chunk(2, dim=-1)
    x = mixer.conv(x)
    g = torch.sigmoid(mixer.in_gate(x)).flatten(-2)
    torch.testing.assert_close(inp, torch.sqrt(1 - a ** 2) * g * x, rtol=1e-10, atol=1e-12)


# --- qLSTM: reversed sigmoid σ(−f)^{ReLU(α)} (default) vs σ(f) ----------------------------------------

def test_qlstm_reversed_sigmoid():
    rev, plain = make("qlstm"), make("qlstm", options={"reversed": False})
    assert rev.reversed and not plain.reversed
    u = rand_u(scale=2.0)
    f = rev.gates(rev.conv(rev.in_proj(u).chunk(2, dim=-1)[1])).chunk(3, dim=-1)[0]
    heads = lambda t: t.view(2, 23, SMALL.n_heads, -1).transpose(1, 2)
    torch.testing.assert_close(rev.eigenvalues(u), heads(torch.sigmoid(-f)), rtol=1e-12, atol=1e-14)  # α = 1
    torch.testing.assert_close(plain.eigenvalues(u), heads(torch.sigmoid(f)), rtol=1e-12, atol=1e-14)
    # the identity σ(−f) = 1 − σ(f) at α = 1 (same seed, same weights)
    torch.testing.assert_close(rev.eigenvalues(u), 1 - plain.eigenvalues(u), rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        rev.alpha.fill_(2.5)
    torch.testing.assert_close(rev.eigenvalues(u), heads(torch.sigmoid(-f) ** 2.5), rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        rev.alpha.fill_(-0.5)                      # ReLU(α) = 0: λ ≡ 1
    assert torch.equal(rev.eigenvalues(u), torch.ones_like(f).view(2, 23, SMALL.n_heads, -1).transpose(1, 2))


# --- DeltaNet: closed form vs eigensolver, negative eigenvalues with β ∈ (0, 2) ------------------------

def _sorted(t):
    return torch.sort(t.real if torch.is_complex(t) else t, dim=-1).values


@pytest.mark.parametrize("arch", ["deltanet", "gated_deltanet"])
def test_deltanet_negative_eigenvalues_match_eigensolver(arch):
    mixer = make(arch, options={"beta_range": 2.0})
    u = rand_u(scale=2.0)
    lam = mixer.eigenvalues(u)
    ev = torch.linalg.eigvals(mixer.dsf(u).lam)
    assert ev.imag.abs().max() < 1e-12
    torch.testing.assert_close(_sorted(lam), _sorted(ev), rtol=1e-10, atol=1e-12)
    assert (lam < 0).any() and (ev.real < -1e-3).any()
    f = mixer.features(u)
    beta, alpha = f["beta"], torch.exp(f["log_alpha"])
    torch.testing.assert_close(lam[..., 0], alpha * (1 - beta))            # ‖k‖ = 1
    torch.testing.assert_close(lam[..., 1:], (alpha * torch.ones_like(beta))[..., None].expand_as(lam[..., 1:]))
    assert (beta > 1).any() and (beta < 2).all()


@pytest.mark.parametrize("arch", ["deltanet", "gated_deltanet"])
def test_deltanet_default_spectrum_in_unit_interval(arch):
    mixer = make(arch)
    lam = mixer.eigenvalues(rand_u(scale=3.0))
    assert (lam > 0).all() and (lam <= 1).all()
    assert ((lam < 1).sum(-1) >= 1).all()    # the k-direction always contracts


def test_deltanet_closed_form_without_unit_keys():
    """The closed form uses ‖k‖² itself, so it holds for unnormalised keys too (vs eigvals)."""
    g = torch.Generator().manual_seed(0)
    k = torch.randn(4, 6, dtype=torch.float64, generator=g) * 0.7
    beta = torch.rand(4, dtype=torch.float64, generator=g) * 2
    Lam = torch.eye(6, dtype=torch.float64) - beta[:, None, None] * k[:, :, None] * k[:, None, :]
    closed = torch.cat([(1 - beta * k.pow(2).sum(-1))[:, None], torch.ones(4, 5, dtype=torch.float64)], -1)
    torch.testing.assert_close(_sorted(closed), _sorted(torch.linalg.eigvals(Lam)), rtol=1e-10, atol=1e-12)


# --- unnormalised linear attention: λ ≡ 1, the negative control -------------------------------------

@pytest.mark.parametrize("short_conv", ["none", "qkv"])
def test_unnormalised_linear_attention_has_unit_eigenvalues(short_conv):
    mixer = make("linear_unnorm", short_conv=short_conv)
    u = rand_u(scale=3.0)
    lam = mixer.eigenvalues(u)
    assert mixer.eig_dims == ("head",) and torch.equal(lam, torch.ones(SMALL.n_heads, dtype=torch.float64))
    assert torch.equal(mixer.dsf(u).lam, torch.ones(2, SMALL.n_heads, 23, 1, dtype=torch.float64))  # Λ_i = I, all i
    # its output is the unnormalised causal sum φ(q_i)ᵀ Σ_{j≤i} φ(k_j) v_jᵀ, by hand
    q, k, v = mixer.conv(*mixer.qkv(u).chunk(3, dim=-1))
    fq, fk, v = (split_heads(t, SMALL.n_heads) for t in (F.elu(q) + 1, F.elu(k) + 1, v))
    y = (fq @ fk.transpose(-1, -2)).tril() @ v                # (B, H, L, P)
    expected = mixer.out(y.transpose(1, 2).flatten(2))
    assert rel_err(mixer(u), expected) <= 1e-12
    normalised = make("linear", short_conv=short_conv)       # same seed, same weights
    assert not torch.allclose(normalised(u), mixer(u))


# --- each trains: a few Adam steps lower the loss --------------------------------------------------

@pytest.mark.parametrize("arch", list(registry.MIXERS))
def test_trains(arch):
    torch.manual_seed(0)
    model = build_model(arch, vocab_size=16, d_model=16, n_heads=2, n_layers=1)
    x = torch.randint(0, 16, (4, 24))
    target = torch.roll(x, 1, dims=1)            # copy the previous token
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(model(x).flatten(0, 1), target.flatten())
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
