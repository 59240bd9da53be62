"""The task presets in config.yaml: every preset names a registered task and valid Params; the small offline
presets load and a tiny model runs a forward pass on them."""
from pathlib import Path

import pytest
import torch
import yaml

from eigsweep import registry
from eigsweep.model import build_model

PRESETS = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text())["tasks"]
OFFLINE_SMALL = ["mqar_small", "listops_small", "digits_small", "digits_permuted_small", "mnist1d_small",
                 "selective_copy_small", "induction_small", "parity_small", "parity_final_small"]


def make(preset):
    params = dict(PRESETS[preset])
    return registry.task_class(params.pop("name"))(**params)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_instantiates(preset):
    assert PRESETS[preset]["name"] in registry.TASKS
    make(preset)


def test_every_task_has_presets():
    names = {p["name"] for p in PRESETS.values()}
    assert names == set(registry.TASKS)
    for task in registry.TASKS:
        assert any(k.startswith(task) and k.endswith("_small") for k in PRESETS), task


@pytest.mark.parametrize("preset", OFFLINE_SMALL)
def test_small_offline_preset_runs(preset):
    task = make(preset)
    task.check_available()
    d = task.load()
    assert len(d.train_x) == len(d.train_y) and len(d.test_x) == len(d.test_y) > 0
    torch.manual_seed(0)
    model = build_model("softmax", vocab_size=d.vocab_size, n_outputs=d.n_outputs, target=d.target,
                        input_dim=d.input_dim, d_model=16, n_layers=1)
    out = model(d.train_x[:3])
    if d.target == "token":
        assert out.shape == (3, d.train_x.shape[1], d.n_outputs)
        assert d.train_y.shape == d.train_x.shape[:2]
        lab = d.train_y[d.train_y != -100]
        assert lab.numel() > 0 and lab.min() >= 0 and lab.max() < d.n_outputs
    else:
        assert out.shape == (3, d.n_outputs) and d.train_y.min() >= 0 and d.train_y.max() < d.n_outputs
    if not d.input_dim:
        assert d.train_x.max() < d.vocab_size and d.train_x.min() >= 0


@pytest.mark.parametrize("preset", [p for p in sorted(PRESETS) if "data_dir" in PRESETS[p]])
def test_user_data_presets_fail_clearly(preset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                  # no data there
    with pytest.raises(FileNotFoundError, match="never downloads|LRA release"):
        make(preset).check_available()
