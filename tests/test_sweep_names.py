"""Every task preset meant for a CPU, and every modification, trains by name (a few steps each)."""
import dataclasses

import numpy as np
import pytest

from eigsweep.config import EvalConfig, ModelConfig, RunSpec, TrainConfig, load_config
from eigsweep.train import train_run

CONFIG = load_config("config.yaml")
OFFLINE_SMALL = ["mqar_small", "listops_small", "digits_small", "digits_permuted_small", "mnist1d_small",
                 "selective_copy_small", "induction_small", "parity_small", "parity_final_small"]
# each modification on a model it applies to
MODIFICATION_ARCH = {"none": "softmax", "gate": "linear", "conv_qk": "softmax", "conv_qkv": "linear",
                     "depth1": "mamba2", "depth4": "softmax", "norm_exp": "norm", "norm_elu": "norm",
                     "norm_softplus": "norm", "norm_sigmoid": "norm", "pseudo_lti": "mamba2", "beta2": "deltanet",
                     "depth1_conv_qk": "softmax"}


def spec(task: str, arch: str = "softmax", modification: str = "none") -> RunSpec:
    model = ModelConfig(d_model=16, n_layers=2, n_heads=2, d_state=4, head_dim=8)
    model = dataclasses.replace(model, **CONFIG["modifications"][modification])
    if task == "parity_final_small":
        model.pooling = "last"
    return RunSpec(sweep="names", arch=arch, task=task, modification=modification, seed=0, lr=1e-3,
                   task_params=dict(CONFIG["tasks"][task]), model=model,
                   train=TrainConfig(steps=3, batch_size=8, warmup_steps=1, eval_every=3, device="cpu"),
                   eval=EvalConfig(n_samples=2, batch_size=64, max_test_examples=64))


def test_every_modification_has_an_arch_here():
    assert set(MODIFICATION_ARCH) == set(CONFIG["modifications"])


@pytest.mark.parametrize("task", OFFLINE_SMALL)
def test_offline_small_task_trains(task, tmp_path):
    ds = train_run(spec(task), tmp_path / "r.nc")
    assert ds.status.item() == "ok" and ds.steps_done.item() == 3
    assert np.isfinite(ds.train_loss.values).all()
    np.testing.assert_allclose(ds.bin_fraction.sum("bin"), 1.0)


@pytest.mark.parametrize("modification", sorted(MODIFICATION_ARCH))
def test_modification_trains(modification, tmp_path):
    arch = MODIFICATION_ARCH[modification]
    ds = train_run(spec("mqar_small", arch, modification), tmp_path / "r.nc")
    assert ds.status.item() == "ok"
    n_layers = dataclasses.replace(ModelConfig(n_layers=2), **CONFIG["modifications"][modification]).n_layers
    assert ds.sizes["layer"] == n_layers
