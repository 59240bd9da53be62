"""Mamba-1's parallel scan: equal to the token loop at lengths around its chunk size, and its hand-written
backward equal to autograd's numerical gradient."""
import pytest
import torch

from eigsweep.mixers.scan import _scan, linear_scan


@pytest.mark.parametrize("L", [1, 5, 8, 9, 64, 77, 200])
def test_scan_matches_loop(L):
    g = torch.Generator().manual_seed(L)
    a = torch.rand(2, L, 3, 2, dtype=torch.float64, generator=g)
    b = torch.randn(2, L, 3, 2, dtype=torch.float64, generator=g)
    h, ref = torch.zeros(2, 3, 2, dtype=torch.float64), []
    for i in range(L):
        h = a[:, i] * h + b[:, i]
        ref.append(h)
    torch.testing.assert_close(_scan(a, b), torch.stack(ref, 1), rtol=1e-12, atol=1e-12)


def test_scan_backward_gradcheck():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 37, 3, 2, dtype=torch.float64, generator=g).requires_grad_()
    b = torch.randn(2, 37, 3, 2, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(linear_scan, (a, b))
