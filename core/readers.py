"""File readers: turn one file into a table, AnnData or MuData, or a one-line InputError.

This module knows about files only (size, extension, encoding, HDF5 structure, header and
sample-id problems). What the *values* mean (kinds, NaN, Inf, ranges) is checked in
:mod:`core.data`.

Accepted formats
----------------
- ``.csv`` / ``.tsv`` / ``.txt`` (optionally ``.gz``) and ``.parquet``: samples in rows, the
  first column is the sample id, every other column a feature (or a metadata field).
- ``.h5ad`` (AnnData) and ``.h5mu`` (MuData).
"""

from __future__ import annotations

import os
import warnings
import zlib
from pathlib import Path

import pandas as pd

from core.errors import InputError

TABLE_EXTS = (".csv", ".tsv", ".txt", ".parquet")
H5_EXTS = (".h5ad", ".h5mu")
ALL_EXTS = TABLE_EXTS + H5_EXTS
DEFAULT_MAX_FILE_MB = 2048.0
MAX_FILE_ENV = "OLE_MAX_FILE_MB"


def max_file_bytes(value: int | None = None) -> int:
    """The size limit in bytes: ``value`` if given, else ``$OLE_MAX_FILE_MB`` (default 2048 MB)."""
    if value is not None:
        if int(value) <= 0:
            raise InputError(f"max_file_bytes must be positive, got {value}")
        return int(value)
    raw = os.environ.get(MAX_FILE_ENV, "").strip()
    if not raw:
        return int(DEFAULT_MAX_FILE_MB * 1024 * 1024)
    try:
        mb = float(raw)
    except ValueError:
        raise InputError(
            f"{MAX_FILE_ENV}={raw!r} is not a number; set it to a size in MB, e.g. 2048"
        ) from None
    if mb <= 0:
        raise InputError(f"{MAX_FILE_ENV}={raw!r} must be positive; set it to a size in MB")
    return int(mb * 1024 * 1024)


def extension(path: str | os.PathLike) -> str:
    """Lower-case extension without compression suffix: ``rna.csv.gz`` -> ``.csv``."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def stem(path: str | os.PathLike) -> str:
    """File name without its extension(s): ``data/rna.csv.gz`` -> ``rna``."""
    name = Path(path).name
    ext = extension(path)
    low = name.lower()
    for tail in (ext + ".gz", ext):
        if tail and low.endswith(tail):
            return name[: -len(tail)]
    return name


def check_file(path: str | os.PathLike, *, limit: int | None = None) -> Path:
    """Existence, extension, emptiness and size checks shared by every reader."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file; check the path")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a file; pass the directory as a source itself")
    ext = extension(p)
    if ext not in ALL_EXTS:
        raise InputError(
            f"{p}: unknown extension {ext or '(none)'!r}; use one of "
            f"{', '.join(ALL_EXTS)} (samples in rows, first column the sample id)"
        )
    size = p.stat().st_size
    if size == 0:
        raise InputError(f"{p}: the file is empty; export the data again")
    cap = max_file_bytes(limit)
    if size > cap:
        raise InputError(
            f"{p}: file is {size / 2**20:.1f} MB, above the limit of {cap / 2**20:.1f} MB; "
            f"raise {MAX_FILE_ENV} or subset the data"
        )
    return p


def _first_line(path: Path) -> str:
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            return fh.readline()
    except (OSError, EOFError, zlib.error):
        return ""


def _separator(path: Path, ext: str) -> str:
    if ext in (".tsv", ".txt"):
        return "\t"
    # .csv: trust commas unless the header has none but has tabs / semicolons.
    line = _first_line(path)
    if "," not in line:
        if "\t" in line:
            return "\t"
        if ";" in line:
            return ";"
    return ","


def _check_ids_and_columns(df: pd.DataFrame, header: list[str], p: Path) -> pd.DataFrame:
    """Duplicate / empty sample ids and feature names; ids become strings."""
    features = header[1:]
    seen: dict[str, int] = {}
    for j, name in enumerate(features):
        name = str(name).strip()
        if name == "" or name.lower() == "nan":
            raise InputError(
                f"{p}: column {j + 2} has an empty header; give every feature a unique name"
            )
        if name in seen:
            raise InputError(
                f"{p}: duplicate feature name {name!r} (columns {seen[name] + 2} and {j + 2}); "
                "feature names must be unique"
            )
        seen[name] = j
    ids = df.index
    missing = pd.isna(ids)
    if missing.any():
        row = int(missing.argmax())
        raise InputError(
            f"{p}: row {row + 1} has no sample id in the first column; fill it in or drop the row"
        )
    ids = pd.Index([str(i).strip() for i in ids], dtype=object)
    empty = ids == ""
    if empty.any():
        raise InputError(
            f"{p}: row {int(empty.argmax()) + 1} has an empty sample id; fill it in or drop the row"
        )
    dup = ids.duplicated(keep=False)
    if dup.any():
        name = ids[dup][0]
        rows = [int(i) + 1 for i in (ids == name).nonzero()[0][:2]]
        raise InputError(
            f"{p}: duplicate sample id {name!r} (rows {rows[0]} and {rows[1]}); "
            "sample ids in the first column must be unique"
        )
    df = df.copy()
    df.index = ids
    df.index.name = None
    df.columns = pd.Index([str(c).strip() for c in features], dtype=object)
    return df


def read_table(path: str | os.PathLike, *, limit: int | None = None) -> pd.DataFrame:
    """Read a CSV / TSV / Parquet table: rows = samples (index = first column, as str).

    Returns a DataFrame of shape (n_samples, n_columns) with the columns as read (numeric or
    object dtype). Raises InputError for an empty file, a file that is not a table, duplicate
    sample ids or duplicate / empty column names.
    """
    p = check_file(path, limit=limit)
    ext = extension(p)
    if ext in H5_EXTS:
        raise InputError(f"{p}: expected a table (.csv/.tsv/.parquet), got {ext}")
    if ext == ".parquet":
        try:
            df = pd.read_parquet(p)
        except Exception as exc:  # noqa: BLE001 - any parser failure means "not a parquet table"
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
            raise InputError(
                f"{p}: not a readable Parquet table ({type(exc).__name__}: {reason}); "
                "re-export it with pandas.DataFrame.to_parquet"
            ) from None
        if isinstance(df.index, pd.RangeIndex):
            if df.shape[1] == 0:
                raise InputError(f"{p}: the table has no columns; export samples in rows")
            header = [str(c) for c in df.columns]
            df = df.set_index(df.columns[0])
        else:
            header = [str(df.index.name or "id")] + [str(c) for c in df.columns]
        return _check_ids_and_columns(df, header, p)

    sep = _separator(p, ext)
    try:
        head = pd.read_csv(p, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
        header = [str(x) for x in head.iloc[0].tolist()] if len(head) else []
        df = pd.read_csv(p, sep=sep, index_col=0, low_memory=False, converters={0: str})
    except pd.errors.EmptyDataError:
        raise InputError(f"{p}: the file is empty (no header row); export the data again") from None
    except UnicodeDecodeError:
        raise InputError(
            f"{p}: not a text table (undecodable bytes); save it as UTF-8 CSV/TSV with the "
            "sample id in the first column"
        ) from None
    except pd.errors.ParserError as exc:
        reason = str(exc).strip().splitlines()[-1][:160]
        raise InputError(
            f"{p}: not a well-formed table ({reason}); every row needs the same number of "
            "fields as the header"
        ) from None
    except (OSError, EOFError, ValueError, zlib.error) as exc:  # e.g. a corrupt .gz
        raise InputError(
            f"{p}: could not read the table ({type(exc).__name__}: {exc}); re-export it"
        ) from None
    text = "".join(header)
    if "\x00" in text:
        raise InputError(f"{p}: not a text table (binary content); save it as a CSV/TSV file")
    if len(header) != df.shape[1] + 1:
        # pandas fills a short header; treat as malformed.
        raise InputError(
            f"{p}: header has {len(header)} fields but rows have {df.shape[1] + 1}; "
            "every row needs the same number of fields as the header"
        )
    return _check_ids_and_columns(df, header, p)


def _h5_error(p: Path, exc: Exception, what: str) -> InputError:
    reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
    return InputError(
        f"{p}: truncated or corrupt {what} file ({type(exc).__name__}: {reason}); "
        "copy or export it again"
    )


def _h5_signature_ok(p: Path) -> bool:
    with open(p, "rb") as fh:
        head = fh.read(8)
    return head == b"\x89HDF\r\n\x1a\n"


def read_h5ad(path: str | os.PathLike, *, limit: int | None = None):
    """Read an ``.h5ad`` file into memory (anndata.AnnData) or raise a one-line InputError."""
    import anndata as ad

    p = check_file(path, limit=limit)
    if extension(p) != ".h5ad":
        raise InputError(f"{p}: expected an .h5ad file")
    if not _h5_signature_ok(p):
        raise InputError(
            f"{p}: not an HDF5/AnnData file (bad signature); write it with AnnData.write_h5ad"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ad.read_h5ad(p)
    except Exception as exc:  # noqa: BLE001 - every failure of the reader is a bad file
        raise _h5_error(p, exc, "AnnData (.h5ad)") from None


def read_h5mu(path: str | os.PathLike, *, limit: int | None = None):
    """Read an ``.h5mu`` file into memory (mudata.MuData) or raise a one-line InputError."""
    import mudata as md

    p = check_file(path, limit=limit)
    if extension(p) != ".h5mu":
        raise InputError(f"{p}: expected an .h5mu file")
    if not _h5_signature_ok(p):
        # .h5mu files carry a 512-byte user block before the HDF5 signature.
        with open(p, "rb") as fh:
            fh.seek(512)
            ok = fh.read(8) == b"\x89HDF\r\n\x1a\n"
        if not ok:
            raise InputError(
                f"{p}: not an HDF5/MuData file (bad signature); write it with MuData.write"
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return md.read_h5mu(p)
    except Exception as exc:  # noqa: BLE001
        raise _h5_error(p, exc, "MuData (.h5mu)") from None
