"""Train one run and write its result file.

AdamW, linear warm-up + cosine decay, gradient clipping, periodic evaluation, early stop at a target
accuracy. The batch order is a pure function of (seed, step), so a run resumed from a checkpoint continues
exactly as an uninterrupted one would (bit-identical on CPU).
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from eigsweep import registry, spectrum
from eigsweep.config import RunSpec
from eigsweep.jobs import load_checkpoint_or_none
from eigsweep.model import build_model
from eigsweep.results import build_result, write_atomic

log = logging.getLogger("eigsweep.train")


class Preempted(Exception):
    """Training stopped on request after writing a checkpoint; resubmit to resume."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def batch_indices(seed: int, step: int, batch_size: int, n: int) -> torch.Tensor:
    """Indices of the batch at ``step``: epochs are seeded permutations, so any step is reproducible."""
    start = step * batch_size
    idx = []
    while len(idx) < batch_size:
        epoch, offset = divmod(start + len(idx), n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        idx.extend(perm[offset : offset + batch_size - len(idx)].tolist())
    return torch.tensor(idx)


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), ignore_index=-100)


@torch.no_grad()
def evaluate(model, x, y, batch_size: int, device) -> dict:
    """Accuracy over labelled positions (token targets) or sequences, mean loss, perplexity."""
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    for s in range(0, len(x), batch_size):
        xb, yb = x[s : s + batch_size].to(device), y[s : s + batch_size].to(device)
        logits = model(xb)
        mask = yb != -100
        n = int(mask.sum())
        loss_sum += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), yb.reshape(-1),
                                          ignore_index=-100, reduction="sum"))
        correct += int(((logits.argmax(-1) == yb) & mask).sum())
        total += n
    model.train()
    loss = loss_sum / max(total, 1)
    return dict(acc=correct / max(total, 1), loss=loss, ppl=math.exp(min(loss, 700.0)))


class Trainer:
    def __init__(self, spec: RunSpec, checkpoint_path: str | Path | None = None):
        self.spec = spec
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.stop_requested = False
        tc = spec.train
        if tc.threads > 0:
            torch.set_num_threads(tc.threads)
        self.device = resolve_device(tc.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        task = registry.task_class(spec.task_name)(**{k: v for k, v in spec.task_params.items() if k != "name"})
        task.check_available()
        self.data = task.load()
        d = self.data
        n_test = min(len(d.test_x), spec.eval.max_test_examples)
        self.test_x, self.test_y = d.test_x[:n_test], d.test_y[:n_test]
        self.eval_batch = d.test_x[: spec.eval.n_samples]          # fixed batch for the spectra
        torch.manual_seed(spec.seed)
        self.model = build_model(spec.arch, vocab_size=d.vocab_size, n_outputs=d.n_outputs, target=d.target,
                                 input_dim=d.input_dim, max_len=d.train_x.shape[1], pad_id=d.pad_id,
                                 cfg=spec.model).to(self.device)
        exempt = {id(getattr(m, n)) for m in self.model.modules() for n in getattr(m, "no_weight_decay", ())}
        decay = [p for p in self.model.parameters() if p.dim() >= 2 and id(p) not in exempt]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2 or id(p) in exempt]
        self.opt = torch.optim.AdamW([dict(params=decay, weight_decay=tc.weight_decay),
                                      dict(params=no_decay, weight_decay=0.0)], lr=spec.lr, betas=tuple(tc.betas))
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, tc.warmup_steps, tc.steps, tc.min_lr_ratio))
        self.step = 0
        self.curve = dict(train_step=[], train_loss=[], eval_step=[], test_acc=[], test_loss=[], test_ppl=[])
        self.stages, self.during = {}, {}
        self.status = "ok"
        self.done = False
        self.elapsed = 0.0
        if self.checkpoint_path and self.checkpoint_path.exists():
            self.load_checkpoint()

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return dict(model=self.model.state_dict(), opt=self.opt.state_dict(), sched=self.sched.state_dict(),
                    step=self.step, curve=self.curve, stages=self.stages, during=self.during,
                    status=self.status, done=self.done, elapsed=self.elapsed, config_hash=self.spec.config_hash())

    def save_checkpoint(self) -> None:
        if not self.checkpoint_path:
            return
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(self.checkpoint_path)

    def load_checkpoint(self) -> None:
        state = load_checkpoint_or_none(self.checkpoint_path, self.device, self.spec.config_hash())
        if state is None:   # missing, corrupt (moved aside) or for another configuration: start from scratch
            return
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        for k in ("step", "curve", "stages", "during", "status", "done", "elapsed"):
            setattr(self, k, state[k])
        log.info("resumed %s from step %d", self.spec.run_id, self.step)

    # -- training ------------------------------------------------------------------------------
    def measure(self):
        return spectrum.measure(self.model, self.eval_batch)

    def evaluate(self) -> dict:
        r = evaluate(self.model, self.test_x, self.test_y, self.spec.eval.batch_size, self.device)
        self.curve["eval_step"].append(self.step)
        self.curve["test_acc"].append(r["acc"])
        self.curve["test_loss"].append(r["loss"])
        self.curve["test_ppl"].append(r["ppl"])
        return r

    def train(self) -> None:
        tc, spec = self.spec.train, self.spec
        spectrum_steps = set(tc.spectrum_steps)
        if "init" not in self.stages:
            self.stages["init"] = self.during[0] = self.measure()
        start = time.perf_counter() - self.elapsed
        self.model.train()
        n = len(self.data.train_x)
        while not self.done and self.step < tc.steps:
            if self.stop_requested:
                self.elapsed = time.perf_counter() - start
                self.save_checkpoint()
                raise Preempted(f"{spec.run_id}: stopped at step {self.step}, checkpoint saved")
            idx = batch_indices(spec.seed, self.step, tc.batch_size, n)
            xb, yb = self.data.train_x[idx].to(self.device), self.data.train_y[idx].to(self.device)
            loss = loss_fn(self.model(xb), yb)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                log.warning("%s diverged at step %d (loss %s)", spec.run_id, self.step, loss_value)
                self.status, self.done = "diverged", True
                break
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
            self.opt.step()
            self.sched.step()
            self.step += 1
            self.curve["train_step"].append(self.step)
            self.curve["train_loss"].append(loss_value)
            if self.step in spectrum_steps:
                self.during[self.step] = self.measure()
            if self.step % tc.eval_every == 0 or self.step == tc.steps:
                r = self.evaluate()
                log.info("%s step %d loss %.4f test acc %.4f", spec.run_id, self.step, loss_value, r["acc"])
                if r["acc"] >= tc.target_acc:
                    log.info("%s reached target accuracy %.3f at step %d", spec.run_id, tc.target_acc, self.step)
                    self.done = True
            if tc.checkpoint_every and self.step % tc.checkpoint_every == 0:
                self.elapsed = time.perf_counter() - start
                self.save_checkpoint()
        self.done = True
        if self.status == "ok" and (not self.curve["eval_step"] or self.curve["eval_step"][-1] != self.step):
            self.evaluate()
        if "trained" not in self.stages:
            self.stages["trained"] = self.measure() if self.status == "ok" else nan_like(self.stages["init"])
            if self.status == "ok":
                self.during[self.step] = self.stages["trained"]
        self.elapsed = time.perf_counter() - start

    def result(self):
        curve = dict(self.curve, steps_done=self.step)
        return build_result(self.spec, self.stages, self.during, curve, self.status, self.elapsed, str(self.device))


def nan_like(ds):
    """The spectrum of a diverged model: same shape, all NaN (counts zero)."""
    out = ds.copy(deep=True)
    for v in out.data_vars:
        if out[v].dtype.kind == "f":
            out[v][...] = 0.0 if "count" in v or v.startswith("n_") else float("nan")
    return out


def train_run(spec: RunSpec, out_path: str | Path, checkpoint_path: str | Path | None = None, on_start=None):
    """Train ``spec`` and write its result file atomically to ``out_path``; returns the Dataset.

    ``on_start(trainer)``, if given, is called before training (eigsweep.slurm uses it to route the Slurm
    preemption signal to ``trainer.stop_requested``)."""
    trainer = Trainer(spec, checkpoint_path)
    if on_start is not None:
        on_start(trainer)
    trainer.train()
    ds = trainer.result()
    write_atomic(ds, out_path)
    if trainer.checkpoint_path:
        trainer.checkpoint_path.unlink(missing_ok=True)
    return ds
