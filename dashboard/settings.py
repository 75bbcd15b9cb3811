"""Where things live, from environment variables with defaults inside the repository.

Every path is absolute and independent of the directory the app was started from:

| variable | default | what |
|---|---|---|
| ``OLE_RUNS_DIR`` | ``<repo>/runs`` | trained runs (one directory each) |
| ``OLE_UPLOAD_DIR`` | ``<repo>/uploads`` | datasets uploaded on the Data page, one directory each |
| ``OLE_MAX_UPLOAD_MB`` | ``200`` | larger uploads are refused with a message |

Derived data that must survive a restart (embedding coordinates) lives inside its run.

Settings are read on every call (no module-level state), so tests can point them elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MAX_UPLOAD_MB = 200.0


@dataclass(frozen=True)
class Settings:
    runs_dir: Path
    upload_dir: Path
    max_upload_mb: float

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def _path(var: str, default: Path) -> Path:
    value = os.environ.get(var, "").strip()
    if not value:
        return default
    path = Path(value).expanduser()
    return path if path.is_absolute() else (REPO / path).resolve()


def _max_upload_mb() -> float:
    raw = os.environ.get("OLE_MAX_UPLOAD_MB", "").strip()
    if not raw:
        return DEFAULT_MAX_UPLOAD_MB
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_MAX_UPLOAD_MB
    return value if value > 0 else DEFAULT_MAX_UPLOAD_MB


def get_settings() -> Settings:
    """Current settings; relative paths in env vars are taken relative to the repository."""
    return Settings(
        runs_dir=_path("OLE_RUNS_DIR", REPO / "runs"),
        upload_dir=_path("OLE_UPLOAD_DIR", REPO / "uploads"),
        max_upload_mb=_max_upload_mb(),
    )
