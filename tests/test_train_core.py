"""Training loop, run files, quality on small data, failures, cancellation, refits, jobs."""

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core import latent
from core.datasets import load_builtin
from core.errors import InputError
from core.models import ModelConfig
from core.runs import DataConfig, RunConfig, TrainConfig, load_run
from core.train import TrainingFailed, epoch_batches, kl_weight, launch_job, train

SMALL = {"n_obs": 300, "n_genes": 100}


def small_config(**kw) -> RunConfig:
    data = kw.pop("data", {})
    model = kw.pop("model", {})
    tr = {"epochs": 4, **kw.pop("train", {})}
    return RunConfig(
        data=DataConfig(sources=["synthetic"], params=dict(SMALL), **data),
        model=ModelConfig(n_latent=4, n_hidden=32, **model),
        train=TrainConfig(**tr),
    )


@pytest.fixture(scope="module")
def small():
    return load_builtin("synthetic", **SMALL)


def test_kl_weight_warmup_is_linear_and_validated():
    assert kl_weight(0, n_warmup=10, beta=2.0) == 0.0
    assert kl_weight(5, n_warmup=10, beta=2.0) == pytest.approx(1.0)
    assert kl_weight(50, n_warmup=10, beta=2.0) == 2.0
    assert kl_weight(0, n_warmup=0, beta=0.5) == 0.5
    for bad in ({"epoch": -1}, {"epoch": math.nan}, {"n_warmup": -2}, {"beta": -1.0}):
        args = {"epoch": 1, "n_warmup": 3, "beta": 1.0, **bad}
        with pytest.raises(ValueError):
            kl_weight(args.pop("epoch"), **args)


def test_epoch_batches_cover_every_index_and_shard_like_distributed_sampler():
    g = torch.Generator().manual_seed(0)
    batches = epoch_batches(103, 10, generator=g)
    assert sorted(torch.cat(batches).tolist()) == list(range(103))
    shards = [
        epoch_batches(103, 10, generator=torch.Generator().manual_seed(5), rank=r, world_size=2)
        for r in range(2)
    ]
    a, b = (torch.cat(s) for s in shards)
    assert len(a) == len(b) == 52
    assert set(a.tolist()) | set(b.tolist()) == set(range(103))


def test_training_writes_a_complete_run(tmp_path, small):
    seen = []
    run = train(small_config(), small, out=tmp_path / "r", progress=seen.append)
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert {
        "config.json",
        "preprocess.json",
        "features.json",
        "model.json",
        "split.csv",
        "refit_0.pt",
        "weights.json",
        "history.csv",
        "metrics.json",
        "status.json",
    } <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert run.status["state"] == "done" and run.status["error"] is None
    assert [p["epoch"] for p in seen] == [1, 2, 3, 4]
    assert {"epoch", "n_epochs", "refit", "metrics"} <= set(seen[0])
    hist = run.history
    for split in ("train", "val"):
        for term in (
            "total",
            "kl",
            "recon_rna",
            "recon_methylation",
            "recon_protein",
            "recon_drug",
        ):
            assert f"{split}_{term}" in hist.columns
    assert np.isfinite(hist["val_total"]).all()
    m = run.metrics
    assert set(m["recon"]) == {"rna", "methylation", "protein", "drug"}
    assert m["knn"]["label"] == "tissue" and m["epochs"] == 4
    feats = json.loads((tmp_path / "r" / "features.json").read_text())
    assert len(feats["rna"]["model"]) == 100 and len(feats["rna"]["sha256"]) == 64
    split = run.split
    assert set(split.unique()) == {"train", "val", "test"} and len(split) == 300


def test_same_seed_same_weights_and_refits_differ(tmp_path, small):
    cfg = small_config(train={"epochs": 2, "refits": 2})
    a = train(cfg, small, out=tmp_path / "a")
    train(cfg, small, out=tmp_path / "b")
    wa0, wa1, wb0 = (
        torch.load(p, weights_only=True)
        for p in (tmp_path / "a/refit_0.pt", tmp_path / "a/refit_1.pt", tmp_path / "b/refit_0.pt")
    )
    for k in wa0:
        torch.testing.assert_close(wa0[k], wb0[k])
    assert any(not torch.equal(wa0[k], wa1[k]) for k in wa0)
    assert a.n_refits == 2 and set(a.history["refit"]) == {0, 1}
    z0, _ = latent.encode(a, small, refit=0)
    z1, _ = latent.encode(a, small, refit=1)
    assert not np.allclose(z0, z1)


def test_nan_loss_fails_the_run_with_a_clear_message(tmp_path, small, monkeypatch):
    from core import models

    real = models.MultiVAE.loss

    def poisoned(self, batch, **kw):
        terms = real(self, batch, **kw)
        terms["recon_rna"] = terms["recon_rna"] * float("nan")
        terms["total"] = terms["total"] + terms["recon_rna"]
        return terms

    monkeypatch.setattr(models.MultiVAE, "loss", poisoned)
    with pytest.raises(TrainingFailed, match="loss became nan at epoch 1, batch 1.*recon_rna"):
        train(small_config(), small, out=tmp_path / "nan")
    status = json.loads((tmp_path / "nan/status.json").read_text())
    assert status["state"] == "failed" and "recon_rna" in status["error"]
    assert not (tmp_path / "nan/refit_0.pt").exists()


def test_cancel_keeps_the_last_good_weights(tmp_path, small):
    out = tmp_path / "c"

    def progress(p):
        if p["epoch"] == 2:
            (out / "cancel").write_text("")

    run = train(
        small_config(train={"epochs": 50, "kl_warmup_epochs": 0}), small, out=out, progress=progress
    )
    assert run.status["state"] == "cancelled"
    assert run.metrics["epochs"] == 2
    mean, _ = latent.encode(load_run(out), small)
    assert mean.shape == (300, 4) and np.isfinite(mean).all()


def test_refuses_to_overwrite_a_run_and_bad_model_options(tmp_path, small):
    train(small_config(train={"epochs": 1}), small, out=tmp_path / "x")
    with pytest.raises(InputError, match="already exists"):
        train(small_config(train={"epochs": 1}), small, out=tmp_path / "x")
    with pytest.raises(InputError, match="needs at least one --condition"):
        train(small_config(model={"model": "cvae"}), small, out=tmp_path / "y")
    with pytest.raises(InputError, match="condition column 'batch'"):
        train(
            small_config(model={"model": "cvae"}, data={"conditions": ["batch"]}),
            small,
            out=tmp_path / "z",
        )


@pytest.mark.slow
def test_quality_on_synthetic_recon_and_knn(tmp_path):
    """Every modality beats the per-feature mean; 15-NN on the latent >= 15-NN on PCA."""
    params = {"n_obs": 600, "n_genes": 100}
    mdata = load_builtin("synthetic", **params)
    cfg = RunConfig(
        data=DataConfig(sources=["synthetic"], params=params, test_frac=0.3),
        model=ModelConfig(model="multivae", n_latent=20, n_hidden=256, modality_dropout=0.25),
        train=TrainConfig(epochs=80),
    )
    run = train(cfg, mdata, out=tmp_path / "q")
    for mod, r in run.metrics["recon"].items():
        assert r["mse"] < r["baseline_mse"], (mod, r)
    knn = run.metrics["knn"]
    assert knn["label"] == "tissue"
    assert knn["latent"] >= knn["pca"], knn
    # the same kNN computed independently from encode()
    from sklearn.neighbors import KNeighborsClassifier

    z, _ = latent.encode(run, mdata)
    split = run.split.reindex(mdata.obs_names).to_numpy()
    y = mdata.obs["tissue"].astype(str).to_numpy()
    clf = KNeighborsClassifier(15).fit(z[split == "train"], y[split == "train"])
    acc = (clf.predict(z[split == "test"]) == y[split == "test"]).mean()
    assert acc == pytest.approx(knn["latent"])


@pytest.mark.slow
def test_cvae_tissue_swap_moves_expression_towards_that_tissue(tmp_path):
    params = {"n_obs": 400, "n_genes": 100}
    mdata = load_builtin("synthetic", **params)
    cfg = RunConfig(
        data=DataConfig(
            sources=["synthetic"], params=params, conditions=["tissue"], modalities=["rna"]
        ),
        model=ModelConfig(model="cvae", n_latent=8),
        train=TrainConfig(epochs=40),
    )
    run = train(cfg, mdata, out=tmp_path / "cvae")
    tissue = mdata.obs["tissue"].astype(str).to_numpy()
    a, b = sorted(set(tissue))[:2]
    x = np.log1p(mdata.mod["rna"].X / mdata.mod["rna"].X.sum(1, keepdims=True) * 1e4)
    x = pd.DataFrame(x, index=mdata.mod["rna"].obs_names).reindex(mdata.obs_names).to_numpy()
    mean_b = x[tissue == b].mean(0)
    z, _ = latent.encode(run, mdata)
    za = z[tissue == a]
    as_a = latent.decode(run, za, cond={"tissue": a}, space="input")["rna"]
    as_b = latent.decode(run, za, cond={"tissue": b}, space="input")["rna"]
    dist_a = np.linalg.norm(as_a - mean_b, axis=1)
    dist_b = np.linalg.norm(as_b - mean_b, axis=1)
    assert (dist_b < dist_a).mean() > 0.9
    with pytest.raises(InputError, match="not seen in training"):
        latent.decode(run, za[:2], cond={"tissue": "no-such-tissue"})


@pytest.mark.slow
def test_launch_job_runs_in_the_background(tmp_path):
    out = tmp_path / "job"
    proc = launch_job(
        [
            "--data",
            "synthetic",
            "--out",
            str(out),
            "--epochs",
            "2",
            "--latent",
            "3",
            "--set",
            "params.n_obs=120",
            "--set",
            "params.n_genes=40",
        ]
    )
    assert json.loads((out / "status.json").read_text())["state"] in ("queued", "running", "done")
    assert proc.wait(timeout=240) == 0, (out / "train.log").read_text()
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "done"
    log = (out / "train.log").read_text()
    assert "epoch 2/2" in log
    assert load_run(out).n_latent == 3


def test_cli_train_bad_input_exits_2(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "train",
            "--data",
            "synthetic",
            "--out",
            str(tmp_path / "r"),
            "--set",
            "no_such_option=1",
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert res.returncode == 2
    assert res.stderr.startswith("error: --set no_such_option: unknown option")
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_quality_on_pbmc68k_cell_type_knn(tmp_path):
    """Real scRNA counts: 15-NN on the VAE latent predicts held-out cell types at least as
    well as 15-NN on PCA (same number of dims) of the same preprocessed data."""
    mdata = load_builtin("pbmc68k")
    cfg = RunConfig(
        data=DataConfig(sources=["pbmc68k"], label="bulk_labels", test_frac=0.2),
        model=ModelConfig(model="vae", n_latent=10),
        train=TrainConfig(epochs=60),
    )
    run = train(cfg, mdata, out=tmp_path / "pbmc")
    knn = run.metrics["knn"]
    assert knn["label"] == "bulk_labels"
    assert knn["latent"] >= knn["pca"], knn
    assert run.metrics["recon"]["rna"]["mse"] < run.metrics["recon"]["rna"]["baseline_mse"]


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["all_pairs", "frozen_target"])
def test_translation_rna_to_protein_beats_mean_and_matches_svd_mlp(tmp_path, scheme):
    """Mean per-sample Pearson (data units, held-out samples) of RNA -> protein."""
    params = {"n_obs": 600, "n_genes": 100}
    mdata = load_builtin("synthetic", **params)
    cfg = RunConfig(
        data=DataConfig(sources=["synthetic"], params=params, modalities=["rna", "protein"]),
        model=ModelConfig(
            model="translator", translator_scheme=scheme, translator_target="protein", n_latent=20
        ),
        train=TrainConfig(epochs=150, beta=0.1, lr=3e-3),
    )
    run = train(cfg, mdata, out=tmp_path / scheme)
    pair = run.metrics["translation"]["pairs"]["rna->protein"]
    assert pair["model"] > pair["mean"] + 0.1, pair
    assert pair["model"] >= pair["svd_mlp"], pair
    # core.latent.translate gives the same predictions the metric scored
    from core.baselines import per_sample_pearson
    from core.preprocess import aligned_matrix

    pred = latent.translate(run, mdata, source="rna", target="protein")
    split = run.split.reindex(mdata.obs_names).to_numpy()
    obs = aligned_matrix(mdata, "protein")
    rows = (split == "test") & ~np.isnan(obs).any(1) & ~np.isnan(pred).any(1)
    assert per_sample_pearson(obs[rows], pred[rows]) == pytest.approx(pair["model"], abs=1e-4)


@pytest.mark.slow
def test_background_job_can_be_cancelled_and_keeps_weights(tmp_path):
    from core.runs import request_cancel

    out = tmp_path / "long"
    proc = launch_job(
        [
            "--data",
            "synthetic",
            "--out",
            str(out),
            "--epochs",
            "2000",
            "--latent",
            "3",
            "--set",
            "params.n_obs=120",
            "--set",
            "params.n_genes=40",
            "--set",
            "kl_warmup_epochs=0",
            "--set",
            "patience=0",
        ]
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            st = json.loads((out / "status.json").read_text())
            if st["state"] == "running" and st.get("epoch", 0) >= 2:
                break
            assert proc.poll() is None, (out / "train.log").read_text()
            time.sleep(0.3)
        request_cancel(out)  # the dashboard's way
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    st = json.loads((out / "status.json").read_text())
    assert st["state"] == "cancelled", st
    run = load_run(out)
    assert 2 <= run.metrics["epochs"] < 2000
    z, _ = latent.encode(run, run.load_data())
    assert np.isfinite(z).all()


def test_sigterm_becomes_a_graceful_cancel_request(tmp_path):
    import os
    import signal

    from core.train import _cancel_on_sigterm

    previous = signal.getsignal(signal.SIGTERM)
    try:
        _cancel_on_sigterm(tmp_path)
        os.kill(os.getpid(), signal.SIGTERM)
        assert (tmp_path / "cancel").read_text().startswith("SIGTERM")
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_one_cycle_schedule_and_early_stopping(tmp_path, small):
    run = train(small_config(train={"epochs": 4, "one_cycle": True, "lr": 1e-2}), small,
                out=tmp_path / "oc")  # fmt: skip
    lr = run.history["lr"].to_numpy()
    assert lr.max() <= 1e-2 + 1e-12 and len(set(np.round(lr, 10))) == 4  # moves every epoch
    run = train(
        small_config(train={"epochs": 200, "patience": 2, "kl_warmup_epochs": 0, "lr": 0.05}),
        small,
        out=tmp_path / "es",
    )
    m = run.metrics
    assert m["stopped"] == "early_stopping" and m["epochs"] < 200
    assert m["best_epoch"] == m["epochs"] - 2
    best = run.history["val_total"].min()
    assert m["val_loss"] == pytest.approx(best)
    # the saved weights are the best epoch's: their val loss reproduces the best value
    from core.train import TensorData, evaluate_loss

    data = TensorData.from_mdata(run.preprocessor, small, device=torch.device("cpu"))
    val_idx = np.nonzero(run.split.reindex(small.obs_names).to_numpy() == "val")[0]
    again = evaluate_loss(run.model(0), data, val_idx, kl_w=1.0, seed=run.config.train.seed + 2)
    assert again["total"] == pytest.approx(best, rel=1e-5)


def test_scale_parameters_get_their_own_optimizer_group():
    from core.models import ModalitySpec, ModelConfig, MultiVAE
    from core.train import SCALE_LR_FACTOR, param_groups

    specs = {
        "rna": ModalitySpec(kind="counts", n_in=6, n_out=6),
        "protein": ModalitySpec(kind="continuous", n_in=4, n_out=4),
    }
    model = MultiVAE(specs, config=ModelConfig(model="multivae", n_latent=3))
    nets, scales = param_groups(model, lr=1e-3, weight_decay=0.01)
    assert scales["lr"] == 1e-3 * SCALE_LR_FACTOR and scales["weight_decay"] == 0.0
    assert sorted(p.numel() for p in scales["params"]) == [4, 6]  # Gaussian logvar, NB log_theta
    n_all = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for g in (nets, scales) for p in g["params"]) == n_all


def test_latent_default_depends_on_the_number_of_modalities():
    from core.cli import build_parser
    from core.train import config_from_args

    args = build_parser().parse_args(["train", "--data", "synthetic", "--out", "r"])
    assert config_from_args(args, n_modalities=1).model.n_latent == 10
    multi = config_from_args(args, n_modalities=4)
    assert multi.model.n_latent == 32 and multi.model.modality_dropout == 0.0
    args = build_parser().parse_args(
        ["train", "--data", "synthetic", "--out", "r", "--model", "multivae", "--latent", "5"]
    )
    cfg = config_from_args(args, n_modalities=4)
    assert cfg.model.n_latent == 5 and cfg.model.modality_dropout == 0.0


def test_translator_defaults_are_wider_with_a_weaker_kl():
    from core.cli import build_parser
    from core.train import config_from_args

    argv = ["train", "--data", "synthetic", "--out", "r", "--model", "translator"]
    cfg = config_from_args(build_parser().parse_args(argv), n_modalities=4)
    assert cfg.model.n_hidden == 256 and cfg.train.beta == 0.1
    cfg = config_from_args(build_parser().parse_args([*argv, "--beta", "0.5"]), n_modalities=4)
    assert cfg.train.beta == 0.5
    plain = config_from_args(build_parser().parse_args(argv[:-2]), n_modalities=4)
    assert plain.model.n_hidden == 128 and plain.train.beta == 1.0


def test_small_steps_train_on_one_thread_and_restore_the_setting():
    import torch

    from core.train import SMALL_STEP, cpu_threads_for

    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        small = TrainConfig(batch_size=32, device="cpu")
        with cpu_threads_for(small, n_features=SMALL_STEP // 64):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with cpu_threads_for(TrainConfig(batch_size=1024, device="cpu"), n_features=2000):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)


def test_matmul_precision_is_scoped_to_cpu_training(monkeypatch):
    import torch

    from core.train import MATMUL_ENV, matmul_precision

    before = torch.get_float32_matmul_precision()
    monkeypatch.delenv(MATMUL_ENV, raising=False)
    with matmul_precision(torch.device("cpu")):
        assert torch.get_float32_matmul_precision() == "medium"
    assert torch.get_float32_matmul_precision() == before
    with matmul_precision(torch.device("cuda")):  # GPUs keep torch's own setting
        assert torch.get_float32_matmul_precision() == before
    monkeypatch.setenv(MATMUL_ENV, "highest")
    with matmul_precision(torch.device("cpu")):
        assert torch.get_float32_matmul_precision() == "highest"
    monkeypatch.setenv(MATMUL_ENV, "fast")
    with (
        pytest.raises(InputError, match="OLE_MATMUL_PRECISION"),
        matmul_precision(torch.device("cpu")),
    ):
        pass
