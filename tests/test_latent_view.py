"""core.latent.run_view: the run's own dataset as the maps need it, cached inside the run.

A restart of the dashboard must draw a cached map without loading the data or importing torch;
a change of the data files or of the weights must never reuse a stale view.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from core.errors import RunError
from core.latent import VIEW_DIR, encode, run_view
from core.runs import DataConfig, data_fingerprint, load_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def run(tiny_run_template, tmp_path):
    path = tmp_path / tiny_run_template.name
    shutil.copytree(tiny_run_template, path)
    shutil.rmtree(path / VIEW_DIR, ignore_errors=True)
    return load_run(path)


def _must_not_load():
    raise AssertionError("the data was loaded although the view is cached")


def test_view_is_the_encoding_and_is_reused_without_the_data(run):
    mdata = run.load_data()
    view = run_view(run, load_data=lambda: mdata)
    mean, _ = encode(run, mdata)
    np.testing.assert_array_equal(view.latent, mean.astype(np.float32))
    pd.testing.assert_frame_equal(view.obs, mdata.obs)
    assert view.var_names == {m: list(mdata.mod[m].var_names) for m in mdata.mod}
    again = run_view(load_run(run.path), load_data=_must_not_load)
    np.testing.assert_array_equal(again.latent, view.latent)
    pd.testing.assert_frame_equal(again.obs, view.obs)  # categoricals survive the round trip
    assert again.var_names == view.var_names


def test_a_restart_draws_from_the_view_without_torch(run):
    run_view(run)
    code = (
        "import sys; from core.runs import load_run; from core.latent import run_view; "
        f"v = run_view(load_run({str(run.path)!r})); "
        "print(v.latent.shape, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[-1] == "False", out.stdout


def _counting_loader(run, calls):
    def load():
        calls.append(1)
        return run.load_data()

    return load


def test_new_weights_never_get_the_old_view(run):
    run_view(run)
    manifest = run.path / "weights.json"
    weights = json.loads(manifest.read_text())
    weights["refit_0.pt"] = "0" * 64  # what a retrained refit would record
    manifest.write_text(json.dumps(weights))
    calls: list = []
    with pytest.raises(RunError, match="checksum"):  # checked before anything is loaded
        run_view(load_run(run.path), load_data=_counting_loader(run, calls))
    assert calls == []


def test_a_tampered_weights_file_is_an_error_not_the_cached_view(run):
    run_view(run)
    weights = run.path / "refit_0.pt"
    weights.write_bytes(weights.read_bytes()[:-4] + b"oops")
    with pytest.raises(RunError, match="checksum"):
        run_view(load_run(run.path), load_data=_must_not_load)


def test_a_damaged_view_is_recomputed_and_rewritten(run):
    first = run_view(run)
    for f in (run.path / VIEW_DIR).glob("*.npz"):
        f.write_bytes(b"not an npz")
    calls: list = []
    again = run_view(load_run(run.path), load_data=_counting_loader(run, calls))
    assert calls == [1]
    np.testing.assert_array_equal(again.latent, first.latent)
    run_view(load_run(run.path), load_data=_must_not_load)  # valid again


def test_fingerprint_follows_the_data_files(tmp_path):
    table = tmp_path / "rna.csv"
    table.write_text("sample,g1\ns1,1\n")
    cfg = DataConfig(sources=[f"rna={table}"])
    first = data_fingerprint(cfg)
    assert first == data_fingerprint(cfg)
    table.write_text("sample,g1\ns1,2\n")
    os.utime(table, ns=(1, 1))
    assert data_fingerprint(cfg) != first
    folder = DataConfig(sources=[str(tmp_path)])
    before = data_fingerprint(folder)
    (tmp_path / "obs.csv").write_text("sample,tissue\ns1,liver\n")
    assert data_fingerprint(folder) != before
    assert data_fingerprint(DataConfig(sources=[str(tmp_path / "missing.csv")])) is None
    builtin = DataConfig(sources=["synthetic"], params={"n_obs": 100})
    assert data_fingerprint(builtin) == data_fingerprint(builtin)
    assert data_fingerprint(builtin) != data_fingerprint(DataConfig(sources=["synthetic"]))


def test_training_leaves_the_view_in_the_run(tiny_run_template, tmp_path):
    path = tmp_path / "fresh"
    shutil.copytree(tiny_run_template, path)
    view = run_view(load_run(path), load_data=_must_not_load)  # written by core.train.train
    assert view.latent.shape == (200, 6)


def test_a_new_view_replaces_the_old_one(run):
    run_view(run)
    first = sorted(p.name for p in (run.path / VIEW_DIR).iterdir())
    for f in (run.path / VIEW_DIR).iterdir():  # pretend they belonged to earlier weights
        f.rename(f.with_name(f.name.replace(f.name.split(".")[0], "refit0-0000000000000000")))
    run_view(load_run(run.path))
    assert sorted(p.name for p in (run.path / VIEW_DIR).iterdir()) == first


def test_a_run_folder_that_cannot_be_written_still_gives_its_view(run, monkeypatch):
    import core.runs

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(core.runs, "write_atomic", refuse)
    assert run_view(run).latent.shape == (200, 6)
    assert not any((run.path / VIEW_DIR).glob("*.vars.json"))
