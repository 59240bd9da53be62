"""Result files and their aggregation: checked reads (corrupt, truncated, misnamed, future schema), provenance,
strings of any width in summary.nc, temporary files of killed writes."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import eigsweep
from eigsweep import results
from eigsweep.aggregate import CorruptRunFiles, aggregate
from eigsweep.results import ResultFileError, read_result, read_run_file, write_atomic
from eigsweep.train import train_run

from test_training import tiny_spec


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny result files named by their run ids (seed 3 and 4)."""
    d = tmp_path_factory.mktemp("runs")
    paths = []
    for seed in (3, 4):
        spec = tiny_spec(steps=4)
        spec.seed = seed
        paths.append(d / f"{spec.run_id}.nc")
        train_run(spec, paths[-1])
    return paths


def copy_runs(two_runs, tmp_path):
    (tmp_path / "runs").mkdir()
    return [Path(shutil.copy(p, tmp_path / "runs" / p.name)) for p in two_runs]


def test_new_result_files_carry_schema_version_and_provenance(two_runs):
    ds = read_run_file(two_runs[0])
    assert ds.attrs["schema_version"] == results.SCHEMA_VERSION
    prov = results.provenance()
    for k in ("git_commit", "code_version", "code_version_kind", "source_hash"):
        assert ds.attrs[k] == prov[k]
    assert len(ds.attrs["source_hash"]) == 16 and ds.attrs["source_hash"] == results.source_hash()


def test_provenance_is_the_commit_in_a_checkout_else_version_and_source_hash(tmp_path, monkeypatch):
    # a copy of the package with no .git around it (as on the GPU box that wrote the cached results)
    pkg = shutil.copytree(results.PACKAGE_DIR, tmp_path / "eigsweep", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(results, "PACKAGE_DIR", Path(pkg))
    for f in (results.provenance, results.source_hash):
        f.cache_clear()
    try:
        bare = results.provenance()
        assert bare["code_version_kind"] == "version + source hash" and bare["git_commit"] == "unknown"
        assert bare["code_version"] == f"{eigsweep.__version__}+src.{bare['source_hash']}"
        # the same package as a git checkout: the commit, then -dirty once a source file changes
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
        subprocess.run(["git", "init", "-q"], cwd=pkg, check=True)
        subprocess.run(["git", "add", "-A"], cwd=pkg, check=True)
        subprocess.run([*git, "commit", "-qm", "x"], cwd=pkg, check=True)
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=pkg, capture_output=True,
                              text=True, check=True).stdout.strip()
        results.provenance.cache_clear()
        clean = results.provenance()
        assert clean["code_version_kind"] == "git commit" and clean["git_commit"] == clean["code_version"] == head
        assert clean["source_hash"] == bare["source_hash"]
        with open(Path(pkg) / "results.py", "a") as f:
            f.write("# edited\n")
        results.provenance.cache_clear()
        results.source_hash.cache_clear()
        dirty = results.provenance()
        assert dirty["git_commit"] == head + "-dirty" and dirty["source_hash"] != bare["source_hash"]
    finally:
        for f in (results.provenance, results.source_hash):
            f.cache_clear()


def test_summary_keeps_strings_of_every_width(two_runs, tmp_path):
    """'diverged' after 'ok' and 'cuda' after 'cpu' used to come back as 'di' and 'cud'."""
    a, b = copy_runs(two_runs, tmp_path)
    ds = xr.load_dataset(b)
    ds["status"] = "diverged"
    ds["device"] = "cuda"
    ds.attrs["eigsweep_version"] = "0.1.0-a-much-longer-version-string"
    b.unlink()
    write_atomic(ds, b)
    summary = aggregate([a, b], tmp_path / "summary.nc")
    back = xr.load_dataset(tmp_path / "summary.nc")
    for s in (summary, back):
        assert s.status.values.tolist() == ["ok", "diverged"]
        assert s.device.values.tolist() == ["cpu", "cuda"]
        assert s.eigsweep_version.values.tolist()[1] == "0.1.0-a-much-longer-version-string"
    assert back.run.values.tolist() == [a.stem, b.stem]


@pytest.mark.parametrize("corrupt", ["empty", "garbage", "truncated", "other_run", "future_schema"])
def test_corrupt_result_file_is_named_in_one_line(two_runs, tmp_path, corrupt):
    a, b = copy_runs(two_runs, tmp_path)
    if corrupt == "empty":
        a.write_bytes(b"")
    elif corrupt == "garbage":
        a.write_bytes(b"not a netCDF file\n" * 100)
    elif corrupt == "truncated":
        a.write_bytes(a.read_bytes()[: a.stat().st_size // 2])
    elif corrupt == "other_run":
        shutil.copy(b, a)
    else:
        ds = xr.load_dataset(a)
        ds.attrs["schema_version"] = 99
        write_atomic(ds, a)
    expected = {"empty": "not a readable netCDF", "garbage": "not a readable netCDF",
                "truncated": "not a readable netCDF", "other_run": f"holds run '{b.stem}', not '{a.stem}'",
                "future_schema": "schema version 99 is not supported"}[corrupt]
    with pytest.raises(ResultFileError) as e:
        read_run_file(a)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{a}: ") and expected in msg and "rerun to retrain" in msg
    # the library call raises and leaves the file; the workflow's call moves it aside and names it
    with pytest.raises(ResultFileError):
        aggregate([a, b], tmp_path / "summary.nc")
    assert a.exists()
    with pytest.raises(CorruptRunFiles) as e:
        aggregate([a, b], tmp_path / "summary.nc", move_corrupt=True)
    msg = str(e.value)
    assert "\n" not in msg and str(a) in msg and expected in msg and f"moved it to {a.name}.corrupt" in msg
    assert not a.exists() and (tmp_path / "runs" / f"{a.name}.corrupt").exists() and b.exists()
    assert not (tmp_path / "summary.nc").exists()


def test_files_without_schema_version_read_as_version_1(two_runs, tmp_path):
    a, _ = copy_runs(two_runs, tmp_path)
    ds = xr.load_dataset(a)
    del ds.attrs["schema_version"]
    a.unlink()
    write_atomic(ds, a)
    assert "schema_version" not in xr.load_dataset(a).attrs
    assert read_run_file(a).run_id.item() == a.stem
    assert read_result(a, run_id=None).sizes == ds.sizes


def test_stale_temporary_files_are_removed_by_the_next_write_and_by_aggregation(two_runs, tmp_path):
    a, b = copy_runs(two_runs, tmp_path)
    stale_a = tmp_path / "runs" / f".{a.name}.k1ll3d.tmp"
    stale_b = tmp_path / "runs" / f".{b.name}.k1ll3d.tmp"
    other = tmp_path / "runs" / ".unrelated.nc.x.tmp"
    for f in (stale_a, stale_b, other):
        f.write_bytes(b"half")
    write_atomic(xr.load_dataset(a), a)          # the next write of a: its temp file goes
    assert not stale_a.exists() and stale_b.exists() and other.exists()
    aggregate([a, b], tmp_path / "summary.nc")   # aggregation: those of the runs it stacks
    assert not stale_b.exists() and other.exists()


def test_a_run_whose_loss_rose_far_above_its_start_is_unstable_not_ok():
    from eigsweep.train import Trainer

    assert results.run_status("ok", [4.0, 3.0, 2.0]) == "ok"
    assert results.run_status("ok", [2.0] + [3.5] * 9 + [2.9]) == "ok"            # last tenth 2.9 / 2 < 1.5
    assert results.run_status("ok", [2.0, 2.5, 8.0]) == "unstable"
    assert results.run_status("diverged", [2.0, 9.0]) == "diverged"
    trainer = Trainer(tiny_spec(steps=4))
    trainer.train()
    assert str(trainer.result().status.values) == "ok"
    trainer.curve["train_loss"] = [2.0, 2.0, 5.0, 6.0]
    ds = trainer.result()
    assert str(ds.status.values) == "unstable" and float(ds.loss_rise) == 3.0


def test_structural_models_keep_their_informative_spectrum_during_training(tmp_path):
    """DeltaNet-family result files carry the informative eigenvalue's bins at the checkpoint steps too (the
    training-dynamics figure shows them); other models do not."""
    ds = train_run(tiny_spec("deltanet", steps=8), tmp_path / "d.nc")
    during = ds.informative_bin_fraction_during
    assert during.dims == ("spectrum_step", "layer", "head", "bin") and during.spectrum_step.values.tolist() == [0, 4, 8]
    xr.testing.assert_allclose(during.sel(spectrum_step=8, drop=True),
                               ds.informative_bin_fraction.sel(stage="trained", drop=True))
    xr.testing.assert_allclose(during.sel(spectrum_step=0, drop=True),
                               ds.informative_bin_fraction.sel(stage="init", drop=True))
    assert not np.allclose(during.values, ds.bin_fraction_during.values)
    assert "informative_bin_fraction_during" not in train_run(tiny_spec("softmax", steps=4), tmp_path / "s.nc")


def test_result_files_compress_coordinates_too_and_rewrite_identically(two_runs, tmp_path):
    """Every numeric variable is zlib-compressed, coordinates included (a 40k-step run's train_step alone is
    320 kB raw); a file read and written again holds the same dataset."""
    with xr.open_dataset(two_runs[0]) as ds:
        assert ds.train_step.encoding["zlib"] and ds.train_loss.encoding["zlib"]
        original = ds.load()
    again = tmp_path / two_runs[0].name
    write_atomic(original, again)
    with xr.open_dataset(again) as ds:
        xr.testing.assert_identical(ds.load(), original)


def test_mixer_precision_names_bf16_autocast_only_for_bf16_mixers_on_cuda():
    from eigsweep.model import BF16_MIXERS
    from eigsweep.results import mixer_precision
    assert "deltanet" in BF16_MIXERS and "lru" not in BF16_MIXERS
    assert mixer_precision("deltanet", "cuda") == "bf16 autocast"
    assert mixer_precision("deltanet", "cpu") == "float32"
    assert mixer_precision("lru", "cuda:0") == "float32 (TF32 matmuls)"
