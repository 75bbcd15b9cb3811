"""Use a trained run: encode samples, decode latent points, reconstruct, translate.

All functions take a :class:`core.runs.Run` (from ``core.runs.load_run``) and return numpy
arrays. ``space`` chooses the units of decoded values:

- "data" (default): DATA units - counts as expected counts (library = the sample's own total
  for reconstruct, the training median for decode / translate unless given), proportions in
  [0, 1] (sigmoid of the Gaussian-on-logit mean, i.e. its median), continuous values in the
  input's units, categorical variables as the EXPECTED LEVEL CODE (for 0/1 flags: P(level 1));
  per-level probabilities are available with space="input".
- "input": the encoder-input space of the preprocessing - log1p(CP10k) for counts,
  standardised logit / values for proportion / continuous, one-hot probabilities (levels
  concatenated, see ``Run.preprocessor.transforms[mod].split_probabilities``) for categorical.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from core.errors import InputError

Space = Literal["data", "input"]
CHUNK = 4096
VIEW_DIR = "latent"  # <run>/latent/: cached RunViews of the run's own dataset
VIEW_VERSION = 1


def _check_refit(run, refit: int) -> None:
    if not 0 <= int(refit) < max(run.n_refits, 1):
        raise InputError(
            f"run {run.name!r} has {run.n_refits} refit(s); refit {refit} is out of range"
        )


def _cond_matrix(run, cond, n: int) -> np.ndarray:
    """Condition matrix (n, n_cond) from a DataFrame (n rows) or a {column: value} mapping."""
    pre = run.preprocessor
    if not pre.conditions.columns:
        return np.zeros((n, 0), dtype=np.float32)
    if cond is None:
        raise InputError(
            f"run {run.name!r} is conditioned on {', '.join(run.conditions)}; pass cond with "
            "those columns"
        )
    if isinstance(cond, Mapping):
        cond = pd.DataFrame({k: [v] * n for k, v in cond.items()})
    if len(cond) != n:
        raise InputError(f"cond has {len(cond)} rows but there are {n} latent points")
    return pre.condition_matrix(cond, n_obs=n)


def _tensor_data(run, tens, cond: np.ndarray):
    import torch

    from core.train import TensorData

    return TensorData(tens, cond, device=torch.device("cpu"), loss_constants=False)


def _posterior(run, data, *, refit: int, modalities: Sequence[str] | None = None):
    """Posterior mean / var (n, n_latent) from TensorData, using only ``modalities``."""
    import torch

    model = run.model(refit)
    mods = list(modalities or model.modalities)
    means, vars_ = [], []
    with torch.no_grad():
        for part in torch.arange(data.n_obs).split(CHUNK):
            b = data.batch(part)
            x = {m: b["x"][m] for m in mods}
            pres = {m: b["present"][m] for m in mods}
            mu, var = model.encode(x, b["cond"], pres)
            means.append(mu.numpy())
            vars_.append(var.numpy())
    if not means:
        k = run.n_latent
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.float32)
    return np.concatenate(means), np.concatenate(vars_)


def encode(
    run,
    mdata,
    *,
    refit: int = 0,
    modalities: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and variance, each (n_obs, n_latent), rows = mdata.obs_names.

    Uses the modalities each sample has (product of experts); ``modalities`` restricts the
    encoders used. The dataset must have the run's features (RunError otherwise).
    """
    _check_refit(run, refit)
    pre = run.preprocessor
    pre.check_features(mdata, run_name=run.name)
    data = _tensor_data(
        run,
        pre.tensors(mdata),
        _cond_matrix(run, mdata.obs, mdata.n_obs)
        if run.conditions
        else np.zeros((mdata.n_obs, 0), np.float32),
    )
    _check_modalities(run, modalities)
    return _posterior(run, data, refit=refit, modalities=modalities)


def encode_arrays(
    run,
    arrays: Mapping[str, np.ndarray],
    *,
    obs: pd.DataFrame | None = None,
    refit: int = 0,
    modalities: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`encode` for raw matrices in DATA units: {mod: (n, n_vars_input)} with the
    run's input features in order (``run.preprocessor.transforms[mod].var_names``); an all-NaN
    row means the sample lacks that modality. ``obs`` (n rows) holds condition columns.
    Returns mean, var (n, n_latent). Useful for perturbation (edit a copy, re-encode).
    """
    _check_refit(run, refit)
    unknown = [m for m in arrays if m not in run.modalities]
    if unknown:
        raise InputError(
            f"run {run.name!r} has no modality {unknown[0]!r}; it has {', '.join(run.modalities)}"
        )
    tens = run.preprocessor.tensors_from_arrays(arrays)
    n = len(next(iter(tens.values())).x)
    data = _tensor_data(run, tens, _cond_matrix(run, obs, n))
    _check_modalities(run, modalities)
    return _posterior(run, data, refit=refit, modalities=modalities)


def _check_modalities(run, modalities) -> None:
    for m in modalities or []:
        if m not in run.modalities:
            raise InputError(
                f"run {run.name!r} has no modality {m!r}; it has {', '.join(run.modalities)}"
            )


def _decode_tensors(
    run,
    z: np.ndarray,
    cond: np.ndarray,
    library: Mapping[str, np.ndarray],
    *,
    refit: int,
    space: Space,
    modalities: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    import torch

    if space not in ("data", "input"):
        raise InputError(f"space must be 'data' or 'input', got {space!r}")
    model = run.model(refit)
    pre = run.preprocessor
    mods = list(modalities or model.decoded)
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != model.n_latent:
        raise InputError(
            f"z must have shape (n, {model.n_latent}) for run {run.name!r}, got {z.shape}"
        )
    parts: dict[str, list] = {m: [] for m in mods}
    with torch.no_grad():
        for sl in np.array_split(np.arange(len(z)), max(1, int(np.ceil(len(z) / CHUNK)))):
            if not len(sl):
                continue
            zt = torch.as_tensor(z[sl])
            ct = torch.as_tensor(cond[sl]) if cond.shape[1] else None
            lib = {
                m: torch.as_tensor(np.asarray(v, np.float32)[sl].reshape(-1, 1))
                for m, v in library.items()
            }
            params = model.decode(zt, ct, lib, modalities=mods)
            vals = model.input_means(params) if space == "input" else model.means(params)
            for m in mods:
                parts[m].append(vals[m].numpy())
    out = {}
    for m in mods:
        width = pre.transforms[m].n_in if space == "input" else None
        arr = (
            np.concatenate(parts[m])
            if parts[m]
            else np.zeros((0, width or pre.transforms[m].n_in), np.float32)
        )
        out[m] = arr if space == "input" else pre.transforms[m].inverse_transform(arr)
    return out


def _library(run, library, n: int) -> dict[str, np.ndarray]:
    pre = run.preprocessor
    out = {}
    for m, t in pre.transforms.items():
        if t.kind != "counts":
            continue
        v = (library or {}).get(m) if isinstance(library, Mapping) else library
        if v is None:
            v = t.median_library
        out[m] = np.broadcast_to(np.asarray(v, np.float32).reshape(-1), (n,)).copy()
    return out


def decode(
    run,
    z: np.ndarray,
    *,
    cond: pd.DataFrame | Mapping | None = None,
    refit: int = 0,
    library: Mapping[str, np.ndarray | float] | float | None = None,
    space: Space = "data",
    modalities: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Likelihood means for latent points z (n, n_latent) -> {mod: (n, n_features)}.

    cond: DataFrame with the run's condition columns (n rows) or {column: value} for all rows
    (required for conditional runs). library: counts library size per modality (scalar or
    (n,)), default the training median. Units: see the module docstring (categorical ->
    expected level code in "data" space).
    """
    _check_refit(run, refit)
    _check_modalities(run, modalities)
    z = np.asarray(z, dtype=np.float32)
    n = len(z)
    return _decode_tensors(
        run,
        z,
        _cond_matrix(run, cond, n),
        _library(run, library, n),
        refit=refit,
        space=space,
        modalities=modalities,
    )


def reconstruct(
    run,
    mdata,
    *,
    refit: int = 0,
    space: Space = "data",
) -> dict[str, np.ndarray]:
    """Decode each sample's posterior mean with its own conditions and library.

    Returns {mod: (n_obs, n_features)} rows aligned to mdata.obs_names; rows of samples that
    lack the modality are NaN.
    """
    _check_refit(run, refit)
    pre = run.preprocessor
    pre.check_features(mdata, run_name=run.name)
    tens = pre.tensors(mdata)
    cond = (
        _cond_matrix(run, mdata.obs, mdata.n_obs)
        if run.conditions
        else np.zeros((mdata.n_obs, 0), np.float32)
    )
    data = _tensor_data(run, tens, cond)
    mean, _ = _posterior(run, data, refit=refit)
    library = {m: v.library.reshape(-1) for m, v in tens.items() if v.library is not None}
    out = _decode_tensors(run, mean, cond, library, refit=refit, space=space)
    for m, arr in out.items():
        arr = arr.astype(np.float32, copy=True)
        arr[~tens[m].present] = np.nan
        out[m] = arr
    return out


def translate(
    run, mdata, *, source: str | Sequence[str], target: str, refit: int = 0, space: Space = "data"
) -> np.ndarray:
    """Predict modality ``target`` from modality ``source`` alone: (n_obs, n_target_features).

    The posterior uses only the source encoder(s); counts targets use the training median
    library. Rows of samples lacking every source modality are NaN.
    """
    sources = [source] if isinstance(source, str) else list(source)
    _check_modalities(run, [*sources, target])
    if target in sources:
        raise InputError("translate: target must differ from the source modality")
    _check_refit(run, refit)
    pre = run.preprocessor
    pre.check_features(mdata, run_name=run.name)
    tens = pre.tensors(mdata)
    cond = (
        _cond_matrix(run, mdata.obs, mdata.n_obs)
        if run.conditions
        else np.zeros((mdata.n_obs, 0), np.float32)
    )
    data = _tensor_data(run, tens, cond)
    mean, _ = _posterior(run, data, refit=refit, modalities=sources)
    out = _decode_tensors(
        run,
        mean,
        cond,
        _library(run, None, mdata.n_obs),
        refit=refit,
        space=space,
        modalities=[target],
    )[target].astype(np.float32)
    has_source = np.any([tens[m].present for m in sources], axis=0)
    out[~has_source] = np.nan
    return out


def latent_frame(run, mdata, *, refit: int = 0) -> pd.DataFrame:
    """Posterior means as a DataFrame: index = sample ids, columns z0..z{n_latent-1}."""
    mean, _ = encode(run, mdata, refit=refit)
    return pd.DataFrame(
        mean,
        index=pd.Index(np.asarray(mdata.obs_names, dtype=str), name="sample"),
        columns=[f"z{i}" for i in range(mean.shape[1])],
    )


def encode_command(args) -> tuple[str, dict]:
    """CLI: ``python -m core encode RUN_DIR [--data SRC ... --obs PATH] --out latent.csv``."""
    from core.cli import parse_assignments
    from core.runs import load_run, write_text_atomic

    run = load_run(args.run_dir)
    if args.data:
        from core.data import load

        kinds = parse_assignments(getattr(args, "kind", None), flag="--kind")
        mdata = load(list(args.data), obs=args.obs, kinds=kinds or None)
    else:
        mdata = run.load_data()
    df = latent_frame(run, mdata)
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        raise InputError(f"output folder {out.parent} does not exist; create it first")
    write_text_atomic(out, df.to_csv())
    text = f"wrote {len(df)} samples x {df.shape[1]} latent dimensions of run {run.name} to {out}"
    return text, {
        "run": str(run.path),
        "out": str(out),
        "n_obs": len(df),
        "n_latent": int(df.shape[1]),
    }


def store_latent(run, mdata, *, refit: int = 0, key_added: str = "X_vae") -> None:
    """Write posterior means into ``mdata.obsm[key_added]`` (n_obs, n_latent) and the settings
    into ``mdata.uns[key_added]`` ({"run", "refit", "n_latent"}). Modifies mdata in place."""
    mean, _ = encode(run, mdata, refit=refit)
    mdata.obsm[key_added] = mean
    mdata.uns[key_added] = {
        "run": str(run.name),
        "refit": int(refit),
        "n_latent": int(run.n_latent),
    }


# -- a run's own dataset as a map needs it, cached on disk -----------------------------------------
@dataclass(frozen=True)
class RunView:
    """What drawing a run's latent space needs, without the data or the model.

    obs: (n_obs, n_columns) sample metadata, index = sample ids; var_names: every feature of
    every modality of the dataset (not only the run's model features); latent: (n_obs,
    n_latent) float32 posterior means of refit ``refit``, rows in obs order.
    """

    obs: pd.DataFrame
    var_names: dict[str, list[str]]
    latent: np.ndarray
    refit: int = 0


def _view_key(run, refit: int) -> str | None:
    """None when the data cannot be fingerprinted; RunError when the weights fail their check
    (a damaged run shows its error, not a map cached from before)."""
    from core.runs import data_fingerprint

    run.checked_weights(refit)
    weights, data = run.weights_sha256(refit), data_fingerprint(run.config.data)
    if data is None:
        return None
    blob = json.dumps({"v": VIEW_VERSION, "weights": weights, "data": data, "refit": refit})
    return f"refit{int(refit)}-{hashlib.sha1(blob.encode()).hexdigest()[:16]}"


def _read_view(folder: Path, key: str, refit: int) -> RunView | None:
    try:
        with np.load(folder / f"{key}.npz", allow_pickle=False) as z:
            latent, names = z["latent"], z["obs_names"]
        obs = pd.read_parquet(folder / f"{key}.obs.parquet")
        var_names = json.loads((folder / f"{key}.vars.json").read_text())
    except (OSError, ValueError, KeyError, ImportError):
        return None
    if latent.ndim != 2 or len(latent) != len(obs) or list(obs.index.astype(str)) != list(names):
        return None
    return RunView(obs, var_names, latent, refit)


def _write_view(folder: Path, key: str, view: RunView) -> None:
    from core.runs import write_atomic, write_bytes_atomic, write_json_atomic

    try:  # parquet refuses some object columns (mixed types): then the view is not cached
        buf = io.BytesIO()
        view.obs.to_parquet(buf)
    except (ValueError, TypeError, ImportError):
        return
    names = np.asarray(view.obs.index.astype(str), dtype=str)
    try:  # a run folder that cannot be written (read-only copy) just goes uncached
        write_atomic(
            folder / f"{key}.npz", lambda fh: np.savez(fh, latent=view.latent, obs_names=names)
        )
        write_bytes_atomic(folder / f"{key}.obs.parquet", buf.getvalue())
        write_json_atomic(folder / f"{key}.vars.json", view.var_names)  # last: the marker
        prefix = key.split("-", 1)[0] + "-"
        for old in folder.glob(f"{prefix}*"):  # views of earlier weights or data of this refit
            if not old.name.startswith(key):
                old.unlink(missing_ok=True)
    except OSError:
        return


def run_view(run, *, refit: int = 0, load_data: Callable[[], object] | None = None) -> RunView:
    """The run's own dataset as a map needs it (:class:`RunView`), from ``<run>/latent/``
    when the weights and the data files are unchanged since it was saved; otherwise the data
    is loaded (``load_data()``, default ``run.load_data()``), encoded and the view saved.

    A restart of the dashboard then draws a cached map without loading data or torch.
    """
    _check_refit(run, refit)
    key = _view_key(run, refit)
    folder = Path(run.path) / VIEW_DIR
    if key is not None and (folder / f"{key}.vars.json").is_file():
        view = _read_view(folder, key, refit)
        if view is not None:
            return view
    mdata = load_data() if load_data is not None else run.load_data()
    mean, _ = encode(run, mdata, refit=refit)
    view = RunView(
        obs=mdata.obs.copy(),
        var_names={m: [str(v) for v in mdata.mod[m].var_names] for m in mdata.mod},
        latent=np.ascontiguousarray(mean, dtype=np.float32),
        refit=int(refit),
    )
    if key is not None:
        _write_view(folder, key, view)
    return view
