"""Saving uploaded files as a dataset folder under OLE_UPLOAD_DIR/<name>/ (validated first).

Layout of an upload folder: one .h5mu / .h5ad file, or one table per modality named
``<modality>.<csv|tsv|txt|parquet>`` plus ``obs.<ext>`` (the metadata table), plus an optional
``kinds.json`` with kind overrides. The folder is written under a temporary name, loaded with
``core.data.load`` (which validates it), and only then renamed into place.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.errors import InputError
from dashboard.cache import KINDS_FILE

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")
TABLE_EXTS = (".csv", ".tsv", ".txt", ".parquet")
H5_EXTS = (".h5ad", ".h5mu")
UPLOAD_TYPES = ["csv", "tsv", "txt", "parquet", "h5ad", "h5mu"]


def _suffix(filename: str) -> str:
    return Path(filename).suffix.lower()


def check_size(filename: str, n_bytes: int, *, max_bytes: int) -> None:
    if n_bytes > max_bytes:
        raise InputError(
            f"{filename} is {n_bytes / 2**20:.1f} MB, over the upload limit of "
            f"{max_bytes / 2**20:.0f} MB; subsample it, or raise OLE_MAX_UPLOAD_MB"
        )


def plan_files(
    name: str, files: Sequence[tuple[str, bytes]], obs: tuple[str, bytes] | None
) -> dict[str, bytes]:
    """Map uploaded files to their names inside the dataset folder ``name`` (validates the mix);
    a single .h5ad/.h5mu is stored as ``<name>.<ext>`` so the dataset keeps the chosen name."""
    if not files:
        raise InputError("no data file uploaded; add an .h5ad/.h5mu file or one table per modality")
    h5 = [f for f in files if _suffix(f[0]) in H5_EXTS]
    tables = [f for f in files if _suffix(f[0]) in TABLE_EXTS]
    other = [f[0] for f in files if _suffix(f[0]) not in H5_EXTS + TABLE_EXTS]
    if other:
        raise InputError(
            f"{other[0]}: unsupported file type; use .h5ad, .h5mu, .csv, .tsv or .parquet"
        )
    if h5 and (tables or len(h5) > 1):
        raise InputError(
            "upload either one .h5ad/.h5mu file or tables (one per modality), not both"
        )
    out: dict[str, bytes] = {}
    if h5:
        fname, blob = h5[0]
        out[f"{name}{_suffix(fname)}"] = blob
    for fname, blob in tables:
        mod = re.sub(r"[^A-Za-z0-9_-]", "_", Path(fname).stem) or "data"
        if mod.lower() in ("obs", "metadata"):
            raise InputError(
                f"{fname}: name the metadata table in the metadata box, not as a modality"
            )
        key = f"{mod}{_suffix(fname)}"
        if any(Path(k).stem == mod for k in out):
            raise InputError(
                f"two files give modality {mod!r}; rename one (the file name is the modality)"
            )
        out[key] = blob
    if obs is not None:
        if _suffix(obs[0]) not in TABLE_EXTS:
            raise InputError(f"{obs[0]}: the metadata table must be .csv, .tsv or .parquet")
        out[f"obs{_suffix(obs[0])}"] = obs[1]
    return out


def save_upload(
    name: str,
    files: Sequence[tuple[str, bytes]],
    *,
    obs: tuple[str, bytes] | None = None,
    kinds: Mapping[str, str] | None = None,
    upload_dir: Path,
    max_bytes: int,
    reserved: Sequence[str] = (),
    overwrite: bool = False,
):
    """Validate and store an upload as ``upload_dir/name``; returns the loaded MuData.

    Raises InputError (nothing is left on disk) when a file is too big, the name is invalid or
    taken, or core.data.load rejects the files.
    """
    from core import data

    if not NAME_RE.match(name or ""):
        raise InputError(
            f"dataset name {name!r} must start with a letter and use letters, digits, "
            "'-' or '_' (at most 40)"
        )
    if name in reserved:
        raise InputError(f"{name!r} is a built-in dataset; choose another name for your upload")
    for fname, blob in [*files, *([obs] if obs else [])]:
        check_size(fname, len(blob), max_bytes=max_bytes)
    target = upload_dir / name
    if target.exists() and not overwrite:
        raise InputError(
            f"a dataset named {name!r} already exists; choose another name or tick 'replace'"
        )
    planned = plan_files(name, files, obs)
    upload_dir.mkdir(parents=True, exist_ok=True)
    tmp = upload_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for fname, blob in planned.items():
            (tmp / fname).write_bytes(blob)
        if kinds:
            (tmp / KINDS_FILE).write_text(json.dumps(dict(kinds)))
        h5 = [tmp / f for f in planned if Path(f).suffix in H5_EXTS]
        sources = [str(h5[0])] if h5 else [str(tmp)]
        mdata = data.load(sources, kinds=dict(kinds) if kinds else None, max_file_bytes=max_bytes)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return mdata


def parse_kinds(text: str) -> dict[str, str]:
    """'rna=counts, protein=continuous' -> dict (empty text -> {})."""
    from core.cli import parse_assignments

    items = [t for t in re.split(r"[,\s]+", text or "") if t]
    return parse_assignments(items, flag="kinds")
