"""File readers: turn one file into a table, AnnData or MuData, or a one-line InputError.

This module knows about files only (size, extension, encoding, HDF5 structure, header and
sample-id problems). What the *values* mean (kinds, NaN, Inf, ranges) is checked in
:mod:`core.data`.

Accepted formats
----------------
- ``.csv`` / ``.tsv`` / ``.txt`` (optionally ``.gz``) and ``.parquet``: samples in rows, the
  first column is the sample id, every other column a feature (or a metadata field). The
  separator is sniffed from the header (comma, tab, semicolon; spaces in a .txt); ``.`` is
  the decimal mark, except in ``;``-separated files, where ``,`` is accepted too.
- ``.h5ad`` (AnnData) and ``.h5mu`` (MuData).

Spreadsheets (.xlsx, .ods) are refused with "save it as CSV". The size limit
(``$OLE_MAX_FILE_MB``) applies to the user's files; the built-in datasets read their shipped
files with ``limit=UNLIMITED``.
"""

from __future__ import annotations

import os
import re
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import InputError

TABLE_EXTS = (".csv", ".tsv", ".txt", ".parquet")
H5_EXTS = (".h5ad", ".h5mu")
ALL_EXTS = TABLE_EXTS + H5_EXTS
DEFAULT_MAX_FILE_MB = 2048.0
MAX_FILE_ENV = "OLE_MAX_FILE_MB"
# files the product ships (scanpy's pbmc68k, assets/) are read with this limit: the user's
# $OLE_MAX_FILE_MB guards *their* inputs, not ours
UNLIMITED = 2**62
SPREADSHEET_EXTS = (".xlsx", ".xls", ".xlsm", ".ods", ".numbers")
MAX_ECHO = 60  # cell values echoed in messages are cut to this many characters
# a number written with a decimal comma ("-0,927", "1,5e-3", ",5"); no thousands separators
_DECIMAL_COMMA = re.compile(r"\s*[+-]?(\d+,\d*|,\d+)([eE][+-]?\d+)?\s*")


def echo(value: object) -> str:
    """A cell value for a message: ``repr(str(value))``, cut to about MAX_ECHO characters."""
    text = str(value)
    if len(text) > MAX_ECHO:
        text = text[: MAX_ECHO - 3] + "..."
    return repr(text)


def exc_reason(exc: BaseException) -> str:
    """An exception's message for a one-line error: its first line, at most 120 characters."""
    text = str(exc).strip()
    return text.splitlines()[0][:120] if text else ""


def format_size(n_bytes: float) -> str:
    """A file size in words with enough precision for tiny limits: "2.0 MB", "9.8 KB", "12 bytes"."""
    if n_bytes >= 2**20:
        return f"{n_bytes / 2**20:.1f} MB"
    if n_bytes >= 1024:
        return f"{n_bytes / 1024:.1f} KB"
    return f"{int(n_bytes)} bytes"


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
    if ext in SPREADSHEET_EXTS:
        raise InputError(
            f"{p}: unknown extension {ext!r} (a spreadsheet); save it as CSV (samples in rows, "
            "first column the sample id) and pass the .csv file"
        )
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
            f"{p}: file is {format_size(size)}, above the limit of {format_size(cap)}; "
            f"raise {MAX_FILE_ENV} (in MB) or subset the data"
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
    """The field separator, sniffed from the header line.

    The extension's usual separator wins when the header holds it (``,`` for .csv, a tab for
    .tsv / .txt); otherwise the first of tab, comma and semicolon the header holds; a .txt
    header with none of them but spaces is whitespace-separated.
    """
    line = _first_line(path).rstrip("\r\n")
    preferred = "," if ext == ".csv" else "\t"
    if preferred in line:
        return preferred
    for sep in ("\t", ",", ";"):
        if sep in line:
            return sep
    if ext == ".txt" and " " in line.strip():
        return r"\s+"
    return preferred


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
    sample ids or duplicate / empty column names, a multi-level Parquet index or header, cells
    holding lists / arrays, and decimal-comma numbers ("-0,927"), except in ';'-separated
    files, which are read again with ',' as the decimal mark.
    """
    p = check_file(path, limit=limit)
    ext = extension(p)
    if ext in H5_EXTS:
        raise InputError(f"{p}: expected a table (.csv/.tsv/.parquet), got {ext}")
    if ext == ".parquet":
        try:
            df = pd.read_parquet(p)
        except Exception as exc:  # noqa: BLE001 - any parser failure means "not a parquet table"
            reason = exc_reason(exc)
            raise InputError(
                f"{p}: not a readable Parquet table ({type(exc).__name__}: {reason}); "
                "re-export it with pandas.DataFrame.to_parquet"
            ) from None
        _check_parquet_structure(df, p)
        if isinstance(df.index, pd.RangeIndex):
            if df.shape[1] == 0:
                raise InputError(f"{p}: the table has no columns; export samples in rows")
            header = [str(c) for c in df.columns]
            df = df.set_index(df.columns[0])
        else:
            header = [str(df.index.name or "id")] + [str(c) for c in df.columns]
        df = _check_ids_and_columns(df, header, p)
        _check_cells_scalar(df, p)
        return df

    sep = _separator(p, ext)
    df, header = _read_text_table(p, sep)
    df = _check_ids_and_columns(df, header, p)
    cell = _decimal_comma_cell(df)
    if cell is not None and sep == ";":
        # a European-locale export: ';' between fields, ',' as the decimal mark
        df, header = _read_text_table(p, sep, decimal=",")
        df = _check_ids_and_columns(df, header, p)
        cell = _decimal_comma_cell(df)
    if cell is not None:
        i, j = cell
        raise InputError(
            f"{p}: decimal commas at row {df.index[i]!r}, column {df.columns[j]!r} "
            f"({echo(df.iat[i, j])}); export with '.' as the decimal mark (or with ';' "
            "between fields)"
        )
    return df


def _read_text_table(p: Path, sep: str, *, decimal: str = ".") -> tuple[pd.DataFrame, list[str]]:
    """(table indexed by the first column, header fields) of a CSV / TSV file."""
    try:
        head = pd.read_csv(p, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
        header = [str(x) for x in head.iloc[0].tolist()] if len(head) else []
        df = pd.read_csv(
            p, sep=sep, index_col=0, low_memory=False, converters={0: str}, decimal=decimal
        )
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
        reason = exc_reason(exc)
        raise InputError(
            f"{p}: could not read the table ({type(exc).__name__}: {reason}); re-export it"
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
    return df, header


def _check_parquet_structure(df: pd.DataFrame, p: Path) -> None:
    """Refuse multi-level row indexes and column headers (one sample id, one name per column)."""
    if isinstance(df.index, pd.MultiIndex):
        first = echo("/".join(map(str, df.index[0]))) if len(df) else "(empty)"
        raise InputError(
            f"{p}: the table has a {df.index.nlevels}-level row index (first row {first}); "
            "save it with one sample-id column, e.g. "
            "df.index = ['_'.join(map(str, t)) for t in df.index]"
        )
    if isinstance(df.columns, pd.MultiIndex):
        raise InputError(
            f"{p}: the table has a {df.columns.nlevels}-level column header (e.g. "
            f"{echo(df.columns[0])}); flatten it, e.g. "
            "df.columns = ['_'.join(map(str, c)) for c in df.columns]"
        )


def _check_cells_scalar(df: pd.DataFrame, p: Path) -> None:
    """Every cell of an object column must be one value (not a list, array or dict)."""
    for j, col in enumerate(df.columns):
        s = df.iloc[:, j]
        if s.dtype != object:
            continue
        bad = np.fromiter((not pd.api.types.is_scalar(x) for x in s), dtype=bool, count=len(s))
        if bad.any():
            i = int(bad.argmax())
            raise InputError(
                f"{p}: column {col!r} holds lists or other non-scalar values (row "
                f"{df.index[i]!r}: {echo(s.iat[i])}); every cell must be one number or label: "
                "expand it into one column per element, or drop it"
            )


def _decimal_comma_cell(df: pd.DataFrame) -> tuple[int, int] | None:
    """(row, col) of the first decimal-comma number ("-0,927") in a text column where such
    numbers make up at least half of the non-missing cells (the rest integers or anything), or
    None."""
    for j in range(df.shape[1]):
        s = df.iloc[:, j]
        if s.dtype != object:
            continue
        present = s.notna().to_numpy()
        if not present.any():
            continue
        text = s[present].astype(str)
        comma = text.str.fullmatch(_DECIMAL_COMMA).to_numpy()
        if comma.sum() and comma.sum() >= 0.5 * present.sum():
            first = np.flatnonzero(present)[int(comma.argmax())]
            return int(first), j
    return None


def _h5_error(p: Path, exc: Exception, what: str) -> InputError:
    reason = exc_reason(exc)
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
