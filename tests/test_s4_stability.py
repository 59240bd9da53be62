"""S4 is stable by construction: A = skew-symmetric − (positive definite), so for any parameter values every
eigenvalue of the bilinear Ā lies strictly inside the unit circle, also after training."""

import pytest
import torch
import torch.nn.functional as F

from eigsweep import registry
from eigsweep.config import ModelConfig
from eigsweep.model import build_model
from eigsweep.spectrum import eigenvalues as model_eigenvalues
from eigsweep.tasks.mqar import generate_mqar

CFG = ModelConfig(d_model=8, n_layers=1, d_state=16)
U = torch.zeros(1, 2, CFG.d_model, dtype=torch.float64)


def make(seed=0):
    torch.manual_seed(seed)
    return registry.mixer_class("s4")(CFG, 0).double()


def assert_stable(m):
    A = m.state_matrix()
    assert torch.linalg.eigvalsh(A + A.T).max() < 0               # dissipative: A + Aᵀ ≺ 0
    Abar = m.features(U)["Abar"]
    assert torch.linalg.matrix_norm(Abar, ord=2).max() < 1        # the Cayley transform is a contraction
    lam = m.eigenvalues(U)
    assert lam.abs().max() < 1
    return lam.abs().max().item()


@pytest.mark.parametrize("seed", range(5))
def test_random_parameters_are_stable(seed):
    m = make(seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (m.A_skew, m.A_log_damp, m.A_low_rank, m.log_dt):
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 3)
    assert_stable(m)


@pytest.mark.parametrize("skew,log_damp,low_rank,log_dt", [
    (100.0, -10.0, 0.0, -7.0),      # nearly undamped, fast rotation, tiny step
    (100.0, -10.0, 0.0, 3.0),       # ... and a huge step (bilinear: λ near −1)
    (0.0, 5.0, 10.0, 3.0),          # strongly damped, large low-rank part
    (-50.0, -10.0, 1e-3, 0.0),
])
def test_adversarial_parameters_are_stable(skew, log_damp, low_rank, log_dt):
    m = make()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        m.A_skew.copy_(skew * torch.randn(m.A_skew.shape, generator=g, dtype=torch.float64))
        m.A_log_damp.fill_(log_damp)
        m.A_low_rank.copy_(low_rank * torch.randn(m.A_low_rank.shape, generator=g, dtype=torch.float64))
        m.log_dt.fill_(log_dt)
    assert 0.5 < assert_stable(m) < 1


def test_a_dense_unconstrained_matrix_would_not_be():
    """The same parameters in the old free dense A (= W here) give |λ| > 1: the constraint is what helps."""
    m = make()
    g = torch.Generator().manual_seed(0)
    W = torch.randn(16, 16, generator=g, dtype=torch.float64) + 0.5 * torch.eye(16, dtype=torch.float64)
    dt = torch.exp(m.log_dt)[:, None, None]
    I = torch.eye(16, dtype=torch.float64)
    free = torch.linalg.eigvals(torch.linalg.solve(I - dt / 2 * W, I + dt / 2 * W))
    assert free.abs().max() > 1
    with torch.no_grad():
        m.A_skew.copy_(W)
    assert_stable(m)


def test_training_keeps_every_eigenvalue_inside_the_unit_circle():
    """A few hundred steps on a small MQAR at a high learning rate, no weight decay: all |λ| ≤ 1 after."""
    torch.manual_seed(0)
    x, y = (torch.as_tensor(t) for t in generate_mqar(512, vocab_size=64, seq_len=32, num_kv_pairs=4, seed=0))
    model = build_model("s4", vocab_size=64, d_model=16, d_state=16, n_layers=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for step in range(300):
        idx = torch.randint(0, len(x), (32,))
        loss = F.cross_entropy(model(x[idx]).flatten(0, 1), y[idx].flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-20:]) < 0.9 * sum(losses[:20])              # it learned something
    assert model.blocks[0].mixer.A_skew.abs().max() > 0.1          # and A moved away from LegS
    lam = model_eigenvalues(model, x[:2])
    assert lam.dims == ("layer", "head", "state")
    assert float(abs(lam).max()) <= 1
