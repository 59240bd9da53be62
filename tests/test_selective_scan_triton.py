"""The fused (Triton) selective scan of Mamba-1 against the torch scan of mamba.py.

CPU (normal suite): the dispatch falls back to the torch scan, with the same output as before, and importing
the mixer does not import Triton. GPU (``-m gpu``): forward and gradients for x, Δ, A, B, C, D equal the torch
scan's in float32 (max error ≤ 1e-4 of the largest reference value; both scans are within a few 1e-7 of
float64), for L not a multiple of the checkpoint chunk, N = 16 and 128 (and N not a power of two), channel
counts not a multiple of the channel block; the Mamba mixer on CUDA (fused) equals the same mixer forced onto
the torch scan; and the fused scan's peak memory (checkpoints, per-block sums of dB and dC) stays below half the
(B, L, D, N) history (the torch scan's is several times the history).
"""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from eigsweep.config import ModelConfig
from eigsweep.mixers import selective_scan_triton as sst
from eigsweep.mixers.mamba import Mamba
from eigsweep.mixers.scan import linear_scan
from conftest import assert_importing_does_not_import_triton, run_in_triton_interpreter

CFG = ModelConfig(d_model=16, n_layers=1, n_heads=1, d_state=8, expand=2, head_dim=8)
gpu = pytest.mark.skipif(not torch.cuda.is_available() or sst._triton() is None, reason="needs CUDA and Triton")


def scan_inputs(Bt, L, D, N, device="cpu", dtype=torch.float32, seed=0):
    """x, Δ, A, B, C, D like Mamba's: Δ = softplus(·) around 0.1, A = −(1…N) with noise."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    x, dt = r(Bt, L, D), F.softplus(r(Bt, L, D) - 2)
    A = -torch.arange(1, N + 1, dtype=torch.float64).repeat(D, 1) * torch.exp(0.1 * r(D, N))
    return [t.to(device, dtype).requires_grad_() for t in (x, dt, A, r(Bt, L, N), r(Bt, L, N), r(D))]


def old_forward(m: Mamba, u):
    """Mamba.forward as it was before the fused scan existed."""
    f = m.features(u)
    inp = (f["dt"] * f["x"])[..., None] * f["B"][:, :, None, :]
    h = linear_scan(torch.exp(f["log_lam"]), inp)
    return m._out(torch.einsum("bldn,bln->bld", h, f["C"]) + f["x"] * m.D, f["z"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_dispatch_falls_back_to_the_torch_scan(dtype):
    torch.manual_seed(0)
    m = Mamba(CFG).to(dtype)
    u = torch.randn(2, 19, CFG.d_model, dtype=dtype)
    assert not sst.fused_available(u)
    assert torch.equal(m(u), old_forward(m, u))
    ins = scan_inputs(2, 11, 5, 3, dtype=dtype)
    assert torch.equal(sst.selective_scan(*ins), sst.selective_scan_ref(*ins))


def test_importing_the_mixer_does_not_import_triton():
    assert_importing_does_not_import_triton("eigsweep.mixers.mamba")


def assert_close_to_max(got, ref, what, tol=1e-4):
    err = ((got.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-6)).item()
    assert err <= tol, f"{what}: max error {err:.2e} of the largest value"


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("Bt,L,D,N", [(2, 37, 20, 16), (3, 100, 40, 128), (2, 512, 33, 128), (1, 1, 5, 7),
                                      (4, 129, 64, 16)])
def test_fused_matches_torch_scan(Bt, L, D, N):
    ins = scan_inputs(Bt, L, D, N, "cuda")
    w = torch.randn(Bt, L, D, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    y = sst.selective_scan(*ins)
    grads = torch.autograd.grad((y * w).sum(), ins)
    y_ref = sst.selective_scan_ref(*ins)
    grads_ref = torch.autograd.grad((y_ref * w).sum(), ins)
    assert_close_to_max(y, y_ref, "y")
    for name, g, g_ref in zip(["x", "dt", "A", "B", "C", "D"], grads, grads_ref):
        assert g.dtype == g_ref.dtype and g.shape == g_ref.shape
        assert_close_to_max(g, g_ref, f"d{name}")


@pytest.mark.gpu
@gpu
def test_fused_accepts_bf16_inputs_and_returns_their_grad_dtypes():
    ins = [t.detach().to(torch.bfloat16).requires_grad_() for t in scan_inputs(2, 40, 24, 16, "cuda")]
    y = sst.selective_scan(*ins[:5])
    assert y.dtype == torch.float32
    y.sum().backward()
    assert all(t.grad.dtype == torch.bfloat16 and torch.isfinite(t.grad).all() for t in ins[:5])


@pytest.mark.gpu
@gpu
def test_mamba_mixer_on_cuda_uses_the_fused_scan_and_matches(monkeypatch):
    torch.manual_seed(0)
    cfg = dataclasses.replace(CFG, d_model=32, d_state=128)
    m = Mamba(cfg).cuda()
    u = torch.randn(3, 70, cfg.d_model, device="cuda")
    y = m(u)
    grads = torch.autograd.grad(y.square().sum(), list(m.parameters()))
    monkeypatch.setattr(sst, "fused_available", lambda t: False)
    y_ref = m(u)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), list(m.parameters()))
    assert_close_to_max(y, y_ref, "mixer output")
    for (name, _), g, g_ref in zip(m.named_parameters(), grads, grads_ref):
        assert_close_to_max(g, g_ref, f"d{name}")


@pytest.mark.gpu
@gpu
def test_fused_scan_never_materialises_the_state_history():
    Bt, L, D, N = 8, 512, 256, 128
    ins = scan_inputs(Bt, L, D, N, "cuda")
    history = Bt * L * D * N * 4
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    sst.selective_scan(*ins).sum().backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    assert peak < history / 2, f"peak {peak / 2**20:.0f} MiB vs history {history / 2**20:.0f} MiB"


def check_vmapped_fused_scan(device: str) -> None:
    """The fused scan vmapped over 3 members (a pack: every member its own x, Δ, A, B, C) equals each member's
    torch scan in float64, forward and gradients; and with A shared (in_dims None) too."""
    M, shape = 3, (2, 21, 20, 8)                         # L not a multiple of the checkpoint chunk
    per = [scan_inputs(*shape, device, seed=m)[:5] for m in range(M)]
    ins = [torch.stack([p[i].detach() for p in per]).requires_grad_() for i in range(5)]
    w = torch.randn(M, *shape[:3], device=device, generator=torch.Generator(device).manual_seed(7))
    for in_dims in [(0, 0, 0, 0, 0), (0, 0, None, 0, 0)]:
        args = [t if d == 0 else t[1] for t, d in zip(ins, in_dims)]
        y = torch.func.vmap(sst.fused_scan, in_dims=in_dims)(*args)
        grads = torch.autograd.grad((y * w).sum(), args)
        for m in range(M):
            ref = [(t[m] if d == 0 else t).detach().double().requires_grad_() for t, d in zip(args, in_dims)]
            y_ref = sst.selective_scan_ref(*ref)
            grads_ref = torch.autograd.grad((y_ref * w[m].double()).sum(), ref)
            assert_close_to_max(y[m], y_ref, f"y of member {m}, in_dims {in_dims}")
            for name, g, g_ref, d in zip(["x", "dt", "A", "B", "C"], grads, grads_ref, in_dims):
                if d == 0:
                    assert_close_to_max(g[m], g_ref, f"d{name} of member {m}")
        if in_dims[2] is None:                           # a shared A's gradient sums its members'
            A = args[2].detach().double().requires_grad_()
            y_ref = torch.stack([sst.selective_scan_ref(*[t[m].double() for t in args[:2]], A,
                                                        *[t[m].double() for t in args[3:]]) for m in range(M)])
            assert_close_to_max(grads[2], torch.autograd.grad((y_ref * w.double()).sum(), A)[0], "shared dA")


@pytest.mark.gpu
@gpu
def test_vmapped_fused_scan_gives_each_member_its_own_scan():
    check_vmapped_fused_scan("cuda")


def test_vmapped_fused_scan_under_the_triton_interpreter():
    """The same check on CPU through Triton's interpreter (TRITON_INTERPRET=1), where Triton is installed:
    the packed kernels' indexing (one A per group of samples) and the vmap rule, without a GPU."""
    run_in_triton_interpreter("test_selective_scan_triton", "check_vmapped_fused_scan('cpu')")
