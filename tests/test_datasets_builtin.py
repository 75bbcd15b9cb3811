"""Built-in datasets: registry, the synthetic simulator's ground truth, pbmc68k, nutrimouse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.data import load, present
from core.datasets import (
    ASSOCIATION_KINDS,
    DEFAULT_DATASET,
    REGISTRY,
    load_builtin,
    simulate,
)
from core.errors import InputError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth():
    return load_builtin("synthetic")


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUROC of scores for positives (labels True) vs negatives."""
    ranks = pd.Series(scores).rank().to_numpy()
    pos = labels.astype(bool)
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_registry_order_and_default():
    assert list(REGISTRY) == ["synthetic", "pbmc68k", "nutrimouse"]
    assert DEFAULT_DATASET == "synthetic"


def test_synthetic_default_shapes_and_kinds(synth):
    assert synth.n_obs == 2000
    shapes = {m: (a.uns["kind"], a.n_vars) for m, a in synth.mod.items()}
    assert shapes == {
        "rna": ("counts", 1000),
        "methylation": ("proportion", 300),
        "protein": ("continuous", 60),
        "drug": ("categorical", 8),
    }
    assert list(synth.obs.columns) == ["tissue", "age"]
    assert isinstance(synth.obs["tissue"].dtype, pd.CategoricalDtype)
    assert 4 <= len(synth.obs["tissue"].cat.categories) <= 5
    assert synth.obs["age"].dtype == np.float64
    rna = synth.mod["rna"].X
    assert np.array_equal(rna, np.rint(rna)) and rna.min() >= 0
    assert (rna.mean(axis=0) > 1).mean() >= 0.9, "counts should mostly have means above 1"
    beta = synth.mod["methylation"].X
    assert beta.min() > 0 and beta.max() < 1
    drug = synth.mod["drug"].X
    prevalence = drug.mean(axis=0)
    assert ((prevalence > 0.15) & (prevalence < 0.35)).all()


def test_synthetic_missing_modalities(synth):
    lacks = np.zeros(synth.n_obs, dtype=int)
    for mod in synth.mod:
        lacks += ~present(synth, mod)
    frac = (lacks > 0).mean()
    assert 0.05 <= frac <= 0.10
    assert lacks.max() == 1, "a sample lacks at most one modality"
    assert present(synth, "rna").all() and present(synth, "drug").all()


def test_synthetic_associations_table(synth):
    table = synth.uns["associations"]
    assert {"source", "target", "kind"} <= set(table.columns)
    assert set(table["kind"]) == set(ASSOCIATION_KINDS)
    features = {f"{m}:{v}" for m, a in synth.mod.items() for v in a.var_names}
    assert set(table["source"]) <= features and set(table["target"]) <= features
    size = table.groupby(["source", "kind"]).size()
    for (_, kind), n in size.items():
        lo, hi = {
            "drug_gene": (10, 20),
            "drug_protein": (3, 5),
            "regulator_gene": (5, 15),
            "regulator_cpg": (3, 8),
        }[kind]
        assert lo <= n <= hi, (kind, n)
    assert table[table["kind"].str.startswith("drug")]["source"].nunique() == 8
    n_reg = table[table["kind"].str.startswith("regulator")]["source"].nunique()
    assert 6 <= n_reg <= 10
    assert not table["target"].duplicated().any(), "target sets are disjoint"
    regs = set(table[table["kind"] == "regulator_gene"]["source"])
    assert not regs & set(table["target"]), "regulators are not targets of drugs"


def test_synthetic_planted_effects_are_strong(synth):
    """Drug / regulator targets stand out in simple marginal statistics (AUROC >= 0.95)."""
    table = synth.uns["associations"]
    rna = synth.mod["rna"].X.astype(np.float64)
    logn = np.log1p(rna / rna.sum(1, keepdims=True) * 1e4)
    drug = synth.mod["drug"]
    prot = synth.mod["protein"]
    for d, name in enumerate(drug.var_names):
        on = drug.X[:, d] == 1
        score = np.abs(logn[on].mean(0) - logn[~on].mean(0))
        targets = set(table[table["source"] == f"drug:{name}"]["target"])
        labels = np.array([f"rna:{g}" in targets for g in synth.mod["rna"].var_names])
        assert auroc(score, labels) >= 0.95, name
    rna_rows = synth.obs_names.get_indexer(prot.obs_names)
    for src in sorted(set(table[table["kind"] == "regulator_gene"]["source"])):
        r = prot.X[:, list(prot.var_names).index(src.split(":")[1])]
        x = logn[rna_rows]
        corr = np.abs(np.corrcoef(np.column_stack([r, x]).T)[0, 1:])
        targets = set(table[table["source"] == src]["target"])
        labels = np.array([f"rna:{g}" in targets for g in synth.mod["rna"].var_names])
        assert auroc(corr, labels) >= 0.95, src


def test_regulators_independent_of_latent_structure(synth):
    prot = synth.mod["protein"]
    regs = synth.uns["simulation"]["regulator_proteins"]
    tissue = synth.obs.loc[prot.obs_names, "tissue"]
    for name in regs:
        x = prot.X[:, list(prot.var_names).index(name)]
        means = pd.Series(x).groupby(tissue.to_numpy(), observed=True).mean()
        assert means.max() - means.min() < 0.3, name


def test_synthetic_seeded_and_configurable():
    a = simulate(n_obs=50, n_genes=30, n_cpgs=10, n_proteins=8, n_drugs=2, n_regulators=2, seed=5)
    b = simulate(n_obs=50, n_genes=30, n_cpgs=10, n_proteins=8, n_drugs=2, n_regulators=2, seed=5)
    c = simulate(n_obs=50, n_genes=30, n_cpgs=10, n_proteins=8, n_drugs=2, n_regulators=2, seed=6)
    np.testing.assert_array_equal(a.mod["rna"].X, b.mod["rna"].X)
    pd.testing.assert_frame_equal(a.uns["associations"], b.uns["associations"])
    assert not np.array_equal(a.mod["rna"].X, c.mod["rna"].X)
    assert a.mod["rna"].n_vars <= 30 and a.n_obs == 50
    with pytest.raises(InputError, match="n_regulators=8 must be below n_proteins=8"):
        simulate(n_proteins=8, n_regulators=8)


def test_synthetic_default_is_fast():
    t0 = time.perf_counter()
    simulate()
    assert time.perf_counter() - t0 < 4.0  # spec: < 2 s; margin for the shared test machine


def test_load_builtin_returns_independent_copies():
    first = load_builtin("synthetic")
    first.mod["rna"].X[:] = -1
    first.uns["warnings"].append("mutated")
    first.uns["associations"].drop(first.uns["associations"].index, inplace=True)
    t0 = time.perf_counter()
    second = load_builtin("synthetic")
    assert time.perf_counter() - t0 < 1.0, "repeated loads are cached"
    assert second.mod["rna"].X.min() >= 0
    assert "mutated" not in second.uns["warnings"]
    assert len(second.uns["associations"]) > 0


def test_load_builtin_errors():
    with pytest.raises(InputError, match="unknown built-in dataset 'mnist'"):
        load_builtin("mnist")
    with pytest.raises(InputError, match="bad parameter for built-in dataset 'synthetic'"):
        load_builtin("synthetic", n_cells=5)
    with pytest.raises(InputError, match="cannot be combined"):
        load(["synthetic", "pbmc68k"])


def test_pbmc68k_counts():
    mdata = load(["pbmc68k"])
    assert list(mdata.mod) == ["rna"]
    rna = mdata.mod["rna"]
    assert rna.shape == (700, 765)
    assert rna.uns["kind"] == "counts"
    assert np.array_equal(rna.X, np.rint(rna.X)) and rna.X.min() == 0
    assert len(mdata.obs["bulk_labels"].cat.categories) == 10
    # the recovered counts are a subset of each cell's total UMI count
    assert (rna.X.sum(1) <= mdata.obs["n_counts"].to_numpy() + 0.5).all()
    assert mdata.uns["dataset"] == "pbmc68k"


def test_nutrimouse():
    mdata = load_builtin("nutrimouse")
    assert {m: a.shape for m, a in mdata.mod.items()} == {"gene": (40, 120), "lipid": (40, 21)}
    assert all(a.uns["kind"] == "continuous" for a in mdata.mod.values())
    assert list(mdata.obs["genotype"].cat.categories) == ["wt", "ppar"]
    assert len(mdata.obs["diet"].cat.categories) == 5
    assert (pd.crosstab(mdata.obs["genotype"], mdata.obs["diet"]) == 4).all().all()
    assert (REPO / "assets" / "nutrimouse" / "ATTRIBUTION.md").exists()


def test_builtin_with_extra_metadata(tmp_path):
    meta = pd.DataFrame(
        {"cage": [f"c{i % 4}" for i in range(40)]}, index=[f"mouse{i + 1:02d}" for i in range(40)]
    )
    meta.to_csv(tmp_path / "cages.csv")
    mdata = load(["nutrimouse"], obs=str(tmp_path / "cages.csv"))
    assert list(mdata.obs.columns) == ["genotype", "diet", "cage"]
    assert len(mdata.obs["cage"].cat.categories) == 4


def test_cli_datasets_json():
    res = subprocess.run(
        [sys.executable, "-m", "core", "datasets", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    names = [d["name"] for d in payload["datasets"]]
    assert names == ["synthetic", "pbmc68k", "nutrimouse"]
    assert payload["datasets"][0]["default"] is True
    pbmc = payload["datasets"][1]
    assert pbmc["modalities"][0]["n_vars"] == 765 and pbmc["n_obs"] == 700
    assert "pbmc68k" in res.stdout and "nutrimouse" in res.stdout


def test_builtin_datasets_ignore_the_user_file_size_limit(monkeypatch, tmp_path):
    """OLE_MAX_FILE_MB guards the user's files, not the files the product ships."""
    from core.datasets import load_pbmc68k

    monkeypatch.setenv("OLE_MAX_FILE_MB", "1")  # scanpy's pbmc68k file is larger than 1 MB
    assert load_pbmc68k().mod["rna"].shape == (700, 765)
    big = tmp_path / "rna.csv"
    values = np.random.default_rng(0).normal(size=(2000, 60))
    pd.DataFrame(values, index=[f"s{i}" for i in range(2000)]).to_csv(big)  # ~2.3 MB
    with pytest.raises(
        InputError, match=r"rna\.csv: file is [0-9.]+ MB, above the limit of 1\.0 MB"
    ):
        load([str(big)])
