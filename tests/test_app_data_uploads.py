"""AppTest: the Data page's upload form refuses a wrong or too-large file by name, with one
limit everywhere; the page's feature and "Split by" choices live in the URL."""

import numpy as np
import pandas as pd
from st_apptest import assert_clean, figures, open_page

SUBMIT = "FormSubmitter:upload-Validate and save"


def _csv(n=40, p=10, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.poisson(4, (n, p)), index=[f"s{i}" for i in range(n)])
    return df.to_csv(index_label="sample").encode()


def _submit(at, name, files, obs=None):
    at.text_input(key="data_upload_name").input(name)
    at.file_uploader(key="data_upload_files").set_value(files)
    if obs is not None:
        at.file_uploader(key="data_upload_obs").set_value(obs)
    return at.button(key=SUBMIT).click().run()


def test_wrong_type_is_refused_by_name(ole_empty_dirs):
    at = open_page("data")
    uploader = at.file_uploader(key="data_upload_files")
    assert uploader.allowed_type == []  # any file reaches the form, which names what is wrong
    at = _submit(at, "mine", [("rna.xlsx", b"PK\x03\x04", "application/vnd.ms-excel")])
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("rna.xlsx: unsupported file type .xlsx")
    assert ".csv" in errors[0] and ".h5ad" in errors[0]
    assert "no data file uploaded" not in errors[0]
    assert list(ole_empty_dirs.uploads.iterdir()) == []


def test_too_large_file_is_refused_with_the_limit_shown_everywhere(ole_empty_dirs, monkeypatch):
    monkeypatch.setenv("OLE_MAX_UPLOAD_MB", "0.05")
    at = open_page("data")
    help_text = " ".join(m.value for m in at.markdown)
    assert "Limit: 0.05 MB per file" in help_text and "rounded up to 1 MB" in help_text
    assert at.file_uploader(key="data_upload_files").proto.max_upload_size_mb == 1
    big = _csv(n=40, p=800)
    assert len(big) > 0.05 * 2**20
    at = _submit(at, "mine", [("big.csv", big, "text/csv")])
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    mb = f"{len(big) / 2**20:.2g}"
    assert errors[0].startswith(f"big.csv is {mb} MB, over the upload limit of 0.05 MB per file")
    assert list(ole_empty_dirs.uploads.iterdir()) == []


def test_core_errors_reach_the_form_in_the_users_words(ole_empty_dirs):
    at = open_page("data")
    meta = pd.DataFrame({"g": ["a", "b"] * 20}, index=[f"x{i}" for i in range(40)])
    at = _submit(
        at,
        "mine",
        [("rna.csv", _csv(), "text/csv")],
        obs=("meta_nomatch.csv", meta.to_csv(index_label="sample").encode(), "text/csv"),
    )
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("meta_nomatch.csv: none of its 40 sample ids")
    assert str(ole_empty_dirs.uploads) not in errors[0] and "obs.csv" not in errors[0]


def test_features_and_split_come_from_the_url(ole_empty_dirs):
    at = open_page("data")
    features = at.multiselect(key="data_features").options
    protein = [f for f in features if f.startswith("protein:")][:2]
    at = open_page("data", data_features=protein, data_split="tissue")
    assert_clean(at)
    assert at.multiselect(key="data_features").value == protein
    assert at.selectbox(key="data_split").value == "tissue"
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert [t.split(" (")[0] for t in titles[:2]] == protein
    tissue_levels = {t["name"] for t in figures(at)[0]["data"]}
    assert len(tissue_levels) > 1  # one histogram per tissue
    # another dataset: its own default features, no error from the old selection
    at.sidebar.selectbox(key="dataset").select("nutrimouse").run()
    assert_clean(at)
    assert all(f.startswith("gene:") for f in at.multiselect(key="data_features").value)
    assert at.selectbox(key="data_split").value in at.selectbox(key="data_split").options
