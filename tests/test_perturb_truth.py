"""Ground truth on `synthetic` (planted associations) and the `perturb` CLI, on a real run.

One small multivae with 3 refits is trained once for the module (about 10-20 s on 2 cores);
the bench (bench/perturb_speed.py) measures the same on the full-size dataset.
"""

import json

import numpy as np
import pandas as pd
import pytest

from core import cli, datasets, perturb
from core.models import ModelConfig
from core.runs import DataConfig, RunConfig, TrainConfig, load_run
from core.train import train

PARAMS = {
    "n_obs": 240,
    "n_genes": 100,
    "n_cpgs": 40,
    "n_proteins": 16,
    "n_drugs": 3,
    "n_regulators": 3,
    "seed": 0,
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    mdata = datasets.load_builtin("synthetic", **PARAMS)
    config = RunConfig(
        data=DataConfig(sources=["synthetic"], params=PARAMS),
        model=ModelConfig(model="multivae", n_latent=16, n_hidden=128),
        train=TrainConfig(epochs=20, batch_size=32, refits=3, patience=0, device="cpu"),
    )
    out = tmp_path_factory.mktemp("perturb") / "truth-run"
    train(config, mdata, out=out)
    run = load_run(out)
    return run, mdata, perturb.build_context(run, mdata)


def test_planted_drug_and_regulator_associations_are_found(trained):
    run, mdata, ctx = trained
    planted = mdata.uns["associations"]
    drugs = perturb.screen(run, modality="drug", context=ctx)
    regulators = ["protein:" + p for p in mdata.uns["simulation"]["regulator_proteins"]]
    regs = perturb.screen(
        run, modality="protein", context=ctx, features=[r.split(":")[1] for r in regulators]
    )
    m_drug = perturb.truth_metrics(drugs, planted)
    m_reg = perturb.truth_metrics(regs, planted, sources=regulators)
    assert m_drug["n_planted"] > 20 and m_reg["n_planted"] > 20
    assert m_drug["auroc"] >= 0.9, m_drug
    assert m_reg["auroc"] >= 0.85, m_reg
    assert m_drug["precision"] >= 0.8 and m_drug["recall"] >= 0.3, m_drug
    assert m_reg["precision"] >= 0.8 and m_reg["recall"] >= 0.3, m_reg
    # no ceiling: the strongest pairs keep distinct scores and FDRs (MOVE's clip at 1e-8
    # tied every all-one-sign pair at score 18.42, fdr 1e-8)
    for table in (drugs, regs):
        top = table.nlargest(20, "score")
        assert top["score"].nunique() == 20, top[["source", "target", "score"]]
        assert top["fdr"].nunique() == 20 and (top["fdr"] > 0).all()


def test_displacement_has_refit_spread(trained):
    run, mdata, ctx = trained
    res = perturb.perturb(
        run,
        feature="drug:drug1"
        if "drug1" in ctx.features["drug"]
        else f"drug:{ctx.features['drug'][0]}",
        context=ctx,
    )
    disp = np.linalg.norm(res.displacement, axis=2)  # (n_refits, n_pert)
    assert disp.shape == (3, len(res.rows)) and (disp > 0).all()
    # refits are independent fits: their displacements differ
    assert not np.allclose(res.displacement[0], res.displacement[1])


def test_cli_screen_writes_table_and_json(trained, tmp_path, capsys):
    run, mdata, ctx = trained
    out = tmp_path / "table.csv"
    code = cli.main(["perturb", str(run.path), "--screen", "drug", "--out", str(out), "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    table = pd.read_csv(out)
    assert list(table.columns[:7]) == perturb.TABLE_COLUMNS
    assert payload["n_pairs"] == len(table) and payload["n_sources"] == 3
    assert payload["n_significant"] == int(table["significant"].sum()) > 0
    assert payload["top"][0]["score"] == pytest.approx(table["score"].max())
    assert not (table["source"] == table["target"]).any()


def test_cli_feature_with_options(trained, tmp_path, capsys):
    run, mdata, ctx = trained
    out = tmp_path / "one.csv"
    protein = ctx.features["protein"][0]
    code = cli.main(
        [
            "perturb",
            str(run.path),
            "--feature",
            f"protein:{protein}",
            "--kind",
            "shift",
            "--value",
            "2",
            "--subset",
            "tissue=" + str(mdata.obs["tissue"].iloc[0]),
            "--method",
            "ttest",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    table = pd.read_csv(out)
    assert set(table["source"]) == {f"protein:{protein}"} and "p_value" in table.columns


def test_cli_errors_are_one_line(trained, tmp_path, capsys):
    run, mdata, ctx = trained
    code = cli.main(
        ["perturb", str(run.path), "--feature", "drug:nope", "--out", str(tmp_path / "x.csv")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: feature 'nope' is not in modality 'drug'")
    code = cli.main(
        [
            "perturb",
            str(run.path),
            "--screen",
            "drug",
            "--kind",
            "plus_std",
            "--out",
            str(tmp_path / "x.csv"),
        ]
    )
    assert code == 2 and "does not apply to a categorical" in capsys.readouterr().err
    code = cli.main(
        ["perturb", str(run.path), "--screen", "drug", "--out", str(tmp_path / "missing" / "x.csv")]
    )
    assert code == 2 and "does not exist" in capsys.readouterr().err
