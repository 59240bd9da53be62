import pytest
import torch


@pytest.fixture(autouse=True)
def _torch_threads():
    torch.set_num_threads(1)
    yield


@pytest.fixture
def fake_submitit_handler():
    """Stands in for submitit's SIGUSR2 handler in a Slurm job: call checkpoint(), 'requeue', exit. The test
    sets ``handler.job`` to the TrainJob whose checkpoint() submitit would call."""
    import signal

    calls = []

    def handler(signum, frame):
        calls.append(dict(frame=frame, delayed=handler.job.checkpoint()))
        raise SystemExit(-1)
    old = signal.signal(signal.SIGUSR2, handler)
    yield handler, calls
    signal.signal(signal.SIGUSR2, old)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(0)
