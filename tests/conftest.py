import pytest
import torch


@pytest.fixture(autouse=True)
def _torch_threads():
    torch.set_num_threads(1)
    yield


@pytest.fixture
def fake_submitit_handler():
    """Stands in for submitit's SIGUSR2 handler in a Slurm job: call checkpoint(), 'requeue', exit; each call
    records its frame, checkpoint()'s answer and SIGTERM's disposition then. The test sets ``handler.job`` to the
    TrainJob whose checkpoint() submitit would call."""
    import signal

    calls = []

    def handler(signum, frame):
        calls.append(dict(frame=frame, delayed=handler.job.checkpoint(), sigterm=signal.getsignal(signal.SIGTERM)))
        raise SystemExit(-1)
    old = signal.signal(signal.SIGUSR2, handler)
    yield handler, calls
    signal.signal(signal.SIGUSR2, old)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(0)


def assert_importing_does_not_import_triton(*modules: str) -> None:
    """Importing ``modules`` in a fresh Python leaves Triton unimported (it is loaded on a fused kernel's first
    use only: CI has no GPU and may have no Triton)."""
    import subprocess
    import sys

    code = f"import sys, {', '.join(modules)}; assert 'triton' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got − ref| over max |ref|, in float64 (a fused kernel's float32 result against a reference)."""
    return ((got.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def run_in_triton_interpreter(module: str, call: str) -> None:
    """Runs ``module.call`` (a check of a test module beside this file) in a fresh Python with
    TRITON_INTERPRET=1, where Triton runs its kernels on CPU tensors; skips where Triton is not installed."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("triton")
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import {module}; {module}.{call}"
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TRITON_INTERPRET": "1"},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
