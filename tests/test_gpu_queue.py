"""benchmarks/gpu_queue.py, the driver that trains a sweep's packs on a lent GPU across command slices, run on
the CPU: a detached scheduler trains the packs (regrouped with --pack), `wait` returns when they are done and
hands out result files the workflow accepts as they are."""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

from eigsweep.config import load_config, sweep_runs
from eigsweep.jobs import stale_members

ROOT = Path(__file__).resolve().parents[1]

CONFIG = {
    "tasks": {"tiny": {"name": "mqar", "vocab_size": 32, "seq_len": 16, "num_kv_pairs": 2, "n_train": 64,
                       "n_test": 16, "n_val": 16}},
    "sweeps": {"q": {"arch": ["softmax", "linear"], "task": ["tiny"], "seed": [0, 1], "lr": [1.0e-3, 3.0e-3],
                     "model": {"d_model": 8, "n_heads": 2}, "model_by_arch": {"softmax": {"pos_embedding": "learned"}},
                     "train": {"steps": 20, "eval_every": 10, "warmup_steps": 2, "threads": 1},
                     "eval": {"n_samples": 2}, "pack": 4}},
}


def queue(*args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_queue.py"), *args], cwd=cwd, check=True,
                          capture_output=True, text=True, timeout=300)


def test_queue_trains_every_pack_and_hands_out_result_files_the_workflow_accepts(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    state, out = tmp_path / "state", tmp_path / "out"
    queue("launch", "q", "--state", str(state), "--eager", "--pack", "2", "--only", "linear-tiny-pack3", cwd=tmp_path)
    log = queue("wait", "--state", str(state), "--seconds", "120", "--out", str(out), cwd=tmp_path).stdout
    assert "q: 2 runs done; scheduler\nstopped" in log, log                  # that pack only: linear, seed 1
    assert json.loads((out / "done.json").read_text()) == {"q": ["linear-tiny-none-s1-lr1.00e-03",
                                                                 "linear-tiny-none-s1-lr3.00e-03"]}
    queue("launch", "q", "--state", str(state), "--workers", "2", "--eager", "--pack", "2", cwd=tmp_path)
    log = queue("wait", "--state", str(state), "--seconds", "240", "--out", str(out), cwd=tmp_path).stdout
    assert "q: 8 runs done; scheduler\nstopped" in log, log
    specs = sweep_runs(load_config(tmp_path / "config.yaml"), "q")
    assert json.loads((out / "done.json").read_text())["q"] == sorted(s.run_id for s in specs)
    with tarfile.open(out / "runs.tar.gz") as tar:      # <sweep>/runs/<run>.nc: `tar -xzf … -C results`
        tar.extractall(tmp_path / "back", filter="data")
    outs = [tmp_path / "back/q/runs" / f"{s.run_id}.nc" for s in specs]
    assert stale_members(specs, outs) == []      # valid files of exactly these specs
    packs = (state / "logs/scheduler.log").read_text()
    assert packs.count("started") == 4 and "softmax-tiny-pack0" in packs   # packs of 2, not the sweep's 4: 1 + 3
    # a second launch finds nothing left to train
    queue("launch", "q", "--state", str(state), "--eager", "--pack", "2", cwd=tmp_path)
    log = queue("wait", "--state", str(state), "--seconds", "60", "--out", str(out), cwd=tmp_path).stdout
    assert "q: 8 runs done" in log


def test_a_run_already_in_the_results_folder_is_not_trained_again(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "out"
    args = ("--eager", "--pack", "2", "--only", "linear-tiny-pack3")
    s1, s2 = tmp_path / "one/state", tmp_path / "two/state"   # apart: not each other's "other sweep"
    queue("launch", "q", "--state", str(s1), *args, cwd=tmp_path)
    queue("wait", "--state", str(s1), "--seconds", "120", "--out", str(out), cwd=tmp_path)
    with tarfile.open(out / "runs.tar.gz") as tar:     # one member committed, as by an earlier session
        tar.extract("q/runs/linear-tiny-none-s1-lr1.00e-03.nc", tmp_path / "results", filter="data")
    queue("launch", "q", "--state", str(s2), *args, cwd=tmp_path)   # a fresh machine's state
    log = queue("wait", "--state", str(s2), "--seconds", "120", "--out", str(out), cwd=tmp_path).stdout
    assert json.loads((out / "done.json").read_text()) == {"q": ["linear-tiny-none-s1-lr3.00e-03"]}, log


def test_pace_reads_the_rate_and_time_left_from_a_pack_log_and_restarts_after_a_resume():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_queue import pace

    line = "2026-11-29 14:{}:{},000 eigsweep.pack pack 2edc step {}/40000: train loss 8.3; val loss 8.3; val acc 0.0"
    log = [line.format("48", "40", 500), "2026-11-29 14:48:41,000 root other", line.format("49", "40", 2000)]
    assert pace(log) == "25.0 steps/s, 25.3 min to step 40000"        # 1,500 steps in 60 s; 38,000 left
    assert pace(log[:1]) == ""                                          # one evaluation: no rate yet
    resumed = log + [line.format("58", "00", 1000), line.format("58", "10", 1500)]   # a new process from 1,000
    assert pace(resumed) == "50.0 steps/s, 12.8 min to step 40000"


def test_drain_lets_the_running_pack_finish_and_starts_no_other(tmp_path):
    import time

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    state, out = tmp_path / "state", tmp_path / "out"
    queue("launch", "q", "--state", str(state), "--workers", "1", "--eager", "--pack", "2", "--only",
          "linear-tiny-pack3", "softmax-tiny-pack0", cwd=tmp_path)
    log = state / "logs/scheduler.log"
    for _ in range(300):                 # the first pack has started
        if "pack linear-tiny-pack3 started" in log.read_text():
            break
        time.sleep(0.2)
    queue("drain", "--state", str(state), cwd=tmp_path)
    text = queue("wait", "--state", str(state), "--seconds", "120", "--out", str(out), cwd=tmp_path).stdout
    assert "q: 2 runs done; scheduler\nstopped" in text, text
    assert json.loads((out / "done.json").read_text()) == {"q": ["linear-tiny-none-s1-lr1.00e-03",
                                                                 "linear-tiny-none-s1-lr3.00e-03"]}
    assert "drain: not starting softmax-tiny-pack0" in log.read_text()
    assert "softmax-tiny-pack0 started" not in log.read_text()
    assert not (state / "drain").exists()


def test_stop_only_stops_that_pack_and_the_scheduler_goes_on(tmp_path):
    import time

    config = {**CONFIG, "sweeps": {"q": {**CONFIG["sweeps"]["q"], "train": {**CONFIG["sweeps"]["q"]["train"],
                                                                          "steps": 200000, "eval_every": 50}}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    state = tmp_path / "state"
    queue("launch", "q", "--state", str(state), "--workers", "2", "--eager", "--pack", "2", "--only",
          "linear-tiny-pack3", "softmax-tiny-pack0", cwd=tmp_path)
    logs = state / "logs"
    for _ in range(600):                 # both packs train (their first evaluation is logged)
        if all(" step 50/" in (f.read_text() if f.exists() else "")
               for f in (logs / "linear-tiny-pack3.log", logs / "softmax-tiny-pack0.log")):
            break
        time.sleep(0.2)
    try:
        assert queue("stop", "--state", str(state), "--only", "linear-tiny-pack3", cwd=tmp_path).stdout.strip() \
            == "stopped linear-tiny-pack3"
        assert "checkpoint saved" in (logs / "linear-tiny-pack3.log").read_text()
        assert (state / "checkpoints/linear-tiny-pack3.pt").exists()
        time.sleep(3)                    # the scheduler's next round
        assert "pack linear-tiny-pack3 ended" in (logs / "scheduler.log").read_text()
        assert "softmax-tiny-pack0 ended" not in (logs / "scheduler.log").read_text()   # the other trains on
        assert "checkpoint saved" not in (logs / "softmax-tiny-pack0.log").read_text()
    finally:
        queue("stop", "--state", str(state), cwd=tmp_path)
    assert "checkpoint saved" in (logs / "softmax-tiny-pack0.log").read_text()


def test_no_pack_starts_after_the_launch_deadline(tmp_path):
    import time

    config = {**CONFIG, "sweeps": {"q": {**CONFIG["sweeps"]["q"], "train": {**CONFIG["sweeps"]["q"]["train"],
                                                                          "steps": 200000, "eval_every": 50}}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    state = tmp_path / "state"
    queue("launch", "q", "--state", str(state), "--workers", "1", "--eager", "--pack", "2", "--start-within", "6",
          "--only", "linear-tiny-pack3", "softmax-tiny-pack0", cwd=tmp_path)
    log = state / "logs/scheduler.log"
    try:
        for _ in range(300):
            if "past the start deadline" in log.read_text():
                break
            time.sleep(0.2)
        text = log.read_text()
        assert "pack linear-tiny-pack3 started" in text and "softmax-tiny-pack0 started" not in text, text
        assert "past the start deadline: not starting softmax-tiny-pack0" in text
        assert "linear-tiny-pack3 ended" not in text          # the running pack goes on
    finally:
        queue("stop", "--state", str(state), cwd=tmp_path)


def test_two_sweeps_train_side_by_side_on_their_own_devices_and_one_wait_hands_out_both(tmp_path):
    config = {**CONFIG, "sweeps": {"q": CONFIG["sweeps"]["q"],
                                   "r": {**CONFIG["sweeps"]["q"], "arch": ["linear"], "lr": [2.0e-3],
                                         "model_by_arch": {}}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    s1, s2, out = tmp_path / "s1", tmp_path / "s2", tmp_path / "out"
    queue("launch", "q", "--state", str(s1), "--eager", "--pack", "2", "--only", "linear-tiny-pack3",
          "--devices", "0", cwd=tmp_path)
    # r may use both devices, one worker: device 0 is taken by q's pack (state folders with one parent), so 1
    queue("launch", "r", "--state", str(s2), "--eager", "--devices", "0", "1", "--workers", "1", cwd=tmp_path)
    log = queue("wait", "--state", str(s1), str(s2), "--seconds", "180", "--out", str(out), cwd=tmp_path).stdout
    assert "q: 2 runs done; scheduler\nstopped" in log and "r: 2 runs done; scheduler\nstopped" in log, log
    assert json.loads((out / "done.json").read_text()) == {
        "q": ["linear-tiny-none-s1-lr1.00e-03", "linear-tiny-none-s1-lr3.00e-03"],
        "r": ["linear-tiny-none-s0-lr2.00e-03", "linear-tiny-none-s1-lr2.00e-03"]}
    assert "pack linear-tiny-pack3 started on device 0" in (s1 / "logs/scheduler.log").read_text()
    assert "started on device 1" in (s2 / "logs/scheduler.log").read_text()
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = sorted(tar.getnames())
    assert names == [f"q/runs/linear-tiny-none-s1-lr{lr}.nc" for lr in ("1.00e-03", "3.00e-03")] + \
        [f"r/runs/linear-tiny-none-s{s}-lr2.00e-03.nc" for s in (0, 1)]


def test_each_pack_process_gets_the_least_busy_device():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_queue import least_busy

    assert least_busy(["0", "1"], []) == "0"
    assert least_busy(["0", "1"], ["0"]) == "1"
    assert least_busy(["0", "1"], ["0", "1", "1"]) == "0"


def test_packs_of_a_scheduler_beside_count_as_busy(tmp_path):
    """Two sweeps launched side by side (state folders with one parent): the second's choice of device counts
    the first's running packs, by their `.device` records, and only while their process lives."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_queue import busy_elsewhere, least_busy

    mine, other, stale = tmp_path / "mine", tmp_path / "other", tmp_path / "stale"
    for d in (mine, other, stale):
        (d / "pids").mkdir(parents=True)
    (other / "pids/a.pid").write_text(str(os.getpid()))     # a live process
    (other / "pids/a.device").write_text("0")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (stale / "pids/b.pid").write_text(str(dead.pid))        # ended: not busy
    (stale / "pids/b.device").write_text("1")
    (mine / "pids/c.pid").write_text(str(os.getpid()))      # its own packs are counted by the scheduler itself
    (mine / "pids/c.device").write_text("1")
    assert busy_elsewhere(mine) == ["0"]
    assert least_busy(["0", "1"], busy_elsewhere(mine)) == "1"
    assert busy_elsewhere(tmp_path / "nowhere" / "state") == []
