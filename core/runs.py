"""Run directories: configs, atomic files, listing, loading (without unpickling) and deleting.

A run is a directory ``runs/<name>/`` holding everything needed to rebuild the model:

config.json      RunConfig (data sources + obs + kinds, preprocessing, model, training)
preprocess.json  fitted preprocessing state (:class:`core.preprocess.Preprocessor`)
features.json    var_names per modality (input and model features) with sha256
model.json       network shapes (ModalitySpec per modality, n_cond)
split.csv        sample id -> train / val / test
refit_<k>.pt     weights (torch state_dict; loaded with weights_only=True after a sha256 check)
weights.json     sha256 of every weights file (a modified file is refused, never unpickled)
history.csv      per epoch and refit: every loss term for train and val, kl weight, lr
metrics.json     headline metrics; status.json: {"state", "error", "epoch", ...} (written last)
train.log        stdout/stderr of a background job; ``cancel`` asks a running job to stop.

Every file is written atomically (temporary file + os.replace). A run name is a plain
directory name ([A-Za-z0-9._-], no leading dot) and can never escape the runs directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, get_args

import numpy as np
import pandas as pd

from core.errors import InputError, RunError
from core.model_config import ModelConfig
from core.preprocess import PreprocessConfig
from core.readers import exc_reason

State = Literal["queued", "running", "done", "failed", "cancelled"]
STATES: tuple[str, ...] = get_args(State)
DeviceName = Literal["auto", "cpu", "cuda"]
REPO_ROOT = Path(__file__).resolve().parents[1]
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
CONFIG, STATUS, HISTORY, METRICS = "config.json", "status.json", "history.csv", "metrics.json"
PREPROCESS, FEATURES, MODEL, SPLIT = "preprocess.json", "features.json", "model.json", "split.csv"
WEIGHTS_MANIFEST, CANCEL, LOG = "weights.json", "cancel", "train.log"
CONFIG_VERSION = 1


# -- configs ----------------------------------------------------------------------------------
@dataclass
class DataConfig:
    """Which data a run trains on, and how it is split.

    sources / obs / kinds: as for :func:`core.data.load` (CLI --data / --obs / --kind).
    params: keyword arguments for a single built-in source (e.g. {"n_obs": 300}).
    modalities: subset of modalities to model (None = all). conditions: obs columns the model
    is conditioned on (CVAE). label: obs column for the latent kNN metric (None = first
    categorical column with 2-50 levels). stratify: split stratification column ("label" =
    the label column, None = unstratified).
    """

    sources: list[str] = field(default_factory=lambda: ["synthetic"])
    obs: str | None = None
    kinds: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    modalities: list[str] | None = None
    conditions: list[str] = field(default_factory=list)
    label: str | None = None
    stratify: str | None = "label"
    val_frac: float = 0.1
    test_frac: float = 0.1
    split_seed: int = 0
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def __post_init__(self) -> None:
        if isinstance(self.preprocess, Mapping):
            self.preprocess = PreprocessConfig(**self.preprocess)
        if not self.sources:
            raise InputError("a run needs at least one data source (--data)")
        if not (
            0 <= self.val_frac < 1
            and 0 <= self.test_frac < 1
            and self.val_frac + self.test_frac < 1
        ):
            raise InputError(
                f"val_frac ({self.val_frac}) and test_frac ({self.test_frac}) must be in [0, 1) "
                "and sum to less than 1"
            )


@dataclass
class TrainConfig:
    """Optimisation settings.

    beta: KL weight after warm-up (beta-VAE); kl_warmup_epochs: linear KL warm-up length.
    patience: early-stopping patience in epochs on the validation loss (0 = off); the best
    weights are restored. one_cycle: one-cycle learning-rate schedule (max lr = lr).
    grad_clip: max gradient norm (0 = off). refits: ensemble members, seeds seed..seed+K-1.
    device: "auto" picks CUDA when available.
    """

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    beta: float = 1.0
    kl_warmup_epochs: int = 10
    patience: int = 15
    min_delta: float = 0.0
    one_cycle: bool = False
    grad_clip: float = 10.0
    seed: int = 0
    refits: int = 1
    device: DeviceName = "auto"
    checkpoint_seconds: float = 30.0

    def __post_init__(self) -> None:
        checks = [
            ("epochs", self.epochs >= 1),
            ("batch_size", self.batch_size >= 1),
            ("lr", self.lr > 0),
            ("weight_decay", self.weight_decay >= 0),
            ("beta", self.beta >= 0),
            ("kl_warmup_epochs", self.kl_warmup_epochs >= 0),
            ("patience", self.patience >= 0),
            ("grad_clip", self.grad_clip >= 0),
            ("refits", 1 <= self.refits <= 100),
        ]
        for name, ok in checks:
            if not ok:
                raise InputError(f"training option {name}={getattr(self, name)!r} is out of range")
        if self.device not in get_args(DeviceName):
            raise InputError(f"device must be one of {', '.join(get_args(DeviceName))}")


def train_defaults(model: str) -> dict:
    """TrainConfig settings whose default depends on the model variant.

    A translator is judged on its predictions, which a strong KL term blurs: beta 0.1 raised
    RNA -> protein per-sample Pearson on `synthetic` from 0.930 to 0.943 (0.951 with the
    translator's wider layers, :func:`core.model_config.model_defaults`).
    """
    return {"beta": 0.1} if model == "translator" else {}


@dataclass
class RunConfig:
    """Everything that defines a run (saved as config.json)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    version: int = CONFIG_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> RunConfig:
        try:
            data = dict(d["data"])
            data["preprocess"] = PreprocessConfig(**data.get("preprocess", {}))
            return cls(
                data=DataConfig(**data),
                model=ModelConfig(**d["model"]),
                train=TrainConfig(**d["train"]),
                version=int(d.get("version", 1)),
            )
        except (KeyError, TypeError) as exc:
            raise InputError(f"run config is incomplete or has unknown fields ({exc})") from None


def _field_types(dc) -> dict[str, Any]:
    return {f.name: f for f in dataclasses.fields(dc)}


def apply_overrides(config: RunConfig, overrides: Mapping[str, str]) -> RunConfig:
    """Set config fields from KEY=VALUE strings (CLI --set); KEY may be "section.field".

    Values are parsed as JSON when possible (numbers, true/false, lists, null), else strings.
    An unknown key is an InputError listing the valid ones.
    """
    sections = {
        "data": config.data,
        "model": config.model,
        "train": config.train,
        "preprocess": config.data.preprocess,
    }
    for key, raw in overrides.items():
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        section, _, name = key.rpartition(".")
        dict_fields = {
            "params": config.data.params,
            "kinds": config.data.kinds,
            "modality_weights": config.model.modality_weights,
            "continuous": config.data.preprocess.continuous,
        }
        sub = section.rpartition(".")[2]
        if sub in dict_fields:  # e.g. --set params.n_obs=300, model.modality_weights.drug=5
            dict_fields[sub][name] = value
            continue
        targets = [sections[section]] if section in sections else list(sections.values())
        hit = [t for t in targets if name in _field_types(type(t))]
        if not hit:
            valid = sorted({f for t in sections.values() for f in _field_types(type(t))})
            raise InputError(f"--set {key}: unknown option; valid: {', '.join(valid)}")
        setattr(hit[0], name, value)
    # re-validate
    return RunConfig.from_dict(config.to_dict())


# -- atomic files ------------------------------------------------------------------------------
def write_atomic(path: Path, write: Callable[[IO], Any], *, mode: str = "wb") -> None:
    """Call ``write(fh)`` on a temporary file in ``path``'s directory, fsync, os.replace: a
    reader sees the old file or the complete new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write bytes to path atomically (:func:`write_atomic`)."""
    write_atomic(path, lambda fh: fh.write(data))


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path, *, run: str | None = None) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(
            f"run {run or Path(path).parent.name!r} has no {Path(path).name}; it is incomplete "
            "(still running, or crashed): wait for it or delete it"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunError(
            f"{Path(path).name} of run {run or Path(path).parent.name!r} is corrupt; delete the run "
            "and train it again"
        ) from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_status(run_dir: Path, state: State, **fields: Any) -> dict:
    """Write status.json ({"state", "error", "updated", ...}) atomically; returns it."""
    if state not in STATES:
        raise ValueError(f"unknown run state {state!r}")
    old = {}
    path = Path(run_dir) / STATUS
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            old = {}
    status = {**old, "error": None, **fields, "state": state, "updated": time.time()}
    write_json_atomic(path, status)
    return status


# -- locating runs -----------------------------------------------------------------------------
def runs_dir() -> Path:
    """The runs directory: $OLE_RUNS_DIR, default <repo>/runs (created on demand by writers)."""
    env = os.environ.get("OLE_RUNS_DIR")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "runs"


def check_name(name: str) -> str:
    """Validate a run name: a plain directory name, so it cannot escape the runs directory."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
        raise RunError(
            f"run name {name!r} is not allowed; use letters, digits, '.', '_' and '-' only "
            "(no '/', no leading dot)"
        )
    return name


def new_run_path(name_or_path: str | Path, root: Path | None = None) -> Path:
    """Where a new run goes: a plain run name is created inside ``root`` (default runs_dir(),
    where the dashboard and ``python -m core runs`` look); anything with a path separator is the
    directory the user named."""
    s = str(name_or_path)
    if isinstance(name_or_path, Path) or os.sep in s or "/" in s:
        return Path(s).expanduser()
    root = Path(root) if root is not None else runs_dir()
    return root / check_name(s)


def resolve_run(name_or_path: str | Path, root: Path | None = None) -> Path:
    """A run name (inside ``root``, default runs_dir()) or an existing run directory path.

    A plain name must match [A-Za-z0-9._-] and resolves inside root; anything with a path
    separator must be an existing directory holding config.json.
    """
    root = Path(root) if root is not None else runs_dir()
    s = str(name_or_path)
    if isinstance(name_or_path, Path) or os.sep in s or "/" in s:
        path = Path(s).expanduser()
        if not (path / CONFIG).is_file():
            raise RunError(
                f"{s} is not a run directory (no {CONFIG}); list runs with 'python -m core runs'"
            )
        return path.resolve()
    check_name(s)
    path = (root / s).resolve()
    if path.parent != root.resolve():
        raise RunError(f"run name {s!r} escapes the runs directory {root}")
    return path


# -- the Run object ----------------------------------------------------------------------------
class Run:
    """A trained (or training) run, loaded from its directory. Treat as read-only.

    Attributes: path, name, config (RunConfig), status (dict), history (DataFrame), metrics
    (dict), modalities, kinds, var_names (model features per modality), conditions, n_latent,
    n_refits. Methods: load_data(), model(refit), preprocessor, split.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.config = RunConfig.from_dict(read_json(self.path / CONFIG, run=self.name))
        self.status: dict = read_json(self.path / STATUS, run=self.name)
        self._pre = None
        self._models: dict[int, Any] = {}
        self._model_meta: dict | None = None

    def __repr__(self) -> str:
        return f"Run({self.name!r}, state={self.state!r}, modalities={self.modalities})"

    @property
    def state(self) -> str:
        return str(self.status.get("state"))

    @property
    def history(self) -> pd.DataFrame:
        p = self.path / HISTORY
        return pd.read_csv(p) if p.exists() and p.stat().st_size else pd.DataFrame()

    @property
    def metrics(self) -> dict:
        p = self.path / METRICS
        return read_json(p, run=self.name) if p.exists() else {}

    @property
    def preprocessor(self):
        from core.preprocess import Preprocessor

        if self._pre is None:
            try:
                self._pre = Preprocessor.from_state(
                    read_json(self.path / PREPROCESS, run=self.name)
                )
            except InputError as exc:
                raise RunError(f"run {self.name!r}: {exc}") from None
        return self._pre

    @property
    def modalities(self) -> list[str]:
        return self.preprocessor.modalities

    @property
    def kinds(self) -> dict[str, str]:
        return self.preprocessor.kinds

    @property
    def var_names(self) -> dict[str, list[str]]:
        return {m: t.features for m, t in self.preprocessor.transforms.items()}

    @property
    def conditions(self) -> list[str]:
        return list(self.preprocessor.conditions.columns)

    @property
    def n_latent(self) -> int:
        return int(self.config.model.n_latent)

    @property
    def n_refits(self) -> int:
        man = self._manifest()
        return len(man) if man else 0

    @property
    def split(self) -> pd.Series:
        """Sample id -> "train" / "val" / "test" for the run's own dataset."""
        df = pd.read_csv(self.path / SPLIT, dtype=str, keep_default_na=False)
        return pd.Series(
            df["split"].to_numpy(), index=pd.Index(df["sample"], name="sample"), name="split"
        )

    def load_data(self):
        """Rebuild the run's own dataset (MuData) from its config."""
        return load_data_config(self.config.data)

    def weights_sha256(self, refit: int = 0) -> str | None:
        """The recorded sha256 of refit ``refit``'s weights file (None before it is written)."""
        return self._manifest().get(f"refit_{int(refit)}.pt")

    def checked_weights(self, refit: int = 0) -> Path:
        """The weights file of refit ``refit`` after checking it against its recorded sha256
        (RunError naming the problem otherwise; the file is only hashed, never unpickled)."""
        manifest = self._manifest()
        fname = f"refit_{int(refit)}.pt"
        if fname not in manifest:
            raise RunError(
                f"run {self.name!r} has no weights for refit {refit} (state: {self.state}); "
                f"it has {len(manifest)} refit(s)"
                + ("" if manifest else "; wait for training to finish")
            )
        wpath = self.path / fname
        if not wpath.is_file():
            raise RunError(f"run {self.name!r}: weights file {fname} is missing; train it again")
        if sha256_file(wpath) != manifest[fname]:
            raise RunError(
                f"run {self.name!r}: weights file {fname} does not match its recorded checksum "
                "(modified or replaced); it was not loaded. Delete the run and train it again"
            )
        return wpath

    def _manifest(self) -> dict[str, str]:
        p = self.path / WEIGHTS_MANIFEST
        return read_json(p, run=self.name) if p.exists() else {}

    def model(self, refit: int = 0):
        """The torch module of ensemble member ``refit`` in eval mode on CPU (do not mutate)."""
        import torch

        from core.models import ModalitySpec, build_model

        if refit in self._models:
            return self._models[refit]
        wpath = self.checked_weights(refit)
        fname = wpath.name
        meta = self._model_meta or read_json(self.path / MODEL, run=self.name)
        self._model_meta = meta
        try:
            state = torch.load(wpath, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError, RuntimeError on a malformed file
            raise RunError(
                f"run {self.name!r}: weights file {fname} is not a plain tensor state dict and "
                f"was refused ({type(exc).__name__}); delete the run and train it again"
            ) from None
        specs = {m: ModalitySpec.from_dict(s) for m, s in meta["specs"].items()}
        model = build_model(specs, n_cond=int(meta["n_cond"]), config=self.config.model)
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise RunError(
                f"run {self.name!r}: weights file {fname} does not fit the model "
                f"({exc_reason(exc)}); delete the run and train it again"
            ) from None
        if model.scheme == "frozen_target":
            model.phase = "sources"  # the trained state: source encoders into the target latent
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self._models[refit] = model
        return model


def _path_stats(path: Path) -> list | None:
    """[relative name, size, mtime_ns] of a file, or of every file below a directory (sorted);
    None when the path does not exist."""
    if path.is_file():
        st = path.stat()
        return [[path.name, st.st_size, st.st_mtime_ns]]
    if not path.is_dir():
        return None
    files = sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith("."))
    return [[str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def data_fingerprint(data: DataConfig) -> str | None:
    """sha1 that changes when the data a DataConfig describes may have changed; None when a
    source is missing (nothing derived from it should be cached).

    Built-in datasets: name, params and the bytes of their generator (core/datasets.py); files:
    absolute path, size and modification time of every file (recursively for a directory);
    plus the kinds and obs settings.
    """
    from core import datasets

    parts: list = [sorted(data.kinds.items()), sorted((k, repr(v)) for k, v in data.params.items())]
    entries = [(src, src.partition("=")[2] if "=" in src else src) for src in data.sources]
    entries += [(data.obs, data.obs)] if data.obs else []
    for src, path in entries:
        if src in datasets.REGISTRY:
            parts.append([src, hashlib.sha1(Path(datasets.__file__).read_bytes()).hexdigest()])
            continue
        stats = _path_stats(Path(path).expanduser().resolve())
        if stats is None:
            return None
        parts.append([str(Path(path).expanduser().resolve()), stats])
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()


def load_data_config(data: DataConfig):
    """Load the MuData a DataConfig describes (built-in with params, or core.data.load)."""
    from core import data as core_data

    if data.params and len(data.sources) == 1:
        from core import datasets

        mdata = datasets.load_builtin(data.sources[0], **data.params)
    else:
        mdata = core_data.load(data.sources, obs=data.obs, kinds=data.kinds or None)
    return mdata


def load_run(path: str | Path, *, require_weights: bool = True) -> Run:
    """Load a run directory (or a run name inside runs_dir()).

    Raises RunError for a missing / incomplete / failed run (naming it and the next step).
    Weights are read lazily by Run.model() after a checksum check, never unpickled.
    """
    p = resolve_run(path)
    if not p.is_dir():
        raise RunError(
            f"run {p.name!r} does not exist in {p.parent}; list runs with 'python -m core runs'"
        )
    run = Run(p)
    if require_weights and not (p / WEIGHTS_MANIFEST).exists():
        state, err = run.status.get("state"), run.status.get("error")
        msg = f"run {run.name!r} has no trained weights (state: {state}"
        msg += f", error: {err})" if err else ")"
        msg += (
            "; wait for it to finish"
            if state in ("queued", "running")
            else "; delete it and train again"
        )
        raise RunError(msg)
    return run


def _process_gone(status: Mapping) -> bool:
    """True when a queued/running status names a pid on this machine that no longer exists."""
    pid = status.get("pid")
    if status.get("state") not in ("queued", "running") or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False


def list_runs(root: Path | None = None) -> pd.DataFrame:
    """One row per run directory under root (default runs_dir()), newest first.

    Columns: name, path, state, model, modalities, n_latent, epoch, val_loss, seconds,
    created, error.
    """
    root = Path(root) if root is not None else runs_dir()
    rows = []
    if root.is_dir():
        for d in root.iterdir():
            if not d.is_dir() or ".tmp-" in d.name or d.name.startswith("."):
                continue
            if not (d / STATUS).exists() and not (d / CONFIG).exists():
                continue
            try:
                status = json.loads((d / STATUS).read_text()) if (d / STATUS).exists() else {}
            except (json.JSONDecodeError, OSError):
                status = {"state": "failed", "error": "status.json is corrupt"}
            if _process_gone(status):
                status = {
                    **status,
                    "state": "failed",
                    "error": f"the training process (pid {status['pid']}) stopped without "
                    "finishing; delete the run and train again",
                }
            try:
                cfg = json.loads((d / CONFIG).read_text()) if (d / CONFIG).exists() else {}
            except (json.JSONDecodeError, OSError):
                cfg = {}
            try:
                metrics = json.loads((d / METRICS).read_text()) if (d / METRICS).exists() else {}
            except (json.JSONDecodeError, OSError):
                metrics = {}
            rows.append(
                {
                    "name": d.name,
                    "path": str(d),
                    "state": status.get("state", "unknown"),
                    "model": cfg.get("model", {}).get("model"),
                    "data": ",".join(cfg.get("data", {}).get("sources", [])),
                    "modalities": ",".join(metrics.get("modalities", [])),
                    "n_latent": cfg.get("model", {}).get("n_latent"),
                    "epoch": status.get("epoch"),
                    "val_loss": metrics.get("val_loss"),
                    "seconds": metrics.get("seconds"),
                    "created": status.get("created"),
                    "error": status.get("error"),
                }
            )
    cols = [
        "name",
        "path",
        "state",
        "model",
        "data",
        "modalities",
        "n_latent",
        "epoch",
        "val_loss",
        "seconds",
        "created",
        "error",
    ]
    df = pd.DataFrame(rows, columns=cols)
    if len(df):
        df = df.sort_values("created", ascending=False, na_position="last").reset_index(drop=True)
    return df


def delete_run(path: str | Path) -> None:
    """Delete a run directory (a name inside runs_dir() or a run directory path)."""
    p = resolve_run(path)
    if not p.is_dir():
        raise RunError(f"run {p.name!r} does not exist")
    if not ((p / CONFIG).exists() or (p / STATUS).exists()):
        raise RunError(f"{p} does not look like a run directory; not deleting it")
    # rename first so a half-deleted run never looks like a run
    trash = p.with_name(f".{p.name}.tmp-delete-{os.getpid()}")
    os.replace(p, trash)
    shutil.rmtree(trash, ignore_errors=True)


def request_cancel(path: str | Path) -> None:
    """Ask a running training job to stop at its next batch (writes <run>/cancel)."""
    p = resolve_run(path) if not Path(path).is_dir() else Path(path)
    if not p.is_dir():
        raise RunError(f"run {Path(path).name!r} does not exist")
    write_text_atomic(p / CANCEL, f"{time.time()}\n")


def runs_command(args) -> tuple[str, dict]:
    """CLI: ``python -m core runs [--dir RUNS_DIR] [--json]``."""
    root = Path(args.dir) if getattr(args, "dir", None) else runs_dir()
    df = list_runs(root)
    records = json.loads(df.to_json(orient="records")) if len(df) else []
    if not len(df):
        return (
            f"no runs in {root}; train one with 'python -m core train --data synthetic --out "
            f"{root}/my-run'",
            {"runs_dir": str(root), "runs": []},
        )
    show = df[
        ["name", "state", "model", "modalities", "n_latent", "epoch", "val_loss", "seconds"]
    ].copy()
    show["val_loss"] = show["val_loss"].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    show["seconds"] = show["seconds"].map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
    text = show.fillna("").to_string(index=False)
    errs = df[df["error"].notna()]
    for _, r in errs.iterrows():
        text += f"\n{r['name']}: {r['error']}"
    return text, {"runs_dir": str(root), "runs": records}
