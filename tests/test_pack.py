"""Packs: a pack of runs trains each member exactly as its solo run (CPU, float64), per-member AdamW,
divergence and early stop stay inside their member, resume is exact, unpackable mixers fall back to solo."""
import numpy as np
import pytest
import torch

from eigsweep import registry
from eigsweep.config import EvalConfig, ModelConfig, RunSpec, TrainConfig
from eigsweep.pack import Pack, StackedAdamW, train_pack
from eigsweep.packs import pack_key
from eigsweep.results import read_result
from eigsweep.train import Preempted, train_run

F64 = dict(dtype=torch.float64)
SLOW = {"retnet": 60, "gla": 60, "rglru": 60, "s5": 60, "mamba2": 60, "mamba2_lti": 60, "s4": 60, "gated_deltanet": 60,
        "deltanet": 60}   # fewer steps for the slowest mixers


def spec(arch="softmax", seed=0, lr=3e-3, steps=120, **train):
    return RunSpec(
        sweep="t", arch=arch, task="mqar_tiny", modification="none", seed=seed, lr=lr,
        task_params=dict(name="mqar", vocab_size=24, seq_len=12, num_kv_pairs=2, n_train=64, n_test=16),
        model=ModelConfig(d_model=8, n_layers=2, n_heads=2, d_state=4, head_dim=4, expand=2),
        train=TrainConfig(**dict(dict(steps=steps, batch_size=8, warmup_steps=10, eval_every=30, device="cpu",
                                      spectrum_steps=[30], target_acc=1.1), **train)),
        eval=EvalConfig(n_samples=3, batch_size=8))


def grid(arch="softmax", lrs=(3e-3, 1e-2), **kw):
    return [spec(arch, seed, lr, **kw) for seed in (0, 1) for lr in lrs]


def assert_same_run(solo, packed, tol=1e-6):
    assert packed.status.item() == solo.status.item()
    assert packed.steps_done.item() == solo.steps_done.item()
    for v in ("train_loss", "test_acc", "test_loss", "bin_fraction", "phase_fraction", "bin_fraction_during",
              "fine_count", "best_acc", "final_acc"):
        np.testing.assert_allclose(packed[v].values, solo[v].values, atol=tol, rtol=0, err_msg=v)
    np.testing.assert_array_equal(packed.train_step.values, solo.train_step.values)
    np.testing.assert_array_equal(packed.eval_step.values, solo.eval_step.values)


def assert_bit_identical(runs, others):
    for a, b in zip(runs, others, strict=True):
        for v in ("train_loss", "bin_fraction", "test_acc"):
            np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)


@pytest.mark.parametrize("arch", [a for a, info in registry.MIXERS.items() if info.packable])
def test_pack_of_four_equals_the_four_solo_runs(tmp_path, arch):
    specs = grid(arch, steps=SLOW.get(arch, 120))
    solo = [train_run(s, tmp_path / f"s{i}.nc", **F64) for i, s in enumerate(specs)]
    outs = [tmp_path / f"p{i}.nc" for i in range(4)]
    packed = train_pack(specs, outs, **F64)
    for s, p, out in zip(solo, packed, outs):
        assert_same_run(s, p)
        on_disk = read_result(out)
        assert set(on_disk.variables) == set(s.variables)
        assert on_disk.attrs["pack"] and on_disk.attrs["spec_json"] == s.attrs["spec_json"]
    assert solo[0].train_loss.values[-1] != solo[1].train_loss.values[-1]   # members really differ


def test_unpackable_mixer_falls_back_to_solo(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.MIXERS, "softmax", registry.MixerInfo(registry.MIXERS["softmax"].path,
                                                                        packable=False))
    assert pack_key(spec(seed=0)) != pack_key(spec(seed=1))     # never grouped
    built = []
    monkeypatch.setattr(Pack, "__init__", lambda *a, **k: built.append(1))
    specs = grid(steps=20)[:2]
    ds = train_pack(specs, [tmp_path / "a.nc", tmp_path / "b.nc"], **F64)
    assert not built and [d.run_id.item() for d in ds] == [s.run_id for s in specs]
    assert_same_run(train_run(specs[1], tmp_path / "c.nc", **F64), ds[1])


def test_pack_of_one_trains_solo(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(Pack, "__init__", lambda *a, **k: built.append(1))
    (ds,) = train_pack([spec(steps=20)], [tmp_path / "a.nc"], **F64)
    assert not built and ds.steps_done.item() == 20


def test_pack_key_groups_seeds_and_lrs_only():
    a = spec(seed=0, lr=1e-3)
    assert pack_key(a) == pack_key(spec(seed=5, lr=1e-2))
    assert pack_key(a) != pack_key(spec("linear"))
    assert pack_key(a) != pack_key(spec(batch_size=16))


def test_nan_member_leaves_the_others_unchanged(tmp_path):
    # lr 1e50 overflows at step 2 whatever the rounding; at a smaller one such as 1e6 the parameters grow for about
    # ten steps, and the step that first overflows depends on rounding differences between the vmapped and the
    # solo path that those steps amplify (one step apart once the last block ran at the labelled positions only)
    specs = grid(lrs=(3e-3, 1e50), steps=60)
    packed = train_pack(specs, [tmp_path / f"p{i}.nc" for i in range(4)], **F64)
    assert [p.status.item() for p in packed] == ["ok", "diverged", "ok", "diverged"]
    for i in (0, 2):
        assert_same_run(train_run(specs[i], tmp_path / f"s{i}.nc", **F64), packed[i])
    solo_bad = train_run(specs[1], tmp_path / "bad.nc", **F64)
    assert packed[1].steps_done.item() == solo_bad.steps_done.item() < 60
    assert np.isnan(packed[1].bin_fraction.sel(stage="trained")).all()


def test_pack_with_a_validation_split_equals_its_solo_runs(tmp_path):
    """Members evaluate on the validation split too and stop on it, exactly as their solo runs."""
    specs = grid(steps=90)
    for s in specs:
        s.task_params = dict(s.task_params, n_val=12)
    specs[2].train = TrainConfig(**dict(vars(specs[2].train), target_acc=0.0))     # stops at its first evaluation
    solo = [train_run(s, tmp_path / f"s{i}.nc", **F64) for i, s in enumerate(specs)]
    packed = train_pack(specs, [tmp_path / f"p{i}.nc" for i in range(4)], **F64)
    for s, p in zip(solo, packed):
        assert_same_run(s, p)
        np.testing.assert_allclose(p.val_acc.values, s.val_acc.values, atol=1e-6, rtol=0)
        np.testing.assert_allclose(p.final_val_acc.values, s.final_val_acc.values, atol=1e-6, rtol=0)
    assert packed[2].steps_done.item() == 30 and packed[0].steps_done.item() == 90


def test_early_stopped_member_stops_changing(tmp_path):
    specs = grid(steps=90)
    specs[1] = spec(seed=0, lr=1e-2, steps=90, target_acc=0.0)      # stops at its first evaluation
    pack = Pack(specs, [tmp_path / f"p{i}.nc" for i in range(4)], **F64)
    packed = pack.train()
    assert packed[1].steps_done.item() == 30 and packed[0].steps_done.item() == 90
    assert_same_run(train_run(specs[1], tmp_path / "s1.nc", **F64), packed[1])
    stopped = pack.load_member(1).state_dict()
    ref = __import__("eigsweep.train", fromlist=["Trainer"]).Trainer(specs[1], **F64)
    ref.train()
    for k, v in ref.model.state_dict().items():        # its parameters are those at step 30
        torch.testing.assert_close(stopped[k], v, atol=1e-9, rtol=0)


def test_stacked_adamw_equals_torch_adamw_per_member():
    torch.manual_seed(0)
    lrs, wd = torch.tensor([1e-3, 3e-2, 1e-1], dtype=torch.float64), [0.1, 0.0]
    init = [torch.randn(3, 4, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)]
    stacked = [p.clone().requires_grad_() for p in init]
    opt = StackedAdamW(stacked, wd, betas=(0.9, 0.98))
    refs = [[p[m].clone().requires_grad_() for p in init] for m in range(3)]
    ref_opts = [torch.optim.AdamW([dict(params=[r[0]], weight_decay=wd[0]), dict(params=[r[1]], weight_decay=wd[1])],
                                  lr=float(lrs[m]), betas=(0.9, 0.98)) for m, r in enumerate(refs)]
    active = torch.tensor([True, True, True])
    for t in range(6):
        grads = [torch.randn_like(p) for p in init]
        if t == 4:
            active = torch.tensor([True, False, True])             # member 1 stops
            grads[0][1] = float("nan")                             # and its NaN gradient is ignored
        for p, g in zip(stacked, grads):
            p.grad = g.clone()
        opt.step(lrs, active)
        for m in range(3):
            if active[m]:
                for r, g in zip(refs[m], grads):
                    r.grad = g[m].clone()
                ref_opts[m].step()
    for m in range(3):
        for p, r in zip(stacked, refs[m]):
            torch.testing.assert_close(p[m].detach(), r.detach(), atol=1e-12, rtol=0)


def preempt(tmp_path, specs, preempted_cls, stopped_at: int):
    """Train ``specs`` as a reference pack, then as ``preempted_cls`` (a Pack that requests its stop somewhere),
    which must stop at step ``stopped_at``; returns (the reference results, the preempted pack's outputs, its
    checkpoint path)."""
    ref = train_pack(specs, [tmp_path / f"r{i}.nc" for i in range(4)], **F64)
    ckpt = tmp_path / "pack.pt"
    outs = [tmp_path / f"p{i}.nc" for i in range(4)]
    with pytest.raises(Preempted, match=f"step {stopped_at}"):
        preempted_cls(specs, outs, ckpt, **F64).train()
    return ref, outs, ckpt


def test_pack_resumes_exactly_from_its_checkpoint(tmp_path):
    class PreemptedAtFirstEval(Pack):
        def evaluate_all(self):
            self.stop_requested = True
            return super().evaluate_all()
    specs = grid(steps=50, checkpoint_every=20)
    ref, outs, ckpt = preempt(tmp_path, specs, PreemptedAtFirstEval, stopped_at=30)
    assert ckpt.exists() and not any(o.exists() for o in outs)
    resumed = train_pack(specs, outs, ckpt, **F64)
    assert_bit_identical(ref, resumed)
    assert not ckpt.exists()


def half_stop_early(steps=90, **train):
    """A pack of 4 whose members 0 and 2 reach their target at the first evaluation (step 30)."""
    specs = grid(steps=steps, **train)
    for i in (0, 2):
        specs[i].train = TrainConfig(**dict(vars(specs[i].train), target_acc=0.0))
    return specs


def test_pack_drops_finished_members_once_half_are_done_and_the_rest_train_as_solo(tmp_path):
    specs = half_stop_early()
    pack = Pack(specs, [tmp_path / f"p{i}.nc" for i in range(4)], **F64)
    packed = pack.train()
    assert pack.slots == [1, 3] and pack.params[0].shape[0] == 2 and pack.lr.shape[1] == 2   # compacted
    assert [p.steps_done.item() for p in packed] == [30, 90, 30, 90]
    for i, s in enumerate(specs):
        assert_same_run(train_run(s, tmp_path / f"s{i}.nc", **F64), packed[i])


def test_compacted_pack_resumes_exactly_from_its_checkpoint(tmp_path):
    class PreemptedAfterCompacting(Pack):
        def train_step(self):
            if self.step == 50:
                self.stop_requested = True
            return super().train_step()
    specs = half_stop_early(steps=90, checkpoint_every=40)
    ref, outs, ckpt = preempt(tmp_path, specs, PreemptedAfterCompacting, stopped_at=51)
    assert torch.load(ckpt, weights_only=False)["slots"] == [1, 3]
    resumed = train_pack(specs, outs, ckpt, **F64)
    assert_bit_identical(ref, resumed)


def test_corrupt_pack_checkpoint_is_moved_aside_and_the_pack_starts_from_scratch(tmp_path):
    specs = grid(steps=20)
    ref = train_pack(specs, [tmp_path / f"r{i}.nc" for i in range(4)], **F64)
    ckpt = tmp_path / "pack.pt"
    ckpt.write_bytes(b"\x80\x04garbage" * 50)
    outs = [tmp_path / f"p{i}.nc" for i in range(4)]
    fresh = train_pack(specs, outs, ckpt, **F64)
    assert (tmp_path / "pack.pt.corrupt").exists()
    for a, b in zip(ref, fresh):
        np.testing.assert_array_equal(a.train_loss.values, b.train_loss.values)


def test_a_pack_compiled_after_another_in_one_process_trains_as_eager():
    """Several packs in one process (a sweep, a benchmark) compile the same methods again for other models;
    with Dynamo's automatic dynamic shapes the second compile failed under vmap ("RuntimeError when making fake
    tensor call": symbolic sizes of batched tensors; softmax then GLA, DeltaNet, RetNet or S4), so packs
    compile with static shapes. DeltaNet and Mamba-2 also trace their compiled-only forms (the blocked inverse,
    the carried state's recurrence, the shifted convolution products)."""
    for arch in ("softmax", "gla", "deltanet", "mamba2"):
        specs = grid(arch, steps=3)
        losses, evals = [], []
        for compile in (True, False):
            pack = Pack(specs, ["-"] * len(specs), compile=compile)
            for _ in range(3):
                pack.train_step()
            losses.append(torch.stack(pack.pending))
            evals.append(pack.evaluate_all())          # compiled too: the same accuracies and losses
        torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-5)
        for compiled_eval, eager_eval in zip(*evals):
            for split, result in eager_eval.items():
                assert compiled_eval[split]["acc"] == result["acc"]
                assert compiled_eval[split]["loss"] == pytest.approx(result["loss"], rel=1e-5)
