"""Readers, kind inference, MuData layout and the accessors (present, split, summarize)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest

from core.data import (
    KINDS,
    infer_kind,
    load,
    modality_matrix,
    present,
    split_samples,
    summarize,
)
from core.datasets import simulate
from core.errors import InputError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small():
    return simulate(
        n_obs=80,
        n_genes=40,
        n_cpgs=15,
        n_proteins=12,
        n_drugs=3,
        n_regulators=2,
        missing_frac=0.1,
        seed=3,
    )


def frame(adata) -> pd.DataFrame:
    return pd.DataFrame(adata.X, index=adata.obs_names, columns=adata.var_names)


@pytest.fixture(scope="module")
def csv_dir(small, tmp_path_factory):
    d = tmp_path_factory.mktemp("csvdir")
    for mod, adata in small.mod.items():
        frame(adata).to_csv(d / f"{mod}.csv", index_label="sample_id")
    small.obs.to_csv(d / "obs.csv", index_label="sample_id")
    (d / "notes.md").write_text("not data")
    return d


def assert_layout(mdata):
    assert mdata.obs_names.is_unique
    for mod, adata in mdata.mod.items():
        assert isinstance(adata.X, np.ndarray) and adata.X.dtype == np.float32
        assert adata.var_names.is_unique
        assert adata.uns["kind"] in KINDS
        mask = present(mdata, mod)
        assert mask.shape == (mdata.n_obs,) and mask.dtype == bool
        assert mask.sum() == adata.n_obs
        if adata.uns["kind"] == "categorical":
            cats = adata.uns["categories"]
            assert list(cats) == list(adata.var_names)
            for j, var in enumerate(adata.var_names):
                assert adata.X[:, j].max() < len(cats[var])
    assert isinstance(mdata.uns["warnings"], list)
    assert isinstance(mdata.uns["dataset"], str)


@pytest.mark.parametrize(
    ("values", "name", "expected"),
    [
        (np.array([[0, 1], [1, 0]], float), "x", "categorical"),
        (np.array([[0, 3], [10, 2]], float), "x", "counts"),
        (np.array([[0.1, 0.9], [0.5, 0.0]]), "x", "proportion"),
        (np.array([[-1.2, 3.4], [0.5, 2.0]]), "x", "continuous"),
        (np.array([[-1, 3], [5, 2]], float), "x", "continuous"),  # negative integers
        (np.array([[3e7, 4e7], [5e7, 1e8]]), "x", "continuous"),  # beyond float32 integers
        (np.array([[np.nan, 3], [4, 5]]), "x", "counts"),  # NaN ignored
        (np.array([[1, 50], [80, 100]], float), "methylation", "proportion"),  # name hint
        (np.array([[1.0, 2.0], [3.5, 4.0]]), "log_expr", "continuous"),
    ],
)
def test_infer_kind(values, name, expected):
    assert infer_kind(values, name=name) == expected


def test_directory_of_csvs_round_trip(small, csv_dir):
    mdata = load([str(csv_dir)])
    assert_layout(mdata)
    assert mdata.uns["dataset"] == csv_dir.name
    assert set(mdata.mod) == set(small.mod)
    assert mdata.n_obs == small.n_obs
    for mod in small.mod:
        assert mdata.mod[mod].uns["kind"] == small.mod[mod].uns["kind"]
        got = modality_matrix(mdata, mod)[mdata.obs_names.get_indexer(small.obs_names)]
        np.testing.assert_allclose(got, modality_matrix(small, mod), rtol=1e-6)
    assert list(mdata.obs["tissue"].cat.categories) == sorted(small.obs["tissue"].cat.categories)
    assert mdata.obs["age"].dtype == np.float64
    assert any("notes.md: skipped" in w for w in mdata.uns["warnings"])


def test_named_sources_tsv_parquet_h5ad(small, tmp_path):
    frame(small.mod["rna"]).to_csv(tmp_path / "counts.tsv", sep="\t")
    frame(small.mod["protein"]).to_parquet(tmp_path / "prot.parquet")
    small.mod["methylation"].write_h5ad(tmp_path / "meth.h5ad")
    small.obs.to_csv(tmp_path / "meta.csv")
    mdata = load(
        [
            f"rna={tmp_path / 'counts.tsv'}",
            f"protein={tmp_path / 'prot.parquet'}",
            f"methylation={tmp_path / 'meth.h5ad'}",
        ],
        obs=str(tmp_path / "meta.csv"),
    )
    assert_layout(mdata)
    assert summarize(mdata).set_index("modality")["kind"].to_dict() == {
        "rna": "counts",
        "protein": "continuous",
        "methylation": "proportion",
    }
    assert mdata.n_obs == small.n_obs
    # samples missing from a modality are kept and flagged
    assert (~present(mdata, "protein")).sum() == small.n_obs - small.mod["protein"].n_obs
    assert mdata.obs["tissue"].notna().all()


def test_h5mu_round_trip_keeps_kinds_and_categories(small, tmp_path):
    path = tmp_path / "small.h5mu"
    small.write(path)
    mdata = load([str(path)])
    assert_layout(mdata)
    assert mdata.mod["drug"].uns["kind"] == "categorical"
    assert list(mdata.mod["drug"].uns["categories"]["drug01"]) == ["0", "1"]
    np.testing.assert_array_equal(mdata.mod["drug"].X, small.mod["drug"].X)
    assert mdata.uns["dataset"] == "small"


def test_single_table_is_a_one_modality_mudata(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        rng.poisson(4, (15, 6)),
        index=[f"c{i}" for i in range(15)],
        columns=[f"g{j}" for j in range(6)],
    )
    df.to_csv(tmp_path / "expr.csv")
    mdata = load(str(tmp_path / "expr.csv"))
    assert isinstance(mdata, md.MuData)
    assert list(mdata.mod) == ["expr"]
    assert mdata.mod["expr"].uns["kind"] == "counts"
    # override wins
    assert (
        load([str(tmp_path / "expr.csv")], kinds={"expr": "continuous"}).mod["expr"].uns["kind"]
        == "continuous"
    )


def test_text_and_binary_tables_are_categorical(tmp_path):
    n = 20
    df = pd.DataFrame(
        {"genotype": ["wt", "ko", None, "het"] * 5, "flag": [0, 1] * 10},
        index=[f"m{i}" for i in range(n)],
    )
    df.to_csv(tmp_path / "geno.csv")
    flags = pd.DataFrame(
        {"d1": [0, 1] * 10, "d2": [1, 1, 0, 0] * 5}, index=[f"m{i}" for i in range(n)]
    )
    flags.to_csv(tmp_path / "drug.csv")
    mdata = load([str(tmp_path / "geno.csv"), str(tmp_path / "drug.csv")])
    geno = mdata.mod["geno"]
    assert geno.uns["kind"] == "categorical"
    assert list(geno.uns["categories"]["genotype"]) == ["het", "ko", "wt", "NA"]
    assert list(geno.uns["categories"]["flag"]) == ["0", "1"]
    assert mdata.mod["drug"].uns["kind"] == "categorical"
    assert list(mdata.mod["drug"].uns["categories"]["d2"]) == ["0", "1"]


def test_semicolon_csv_is_sniffed(tmp_path):
    rows = ["id;a;b"] + [f"s{i};{i}.5;{i * 2}.25" for i in range(12)]
    (tmp_path / "x.csv").write_text("\n".join(rows) + "\n")
    mdata = load([str(tmp_path / "x.csv")])
    assert mdata.mod["x"].n_vars == 2


def test_modality_matrix_and_present(small):
    mask = present(small, "methylation")
    X = modality_matrix(small, "methylation")
    assert X.shape == (small.n_obs, small.mod["methylation"].n_vars)
    assert np.isnan(X[~mask]).all()
    assert np.isfinite(X[mask]).all()
    np.testing.assert_array_equal(X[mask], small.mod["methylation"].X)
    with pytest.raises(InputError, match="no modality 'atac'"):
        present(small, "atac")


@pytest.mark.parametrize("stratify", [None, "tissue", "age"])
def test_split_samples_seeded_stratified(small, stratify):
    a = split_samples(small, stratify=stratify, seed=1)
    b = split_samples(small, stratify=stratify, seed=1)
    c = split_samples(small, stratify=stratify, seed=2)
    assert a.shape == (small.n_obs,)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    counts = pd.Series(a).value_counts()
    assert counts["test"] == 8 and counts["val"] == 8 and counts["train"] == 64
    if stratify == "tissue":
        for _, idx in small.obs.groupby("tissue", observed=True).indices.items():
            share = (a[idx] == "train").mean()
            assert 0.6 <= share <= 0.95


def test_split_small_and_skewed_strata_non_empty(small):
    sub = small[:12].copy()
    obs = sub.obs.copy()
    obs["group"] = pd.Categorical(["a"] * 10 + ["b", "c"])
    sub.obs = obs
    s = split_samples(sub, stratify="group", val_frac=0.1, test_frac=0.1, seed=0)
    assert set(s) == {"train", "val", "test"}
    with pytest.raises(InputError, match="must be in"):
        split_samples(small, val_frac=0.6, test_frac=0.5)
    with pytest.raises(InputError, match="no metadata column 'nope' to stratify by"):
        split_samples(small, stratify="nope")


def test_summarize(small):
    table = summarize(small)
    assert list(table.columns) == ["modality", "kind", "n_obs", "n_vars", "n_missing"]
    row = table.set_index("modality").loc["protein"]
    assert row["n_obs"] + row["n_missing"] == small.n_obs
    assert row["n_vars"] == 12


def test_h5ad_with_sparse_matrix_and_obs(tmp_path):
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    X = sp.csr_matrix(rng.poisson(2, (20, 8)).astype(np.float32))
    a = ad.AnnData(
        X, obs=pd.DataFrame({"cell_type": ["T", "B"] * 10}, index=[f"c{i}" for i in range(20)])
    )
    a.write_h5ad(tmp_path / "cells.h5ad")
    mdata = load([str(tmp_path / "cells.h5ad")])
    assert mdata.mod["cells"].uns["kind"] == "counts"
    assert list(mdata.obs["cell_type"].cat.categories) == ["B", "T"]


def test_cli_validate_json_on_directory(csv_dir):
    res = subprocess.run(
        [sys.executable, "-m", "core", "validate", "--data", str(csv_dir), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert payload["dataset"] == csv_dir.name
    assert payload["n_obs"] == 80
    mods = {m["modality"]: m for m in payload["modalities"]}
    assert mods["rna"]["kind"] == "counts" and mods["rna"]["n_vars"] == 40
    assert set(mods["protein"]) == {"modality", "kind", "n_obs", "n_vars", "n_missing"}
    assert isinstance(payload["warnings"], list)
    assert "methylation" in res.stdout and "proportion" in res.stdout


def test_sample_ids_are_strings_with_leading_zeros_kept(tmp_path):
    rows = ["id,a,b"] + [f"{i:03d},{i}.5,{i * 2}.25" for i in range(12)]
    (tmp_path / "x.csv").write_text("\n".join(rows) + "\n")
    meta = pd.DataFrame({"group": ["g1", "g2"] * 6}, index=[f"{i:03d}" for i in range(12)])
    meta.to_parquet(tmp_path / "meta.parquet")
    mdata = load([str(tmp_path / "x.csv")], obs=str(tmp_path / "meta.parquet"))
    assert list(mdata.obs_names[:2]) == ["000", "001"]
    assert (mdata.obs["group"] != "NA").all()


def test_numeric_categorical_override_keeps_levels(tmp_path):
    df = pd.DataFrame(
        {"dose": [0, 1, 2, 5] * 5, "rep": [1, 2] * 10}, index=[f"s{i}" for i in range(20)]
    )
    df.to_csv(tmp_path / "design.csv")
    mdata = load([str(tmp_path / "design.csv")], kinds={"design": "categorical"})
    adata = mdata.mod["design"]
    assert adata.uns["categories"]["dose"] == ["0", "1", "2", "5"]
    np.testing.assert_array_equal(adata.X[:4, 0], [0, 1, 2, 3])


def test_mostly_text_column_with_a_number_is_labels(tmp_path):
    df = pd.DataFrame(
        {"line": ["A549", "HeLa", "293", "MCF7"] * 5}, index=[f"s{i}" for i in range(20)]
    )
    df.to_csv(tmp_path / "lines.csv")
    adata = load([str(tmp_path / "lines.csv")]).mod["lines"]
    assert adata.uns["kind"] == "categorical"
    assert set(adata.uns["categories"]["line"]) == {"A549", "HeLa", "293", "MCF7"}
    # a mostly numeric column with one word is an error, unless declared categorical
    df2 = pd.DataFrame(
        {"x": [str(i) for i in range(19)] + ["oops"], "y": range(20)},
        index=[f"s{i}" for i in range(20)],
    )
    df2.to_csv(tmp_path / "m.csv")
    with pytest.raises(InputError, match="non-numeric value 'oops' at row 's19', column 'x'"):
        load([str(tmp_path / "m.csv")])
    m = load([str(tmp_path / "m.csv")], kinds={"m": "categorical"})
    assert "oops" in m.mod["m"].uns["categories"]["x"]


# ------------------------------------------------------------------------------------------
# audit 2: separators, decimal marks, overrides on stored categoricals, id mismatches
# ------------------------------------------------------------------------------------------
def reals(n: int = 30, p: int = 4, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        rng.normal(size=(n, p)),
        index=[f"S{i}" for i in range(n)],
        columns=[f"g{j}" for j in range(p)],
    )


def test_semicolon_csv_with_decimal_commas_is_read_as_numbers(tmp_path):
    df = reals()
    df.to_csv(tmp_path / "prot.csv", sep=";", decimal=",", index_label="id")
    mdata = load([str(tmp_path / "prot.csv")])
    adata = mdata.mod["prot"]
    assert adata.uns["kind"] == "continuous"
    np.testing.assert_allclose(adata.X, df.to_numpy(np.float32), rtol=1e-6)
    # quoted "1,5" cells in a ';' file too
    rows = ["id;a;b"] + [f'S{i};"{i},5";{i}' for i in range(12)]
    (tmp_path / "q.csv").write_text("\n".join(rows) + "\n")
    q = load([str(tmp_path / "q.csv")]).mod["q"]
    assert q.uns["kind"] == "continuous"
    np.testing.assert_allclose(q.X[:3, 0], [0.5, 1.5, 2.5])


@pytest.mark.parametrize(
    ("name", "sep"), [("rna.tsv", ","), ("rna.txt", ","), ("rna.txt", " "), ("rna.tsv", ";")]
)
def test_tsv_and_txt_separators_are_sniffed(tmp_path, name, sep):
    df = reals()
    text = df.to_csv(sep=sep, index_label="id")
    (tmp_path / name).write_text(text)
    adata = load([str(tmp_path / name)]).mod["rna"]
    assert adata.n_vars == 4
    np.testing.assert_allclose(adata.X, df.to_numpy(np.float32), rtol=1e-6)


def test_text_feature_with_a_level_per_sample_warns(tmp_path):
    df = reals(p=2).astype(object)
    df["g0"] = [f"{i}.5 mg" for i in range(30)]  # numbers with units: they do not parse
    df["g1"] = ["wt", "ko"] * 15
    df.to_csv(tmp_path / "clin.csv", index_label="id")
    mdata = load([str(tmp_path / "clin.csv")])
    assert mdata.mod["clin"].uns["kind"] == "categorical"
    warned = [w for w in mdata.uns["warnings"] if "text feature" in w]
    assert len(warned) == 1
    assert "clin: text feature 'g0' has 30 distinct values for 30 samples" in warned[0]
    assert "decimal mark" in warned[0]
    # declared categorical: the labels are meant, no warning
    again = load([str(tmp_path / "clin.csv")], kinds={"clin": "categorical"})
    assert not [w for w in again.uns["warnings"] if "text feature" in w]


@pytest.mark.parametrize("kind", ["counts", "continuous"])
def test_numeric_kind_override_on_stored_categorical_with_numeric_labels(small, tmp_path, kind):
    path = tmp_path / "small.h5mu"
    small.write(path)  # drug: uns kind "categorical", labels "0" / "1"
    mdata = load([str(path)], kinds={"drug": kind})
    adata = mdata.mod["drug"]
    assert adata.uns["kind"] == kind
    assert "categories" not in adata.uns
    np.testing.assert_array_equal(adata.X, small.mod["drug"].X)
    # text labels cannot become numbers: the message names the value
    labelled = ad.AnnData(np.array([[0], [1], [2]] * 4, dtype=np.float32))
    labelled.obs_names = [f"S{i}" for i in range(12)]
    labelled.var_names = ["dose"]
    labelled.uns["kind"] = "categorical"
    labelled.uns["categories"] = {"dose": ["low", "mid", "high"]}
    labelled.write_h5ad(tmp_path / "dose.h5ad")
    with pytest.raises(InputError, match=rf"non-numeric value 'low' .* declared {kind}"):
        load([str(tmp_path / "dose.h5ad")], kinds={"dose": kind})


def test_modalities_with_no_shared_sample_id_warn(tmp_path):
    a = reals()
    b = reals(seed=1)
    b.index = [i.lower() for i in b.index]
    a.to_csv(tmp_path / "rna.csv", index_label="id")
    b.to_csv(tmp_path / "prot.csv", index_label="id")
    mdata = load([str(tmp_path / "rna.csv"), str(tmp_path / "prot.csv")])
    warned = [w for w in mdata.uns["warnings"] if "share no sample id" in w]
    assert warned == [
        "modalities 'rna' and 'prot' share no sample id (e.g. 'S0' in rna, 's0' in prot); "
        "they differ only in upper/lower case: spell the ids the same in every file"
    ]
    # partly overlapping (unpaired samples): no warning
    b.index = list(a.index[:10]) + list(b.index[10:])
    b.to_csv(tmp_path / "prot.csv", index_label="id")
    again = load([str(tmp_path / "rna.csv"), str(tmp_path / "prot.csv")])
    assert not [w for w in again.uns["warnings"] if "share no sample id" in w]


@pytest.mark.parametrize(
    "meta_name",
    ["meta.csv", "samples.tsv", "clinical.csv", "sample_metadata.csv", "Metadata.parquet"],
)
def test_directory_recognises_common_metadata_names(tmp_path, meta_name):
    d = tmp_path / "data"
    d.mkdir()
    reals().to_csv(d / "rna.csv", index_label="id")
    meta = pd.DataFrame(
        {"tissue": ["liver", "lung"] * 15, "age": np.linspace(20, 70, 30)}, index=reals().index
    )
    target = d / meta_name
    if target.suffix == ".parquet":
        meta.to_parquet(target)
    else:
        meta.to_csv(target, sep="\t" if target.suffix == ".tsv" else ",", index_label="id")
    mdata = load([str(d)])
    assert list(mdata.mod) == ["rna"]
    assert list(mdata.obs.columns) == ["tissue", "age"]
    assert mdata.obs["age"].dtype == np.float64


def test_metadata_dates_become_labels_not_nanoseconds(tmp_path):
    reals().to_csv(tmp_path / "rna.csv", index_label="id")
    meta = pd.DataFrame(
        {"visit": pd.to_datetime(["2024-01-01", "2024-02-01"] * 15)}, index=reals().index
    )
    meta.to_parquet(tmp_path / "obs.parquet")
    mdata = load([str(tmp_path / "rna.csv")], obs=str(tmp_path / "obs.parquet"))
    visit = mdata.obs["visit"]
    assert isinstance(visit.dtype, pd.CategoricalDtype)
    assert list(visit.cat.categories) == ["2024-01-01", "2024-02-01"]


def test_data_help_says_a_directory_works():
    from core.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    text = " ".join(sub.choices["validate"].format_help().split())
    assert "a directory with one file per modality named <modality>.<csv|tsv|parquet>" in text
    assert "plus obs.csv" in text
