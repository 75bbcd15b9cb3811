"""``python -m core embed`` on a tiny trained run: CSV out, JSON payload, cache reuse."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core import embed
from core.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from core.models import ModelConfig
    from core.runs import DataConfig, RunConfig, TrainConfig, load_data_config
    from core.train import train

    config = RunConfig(
        data=DataConfig(sources=["synthetic"], params={"n_obs": 120, "n_genes": 40}, conditions=[]),
        model=ModelConfig(model="vae", n_latent=4),
        train=TrainConfig(epochs=2, refits=1, batch_size=64),
    )
    out = tmp_path_factory.mktemp("embed_cli") / "tiny"
    train(config, load_data_config(config.data), out=out, progress=None)
    return out


@pytest.mark.slow
def test_embed_command_writes_csv_and_reuses_the_cache(run_dir, tmp_path, capsys):
    csv = tmp_path / "coords.csv"
    argv = ["embed", str(run_dir), "--method", "pca", "--dims", "2", "--out", str(csv), "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out.strip().splitlines()[-1])
    assert payload["method"] == "pca" and payload["n_components"] == 2 and not payload["from_cache"]
    assert "100%" in captured.err  # progress went to stderr
    coords = pd.read_csv(csv, index_col="sample")
    assert list(coords.columns) == ["PC1", "PC2"] and len(coords) == payload["n_obs"] > 0
    assert np.isfinite(coords.to_numpy()).all()

    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["from_cache"] and again["key"] == payload["key"]
    table = embed.list_cached(run_dir)
    assert list(table["key"]) == [payload["key"]]


@pytest.mark.slow
def test_embed_command_passes_method_parameters(run_dir, capsys):
    argv = ["embed", str(run_dir), "--method", "tsne", "--dims", "2", "--json",
            "--param", "n_iter=30", "--param", "early_exaggeration_iter=10"]  # fmt: skip
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["params"]["n_iter"] == 30 and payload["params"]["early_exaggeration_iter"] == 10


def test_embed_command_bad_input_exits_2(tmp_path, capsys):
    assert main(["embed", str(tmp_path / "no-run"), "--method", "pca"]) == 2
    assert "error:" in capsys.readouterr().err
    assert (
        main(["embed", str(tmp_path), "--method", "pca", "--out", str(tmp_path / "x/y.csv")]) == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_parse_params_types_values():
    assert embed.parse_params(["n_neighbors=30", "metric=cosine", "n_epochs=null", "whiten=true"]) == {
        "n_neighbors": 30, "metric": "cosine", "n_epochs": None, "whiten": True,
    }  # fmt: skip
