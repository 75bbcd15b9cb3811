"""Saving uploaded files as a dataset folder under OLE_UPLOAD_DIR/<name>/ (validated first).

Layout of an upload folder: one .h5mu / .h5ad file, or one table per modality named
``<modality>.<csv|tsv|txt|parquet>`` plus ``obs.<ext>`` (the metadata table), plus an optional
``kinds.json`` with kind overrides. The folder is written under a temporary name, loaded with
``core.data.load`` (which validates it), and only then renamed into place.

Messages speak of what the user uploaded: core's errors name the temporary paths and the CLI's
options (``--kind rna=categorical``); :func:`user_words` maps them back to the uploaded file
names and to this form's boxes.
"""

from __future__ import annotations

import json
import math
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
ACCEPTED = ".h5ad, .h5mu, .csv, .tsv, .txt or .parquet"
TABLES_ACCEPTED = ".csv, .tsv, .txt or .parquet"
# Boxes of the upload form (dashboard/upload_form.py), named in messages
DATA_BOX, OBS_BOX, KINDS_BOX = "Data files", "Metadata table", "Kinds"
REPLACE_BOX = "Replace a dataset with the same name"
# core's CLI hints -> the upload form's words (applied in order)
CLI_HINTS: list[tuple[str, str]] = [
    (r"\(use --kind (\S+?)=(\S+?) for ([^)]*)\)", rf"(for \3, set \1=\2 in the {KINDS_BOX} box)"),
    (r"\(--kind (\S+?)=(\S+?)\)", rf"(set \1=\2 in the {KINDS_BOX} box)"),
    (r"name it obs\.csv or pass it with --obs", f"upload it in the {OBS_BOX} box"),
    (r"pass it with --obs", f"upload it in the {OBS_BOX} box"),
    (r"\(--obs\)", f"({OBS_BOX} box)"),
    (r"\(--data SRC\)", f"({DATA_BOX} box)"),
    (r"--kind (\S+?)=(\S+)", rf"\1=\2 in the {KINDS_BOX} box"),
    (r"--kind\b", f"the {KINDS_BOX} box"),
    (r"--obs\b", f"the {OBS_BOX} box"),
    (r"--data\b", f"the {DATA_BOX} box"),
]


def _suffix(filename: str) -> str:
    return Path(filename).suffix.lower()


def format_mb(n_bytes: float, *, digits: int = 2) -> str:
    """Bytes as MB, ``digits`` significant digits, never in exponent notation:
    52428 -> "0.05 MB", 200 * 2**20 -> "200 MB", 947000 -> "0.9 MB"."""
    mb = n_bytes / 2**20
    decimals = max(0, digits - 1 - math.floor(math.log10(mb))) if mb > 0 else 0
    text = f"{mb:.{decimals}f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + " MB"


def check_size(filename: str, n_bytes: int, *, max_bytes: int) -> None:
    """InputError naming the file, its size and the limit, in the same units as the form's
    help text (MB, 2 significant digits; exact bytes when that does not tell them apart)."""
    if n_bytes <= max_bytes:
        return
    size, limit = format_mb(n_bytes), format_mb(max_bytes)
    if size == limit:  # just over the limit: "0.05 MB, over the limit of 0.05 MB" says nothing
        size, limit = f"{n_bytes:,} bytes", f"{limit} ({max_bytes:,} bytes)"
    raise InputError(
        f"{filename} is {size}, over the upload limit of {limit} per file; subsample it, or "
        "raise OLE_MAX_UPLOAD_MB"
    )


def user_words(
    message: str,
    *,
    folder: Path | None = None,
    label: str = "",
    names: Mapping[str, str] | None = None,
) -> str:
    """``message`` in the words of the upload form: CLI hints name the form's boxes; paths
    inside the server's ``folder`` lose the folder (any spelling of it, e.g. resolved); the
    folder itself reads ``label``; file names the server chose (``names`` keys: "obs.csv")
    read as the user's (``names`` values: "meta.csv")."""
    for pattern, repl in CLI_HINTS:
        message = re.sub(pattern, repl, message)
    if folder is not None:
        tag = re.escape(folder.name)
        message = re.sub(rf"[^\s'\"(]*{tag}[/\\]", "", message)
        message = re.sub(rf"[^\s'\"(]*{tag}(?![\w.-])", label, message)
    names = names or {}
    for key in sorted(names, key=len, reverse=True):
        if names[key] != key:
            message = re.sub(rf"(?<![\w./\\-]){re.escape(key)}(?![\w-])", names[key], message)
    return message


def plan_files(
    name: str, files: Sequence[tuple[str, bytes]], obs: tuple[str, bytes] | None
) -> dict[str, bytes]:
    """Map uploaded files to their names inside the dataset folder ``name`` (validates the mix);
    a single .h5ad/.h5mu is stored as ``<name>.<ext>`` so the dataset keeps the chosen name."""
    if not files:
        raise InputError(
            f"no data file uploaded; add one table per modality ({TABLES_ACCEPTED}) or one "
            f".h5ad/.h5mu file in the {DATA_BOX} box"
        )
    h5 = [f for f in files if _suffix(f[0]) in H5_EXTS]
    tables = [f for f in files if _suffix(f[0]) in TABLE_EXTS]
    other = [f[0] for f in files if _suffix(f[0]) not in H5_EXTS + TABLE_EXTS]
    if other:
        raise InputError(
            f"{other[0]}: unsupported file type {_suffix(other[0]) or '(no extension)'}; "
            f"upload {ACCEPTED} files"
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
                f"{fname}: put the metadata table in the {OBS_BOX} box, not among the data files"
            )
        key = f"{mod}{_suffix(fname)}"
        if any(Path(k).stem == mod for k in out):
            raise InputError(
                f"two files give modality {mod!r}; rename one (the file name is the modality)"
            )
        out[key] = blob
    if obs is not None:
        if _suffix(obs[0]) not in TABLE_EXTS:
            raise InputError(
                f"{obs[0]}: unsupported file type {_suffix(obs[0]) or '(no extension)'} for the "
                f"metadata table; upload a {TABLES_ACCEPTED} table"
            )
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
    planned = plan_files(name, files, obs)  # what is wrong with the files first
    target = upload_dir / name
    if target.exists() and not overwrite:
        raise InputError(
            f"a dataset named {name!r} already exists; choose another name or tick '{REPLACE_BOX}'"
        )
    uploaded = [Path(f).name for f, _ in [*files, *([obs] if obs else [])]]
    originals = dict(zip(planned, uploaded, strict=True))  # plan_files keeps the files' order
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
        try:
            mdata = data.load(
                sources, kinds=dict(kinds) if kinds else None, max_file_bytes=max_bytes
            )
        except InputError as exc:
            text = user_words(str(exc), folder=tmp, label=name, names=originals)
            raise type(exc)(text) from None
        warnings = mdata.uns.get("warnings")
        if warnings is not None:
            mdata.uns["warnings"] = [
                user_words(str(w), folder=tmp, label=name, names=originals) for w in warnings
            ]
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return mdata


def parse_kinds(text: str) -> dict[str, str]:
    """'rna=counts, protein=continuous' -> dict (empty text -> {}); errors in the form's words."""
    from core.cli import parse_assignments

    items = [t for t in re.split(r"[,\s]+", text or "") if t]
    try:
        return parse_assignments(items, flag="--kind")
    except InputError as exc:
        raise InputError(user_words(str(exc))) from None
