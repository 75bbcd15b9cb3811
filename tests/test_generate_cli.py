"""`python -m core generate` / `evaluate` end to end on tiny trained runs."""

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from core.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args):
    """A real subprocess (used once: proves the module entry point works end to end)."""
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "core", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """In-process ``python -m core`` (same parser and error handling, no interpreter start)."""
    from core.cli import main

    def call(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call


@pytest.fixture(scope="module")
def rna_cvae(tmp_path_factory):
    """A one-modality conditional run (rna | tissue) on the tiny synthetic data."""
    import os

    from core.models import ModelConfig
    from core.runs import DataConfig, RunConfig, TrainConfig, load_data_config
    from core.train import train

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = tmp_path_factory.mktemp("gen") / "rna-cvae"
    cfg = RunConfig(
        data=DataConfig(
            sources=["synthetic"],
            modalities=["rna"],
            conditions=["tissue"],
            params={"n_obs": 200, "n_genes": 40, "n_cpgs": 10, "n_proteins": 10, "n_drugs": 2},
        ),
        model=ModelConfig(model="cvae", n_latent=4, n_hidden=32),
        train=TrainConfig(epochs=5, refits=1, seed=0),
    )
    train(cfg, load_data_config(cfg.data), out=out, progress=None)
    return out


def test_generate_h5mu_then_evaluate_json(tiny_run_template, tmp_path):
    out = tmp_path / "gen.h5mu"
    res = run_cli("generate", tiny_run_template, "--n", 150, "--seed", 1, "--out", out, "--json")
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert payload["n_obs"] == 150 and out.is_file()
    assert set(payload["modalities"]) == {"rna", "methylation", "protein", "drug"}

    res = run_cli("evaluate", tiny_run_template, "--synthetic", out, "--label", "tissue", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    for key in (
        "trtr_f1",
        "trts_f1",
        "tstr_f1",
        "c2st_auc",
        "mmd",
        "mmd_p",
        "memorisation",
        "memorisation_flagged",
        "verdict",
    ):
        assert key in report, key
    assert 0.0 <= report["c2st_auc"] <= 1.0 and 0.0 < report["mmd_p"] <= 1.0
    assert report["n_synthetic"] == 150
    assert "TSTR" in res.stdout and "macro" in res.stdout  # the human-readable table


def test_generate_csv_directory(tiny_run_template, tmp_path, cli):
    out = tmp_path / "gen_csv"
    res = cli("generate", tiny_run_template, "--condition", "tissue=liver", "--n", 20, "--out", out)
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "drug.csv",
        "methylation.csv",
        "obs.csv",
        "protein.csv",
        "provenance.json",
        "rna.csv",
    ]
    import pandas as pd

    obs = pd.read_csv(out / "obs.csv", index_col=0)
    assert (obs["tissue"] == "liver").all() and len(obs) == 20
    rna = pd.read_csv(out / "rna.csv", index_col=0)
    assert rna.index.name == "sample_id" and list(rna.index) == list(obs.index)
    assert np.all(rna.to_numpy() == np.round(rna.to_numpy()))
    # A CSV directory is accepted by evaluate too. Only one tissue was generated: the
    # classifier tables are skipped with a note, everything else is reported.
    res = cli("evaluate", tiny_run_template, "--synthetic", out, "--label", "tissue", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["trtr_f1"] is None and report["trts_f1"] is None and report["tstr_f1"] is None
    assert 0.0 <= report["c2st_auc"] <= 1.0 and report["mmd"] is not None
    assert report["classifiers"] == []
    assert "skipped" in res.stdout and "single tissue level (liver)" in res.stdout
    assert "np.str_" not in res.stdout
    # Compared with the held-out liver samples only (the rule reads the file's conditions).
    assert report["n_test"] == held_out_count(tiny_run_template, {"liver"})
    assert "tissue = liver" in res.stdout


def held_out_count(run_dir, tissues):
    """Held-out samples of the run in these tissues that have every modality."""
    from core.evaluate import run_splits
    from core.runs import load_run

    _, test = run_splits(load_run(Path(run_dir)))
    ids = set.intersection(*(set(a.obs_names) for a in test.mod.values()))
    tissue = test.obs["tissue"].astype(str)
    return sum(1 for i in ids if tissue[i] in tissues)


def test_evaluate_two_levels_against_their_held_out_samples(tiny_run_template, tmp_path, cli):
    out = tmp_path / "two.h5mu"
    res = cli("generate", tiny_run_template, "--condition", "tissue=liver", "--condition",
              "tissue=lung", "--condition", "age=60", "--n", 40, "--out", out)  # fmt: skip
    assert res.returncode == 0, res.stderr
    res = cli("evaluate", tiny_run_template, "--synthetic", out, "--label", "tissue", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    for key in ("trtr_f1", "trts_f1", "tstr_f1", "c2st_auc", "mmd"):
        assert isinstance(report[key], float), key
    assert {r["class"] for r in report["classifiers"]} == {"macro", "liver", "lung"}
    assert report["n_test"] == held_out_count(tiny_run_template, {"liver", "lung"})
    assert any("tissue in {liver, lung}; age not filtered" in n for n in report["notes"])


def test_generate_single_modality_h5ad_prior(rna_cvae, tmp_path, cli):
    out = tmp_path / "gen.h5ad"
    res = cli(
        "generate",
        rna_cvae,
        "--condition",
        "tissue=brain",
        "--n",
        30,
        "--mode",
        "prior",
        "--out",
        out,
    )
    assert res.returncode == 0, res.stderr
    import anndata as ad

    a = ad.read_h5ad(out)
    assert a.shape == (30, 40)
    assert (a.obs["tissue"].astype(str) == "brain").all()
    assert a.uns["generation"]["mode"] == "prior" and a.uns["modality"] == "rna"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--condition", "organ=liver"], "unknown condition column 'organ'"),
        (["--condition", "tissue=moon"], "has no level 'moon'"),
        (["--condition", "tissue"], "--condition expects KEY=VALUE"),
        (["--out-ext", "x.csv"], "unknown output type '.csv'"),
        (["--out-ext", "x.h5ad"], "use .h5mu"),
    ],
)
def test_generate_bad_input_exits_2(tiny_run_template, tmp_path, args, message, cli):
    out = tmp_path / "g.h5mu"
    if args[0] == "--out-ext":
        out, args = tmp_path / args[1], []
    res = cli("generate", tiny_run_template, *args, "--n", 5, "--out", out)
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr


def test_evaluate_bad_input_exits_2(tiny_run_template, tmp_path, cli):
    res = cli(
        "evaluate", tiny_run_template, "--synthetic", tmp_path / "none.h5mu", "--label", "tissue"
    )
    assert res.returncode == 2 and "no such file" in res.stderr
    out = tmp_path / "g.h5mu"
    assert cli("generate", tiny_run_template, "--n", 30, "--out", out).returncode == 0
    res = cli("evaluate", tiny_run_template, "--synthetic", out, "--label", "organ")
    assert res.returncode == 2 and "no column 'organ'" in res.stderr


def test_read_generated_rejects_other_files(tmp_path):
    from core.generate import read_generated

    bad = tmp_path / "x.h5ad"
    bad.write_text("not hdf5")
    with pytest.raises(InputError, match="not a readable .h5ad"):
        read_generated(bad)
    with pytest.raises(InputError, match="no <modality>.csv"):
        read_generated(tmp_path)


def test_condition_sets_vary_repeated_columns(tiny_run_template, tmp_path, cli):
    from core.generate import condition_sets

    assert condition_sets(None) == [{}]
    assert condition_sets(["tissue=liver", "tissue=lung", "age=60"]) == [
        {"tissue": "liver", "age": "60"},
        {"tissue": "lung", "age": "60"},
    ]
    out = tmp_path / "two.h5mu"
    res = cli("generate", tiny_run_template, "--condition", "tissue=liver", "--condition",
              "tissue=lung", "--n", 10, "--out", out, "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    from core.generate import read_generated

    back = read_generated(out)
    assert sorted(back.obs["tissue"].astype(str).value_counts().items()) == [
        ("liver", 10),
        ("lung", 10),
    ]
