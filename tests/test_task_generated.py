"""Offline stand-ins (digits, MNIST-1D) and memory probes (selective copy, induction, parity)."""
import random

import numpy as np
import pytest
import torch

from eigsweep.config import ConfigError
from eigsweep.tasks.digits import Digits, pixel_permutation
from eigsweep.tasks.induction import Induction, generate_induction
from eigsweep.tasks.mnist_1d import MNIST1D
from eigsweep.tasks.parity import Parity
from eigsweep.tasks.selective_copy import SelectiveCopy, generate_selective_copy


def test_digits_sequential_and_permuted():
    from sklearn.datasets import load_digits
    raw = load_digits()
    d = Digits().load()
    assert d.train_x.shape == (1438, 64) and d.test_x.shape == (359, 64)
    assert d.vocab_size == 17 and d.n_outputs == 10 and d.target == "sequence"
    assert 0 <= d.train_x.min() and d.train_x.max() <= 16
    # every sequence is a raw image in row-major order with its label
    lookup = {tuple(r): t for r, t in zip(raw.data.astype(int).tolist(), raw.target.tolist())}
    assert all(lookup[tuple(x)] == y for x, y in zip(d.test_x.tolist()[:50], d.test_y.tolist()[:50]))
    p = Digits(permuted=True, perm_seed=3).load()
    perm = pixel_permutation(3)
    assert torch.equal(p.train_x, d.train_x[:, perm]) and torch.equal(p.train_y, d.train_y)
    assert not torch.equal(p.train_x, d.train_x)
    c = Digits(input_mode="continuous").load()
    assert c.train_x.shape == (1438, 64, 1) and c.input_dim == 1 and c.vocab_size == 0
    assert torch.allclose(c.train_x[..., 0] * 16, d.train_x.float())
    with pytest.raises(ConfigError):
        Digits(input_mode="rgb")


def test_mnist1d_offline_and_restores_global_rng():
    np.random.seed(123)
    random.seed(123)
    before_np, before_py = np.random.get_state()[1].copy(), random.getstate()
    d = MNIST1D(num_samples=200).load()
    assert np.array_equal(np.random.get_state()[1], before_np) and random.getstate() == before_py
    assert d.train_x.shape == (160, 40, 1) and d.test_x.shape == (40, 40, 1)
    assert d.input_dim == 1 and d.vocab_size == 0 and d.n_outputs == 10 and d.target == "sequence"
    assert d.train_x.dtype == torch.float32 and set(d.train_y.tolist()) <= set(range(10))
    again = MNIST1D(num_samples=200).load()
    assert torch.equal(again.train_x, d.train_x)
    other = MNIST1D(num_samples=200, seed=1).load()
    assert not torch.equal(other.train_x, d.train_x)


def test_mnist1d_never_calls_the_downloading_getter(monkeypatch):
    import mnist1d.data

    def boom(*a, **k):
        raise AssertionError("get_dataset downloads")
    monkeypatch.setattr(mnist1d.data, "get_dataset", boom)
    monkeypatch.setattr("requests.get", boom)
    MNIST1D(num_samples=50).load()


def test_selective_copy_labels():
    C, M, NV = 40, 6, 5
    x, y = generate_selective_copy(200, C, M, NV, seed=1)
    assert x.shape == y.shape == (200, C + M)
    for xi, yi in zip(x.tolist(), y.tolist()):
        ctx = xi[:C]
        data = [t for t in ctx if t != 0]
        assert len(data) == M and all(1 <= t <= NV for t in data)
        assert xi[C:] == [NV + 1] * M                       # copy markers
        assert yi[C:] == data                                # the data tokens, in order
        assert yi[:C] == [-100] * C
    a = SelectiveCopy(context_len=C, n_memorize=M, n_values=NV, n_train=10, n_test=4).load()
    b = SelectiveCopy(context_len=C, n_memorize=M, n_values=NV, n_train=10, n_test=4).load()
    assert torch.equal(a.train_x, b.train_x) and not torch.equal(a.train_x[:4], a.test_x)
    assert a.vocab_size == a.n_outputs == NV + 2 and a.target == "token"
    # data positions are spread over the whole context
    pos = (x[:, :C] != 0).nonzero()[:, 1]
    assert pos.min() == 0 and pos.max() == C - 1
    with pytest.raises(ConfigError):
        generate_selective_copy(2, 4, 5, NV, seed=0)


def test_induction_targets():
    L, NV = 24, 6
    x, y = generate_induction(300, L, NV, seed=2)
    for xi, yi in zip(x.tolist(), y.tolist()):
        trig = [i for i, t in enumerate(xi) if t == NV]
        assert len(trig) == 2 and trig[1] == L - 1           # one earlier trigger, and the final one
        assert yi[-1] == xi[trig[0] + 1] != NV              # the token after the first trigger
        assert yi[:-1] == [-100] * (L - 1)
    first = (x[:, :-1] == NV).float().argmax(1)
    assert first.min() == 0 and first.max() == L - 3
    d = Induction(seq_len=L, n_values=NV, n_train=8, n_test=4).load()
    assert d.vocab_size == d.n_outputs == NV + 1 and d.target == "token"
    assert torch.equal(d.train_x, Induction(seq_len=L, n_values=NV, n_train=8, n_test=4).load().train_x)


def test_parity_labels():
    d = Parity(seq_len=17, mode="running", n_train=100, n_test=10).load()
    assert d.target == "token" and d.vocab_size == 2 and d.n_outputs == 2
    for xi, yi in zip(d.train_x.tolist(), d.train_y.tolist()):
        assert set(xi) <= {0, 1}
        assert yi == [sum(xi[: t + 1]) % 2 for t in range(17)]
    f = Parity(seq_len=17, mode="final", n_train=100, n_test=10).load()
    assert f.target == "sequence" and f.train_y.shape == (100,)
    assert torch.equal(f.train_x, d.train_x)
    assert f.train_y.tolist() == [sum(r) % 2 for r in f.train_x.tolist()]
    assert 0.3 < f.train_y.float().mean() < 0.7
    assert not torch.equal(d.train_x[:10], d.test_x)
    with pytest.raises(ConfigError):
        Parity(mode="sum")
