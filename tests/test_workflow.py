"""The Snakemake workflow: dry runs of every sweep, config errors before any job, a tiny real run."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args, cwd=ROOT, check=True):
    proc = subprocess.run([*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def sweeps():
    return list(yaml.safe_load((ROOT / "config.yaml").read_text())["sweeps"])


def with_user_data(workdir: Path) -> Path:
    """A workdir holding config.yaml and tiny files in each dataset's real layout at the presets' paths."""
    from test_task_loaders import _write_cifar, _write_imdb, _write_tiny_gpt2_vocab, _write_wiki
    data = workdir / "data"
    data.mkdir(parents=True)
    _write_cifar(data)
    _write_imdb(data)
    _write_wiki(data)
    (data / "gpt2").mkdir()
    _write_tiny_gpt2_vocab(data / "gpt2")
    shutil.copy(ROOT / "config.yaml", workdir / "config.yaml")
    return workdir


@pytest.fixture(scope="module")
def data_workdir(tmp_path_factory):
    return with_user_data(tmp_path_factory.mktemp("userdata"))


def train_job_count(out: str) -> int:
    """Train jobs in a dry run's job table: rule `train` (one run) plus the `train_pack_*` rules (one pack)."""
    counts = {}   # rule -> jobs (Snakemake prints the job table more than once)
    for parts in (l.split() for l in out.splitlines() if l.strip().startswith(("train ", "train_pack_"))):
        counts.setdefault(parts[0], int(parts[1]))
    assert counts, out
    return sum(counts.values())


def test_dry_run_of_every_sweep(data_workdir):
    """One dry run naming every sweep as a target: one train job per run of every unpacked sweep, one per
    pack of every packed one."""
    from eigsweep.config import load_config, pack_size, sweep_runs
    from eigsweep.packs import group_packs
    config = load_config(ROOT / "config.yaml")
    n = 0
    for sweep in config["sweeps"]:
        runs, size = sweep_runs(config, sweep), pack_size(config, sweep)
        n += len(group_packs(runs, size)) if size > 1 else len(runs)
    assert n < sum(len(sweep_runs(config, s)) for s in config["sweeps"])   # some sweep is packed
    proc = snakemake("-n", "all", *sweeps(), cwd=data_workdir)
    assert train_job_count(proc.stdout + proc.stderr) == n


def test_dry_run_of_all(data_workdir):
    proc = snakemake("-n", cwd=data_workdir)   # the default target is `all`
    assert "rule all:" in proc.stdout + proc.stderr


def test_missing_user_data_fails_while_building_the_dag(tmp_path):
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    proc = snakemake("-n", "scifar_paper", cwd=tmp_path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "cifar-10-batches-py" in out and "data_batch" in out, out


def test_dry_run_lists_one_train_job_per_run(tmp_path):
    from eigsweep.config import load_config, sweep_runs
    n = len(sweep_runs(load_config(ROOT / "config.yaml"), "demo"))
    out = snakemake("-n", "demo", "--config", f"results_dir={tmp_path}/r").stdout
    assert train_job_count(out) == n


def write_config(path: Path, mutate=None):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    if mutate:
        mutate(config)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("mutate,expected", [
    (lambda c: c["sweeps"]["demo"].update(arch=["softmax", "lstmx"]), "lstmx"),
    (lambda c: c["defaults"]["train"].update(stepz=3), "stepz"),
])
def test_bad_config_stops_before_any_job(tmp_path, mutate, expected):
    write_config(tmp_path / "config.yaml", mutate)
    proc = snakemake("-c1", "demo", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert expected in err and "allowed" in err, err
    assert not (tmp_path / "results").exists()


def test_tiny_sweep_end_to_end(tmp_path):
    """A real (tiny) run through Snakemake: per-run files, summary.nc, figures; re-running does nothing."""
    def tiny(c):
        c["tasks"]["mqar_demo"].update(n_train=64, n_test=16, seq_len=16, vocab_size=40, num_kv_pairs=2)
        c["sweeps"]["demo"].update(seed=[0], train=dict(steps=4, eval_every=2, warmup_steps=1, spectrum_steps=[2]),
                                   model=dict(d_model=16, head_dim=8, pos_embedding="learned"))
        c["defaults"]["eval"]["n_samples"] = 4
    write_config(tmp_path / "config.yaml", tiny)
    snakemake("-c2", "demo", cwd=tmp_path)
    summary = xr.open_dataset(tmp_path / "results/demo/summary.nc")
    assert summary.sizes["run"] == 3
    assert set(summary.arch.values.tolist()) == {"softmax", "linear", "mamba2"}
    assert {"bin_fraction", "best_acc", "status", "fine_count"} <= set(summary.data_vars)
    from eigsweep.figures.catalog import FIGURES, sweep_figures

    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    expected = sweep_figures(config["sweeps"]["demo"])
    assert {"spectrum_bars", "accuracy", "correlation", "fine_histograms", "training_dynamics"} <= set(expected)
    for name in FIGURES:
        png = tmp_path / f"results/demo/figures/{name}.png"
        assert png.exists() == (name in expected), name
        if name in expected:
            assert png.stat().st_size > 10_000
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert png.with_suffix(".pdf").stat().st_size > 1_000
    assert (tmp_path / "results/demo/correlations.csv").read_text().count("mqar_demo") == 4
    again = snakemake("-c2", "demo", "-n", cwd=tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_figures_from_existing_results_and_report(tmp_path):
    """Every figure family (modifications, LTI complex plane, per head included) from existing result files;
    a missing run is named, never trained; `snakemake --report` builds an HTML report with the figures."""
    from eigsweep.figures.catalog import FIGURES, sweep_figures

    def tiny(c):
        c["tasks"]["mqar_demo"].update(n_train=64, n_test=16, seq_len=16, vocab_size=40, num_kv_pairs=2)
        c["sweeps"]["demo"] = dict(arch=["softmax", "lru"], task=["mqar_demo"], modification=["none", "gate"],
                                   seed=[0], lr=[1e-2], lr_by_arch={"softmax": [1e-2, 2e-2]},   # lr_sensitivity
                                   train=dict(steps=4, eval_every=2, warmup_steps=1, spectrum_steps=[2]),
                                   model=dict(d_model=16, head_dim=8, d_state=4, n_heads=2, pos_embedding="learned"))
        c["defaults"]["eval"]["n_samples"] = 4
        c["figures"] = {"per_head": True, "n_boot": 200}
    write_config(tmp_path / "config.yaml", tiny)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert sweep_figures(config["sweeps"]["demo"], config["figures"]) == [*FIGURES[:1], "spectrum_bars_per_head",
                                                                           *FIGURES[2:]]
    # no result file at all: the figures target stops and names the missing runs
    proc = snakemake("-c2", "figures_demo", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "lru-mqar_demo-gate-s0-lr1.00e-02" in proc.stdout + proc.stderr
    # train three of the four runs, then draw from what exists
    runs = tmp_path / "results/demo/runs"
    have = ["softmax-mqar_demo-none-s0-lr1.00e-02", "softmax-mqar_demo-gate-s0-lr1.00e-02",
            "lru-mqar_demo-none-s0-lr1.00e-02"]
    snakemake("-c2", *[f"results/demo/runs/{r}.nc" for r in have], cwd=tmp_path)
    proc = snakemake("-c2", "figures_demo", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "3 of 6 runs present" in out and "lru-mqar_demo-gate-s0-lr1.00e-02" in out
    assert "rule train" not in out and not (runs / "lru-mqar_demo-gate-s0-lr1.00e-02.nc").exists()
    for name in FIGURES:
        assert (tmp_path / f"results/demo/figures/{name}.png").stat().st_size > 10_000, name
    log = (tmp_path / "results/demo/logs/figure_spectrum_bars.log").read_text()
    assert "lru-mqar_demo-gate-s0-lr1.00e-02" in log
    summary = xr.open_dataset(tmp_path / "results/demo/summary_existing.nc")
    assert summary.sizes["run"] == 3 and "lti_eigenvalue_real" in summary
    corr = xr.open_dataset(tmp_path / "results/demo/correlations.nc")
    assert set(corr.statistic.values.tolist()) == {"mass_near_0", "mass_near_1", "mass_above_1", "median_horizon"}
    # the HTML report, with every figure and its caption
    snakemake("--report", "report.html", "figures_demo", cwd=tmp_path)
    html = (tmp_path / "report.html").read_text(errors="replace")
    assert len(html) > 100_000
    for name in FIGURES:
        assert f"{name}.png" in html, name
