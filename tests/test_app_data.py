"""AppTest + unit tests: the Data page, uploads, and the upload size limit."""

import numpy as np
import pandas as pd
import pytest
from st_apptest import assert_clean, figures, open_page

from core.errors import InputError
from dashboard import uploads
from dashboard.settings import get_settings


def _tables(n=30, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"s{i}" for i in range(n)]
    rna = pd.DataFrame(rng.poisson(5, size=(n, 8)), index=ids, columns=[f"g{j}" for j in range(8)])
    prot = pd.DataFrame(rng.normal(size=(n, 4)), index=ids, columns=[f"p{j}" for j in range(4)])
    obs = pd.DataFrame(
        {"group": ["a", "b", "c"] * (n // 3), "age": np.linspace(20, 80, n)}, index=ids
    )
    as_csv = lambda df: df.to_csv(index_label="sample").encode()  # noqa: E731
    return [("rna.csv", as_csv(rna)), ("protein.csv", as_csv(prot))], ("meta.csv", as_csv(obs))


def test_builtin_summary_distributions_and_metadata(ole_empty_dirs):
    at = open_page("data")
    assert_clean(at)
    summary = at.dataframe[0].value
    assert list(summary["modality"]) == ["rna", "methylation", "protein", "drug"]
    assert set(summary.columns) >= {"kind", "n_obs", "n_vars", "n_missing"}
    # two default feature histograms + one chart per metadata column (tissue, age)
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert sum(t.startswith("rna:") for t in titles) == 2 and "tissue" in titles and "age" in titles
    protein = next(
        f for f in at.multiselect(key="data_features").options if f.startswith("protein:")
    )
    at.multiselect(key="data_features").set_value([protein]).run()
    assert_clean(at)
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert titles[0].startswith(protein) and not any(t.startswith("rna:") for t in titles)


def test_upload_saved_validated_and_selectable(ole_empty_dirs):
    files, obs = _tables()
    mdata = uploads.save_upload(
        "study1",
        files,
        obs=obs,
        kinds={"protein": "continuous"},
        upload_dir=ole_empty_dirs.uploads,
        max_bytes=10**6,
    )
    assert set(mdata.mod) == {"rna", "protein"} and mdata.n_obs == 30
    saved = sorted(p.name for p in (ole_empty_dirs.uploads / "study1").iterdir())
    assert saved == ["kinds.json", "obs.csv", "protein.csv", "rna.csv"]
    at = open_page("data", dataset="study1")
    assert_clean(at)
    assert "study1" in at.sidebar.selectbox(key="dataset").options
    summary = at.dataframe[0].value
    assert sorted(summary["modality"]) == ["protein", "rna"]
    assert dict(zip(summary["modality"], summary["kind"], strict=True)) == {
        "rna": "counts",
        "protein": "continuous",
    }


def test_bad_upload_is_refused_and_leaves_nothing(ole_empty_dirs):
    files, obs = _tables()
    bad = [("rna.csv", b"sample,g1\ns1,1\ns1,2\n")]  # duplicated sample id
    with pytest.raises(InputError):
        uploads.save_upload("broken", bad, upload_dir=ole_empty_dirs.uploads, max_bytes=10**6)
    with pytest.raises(InputError, match="built-in"):
        uploads.save_upload(
            "synthetic",
            files,
            upload_dir=ole_empty_dirs.uploads,
            max_bytes=10**6,
            reserved=["synthetic"],
        )
    with pytest.raises(InputError, match="name"):
        uploads.save_upload("../evil", files, upload_dir=ole_empty_dirs.uploads, max_bytes=10**6)
    assert list(ole_empty_dirs.uploads.iterdir()) == []


def test_upload_over_the_limit_is_refused(ole_empty_dirs, monkeypatch):
    monkeypatch.setenv("OLE_MAX_UPLOAD_MB", "0.001")  # ~1 KB
    settings = get_settings()
    assert settings.max_upload_bytes == int(0.001 * 1024 * 1024)
    files, obs = _tables(n=60)
    with pytest.raises(InputError, match="over the upload limit"):
        uploads.save_upload(
            "big",
            files,
            obs=obs,
            upload_dir=settings.upload_dir,
            max_bytes=settings.max_upload_bytes,
        )
    assert not (settings.upload_dir / "big").exists()


def test_settings_are_repo_relative_and_independent_of_cwd(monkeypatch, tmp_path):
    for var in (
        "OLE_RUNS_DIR",
        "OLE_UPLOAD_DIR",
        "OLE_MAX_UPLOAD_MB",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    s = get_settings()
    repo = uploads.Path(__file__).resolve().parents[1]
    assert s.runs_dir == repo / "runs" and s.upload_dir == repo / "uploads"
    assert s.max_upload_mb == 200
    monkeypatch.setenv("OLE_RUNS_DIR", "elsewhere/runs")
    assert get_settings().runs_dir == repo / "elsewhere" / "runs"


def test_switching_dataset_keeps_the_page_working(ole_empty_dirs):
    at = open_page("data")
    at.sidebar.selectbox(key="dataset").select("nutrimouse").run()
    assert_clean(at)
    assert at.subheader[0].value == "nutrimouse: 40 samples"
    assert list(at.dataframe[0].value["modality"]) == ["gene", "lipid"]
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert sum(t.startswith("gene:") for t in titles) == 2
