"""Every bad input gets a one-line InputError naming the file / row / column and the next step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.data import check_condition, load
from core.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def table(n: int = 12, p: int = 4, *, seed: int = 0, kind: str = "continuous") -> pd.DataFrame:
    """A valid (n, p) table with sample ids S01.. and features F1.."""
    rng = np.random.default_rng(seed)
    if kind == "counts":
        values = rng.poisson(5.0, (n, p)).astype(float)
    elif kind == "proportion":
        values = rng.uniform(0.05, 0.95, (n, p))
    else:
        values = rng.normal(0.0, 1.0, (n, p))
    return pd.DataFrame(
        values, index=[f"S{i + 1:02d}" for i in range(n)], columns=[f"F{j + 1}" for j in range(p)]
    )


def write(path: Path, df: pd.DataFrame) -> Path:
    df.to_csv(path, index_label="sample")
    return path


def lines_with(path: Path, df: pd.DataFrame, row: int, col: int, text: str) -> Path:
    """Write df as CSV with cell (row, col) replaced by ``text`` verbatim."""
    frame = df.astype(object)
    frame.iat[row, col] = text
    frame.to_csv(path, index_label="sample")
    return path


# ------------------------------------------------------------------------------------------
# case builders: (tmp_path) -> (sources, kwargs); each paired with the message it must raise
# ------------------------------------------------------------------------------------------
def c_empty(tmp):
    p = tmp / "rna.csv"
    p.write_bytes(b"")
    return [str(p)], {}


def c_header_only(tmp):
    p = tmp / "rna.csv"
    p.write_text("sample,G1,G2\n")
    return [str(p)], {}


def c_unknown_ext(tmp):
    p = tmp / "rna.dat"
    p.write_text("sample,G1\nS1,1\n")
    return [str(p)], {}


def c_spreadsheet(tmp):
    p = tmp / "rna.xlsx"
    p.write_bytes(b"PK\x03\x04 not really a workbook")
    return [str(p)], {}


def c_binary(tmp):
    p = tmp / "rna.csv"
    p.write_bytes(bytes(range(256)) * 8)
    return [str(p)], {}


def c_ragged(tmp):
    p = tmp / "rna.csv"
    rows = ["sample,G1,G2"] + [f"S{i},1,2" for i in range(12)]
    rows[5] = "S4,1,2,3,4"
    p.write_text("\n".join(rows) + "\n")
    return [str(p)], {}


def c_truncated_h5ad(tmp):
    import anndata as ad

    full = tmp / "full.h5ad"
    df = table()
    ad.AnnData(df.to_numpy(np.float32)).write_h5ad(full)
    data = full.read_bytes()
    p = tmp / "rna.h5ad"
    p.write_bytes(data[: len(data) // 2])
    return [str(p)], {}


def c_garbage_h5ad(tmp):
    p = tmp / "rna.h5ad"
    p.write_bytes(b"this is not hdf5 at all" * 10)
    return [str(p)], {}


def c_truncated_h5mu(tmp):
    import anndata as ad
    import mudata as md

    full = tmp / "full.h5mu"
    df = table()
    md.MuData({"rna": ad.AnnData(df.to_numpy(np.float32))}).write(full)
    data = full.read_bytes()
    p = tmp / "data.h5mu"
    p.write_bytes(data[: len(data) // 2])
    return [str(p)], {}


def c_non_numeric(tmp):
    return [str(lines_with(tmp / "rna.csv", table(), 2, 1, "abc"))], {}


def c_non_numeric_declared(tmp):
    df = table().astype(object)
    df.iloc[:, 1] = "x"  # a whole text column, but the modality is declared continuous
    return [str(write(tmp / "rna.csv", df))], {"kinds": {"rna": "continuous"}}


def c_inf(tmp):
    return [str(lines_with(tmp / "prot.csv", table(), 4, 2, "inf"))], {}


def c_nan(tmp):
    return [str(lines_with(tmp / "prot.csv", table(), 6, 0, ""))], {}


def c_nan_counts(tmp):
    return [str(lines_with(tmp / "rna.csv", table(kind="counts"), 1, 3, "NA"))], {}


def c_negative_counts(tmp):
    df = table(kind="counts")
    df.iat[3, 2] = -1
    return [str(write(tmp / "rna.csv", df))], {"kinds": {"rna": "counts"}}


def c_fractional_counts(tmp):
    df = table(kind="counts")
    df.iat[5, 0] = 2.5
    return [str(write(tmp / "rna.csv", df))], {"kinds": {"rna": "counts"}}


def c_methylation_range(tmp):
    df = table(kind="proportion")
    df.iat[7, 1] = 1.5
    return [str(write(tmp / "methylation.csv", df))], {}


def c_proportion_declared_range(tmp):
    df = table()
    return [f"beta={write(tmp / 'b.csv', df)}"], {"kinds": {"beta": "proportion"}}


def c_duplicate_ids(tmp):
    df = table()
    df.index = [*df.index[:-1], df.index[2]]
    return [str(write(tmp / "rna.csv", df))], {}


def c_duplicate_features(tmp):
    p = tmp / "rna.csv"
    rows = ["sample,G1,G2,G1"] + [f"S{i:02d},{i},{i + 1},{i * 2}" for i in range(12)]
    p.write_text("\n".join(rows) + "\n")
    return [str(p)], {}


def c_duplicate_vars_h5ad(tmp):
    import anndata as ad

    df = table()
    a = ad.AnnData(df.to_numpy(np.float32))
    a.var_names = ["F1", "F2", "F1", "F4"]
    p = tmp / "rna.h5ad"
    a.write_h5ad(p)
    return [str(p)], {}


def c_metadata_no_match(tmp):
    meta = pd.DataFrame({"tissue": ["a", "b"] * 6}, index=[f"X{i}" for i in range(12)])
    meta.to_csv(tmp / "obs.csv", index_label="sample")
    return [str(write(tmp / "rna.csv", table()))], {"obs": str(tmp / "obs.csv")}


def c_no_features(tmp):
    p = tmp / "rna.csv"
    p.write_text("sample\n" + "\n".join(f"S{i}" for i in range(12)) + "\n")
    return [str(p)], {}


def c_all_constant(tmp):
    df = table()
    df.loc[:, :] = 3.0
    return [str(write(tmp / "prot.csv", df))], {}


def c_too_few(tmp):
    return [str(write(tmp / "rna.csv", table(n=5)))], {}


def c_too_large(tmp):
    return [str(write(tmp / "rna.csv", table(n=50, p=20)))], {"max_file_bytes": 1000}


def c_empty_id(tmp):
    p = tmp / "rna.csv"
    rows = ["sample,G1,G2"] + [f"S{i},{i}.5,2.5" for i in range(12)]
    rows[4] = ",1.5,2.5"
    p.write_text("\n".join(rows) + "\n")
    return [str(p)], {}


def c_same_modality_twice(tmp):
    a = write(tmp / "a.csv", table())
    b = write(tmp / "b.csv", table(seed=1))
    return [f"rna={a}", f"rna={b}"], {}


def c_kind_unknown_modality(tmp):
    return [str(write(tmp / "rna.csv", table()))], {"kinds": {"prot": "continuous"}}


def c_bad_kind(tmp):
    return [str(write(tmp / "rna.csv", table()))], {"kinds": {"rna": "gaussian"}}


def c_missing_source(tmp):
    return [str(tmp / "nowhere")], {}


def c_empty_dir(tmp):
    d = tmp / "data"
    d.mkdir()
    (d / "README.md").write_text("hello")
    return [str(d)], {}


def c_mixed_text_real(tmp):
    df = table().astype(object)
    df["genotype"] = ["wt", "ko"] * 6
    return [str(write(tmp / "clin.csv", df))], {}


def c_fake_parquet(tmp):
    p = tmp / "prot.parquet"
    p.write_text("sample,a\ns1,1\n")
    return [str(p)], {}


def c_corrupt_gzip(tmp):
    p = tmp / "rna.csv.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00garbage-not-deflate")
    return [str(p)], {}


# --- audit 2: table shapes the readers must refuse with a message, not a traceback ---------
def c_parquet_multiindex(tmp):
    df = table()
    df.index = pd.MultiIndex.from_arrays([df.index, ["a", "b"] * 6], names=["sample", "lane"])
    df.to_parquet(tmp / "prot.parquet")
    return [str(tmp / "prot.parquet")], {}


def c_parquet_multi_header(tmp):
    df = table()
    df.columns = pd.MultiIndex.from_tuples([("x", "1"), ("x", "2"), ("y", "1"), ("y", "2")])
    df.to_parquet(tmp / "prot.parquet")
    return [str(tmp / "prot.parquet")], {}


def c_parquet_list_column(tmp):
    df = table()
    df["peaks"] = [[1, 2]] * len(df)
    df.to_parquet(tmp / "prot.parquet")
    return [str(tmp / "prot.parquet")], {}


def c_parquet_datetime_column(tmp):
    df = table()
    df["collected"] = pd.date_range("2024-01-01", periods=len(df))
    df.to_parquet(tmp / "prot.parquet")
    return [str(tmp / "prot.parquet")], {}


def c_parquet_timedelta_column(tmp):
    df = table()
    df["elapsed"] = pd.to_timedelta(np.arange(len(df)), unit="h")
    df.to_parquet(tmp / "prot.parquet")
    return [str(tmp / "prot.parquet")], {}


def c_decimal_comma_quoted(tmp):
    p = tmp / "prot.csv"
    rows = ["sample,F1,F2"] + [f'S{i:02d},"{i},5",{i}.25' for i in range(12)]
    p.write_text("\n".join(rows) + "\n")
    return [str(p)], {}


def c_decimal_comma_tsv(tmp):
    p = tmp / "prot.tsv"
    rows = ["sample\tF1\tF2"] + [f"S{i:02d}\t-0,{i + 1}27\t{i}" for i in range(12)]
    p.write_text("\n".join(rows) + "\n")
    return [str(p)], {}


def c_decimal_comma_in_metadata(tmp):
    meta = pd.DataFrame({"age": [f"{30 + i},5" for i in range(12)]}, index=table().index)
    meta.to_csv(tmp / "obs.csv", index_label="sample")
    return [str(write(tmp / "rna.csv", table()))], {"obs": str(tmp / "obs.csv")}


def c_h5ad_no_samples(tmp):
    import anndata as ad

    a = ad.AnnData(np.zeros((0, 4), dtype=np.float32))
    a.var_names = ["F1", "F2", "F3", "F4"]
    a.write_h5ad(tmp / "rna.h5ad")
    return [str(tmp / "rna.h5ad")], {}


def c_h5mu_no_modalities(tmp):
    import warnings

    import mudata as md

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mudata's FutureWarning
        md.MuData({}).write(tmp / "data.h5mu")
    return [str(tmp / "data.h5mu")], {}


def c_h5ad_bad_uns_kind(tmp):
    import anndata as ad

    a = ad.AnnData(np.abs(table().to_numpy(np.float32)))
    a.uns["kind"] = "gaussian"
    a.write_h5ad(tmp / "rna.h5ad")
    return [str(tmp / "rna.h5ad")], {}


def c_empty_path_after_equals(tmp):
    return ["rna="], {}


def c_obs_is_a_directory(tmp):
    (tmp / "meta").mkdir()
    return [str(write(tmp / "rna.csv", table()))], {"obs": str(tmp / "meta")}


def c_long_cell(tmp):
    return [str(lines_with(tmp / "rna.csv", table(), 2, 1, "x" * 5000))], {}


def c_mixed_text_real_in_directory(tmp):
    d = tmp / "data"
    d.mkdir()
    write(d / "rna.csv", table())
    meta = pd.DataFrame({"tissue": ["a", "b"] * 6, "age": np.linspace(20, 70, 12)})
    meta.index = table().index
    meta.to_csv(d / "sample_annotation.csv", index_label="sample")
    return [str(d)], {}


CASES = [
    (c_fake_parquet, r"prot\.parquet: not a readable Parquet table .*re-export it"),
    (c_corrupt_gzip, r"rna\.csv\.gz: could not read the table .*re-export it"),
    (c_empty, r"rna\.csv: the file is empty"),
    (
        c_header_only,
        r"rna\.csv: modality 'rna' has a header but no samples \(rows\); add one row per "
        r"sample below the header",
    ),
    (c_unknown_ext, r"rna\.dat: unknown extension '\.dat'; use one of \.csv"),
    (
        c_spreadsheet,
        r"rna\.xlsx: unknown extension '\.xlsx' \(a spreadsheet\); save it as CSV",
    ),
    (c_binary, r"rna\.csv: not a text table"),
    (c_ragged, r"rna\.csv: not a well-formed table .*line 6"),
    (
        c_truncated_h5ad,
        r"rna\.h5ad: truncated or corrupt AnnData \(\.h5ad\) file .*export it again",
    ),
    (c_garbage_h5ad, r"rna\.h5ad: not an HDF5/AnnData file"),
    (c_truncated_h5mu, r"data\.h5mu: truncated or corrupt MuData \(\.h5mu\) file"),
    (
        c_non_numeric,
        r"rna\.csv: non-numeric value 'abc' at row 'S03', column 'F2' of modality "
        r"'rna'; fix the cell, or declare the modality categorical",
    ),
    (c_non_numeric_declared, r"non-numeric value 'x' at row 'S01', column 'F2' .*fix the cell"),
    (
        c_inf,
        r"prot\.csv: infinite value \(inf\) at row 'S05', column 'F3' of modality 'prot'; "
        r"replace it",
    ),
    (
        c_nan,
        r"prot\.csv: missing value \(NaN\) at row 'S07', column 'F1' of continuous modality "
        r"'prot'; impute it or drop",
    ),
    (c_nan_counts, r"missing value \(NaN\) at row 'S02', column 'F4' of counts modality 'rna'"),
    (
        c_negative_counts,
        r"rna\.csv: negative value -1 at row 'S04', column 'F3' of counts "
        r"modality 'rna'; counts must be non-negative integers",
    ),
    (
        c_fractional_counts,
        r"rna\.csv: non-integer value 2\.5 at row 'S06', column 'F1' of counts "
        r"modality 'rna'; give raw integer counts",
    ),
    (
        c_methylation_range,
        r"methylation\.csv: value 1\.5 at row 'S08', column 'F2' of proportion "
        r"\(methylation beta\) modality 'methylation' is outside \[0, 1\]",
    ),
    (
        c_proportion_declared_range,
        r"b\.csv: value -?[0-9.]+ at row 'S\d+', column 'F\d' of "
        r"proportion .* outside \[0, 1\]",
    ),
    (
        c_duplicate_ids,
        r"rna\.csv: duplicate sample id 'S03' \(rows 3 and 12\); sample ids .* unique",
    ),
    (c_duplicate_features, r"rna\.csv: duplicate feature name 'G1' \(columns 2 and 4\)"),
    (c_duplicate_vars_h5ad, r"rna\.h5ad: duplicate feature name \(var_names\) 'F1'"),
    (
        c_metadata_no_match,
        r"obs\.csv: none of its 12 sample ids \(e\.g\. 'X0'\) match a sample in "
        r"the data \(e\.g\. 'S01'\)",
    ),
    (c_no_features, r"rna\.csv: modality 'rna' has no feature columns"),
    (c_all_constant, r"prot\.csv: all 4 features of modality 'prot' are constant"),
    (c_too_few, r"/rna\.csv: dataset 'rna' has only 5 samples; at least 10 are needed.*add"),
    (
        c_too_large,
        r"rna\.csv: file is [0-9]+\.[0-9] KB, above the limit of 1000 bytes; raise "
        r"OLE_MAX_FILE_MB",
    ),
    (c_empty_id, r"rna\.csv: row 4 has no sample id in the first column"),
    (c_same_modality_twice, r"modality 'rna' is given twice"),
    (
        c_kind_unknown_modality,
        r"kind given for unknown modality 'prot'; the data has modalities: "
        r"rna",
    ),
    (c_bad_kind, r"unknown kind 'gaussian' for modality 'rna'; choose one of counts"),
    (c_empty_dir, r"data: the directory holds no modality files"),
    (
        c_mixed_text_real,
        r"clin\.csv: modality 'clin' mixes text columns \('genotype'\) with "
        r"real-valued numeric columns",
    ),
    (
        c_parquet_multiindex,
        r"prot\.parquet: the table has a 2-level row index \(first row 'S01/a'\); save it "
        r"with one sample-id column",
    ),
    (c_parquet_multi_header, r"prot\.parquet: the table has a 2-level column header .*flatten"),
    (
        c_parquet_list_column,
        r"prot\.parquet: column 'peaks' holds lists or other non-scalar values "
        r"\(row 'S01': .*\); every cell must be one number or label",
    ),
    (
        c_parquet_datetime_column,
        r"prot\.parquet: column 'collected' of modality 'prot' holds dates or times "
        r"\(datetime64\[(ns|us|ms)\]\); .*move it to the metadata table",
    ),
    (c_parquet_timedelta_column, r"column 'elapsed' of modality 'prot' holds dates or times"),
    (
        c_decimal_comma_quoted,
        r"prot\.csv: decimal commas at row 'S00', column 'F1' \('0,5'\); export with '\.' "
        r"as the decimal mark",
    ),
    (c_decimal_comma_tsv, r"prot\.tsv: decimal commas at row 'S00', column 'F1' \('-0,127'\)"),
    (c_decimal_comma_in_metadata, r"obs\.csv: decimal commas at row 'S01', column 'age'"),
    (
        c_h5ad_no_samples,
        r"rna\.h5ad: modality 'rna' has no samples \(0 rows\); export it again with its samples",
    ),
    (
        c_h5mu_no_modalities,
        r"data\.h5mu: the MuData holds no modalities; write it with at least one",
    ),
    (
        c_h5ad_bad_uns_kind,
        r"rna\.h5ad: uns\['kind'\] is 'gaussian', not one of counts, proportion, continuous, "
        r"categorical; fix it",
    ),
    (c_empty_path_after_equals, r"'rna=': no path after '='; write MODALITY=PATH"),
    (
        c_obs_is_a_directory,
        r"meta: is a directory; the metadata option \(--obs\) takes one table file",
    ),
    (c_long_cell, r"non-numeric value 'x{57}\.\.\.' at row 'S03', column 'F2'"),
    (
        c_mixed_text_real_in_directory,
        r"sample_annotation\.csv: modality 'sample_annotation' mixes text columns "
        r"\('tissue'\) .*; if this is the sample metadata, name it obs\.csv or pass it with --obs",
    ),
]


@pytest.mark.parametrize(("build", "message"), CASES, ids=[c.__name__[2:] for c, _ in CASES])
def test_bad_input_message(tmp_path, build, message):
    sources, kwargs = build(tmp_path)
    with pytest.raises(InputError, match=message) as info:
        load(sources, **kwargs)
    text = str(info.value)
    assert "\n" not in text, "messages are one line"
    assert len(text) < 400


@pytest.mark.parametrize("stage", ["_table_to_input", "_validate_modality"])
def test_unexpected_value_error_becomes_input_error_naming_the_file(tmp_path, monkeypatch, stage):
    import core.data

    def boom(*args, **kwargs):
        raise ValueError("setting an array element with a sequence.\nmore detail")

    monkeypatch.setattr(core.data, stage, boom)
    path = write(tmp_path / "rna.csv", table())
    with pytest.raises(
        InputError,
        match=r"rna\.csv: could not read modality 'rna' \(ValueError: setting an array element "
        r"with a sequence\.\); every cell must be one number or label",
    ) as info:
        load([str(path)])
    assert "\n" not in str(info.value)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises((FileNotFoundError, InputError), match="nowhere"):
        load([str(tmp_path / "nowhere.csv")])
    with pytest.raises(InputError, match="neither a built-in dataset"):
        load(c_missing_source(tmp_path)[0])


def test_size_limit_from_environment(tmp_path, monkeypatch):
    path = write(tmp_path / "rna.csv", table(n=200, p=50))
    monkeypatch.setenv("OLE_MAX_FILE_MB", "0.01")
    with pytest.raises(InputError, match=r"above the limit of 10\.2 KB; raise OLE_MAX_FILE_MB"):
        load([str(path)])
    monkeypatch.setenv("OLE_MAX_FILE_MB", "lots")
    with pytest.raises(InputError, match=r"OLE_MAX_FILE_MB='lots' is not a number"):
        load([str(path)])
    monkeypatch.setenv("OLE_MAX_FILE_MB", "5")
    assert load([str(path)]).n_obs == 200


def test_constant_features_dropped_with_warning(tmp_path):
    df = table(p=6)
    df["F2"] = 1.0
    df["F5"] = -2.0
    mdata = load([str(write(tmp_path / "prot.csv", df))])
    assert list(mdata.mod["prot"].var_names) == ["F1", "F3", "F4", "F6"]
    assert any("prot: dropped 2 constant feature(s) (F2, F5)" in w for w in mdata.uns["warnings"])


def test_condition_with_missing_values_gets_na_level(tmp_path):
    meta = pd.DataFrame(
        {"tissue": ["liver", "lung", None] * 4, "age": [30.0] * 11 + [np.nan]}, index=table().index
    )
    meta.to_csv(tmp_path / "obs.csv", index_label="sample")
    mdata = load([str(write(tmp_path / "rna.csv", table()))], obs=str(tmp_path / "obs.csv"))
    tissue = mdata.obs["tissue"]
    assert isinstance(tissue.dtype, pd.CategoricalDtype)
    assert list(tissue.cat.categories) == ["liver", "lung", "NA"]
    assert (tissue == "NA").sum() == 4
    assert check_condition(mdata, "tissue") == "categorical"
    with pytest.raises(
        InputError,
        match=r"metadata column 'age' has 1 missing value\(s\) \(first at row 'S12'\); fill",
    ):
        check_condition(mdata, "age")
    assert any("metadata column 'age' has 1 missing value(s)" in w for w in mdata.uns["warnings"])


def test_condition_with_one_level_warns_and_is_refused(tmp_path):
    meta = pd.DataFrame({"batch": ["b1"] * 12, "dose": [1.0] * 12}, index=table().index)
    meta.to_csv(tmp_path / "obs.csv", index_label="sample")
    mdata = load([str(write(tmp_path / "rna.csv", table()))], obs=str(tmp_path / "obs.csv"))
    assert any("'batch' has a single level ('b1')" in w for w in mdata.uns["warnings"])
    with pytest.raises(InputError, match=r"metadata column 'batch' has a single level"):
        check_condition(mdata, "batch")
    with pytest.raises(InputError, match=r"metadata column 'dose' is constant"):
        check_condition(mdata, "dose")
    with pytest.raises(
        InputError,
        match=r"condition column 'tissue' is not in the sample metadata; available: batch, dose",
    ):
        check_condition(mdata, "tissue")


def test_partial_metadata_is_kept_with_warnings(tmp_path):
    ids = [*list(table().index[:8]), "Z1", "Z2"]
    meta = pd.DataFrame({"group": ["a", "b"] * 5}, index=ids)
    meta.to_csv(tmp_path / "metadata.tsv", sep="\t", index_label="id")
    mdata = load([str(write(tmp_path / "rna.csv", table()))], obs=str(tmp_path / "metadata.tsv"))
    assert (mdata.obs["group"] == "NA").sum() == 4
    text = " ".join(mdata.uns["warnings"])
    assert "no metadata for 4 sample(s)" in text
    assert "ignored 2 metadata row(s)" in text


def test_categorical_with_more_than_255_levels(tmp_path):
    n = 600
    df = pd.DataFrame(
        {"allele": [f"a{i % 300}" for i in range(n)], "strain": [f"s{i % 7}" for i in range(n)]},
        index=[f"S{i}" for i in range(n)],
    )
    mdata = load([str(write(tmp_path / "geno.csv", df))])
    adata = mdata.mod["geno"]
    assert adata.uns["kind"] == "categorical"
    assert adata.X.dtype == np.float32
    levels = list(adata.uns["categories"]["allele"])
    assert len(levels) == 300
    codes = adata.X[:, 0].astype(int)
    decoded = [levels[c] for c in codes]
    assert decoded == list(df["allele"])
    assert codes.max() == 299


# ------------------------------------------------------------------------------------------
# CLI: exit status 2, "error: <message>" on stderr, no traceback
# ------------------------------------------------------------------------------------------
def run_cli(*args, env=None):
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env=full_env,
    )


@pytest.mark.parametrize(
    ("build", "extra", "env", "message"),
    [
        (c_empty, [], None, "the file is empty"),
        (c_non_numeric, [], None, "non-numeric value 'abc' at row 'S03', column 'F2'"),
        (c_truncated_h5ad, [], None, "truncated or corrupt AnnData"),
        (c_too_large, [], {"OLE_MAX_FILE_MB": "0.0001"}, "above the limit"),
        (c_negative_counts, ["--kind", "rna=counts"], None, "negative value -1"),
        (c_parquet_list_column, [], None, "column 'peaks' holds lists"),
        (c_parquet_multiindex, [], None, "2-level row index"),
        (c_decimal_comma_quoted, [], None, "decimal commas at row 'S00', column 'F1'"),
        (c_empty_path_after_equals, [], None, "no path after '='"),
    ],
    ids=[
        "empty",
        "non_numeric",
        "truncated_h5ad",
        "too_large",
        "negative_counts",
        "list_column",
        "multiindex",
        "decimal_comma",
        "empty_path",
    ],
)
def test_cli_validate_bad_input_exits_2(tmp_path, build, extra, env, message):
    sources, _ = build(tmp_path)
    args = ["validate"]
    for s in sources:
        args += ["--data", s]
    res = run_cli(*args, *extra, env=env)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: ")
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
