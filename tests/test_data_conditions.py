"""Condition columns and numeric metadata: checked before training, never silently filled.

A one-level condition and a numeric condition with missing values are refused with one line
naming the column (and the first row); a categorical condition with missing values trains with
an explicit "NA" level; an infinite metadata value becomes missing with a warning, and no NaN /
Infinity ever reaches the run's JSON files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.data import check_condition, load
from core.errors import InputError
from core.models import ModelConfig
from core.preprocess import ConditionEncoder, Preprocessor
from core.runs import DataConfig, RunConfig, TrainConfig
from core.train import train

REPO = Path(__file__).resolve().parents[1]
N = 24


def write_data(tmp: Path, meta: dict) -> tuple[Path, Path]:
    """rna.csv (N samples x 6 genes, counts) and obs.csv with the given columns."""
    rng = np.random.default_rng(0)
    ids = [f"S{i:02d}" for i in range(N)]
    pd.DataFrame(rng.poisson(5.0, (N, 6)), index=ids, columns=[f"G{j}" for j in range(6)]).to_csv(
        tmp / "rna.csv", index_label="sample"
    )
    pd.DataFrame(meta, index=ids).to_csv(tmp / "obs.csv", index_label="sample")
    return tmp / "rna.csv", tmp / "obs.csv"


def config(rna: Path, obs: Path, conditions: list[str]) -> RunConfig:
    return RunConfig(
        data=DataConfig(
            sources=[str(rna)], obs=str(obs), conditions=conditions, stratify=None, label=None
        ),
        model=ModelConfig(model="cvae", n_latent=2, n_hidden=8),
        train=TrainConfig(epochs=1, batch_size=8),
    )


def tissue(values=("liver", "lung")) -> list:
    return [values[i % len(values)] for i in range(N)]


# (obs columns, condition, message) - each refused before any preprocessing is fitted
REFUSED = [
    ({"batch": ["b1"] * N}, "batch", r"metadata column 'batch' has a single level \('b1'"),
    (
        {"age": [30.0 + i for i in range(N - 1)] + [np.nan]},
        "age",
        r"metadata column 'age' has 1 missing value\(s\) \(first at row 'S23'\); fill them in "
        r"\(or drop those samples\)",
    ),
    (
        {"age": [30.0 + i for i in range(N - 1)] + [np.inf]},  # inf -> missing, with a warning
        "age",
        r"metadata column 'age' has 1 missing value\(s\) \(first at row 'S23'\)",
    ),
    ({"dose": [1.0] * N}, "dose", r"metadata column 'dose' is constant"),
    (
        {"tissue": tissue()},
        "organ",
        r"condition column 'organ' is not in the sample metadata; available: tissue",
    ),
]


@pytest.mark.parametrize(
    ("meta", "condition", "message"),
    REFUSED,
    ids=["one_level", "numeric_nan", "numeric_inf", "constant", "unknown_column"],
)
def test_train_refuses_a_bad_condition_before_fitting(tmp_path, meta, condition, message):
    rna, obs = write_data(tmp_path, meta)
    mdata = load([str(rna)], obs=str(obs))
    with pytest.raises(InputError, match=message) as info:
        train(config(rna, obs, [condition]), mdata, out=tmp_path / "run")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run" / "preprocess.json").exists()  # refused before fitting


def test_categorical_condition_with_missing_values_trains_with_an_na_level(tmp_path):
    rna, obs = write_data(tmp_path, {"tissue": ["liver", "lung", None] * (N // 3)})
    mdata = load([str(rna)], obs=str(obs))
    assert check_condition(mdata, "tissue") == "categorical"
    run_dir = tmp_path / "run"
    train(config(rna, obs, ["tissue"]), mdata, out=run_dir)
    text = (run_dir / "preprocess.json").read_text()
    state = json.loads(text)
    (spec,) = state["conditions"]["specs"]
    assert spec["levels"] == ["liver", "lung", "NA"]


def test_infinite_metadata_becomes_missing_with_a_warning_and_json_stays_strict(tmp_path):
    age = [30.0 + i for i in range(N)]
    age[5] = np.inf
    age[9] = -np.inf
    rna, obs = write_data(tmp_path, {"tissue": tissue(), "age": age})
    mdata = load([str(rna)], obs=str(obs))
    assert np.isnan(mdata.obs["age"].iloc[[5, 9]]).all()
    assert any(
        "obs.csv: infinite value (inf) in metadata column 'age' at row 'S05' and 1 more; "
        "treated as missing" in w
        for w in mdata.uns["warnings"]
    )
    # training on "tissue" ignores "age"; the run's JSON is strict
    run_dir = tmp_path / "run"
    train(config(rna, obs, ["tissue"]), mdata, out=run_dir)

    def refuse(constant):
        raise AssertionError(f"non-strict JSON constant {constant}")

    for name in ("preprocess.json", "model.json", "config.json"):
        json.loads((run_dir / name).read_text(), parse_constant=refuse)


def test_condition_encoder_uses_finite_values_only():
    obs = pd.DataFrame({"age": [20.0, 40.0, np.inf, -np.inf, np.nan, 60.0]})
    enc = ConditionEncoder(["age"]).fit(obs)
    (spec,) = enc.specs
    assert spec["mean"] == pytest.approx(40.0)
    assert spec["sd"] == pytest.approx(np.std([20.0, 40.0, 60.0]))
    json.dumps(enc.state(), allow_nan=False)  # strict JSON
    C = enc.transform(obs)
    assert np.isfinite(C).all()
    np.testing.assert_array_equal(C[2:5, 0], [0.0, 0.0, 0.0])  # non-finite -> the mean
    pre = Preprocessor({}, enc)
    assert "Infinity" not in pre.to_json() and "NaN" not in pre.to_json()


def test_cli_train_one_level_condition_exits_2_with_one_line(tmp_path):
    rna, obs = write_data(tmp_path, {"batch": ["b1"] * N})
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "train",
            "--data",
            f"rna={rna}",
            "--obs",
            str(obs),
            "--model",
            "cvae",
            "--condition",
            "batch",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: metadata column 'batch' has a single level")
    assert len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr
