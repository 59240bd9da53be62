"""The one parallel scan (mixers/scan.py): equal to the token loop at lengths around its chunk size, along any
dim and with a broadcast a, its hand-written backward equal to the numerical gradient, and usable under
torch.func.vmap (forward and gradient), as packs of stacked models need."""
import pytest
import torch

from eigsweep.mixers.scan import linear_scan


def loop(a, b):
    h, ref = torch.zeros_like(b[:, 0]), []
    for i in range(b.shape[1]):
        h = a[:, i] * h + b[:, i]
        ref.append(h)
    return torch.stack(ref, 1)


@pytest.mark.parametrize("L", [1, 2, 5, 8, 9, 33, 64, 77, 200])
def test_scan_matches_loop(L):
    g = torch.Generator().manual_seed(L)
    a = torch.rand(2, L, 3, 2, dtype=torch.float64, generator=g) * 2 - 1
    b = torch.randn(2, L, 3, 2, dtype=torch.float64, generator=g)
    torch.testing.assert_close(linear_scan(a, b), loop(a, b), rtol=1e-12, atol=1e-12)


def test_scan_along_another_dim_with_broadcast_decay():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 11, 4, 1, dtype=torch.float64, generator=g)        # broadcast over the last dim
    b = torch.randn(2, 3, 11, 4, 5, dtype=torch.float64, generator=g)
    ref = loop(a.expand_as(b).flatten(0, 1), b.flatten(0, 1)).view_as(b)
    torch.testing.assert_close(linear_scan(a, b, dim=2), ref, rtol=1e-12, atol=1e-12)


def test_scan_backward_gradcheck():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 37, 3, 2, dtype=torch.float64, generator=g).requires_grad_()
    b = torch.randn(2, 37, 3, 2, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(linear_scan, (a, b))


def test_scan_under_vmap():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(4, 2, 19, 3, dtype=torch.float64, generator=g)          # 4 stacked members
    b = torch.randn(4, 2, 19, 3, dtype=torch.float64, generator=g)
    torch.testing.assert_close(torch.func.vmap(linear_scan)(a, b), torch.stack([loop(x, y) for x, y in zip(a, b)]))
    grad = torch.func.vmap(torch.func.grad(lambda x, y: linear_scan(x, y).pow(2).sum()))(a, b)
    ref = torch.stack([torch.func.grad(lambda x, y: loop(x, y).pow(2).sum())(x, y) for x, y in zip(a, b)])
    torch.testing.assert_close(grad, ref)
