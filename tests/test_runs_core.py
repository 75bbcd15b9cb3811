"""Run directories: save -> load, safety (pickle, tampering, names), listing, CLI."""

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import latent
from core.datasets import load_builtin
from core.errors import RunError
from core.models import ModelConfig
from core.runs import (
    DataConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    delete_run,
    list_runs,
    load_run,
    request_cancel,
    resolve_run,
)
from core.train import train

REPO = Path(__file__).resolve().parents[1]
PARAMS = {"n_obs": 200, "n_genes": 60}


@pytest.fixture(scope="module")
def mdata():
    return load_builtin("synthetic", **PARAMS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mdata):
    root = tmp_path_factory.mktemp("runs")
    cfg = RunConfig(
        data=DataConfig(sources=["synthetic"], params=dict(PARAMS), conditions=["tissue", "age"]),
        model=ModelConfig(model="cvae", n_latent=5, n_hidden=32),
        train=TrainConfig(epochs=3, refits=2),
    )
    run = train(cfg, mdata, out=root / "base")
    return root, run


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_save_load_gives_identical_latents_and_decodes(trained, mdata):
    root, run = trained
    mean, var = latent.encode(run, mdata)
    again = load_run(run.path)
    own = again.load_data()  # rebuilt from config.json alone
    mean2, var2 = latent.encode(again, own)
    np.testing.assert_array_equal(mean, mean2)
    np.testing.assert_array_equal(var, var2)
    assert again.modalities == ["rna", "methylation", "protein", "drug"]
    assert again.kinds["methylation"] == "proportion" and again.conditions == ["tissue", "age"]
    assert again.n_latent == 5 and again.n_refits == 2
    assert len(again.var_names["rna"]) == 60
    rec = latent.reconstruct(again, own)
    assert np.isnan(rec["protein"][~own.obs_names.isin(own.mod["protein"].obs_names)]).all()
    meth = rec["methylation"][own.obs_names.isin(own.mod["methylation"].obs_names)]
    assert ((meth > 0) & (meth < 1)).all()
    drug = rec["drug"][:5]
    assert ((drug >= 0) & (drug <= 1)).all()  # expected level code of 0/1 flags
    dec = latent.decode(again, mean[:3], cond=own.obs.iloc[:3])
    assert dec["rna"].shape == (3, 60) and (dec["rna"] >= 0).all()
    lib = again.preprocessor.transforms["rna"].median_library
    np.testing.assert_allclose(dec["rna"].sum(1), lib, rtol=1e-3)
    with pytest.raises(Exception, match="conditioned on tissue, age"):
        latent.decode(again, mean[:3])
    tr = latent.translate(again, own, source="rna", target="protein")
    assert tr.shape == (own.n_obs, own.mod["protein"].n_vars)


def test_store_latent_writes_documented_keys(trained, mdata):
    _, run = trained
    copy = mdata.copy()
    latent.store_latent(run, copy, refit=1)
    np.testing.assert_array_equal(copy.obsm["X_vae"], latent.encode(run, mdata, refit=1)[0])
    assert copy.uns["X_vae"] == {"run": "base", "refit": 1, "n_latent": 5}
    assert "X_vae" not in mdata.obsm


def test_encode_arrays_matches_encode(trained, mdata):
    _, run = trained
    from core.preprocess import aligned_matrix

    arrays = {m: aligned_matrix(mdata, m) for m in run.modalities}
    a, _ = latent.encode_arrays(run, arrays, obs=mdata.obs)
    b, _ = latent.encode(run, mdata)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_planted_pickle_is_refused_without_running(trained, tmp_path):
    root, run = trained
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for fix_checksum in (False, True):
        bad = copy_run(run.path, tmp_path / f"evil{int(fix_checksum)}")
        payload = pickle.dumps({"w": Evil()})
        (bad / "refit_0.pt").write_bytes(payload)
        if fix_checksum:  # an attacker who also rewrites the manifest still gets nowhere
            man = json.loads((bad / "weights.json").read_text())
            man["refit_0.pt"] = hashlib.sha256(payload).hexdigest()
            (bad / "weights.json").write_text(json.dumps(man))
        r = load_run(bad)
        with pytest.raises(RunError, match="refit_0.pt"):
            r.model(0)
        assert not marker.exists()


def test_tampered_weights_are_refused(trained, tmp_path):
    _, run = trained
    bad = copy_run(run.path, tmp_path / "tampered")
    data = bytearray((bad / "refit_1.pt").read_bytes())
    data[-100] ^= 0xFF
    (bad / "refit_1.pt").write_bytes(bytes(data))
    r = load_run(bad)
    r.model(0)  # the untouched refit still loads
    with pytest.raises(RunError, match="does not match its recorded checksum"):
        r.model(1)


def test_other_features_are_refused_with_counts(trained):
    _, run = trained
    other = load_builtin("synthetic", n_obs=200, n_genes=80)
    with pytest.raises(
        RunError,
        match=r"Run 'base' was trained on 60 genes in 'rna' but this "
        r"dataset has 80; choose the matching dataset",
    ):
        latent.encode(run, other)


def test_run_names_cannot_escape_the_runs_directory(tmp_path):
    for bad in ("..", "../x", ".hidden", "a/../../b", "", "x" * 200):
        with pytest.raises(RunError):
            resolve_run(bad, root=tmp_path)
    assert resolve_run("ok-name_1.v2", root=tmp_path) == (tmp_path / "ok-name_1.v2").resolve()


def test_list_delete_and_cancel(trained, tmp_path):
    root, run = trained
    copy_run(run.path, tmp_path / "one")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "status.json").write_text(json.dumps({"state": "running"}))
    df = list_runs(tmp_path)
    assert set(df["name"]) == {"one", "half"}
    assert dict(zip(df["name"], df["state"], strict=True)) == {"one": "done", "half": "running"}
    with pytest.raises(RunError, match="no config.json"):
        load_run(tmp_path / "half")
    request_cancel(tmp_path / "half")
    assert (tmp_path / "half" / "cancel").exists()
    delete_run(tmp_path / "one")
    assert not (tmp_path / "one").exists()
    assert list(list_runs(tmp_path)["name"]) == ["half"]


def test_overrides_parse_values_and_reject_unknown_keys():
    cfg = apply_overrides(
        RunConfig(),
        {
            "batch_size": "256",
            "one_cycle": "true",
            "params.n_obs": "300",
            "modality_weights.drug": "5",
        },
    )
    assert cfg.train.batch_size == 256 and cfg.train.one_cycle is True
    assert cfg.data.params == {"n_obs": 300} and cfg.model.modality_weights == {"drug": 5}
    with pytest.raises(Exception, match="unknown option"):
        apply_overrides(RunConfig(), {"nope": "1"})
    with pytest.raises(Exception, match="out of range"):
        apply_overrides(RunConfig(), {"epochs": "0"})


def cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_cli_train_encode_runs(tmp_path):
    out = tmp_path / "runs" / "cli"
    res = cli(
        "train",
        "--data",
        "synthetic",
        "--out",
        str(out),
        "--model",
        "multivae",
        "--epochs",
        "2",
        "--latent",
        "3",
        "--set",
        "params.n_obs=150",
        "--set",
        "params.n_genes=40",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    assert "epoch 2/2" in res.stderr
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert payload["status"]["state"] == "done"
    res = cli("encode", str(out), "--out", str(tmp_path / "z.csv"), "--json")
    assert res.returncode == 0, res.stderr
    z = pd.read_csv(tmp_path / "z.csv", index_col=0)
    assert list(z.columns) == ["z0", "z1", "z2"] and len(z) == 150
    res = cli("runs", "--json", env={"OLE_RUNS_DIR": str(tmp_path / "runs")})
    runs = json.loads(res.stdout.strip().splitlines()[-1])["runs"]
    assert [r["name"] for r in runs] == ["cli"] and runs[0]["state"] == "done"
    res = cli("encode", str(tmp_path / "nope"), "--out", str(tmp_path / "z2.csv"))
    assert res.returncode == 2 and res.stderr.startswith("error: ")


def test_cli_config_stores_absolute_paths_so_runs_reload_anywhere(tmp_path, monkeypatch):
    from core.cli import build_parser
    from core.runs import load_data_config
    from core.train import config_from_args

    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in range(30)]
    pd.DataFrame(rng.normal(size=(30, 4)), index=ids, columns=list("abcd")).rename_axis(
        "sample"
    ).to_csv(tmp_path / "prot.csv")
    pd.DataFrame({"sample": ids, "group": ["x", "y"] * 15}).to_csv(
        tmp_path / "meta.csv", index=False
    )
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(
        ["train", "--data", "protein=prot.csv", "--obs", "meta.csv", "--out", "r",
         "--set", "data.params.unused=1", "--set", "model.modality_weights.protein=2"]
    )  # fmt: skip
    cfg = config_from_args(args)
    assert cfg.data.sources == [f"protein={tmp_path / 'prot.csv'}"]
    assert cfg.data.obs == str(tmp_path / "meta.csv")
    assert cfg.model.modality_weights == {"protein": 2}
    cfg.data.params = {}
    monkeypatch.chdir(REPO)
    mdata = load_data_config(cfg.data)
    assert mdata.mod["protein"].n_vars == 4 and "group" in mdata.obs.columns


def test_list_runs_flags_a_running_run_whose_process_is_gone(tmp_path):
    pid = subprocess.Popen(["true"])
    pid.wait()
    (tmp_path / "ghost").mkdir()
    (tmp_path / "ghost" / "status.json").write_text(
        json.dumps({"state": "running", "pid": pid.pid, "epoch": 3})
    )
    df = list_runs(tmp_path)
    assert df.loc[0, "state"] == "failed"
    assert f"pid {pid.pid}" in df.loc[0, "error"]
    assert json.loads((tmp_path / "ghost" / "status.json").read_text())["state"] == "running"


def test_cli_train_with_a_run_name_creates_it_in_the_runs_directory(tmp_path):
    env = {"OLE_RUNS_DIR": str(tmp_path / "runs")}
    res = cli("train", "--data", "nutrimouse", "--epochs", "2", "--out", "named", env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "runs" / "named" / "weights.json").is_file()
    res = cli("encode", "named", "--out", str(tmp_path / "z.csv"), env=env)  # found by name
    assert res.returncode == 0, res.stderr
    res = cli("train", "--data", "nutrimouse", "--out", "bad name!", env=env)
    assert res.returncode == 2 and res.stderr.startswith("error: run name 'bad name!'")
    assert len(res.stderr.strip().splitlines()) == 1
