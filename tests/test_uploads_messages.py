"""Unit tests: upload errors speak of the user's files and the form's boxes, never of the
server's temporary folder or the CLI's options; sizes and limits read the same everywhere."""

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from dashboard import uploads

ROWS = 12  # enough samples for core.data.load to accept a table


def _table(values=None, *, prefix="s", n=ROWS) -> bytes:
    ids = [f"{prefix}{i}" for i in range(n)]
    if values is None:
        values = np.arange(n * 2).reshape(n, 2)
    return pd.DataFrame(values, index=ids, columns=["g1", "g2"]).to_csv(index_label="id").encode()


def _refused(tmp_path, files, obs=None, **kw) -> str:
    with pytest.raises(InputError) as info:
        uploads.save_upload("mine", files, obs=obs, upload_dir=tmp_path, max_bytes=10**6, **kw)
    text = str(info.value)
    assert str(tmp_path) not in text and ".tmp-" not in text, text  # no server path
    assert "--" not in text, text  # no CLI option
    assert list(tmp_path.iterdir()) == []  # nothing left on disk
    return text


def test_table_errors_name_the_uploaded_file(tmp_path):
    ragged = b"id,g1,g2\ns1,1,2,3,4\ns2,1\n"
    assert _refused(tmp_path, [("bad_ragged.csv", ragged)]).startswith(
        "bad_ragged.csv: not a well-formed table"
    )
    assert (
        _refused(tmp_path, [("empty.csv", b"")])
        == "empty.csv: the file is empty; export the data again"
    )
    assert _refused(tmp_path, [("x.h5ad", b"not hdf5")]).startswith(
        "x.h5ad: "
    )  # stored as mine.h5ad


def test_metadata_errors_name_the_metadata_file(tmp_path):
    text = _refused(tmp_path, [("rna.csv", _table())], obs=("meta_nomatch.csv", _table(prefix="x")))
    assert text.startswith("meta_nomatch.csv: none of its 12 sample ids"), text
    assert "obs.csv" not in text


def test_non_numeric_hint_points_at_the_kinds_box(tmp_path):
    values = np.arange(ROWS * 2).reshape(ROWS, 2).astype(object)
    values[3, 0] = "a"
    text = _refused(tmp_path, [("rna_nonnum.csv", _table(values))])
    assert text.startswith("rna_nonnum.csv: non-numeric value 'a'"), text
    assert "set rna_nonnum=categorical in the Kinds box" in text


def test_dataset_name_is_the_users(tmp_path):
    few = _table(prefix="s", n=3)
    text = _refused(tmp_path, [("rna.csv", few)])
    assert text.startswith("rna.csv: dataset 'mine' has only 3 samples"), text  # not '.tmp-mine-…'


def test_warnings_name_the_uploaded_metadata_file(tmp_path):
    meta = pd.DataFrame({"group": ["a"] * 5}, index=[f"s{i}" for i in range(5)])
    mdata = uploads.save_upload(
        "partial",
        [("rna.csv", _table())],
        obs=("samples.csv", meta.to_csv(index_label="id").encode()),
        upload_dir=tmp_path,
        max_bytes=10**6,
    )
    warnings = [str(w) for w in mdata.uns.get("warnings", [])]
    assert warnings and all("obs.csv" not in w and ".tmp-" not in w for w in warnings), warnings
    assert any(w.startswith("samples.csv: ") for w in warnings), warnings


def test_unsupported_types_are_named_with_the_accepted_list():
    with pytest.raises(InputError, match=r"^rna\.xlsx: unsupported file type \.xlsx; upload "):
        uploads.plan_files("x", [("rna.xlsx", b"")], None)
    with pytest.raises(InputError, match=r"\.csv, \.tsv, \.txt or \.parquet"):
        uploads.plan_files("x", [("rna.csv", b"")], ("meta.xlsx", b""))


@pytest.mark.parametrize(
    ("n_bytes", "limit_mb", "expected"),
    [
        (int(0.9 * 2**20), 0.5, "big.csv is 0.9 MB, over the upload limit of 0.5 MB per file"),
        (90_000, 0.05, "big.csv is 0.086 MB, over the upload limit of 0.05 MB per file"),
        (52_430, 0.05, "big.csv is 52,430 bytes, over the upload limit of 0.05 MB (52,428 bytes)"),
        (300 * 2**20, 200, "big.csv is 300 MB, over the upload limit of 200 MB per file"),
    ],
)
def test_size_and_limit_read_with_enough_digits(n_bytes, limit_mb, expected):
    with pytest.raises(InputError) as info:
        uploads.check_size("big.csv", n_bytes, max_bytes=int(limit_mb * 2**20))
    assert str(info.value).startswith(expected), str(info.value)


def test_format_mb_never_uses_exponents():
    assert uploads.format_mb(200 * 2**20) == "200 MB"
    assert uploads.format_mb(int(0.05 * 2**20)) == "0.05 MB"
    assert uploads.format_mb(2**20) == "1 MB"


def test_kinds_text_errors_use_the_form_words():
    assert uploads.parse_kinds("rna=counts, protein=continuous") == {
        "rna": "counts",
        "protein": "continuous",
    }
    with pytest.raises(InputError, match=r"^the Kinds box expects KEY=VALUE, got 'rna'"):
        uploads.parse_kinds("rna counts")
