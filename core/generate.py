"""Generate synthetic samples from a trained run.

Two ways to pick latent points z (n, n_latent):

* ``mode="prior"``: z ~ N(0, T^2 I). Only a conditional model can be steered: the requested
  condition values go into the decoder; condition columns that were not requested, and the
  library sizes of counts modalities, are copied from real training samples that match the
  request (so the synthetic set follows the real joint distribution of the rest).
* ``mode="posterior"``: the aggregate posterior of real training samples that match the request:
  pick a matching real sample i at random and draw z ~ N(mu_i, T^2 var_i). It works for
  unconditional models too (the label comes from the sample the point was drawn around) and is
  usually more realistic than the prior. Continuous request values (age=60) select the real
  samples with the closest values.

Decoding (``output``): ``"mean"`` is the likelihood mean in data units; ``"sample"`` draws from
the likelihood: counts from the negative binomial (Gamma-Poisson, integers), proportions from the
Gaussian on the standardised logit scale (so they stay in (0, 1)), continuous values from their
Gaussian, categorical codes from the softmax. With ``"mean"`` a categorical feature takes its
most probable level so codes stay valid levels.

``noise="calibrated"`` replaces the decoder's per-feature dispersion (counts) and variance
(proportion, continuous) by method-of-moments estimates from the training samples' residuals
around their decoded posterior means (:meth:`Generator.calibrated_noise`). Use it when those
parameters are under-trained (they start at theta = 1 / variance = 1 and move slowly), which
shows as too many zeros and too much spread in the draws.

Also: :meth:`Generator.interpolate` (a path between two samples or two group centroids),
:meth:`Generator.sweep` (vary one condition, e.g. age, with everything else fixed) and
:meth:`Generator.cross_modal` (encode one modality of real samples, decode the others).

Results are MuData objects: one AnnData per modality (``.X`` float32, ``.uns["kind"]``), the
conditions in ``.obs`` and the provenance in ``.uns["generation"]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import pandas as pd

from core.errors import InputError

if TYPE_CHECKING:
    import mudata

Mode = Literal["prior", "posterior"]
Output = Literal["mean", "sample"]
Noise = Literal["model", "calibrated"]
MODES: tuple[str, ...] = get_args(Mode)
OUTPUTS: tuple[str, ...] = get_args(Output)
NOISES: tuple[str, ...] = get_args(Noise)

PROVENANCE_KEY = "generation"
SOURCE_COLUMN = "source_sample"
SET_COLUMN = "condition_set"
# Posterior mode with a continuous request value: use this many closest real samples (at least).
NEAREST_MIN, NEAREST_FRAC = 20, 0.1
EXTENSIONS = (".h5ad", ".h5mu")


# --------------------------------------------------------------------------- run access


def _preprocessor(run):
    """The run's fitted :class:`core.preprocess.Preprocessor` (attribute or preprocess.json)."""
    pre = getattr(run, "preprocessor", None)
    if callable(pre):
        pre = pre()
    if pre is not None:
        return pre
    from core.preprocess import Preprocessor

    path = Path(run.path) / "preprocess.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        from core.errors import RunError

        raise RunError(
            f"{path}: cannot read the preprocessing state ({exc}); retrain the run"
        ) from None
    return Preprocessor.from_state(state)


def _config_value(config: Any, *names: str, default: Any = None) -> Any:
    """Look a field up in a (nested) config dataclass or dict by any of ``names``."""
    stack = [config]
    while stack:
        obj = stack.pop(0)
        items = obj if isinstance(obj, Mapping) else getattr(obj, "__dict__", {})
        for name in names:
            if name in items and items[name] is not None:
                return items[name]
        stack.extend(
            v
            for v in items.values()
            if isinstance(v, Mapping) or hasattr(v, "__dataclass_fields__")
        )
    return default


def run_split(run, mdata: mudata.MuData) -> np.ndarray:
    """(n_obs,) array of "train" / "val" / "test" for ``mdata.obs_names`` of the run's data.

    Uses the run's own split when it exposes one (``run.split(mdata)``, ``run.split`` or a
    split.csv in the run directory); otherwise recomputes it with
    :func:`core.data.split_samples` and the seed / stratify / fractions stored in its config.
    """
    ids = pd.Index(mdata.obs_names.astype(str))
    try:
        split = getattr(run, "split", None)
        if callable(split):
            split = split(mdata)
    except (OSError, KeyError, ValueError):
        split = None
    if split is not None:
        if isinstance(split, pd.Series):
            split.index = split.index.astype(str)
            return split.reindex(ids).fillna("train").astype(str).to_numpy()
        arr = np.asarray(split).astype(str)
        if arr.shape == (len(ids),):
            return arr
    path = Path(run.path) / "split.csv"
    if path.is_file():
        table = pd.read_csv(path, index_col=0)
        table.index = table.index.astype(str)
        return table.iloc[:, 0].reindex(ids).fillna("train").astype(str).to_numpy()
    from core.data import split_samples

    cfg = run.config
    stratify = _config_value(cfg, "stratify")
    if stratify == "label":  # DataConfig: stratify by the configured label column
        stratify = _config_value(cfg, "label")
    kwargs = {
        "stratify": stratify if stratify in mdata.obs.columns else None,
        "val_frac": float(_config_value(cfg, "val_frac", default=0.1)),
        "test_frac": float(_config_value(cfg, "test_frac", default=0.1)),
        "seed": int(_config_value(cfg, "split_seed", "seed", default=0)),
    }
    return np.asarray(split_samples(mdata, **kwargs)).astype(str)


# --------------------------------------------------------------------------- likelihoods


NB_CHUNKS = 4  # fixed, so draws do not depend on the number of CPU cores


def _nb_sample(mu: np.ndarray, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Negative binomial draws (mean mu (n, g), inverse dispersion theta (g,)) via Gamma-Poisson.

    Rows are split into NB_CHUNKS blocks with their own child generators (spawned from
    ``rng``), drawn in threads (numpy releases the GIL): deterministic for a seed, and about
    twice as fast on two cores. Returns float32 integers (n, g).
    """
    from concurrent.futures import ThreadPoolExecutor

    mu = np.asarray(mu, dtype=np.float64)
    theta = np.broadcast_to(np.asarray(theta, dtype=np.float64), mu.shape[1:])
    children = rng.spawn(NB_CHUNKS)
    blocks = np.array_split(np.arange(len(mu)), NB_CHUNKS)
    out = np.empty(mu.shape, dtype=np.float32)

    def draw(i: int) -> None:
        rows = blocks[i]
        if not len(rows):
            return
        g = children[i]
        m = mu[rows]
        rate = g.standard_gamma(np.broadcast_to(theta, m.shape)) * (m / theta)
        out[rows] = g.poisson(rate)

    workers = max(1, min(NB_CHUNKS, os.cpu_count() or 1))
    if workers == 1:
        for i in range(NB_CHUNKS):
            draw(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(draw, range(NB_CHUNKS)))
    return out


def _to_data(
    transform,
    kind: str,
    params: Mapping[str, np.ndarray],
    head_mean: np.ndarray | None,
    *,
    output: Output,
    rng: np.random.Generator,
) -> np.ndarray:
    """Decoder parameters of one modality -> (n, n_features) float32 in data units."""
    if kind == "counts":
        if output == "mean":
            return np.exp(params["log_mu"]).astype(np.float32)
        mu = np.exp(params["log_mu"].astype(np.float64))
        return _nb_sample(mu, np.exp(params["log_theta"].astype(np.float64)), rng)
    if kind in ("proportion", "continuous"):
        mean = np.asarray(params["mean"], dtype=np.float64)
        if output == "sample":
            sd = np.exp(0.5 * np.asarray(params["logvar"], dtype=np.float64))
            mean = mean + sd * rng.standard_normal(mean.shape)
        out = transform.inverse_transform(mean)
        if kind == "proportion":
            out = np.clip(out, 0.0, 1.0)
        return np.asarray(out, dtype=np.float32)
    if kind == "categorical":
        cols = []
        for probs in transform.split_probabilities(head_mean).values():
            probs = np.asarray(probs, dtype=np.float64)
            if output == "mean":
                cols.append(probs.argmax(axis=1))
            else:
                cum = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
                u = rng.random((len(probs), 1))
                cols.append(np.minimum((u > cum).sum(axis=1), probs.shape[1] - 1))
        return (
            np.stack(cols, axis=1).astype(np.float32)
            if cols
            else np.zeros((len(head_mean), 0), np.float32)
        )
    raise InputError(f"unknown modality kind {kind!r}")


# --------------------------------------------------------------------------- generator


def _normalise_conditions(conditions) -> list[dict[str, Any]]:
    if conditions is None:
        return [{}]
    if isinstance(conditions, Mapping):
        return [dict(conditions)]
    sets = [dict(c) for c in conditions]
    return sets or [{}]


class Generator:
    """A run, its real data, their split and posteriors, ready to generate quickly.

    Building one encodes the run's data once (``mean``/``var`` (n_obs, n_latent)); every call
    after that only decodes. Nothing here mutates the run or its data, so one Generator can be
    shared (e.g. cached by the dashboard).
    """

    def __init__(self, run, *, mdata: mudata.MuData | None = None, refit: int = 0) -> None:
        self.run = run
        self.refit = int(refit)
        self.mdata = mdata if mdata is not None else run.load_data()
        self.pre = _preprocessor(run)
        self.model = run.model(refit=self.refit)
        self.ids = np.asarray(self.mdata.obs_names.astype(str))
        self.obs = self.mdata.obs.copy()
        self.obs.index = self.obs.index.astype(str)
        self.split = run_split(run, self.mdata)
        self.conditions = list(self.pre.conditions.columns)
        check = getattr(self.pre, "check_features", None)
        if check is not None:
            check(self.mdata, run_name=str(run.name))
        tensors = self.pre.tensors(self.mdata)
        self._tensors = tensors
        self._calibrated: dict[str, dict[str, np.ndarray]] | None = None
        self.mean, self.var = self._posterior(tensors)
        # Library size per counts modality (n_obs,); absent samples get the training median.
        self.library: dict[str, np.ndarray] = {}
        for mod, t in self.pre.transforms.items():
            if t.kind == "counts":
                lib = tensors[mod].library[:, 0].astype(np.float64)
                lib[~tensors[mod].present] = np.nan
                self.library[mod] = lib
        self.train = self.split == "train"
        if not self.train.any():
            self.train = np.ones(len(self.ids), dtype=bool)

    def _posterior(self, tensors, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance (n_obs, n_latent) of every real sample, in batches."""
        import torch

        cond = self.pre.condition_matrix(
            self.obs[self.conditions] if self.conditions else None, n_obs=len(self.ids)
        )
        means, variances = [], []
        with torch.no_grad():
            for lo in range(0, len(self.ids), batch):
                sl = slice(lo, lo + batch)
                x = {m: torch.as_tensor(t.x[sl]) for m, t in tensors.items()}
                present = (
                    {
                        m: torch.as_tensor(t.present[sl].astype(np.float32))
                        for m, t in tensors.items()
                    }
                    if len(tensors) > 1
                    else None
                )
                c = torch.as_tensor(cond[sl]) if cond.shape[1] else None
                mu, var = self.model.encode(x, c, present)
                means.append(mu.numpy())
                variances.append(var.numpy())
        return (
            np.concatenate(means).astype(np.float64),
            np.concatenate(variances).astype(np.float64),
        )

    # -- conditions -----------------------------------------------------------------------
    def levels(self, column: str) -> list[str] | None:
        """Levels of a categorical obs column (None for a numeric column)."""
        s = self.obs[column]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            return None
        if isinstance(s.dtype, pd.CategoricalDtype):
            return [str(c) for c in s.cat.categories]
        return sorted(s.astype(str).unique().tolist())

    def _check(self, cset: Mapping[str, Any], mode: Mode) -> dict[str, Any]:
        """Validate one condition set -> {column: str level or float}."""
        out: dict[str, Any] = {}
        for col, value in cset.items():
            if col not in self.obs.columns:
                raise InputError(
                    f"unknown condition column '{col}'; the run's data have "
                    f"{', '.join(map(str, self.obs.columns)) or 'no metadata'}"
                )
            if mode == "prior" and col not in self.conditions:
                raise InputError(
                    f"run '{self.run.name}' is not conditioned on '{col}' "
                    f"(conditions: {', '.join(self.conditions) or 'none'}); prior samples cannot "
                    "be steered by it: use --mode posterior"
                )
            levels = self.levels(col)
            if levels is None:
                try:
                    out[col] = float(value)
                except (TypeError, ValueError):
                    raise InputError(
                        f"condition '{col}' is numeric; got {value!r}, give a number"
                    ) from None
            else:
                if str(value) not in levels:
                    shown = ", ".join(levels[:20]) + (" ..." if len(levels) > 20 else "")
                    raise InputError(
                        f"condition '{col}' has no level {str(value)!r}; use one of {shown}"
                    )
                out[col] = str(value)
        return out

    def _matching(self, cset: Mapping[str, Any], *, continuous: bool = True) -> np.ndarray:
        """Indices of training samples matching a (checked) condition set."""
        keep = self.train.copy()
        for col, value in cset.items():
            if isinstance(value, str):
                keep &= self.obs[col].astype(str).to_numpy() == value
        idx = np.nonzero(keep)[0]
        if not len(idx):
            text = ", ".join(f"{k}={v}" for k, v in cset.items())
            raise InputError(f"no training samples match {text}; choose levels that occur together")
        if continuous:
            for col, value in cset.items():
                if isinstance(value, float):
                    vals = pd.to_numeric(self.obs[col], errors="coerce").to_numpy()[idx]
                    k = int(min(len(idx), max(NEAREST_MIN, np.ceil(NEAREST_FRAC * len(idx)))))
                    dist = np.abs(vals - value)
                    dist[~np.isfinite(dist)] = np.inf
                    idx = idx[np.argsort(dist, kind="stable")[:k]]
        return idx

    def _cond_obs(self, src: np.ndarray, cset: Mapping[str, Any]) -> pd.DataFrame:
        """Condition columns for decoding: the sources' values, overridden by the request."""
        obs = (
            self.obs.iloc[src][self.conditions].copy()
            if self.conditions
            else pd.DataFrame(index=self.ids[src])
        )
        obs = obs.reset_index(drop=True)
        for col in self.conditions:
            if col in cset:
                obs[col] = cset[col]
        return obs

    # -- decoding -------------------------------------------------------------------------
    def decode(
        self,
        z: np.ndarray,
        cond_obs: pd.DataFrame | None,
        library: Mapping[str, np.ndarray],
        *,
        output: Output,
        rng: np.random.Generator,
        modalities: Sequence[str] | None = None,
        noise: Noise = "model",
    ) -> dict[str, np.ndarray]:
        """z (n, n_latent) -> {mod: (n, n_features)} float32 in data units.

        noise: "model" draws with the decoder's own dispersion / variance; "calibrated" with
        the per-feature values re-estimated on the training data (:meth:`calibrated_noise`).
        """
        import torch

        if noise not in NOISES:
            raise InputError(f"noise must be one of {', '.join(NOISES)}, got {noise!r}")
        override = self.calibrated_noise() if noise == "calibrated" and output == "sample" else {}

        n = len(z)
        cond = self.pre.condition_matrix(cond_obs if self.conditions else None, n_obs=n)
        mods = list(modalities or self.pre.modalities)
        with torch.no_grad():
            zt = torch.as_tensor(np.asarray(z, dtype=np.float32))
            ct = torch.as_tensor(cond) if cond.shape[1] else None
            libs = {
                m: torch.as_tensor(np.asarray(library[m], dtype=np.float32).reshape(n, 1))
                for m in mods
                if m in library
            }
            params = self.model.decode(zt, ct, libs, modalities=mods)
            cats = {m: params[m] for m in mods if self.pre.transforms[m].kind == "categorical"}
            head_means = {m: v.numpy() for m, v in self.model.means(cats).items()}
        out = {}
        for m in mods:
            p = {k: v.detach().cpu().numpy() for k, v in params[m].items()}
            p.update(override.get(m, {}))
            out[m] = _to_data(
                self.pre.transforms[m],
                self.pre.transforms[m].kind,
                p,
                head_means.get(m),
                output=output,
                rng=rng,
            )
        return out

    def calibrated_noise(self) -> dict[str, dict[str, np.ndarray]]:
        """Per-feature noise re-estimated on the training samples (method of moments).

        The decoder's dispersion (counts) and variance (Gaussian kinds) are single learned
        parameters per feature that can stay far from their fitted values when training is
        short. Here they are re-estimated from the residuals of the training samples around
        their decoded posterior means: counts theta_g = sum mu^2 / sum((x - mu)^2 - mu)
        (clipped to [1e-2, 1e4]); Gaussian logvar_g = log mean (y - mean)^2 on the model's
        standardised scale. Returns {mod: {"log_theta" | "logvar": (n_features,)}}; computed
        once per Generator.
        """
        if self._calibrated is not None:
            return self._calibrated
        import torch

        rows = np.nonzero(self.train)[0]
        cond = self.pre.condition_matrix(
            self.obs.iloc[rows][self.conditions] if self.conditions else None, n_obs=len(rows)
        )
        with torch.no_grad():
            z = torch.as_tensor(self.mean[rows].astype(np.float32))
            libs = {
                m: torch.as_tensor(
                    np.nan_to_num(v[rows], nan=1.0).astype(np.float32).reshape(-1, 1)
                )
                for m, v in self.library.items()
            }
            params = self.model.decode(z, torch.as_tensor(cond) if cond.shape[1] else None, libs)
        out: dict[str, dict[str, np.ndarray]] = {}
        for m, t in self.pre.transforms.items():
            tens = self._tensors[m]
            pres = tens.present[rows]
            y = tens.target[rows][pres].astype(np.float64)
            w = np.ones_like(y) if tens.mask is None else tens.mask[rows][pres].astype(np.float64)
            if t.kind == "counts":
                mu = np.exp(params[m]["log_mu"].numpy()[pres].astype(np.float64))
                excess = (w * ((y - mu) ** 2 - mu)).sum(0)
                theta = (w * mu**2).sum(0) / np.maximum(excess, 1e-8)
                out[m] = {"log_theta": np.log(np.clip(theta, 1e-2, 1e4))}
            elif t.kind in ("proportion", "continuous"):
                mean = params[m]["mean"].numpy()[pres].astype(np.float64)
                var = (w * (y - mean) ** 2).sum(0) / np.maximum(w.sum(0), 1.0)
                out[m] = {"logvar": np.log(np.clip(var, 1e-6, None))}
        self._calibrated = out
        return out

    def _library_for(self, src: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Library sizes for the sources; absent ones drawn from the training libraries."""
        out = {}
        for mod, lib in self.library.items():
            vals = lib[src].copy()
            pool = lib[self.train & np.isfinite(lib)]
            if not len(pool):
                pool = np.array([float(self.pre.transforms[mod].median_library)])
            miss = ~np.isfinite(vals)
            if miss.any():
                vals[miss] = rng.choice(pool, size=int(miss.sum()))
            out[mod] = vals
        return out

    # -- public ---------------------------------------------------------------------------
    def generate(
        self,
        *,
        conditions: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        n: int = 100,
        mode: Mode = "posterior",
        temperature: float = 1.0,
        output: Output = "sample",
        noise: Noise = "model",
        seed: int = 0,
    ) -> mudata.MuData:
        """``n`` samples per condition set. Returns MuData (n * n_sets samples)."""
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if output not in OUTPUTS:
            raise InputError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        n = int(n)
        if n < 1:
            raise InputError(f"--n must be a positive number of samples, got {n}")
        if not np.isfinite(temperature) or temperature < 0:
            raise InputError(f"temperature must be >= 0, got {temperature}")
        sets = [self._check(c, mode) for c in _normalise_conditions(conditions)]
        rng = np.random.default_rng(seed)
        zs, conds, obs_parts, libs = [], [], [], []
        for i, cset in enumerate(sets):
            pool = self._matching(cset, continuous=mode == "posterior")
            src = rng.choice(pool, size=n, replace=True)
            eps = rng.standard_normal((n, self.mean.shape[1]))
            if mode == "posterior":
                z = self.mean[src] + temperature * np.sqrt(self.var[src]) * eps
            else:
                z = temperature * eps
            zs.append(z)
            cond = self._cond_obs(src, cset)
            conds.append(cond)
            libs.append(self._library_for(src, rng))
            obs_parts.append(self._output_obs(src, cset, cond, mode=mode, set_index=i))
        z = np.vstack(zs)
        cond_obs = pd.concat(conds, ignore_index=True)
        library = {m: np.concatenate([lib[m] for lib in libs]) for m in self.library}
        data = self.decode(z, cond_obs, library, output=output, rng=rng, noise=noise)
        obs = pd.concat(obs_parts, ignore_index=True)
        obs.index = [f"syn-{i:06d}" for i in range(len(obs))]
        provenance = {
            "run": str(self.run.name),
            "run_path": str(self.run.path),
            "refit": self.refit,
            "mode": mode,
            "seed": int(seed),
            "temperature": float(temperature),
            "output": output,
            "noise": noise,
            "n_per_set": n,
            "conditions": json.dumps(sets),
        }
        return self._mudata(data, obs, provenance, latent=z)

    def _output_obs(self, src, cset, cond, *, mode: Mode, set_index: int) -> pd.DataFrame:
        if mode == "posterior":
            obs = self.obs.iloc[src].reset_index(drop=True)
            obs[SOURCE_COLUMN] = self.ids[src]
        else:
            obs = cond.copy()
        for col, value in cset.items():
            obs[col] = value
        for col in self.conditions:
            obs[col] = cond[col].to_numpy()
        obs[SET_COLUMN] = set_index
        return obs

    def _mudata(
        self,
        data: Mapping[str, np.ndarray],
        obs: pd.DataFrame,
        provenance: dict,
        *,
        latent: np.ndarray | None = None,
    ) -> mudata.MuData:
        import anndata as ad

        obs = _tidy_obs(obs, self.obs)
        mods = {}
        for m, x in data.items():
            t = self.pre.transforms[m]
            a = ad.AnnData(
                X=np.asarray(x, dtype=np.float32),
                obs=pd.DataFrame(index=obs.index.copy()),
                var=pd.DataFrame(index=pd.Index(t.features, dtype=str)),
            )
            a.uns["kind"] = t.kind
            if t.kind == "categorical":
                a.uns["categories"] = {
                    f: list(t.levels[i]) for f, i in zip(t.features, t.keep, strict=True)
                }
            mods[m] = a
        out = new_mudata(mods)
        out.obs = obs.copy()
        out.uns[PROVENANCE_KEY] = provenance
        if latent is not None:
            out.obsm["X_latent"] = np.asarray(latent, dtype=np.float32)
        return out

    def interpolate(
        self,
        *,
        start: str | Mapping[str, Any],
        end: str | Mapping[str, Any],
        steps: int = 10,
        output: Output = "mean",
        noise: Noise = "model",
        seed: int = 0,
    ) -> mudata.MuData:
        """Decode ``steps`` points on the straight line between two latent points.

        ``start`` / ``end``: a sample id (its posterior mean) or a condition set (the centroid
        of the posterior means of the matching training samples). Continuous decoder
        conditions and library sizes are interpolated (libraries log-linearly); categorical
        conditions switch from the start's to the end's value half-way. obs gets ``t`` in [0, 1].
        """
        steps = int(steps)
        if steps < 2:
            raise InputError(f"an interpolation needs at least 2 steps, got {steps}")
        a, b = self._endpoint(start), self._endpoint(end)
        t = np.linspace(0.0, 1.0, steps)
        z = (1 - t)[:, None] * a["z"] + t[:, None] * b["z"]
        cond = pd.DataFrame(index=range(steps))
        for col in self.conditions:
            va, vb = a["cond"][col], b["cond"][col]
            if isinstance(va, str) or isinstance(vb, str):
                cond[col] = np.where(t < 0.5, va, vb)
            else:
                cond[col] = (1 - t) * va + t * vb
        library = {
            m: np.exp((1 - t) * np.log(a["lib"][m]) + t * np.log(b["lib"][m])) for m in self.library
        }
        rng = np.random.default_rng(seed)
        data = self.decode(z, cond, library, output=output, rng=rng, noise=noise)
        obs = cond.copy()
        obs.insert(0, "t", t)
        obs.index = [f"path-{i:04d}" for i in range(steps)]
        provenance = {
            "run": str(self.run.name),
            "run_path": str(self.run.path),
            "refit": self.refit,
            "mode": "interpolate",
            "seed": int(seed),
            "temperature": 0.0,
            "output": output,
            "noise": noise,
            "conditions": json.dumps({"start": start, "end": end}, default=str),
        }
        return self._mudata(data, obs, provenance, latent=z)

    def _endpoint(self, spec: str | Mapping[str, Any]) -> dict:
        if isinstance(spec, str):
            hit = np.nonzero(self.ids == spec)[0]
            if not len(hit):
                raise InputError(
                    f"sample '{spec}' is not in the run's data; give a sample id from it"
                )
            idx = hit[:1]
        else:
            idx = self._matching(self._check(spec, "posterior"))
        cond = {}
        for col in self.conditions:
            if isinstance(spec, Mapping) and col in spec:
                v = self._check({col: spec[col]}, "posterior")[col]
            elif self.levels(col) is None:
                v = float(np.nanmean(pd.to_numeric(self.obs[col].iloc[idx], errors="coerce")))
            else:
                v = str(self.obs[col].iloc[idx].astype(str).mode().iloc[0])
            cond[col] = v
        lib = {}
        for m, values in self.library.items():
            v = values[idx]
            v = v[np.isfinite(v)]
            lib[m] = (
                float(np.exp(np.mean(np.log(v))))
                if len(v)
                else float(self.pre.transforms[m].median_library)
            )
        return {"z": self.mean[idx].mean(axis=0), "cond": cond, "lib": lib}

    def sweep(
        self,
        *,
        column: str,
        values: Sequence[Any],
        base: Mapping[str, Any] | None = None,
        n: int = 100,
        mode: Mode = "posterior",
        temperature: float = 1.0,
        output: Output = "mean",
        noise: Noise = "model",
        seed: int = 0,
    ) -> mudata.MuData:
        """Vary one condition (e.g. age) over ``values`` with everything else fixed.

        When ``column`` is a decoder condition, the same ``n`` latent points (and libraries)
        are decoded at every value, so differences come from the condition alone. Otherwise
        (posterior mode only) each value draws around the real samples closest to it.
        """
        values = list(values)
        if not values:
            raise InputError("a sweep needs at least one value")
        base = dict(base or {})
        sets = [{**base, column: v} for v in values]
        if column not in self.conditions:
            if mode == "prior":
                self._check(sets[0], "prior")  # raises the explanatory error
            return self.generate(
                conditions=sets, n=n, mode=mode, temperature=temperature, output=output, seed=seed
            )
        checked = [self._check(s, mode) for s in sets]
        rng = np.random.default_rng(seed)
        base_checked = {k: v for k, v in checked[0].items() if k != column}
        pool = (
            self._matching(base_checked, continuous=False)
            if mode == "posterior"
            else self._matching(
                {k: v for k, v in base_checked.items() if isinstance(v, str)}, continuous=False
            )
        )
        src = rng.choice(pool, size=int(n), replace=True)
        eps = rng.standard_normal((int(n), self.mean.shape[1]))
        z1 = (
            self.mean[src] + temperature * np.sqrt(self.var[src]) * eps
            if mode == "posterior"
            else temperature * eps
        )
        lib1 = self._library_for(src, rng)
        zs, conds, obs_parts = [], [], []
        for i, cset in enumerate(checked):
            cond = self._cond_obs(src, cset)
            zs.append(z1)
            conds.append(cond)
            obs_parts.append(self._output_obs(src, cset, cond, mode=mode, set_index=i))
        z = np.vstack(zs)
        library = {m: np.tile(v, len(checked)) for m, v in lib1.items()}
        data = self.decode(
            z, pd.concat(conds, ignore_index=True), library, output=output, rng=rng, noise=noise
        )
        obs = pd.concat(obs_parts, ignore_index=True)
        obs.index = [f"sweep-{i:06d}" for i in range(len(obs))]
        provenance = {
            "run": str(self.run.name),
            "run_path": str(self.run.path),
            "refit": self.refit,
            "mode": f"sweep-{mode}",
            "seed": int(seed),
            "temperature": float(temperature),
            "output": output,
            "noise": noise,
            "conditions": json.dumps(checked),
        }
        return self._mudata(data, obs, provenance, latent=z)

    def cross_modal(
        self,
        mdata: mudata.MuData,
        *,
        source: str,
        n_draws: int = 1,
        temperature: float = 0.0,
        output: Output = "mean",
        noise: Noise = "model",
        seed: int = 0,
    ) -> mudata.MuData:
        """Given modality ``source`` of real samples, generate every modality of the run.

        Encodes from ``source`` alone (the other modalities are hidden from the encoder) and
        decodes all modalities; ``n_draws`` latent draws per sample from N(mu, T^2 var).
        obs keeps the samples' metadata plus ``source_sample``. Returns MuData with
        n_samples * n_draws rows.
        """
        import torch

        if source not in self.pre.transforms:
            raise InputError(
                f"modality '{source}' is not one of the run's modalities "
                f"({', '.join(self.pre.modalities)})"
            )
        if source not in mdata.mod:
            raise InputError(f"the data have no modality '{source}' (have {', '.join(mdata.mod)})")
        ad_src = mdata.mod[source]
        t = self.pre.transforms[source]
        have = [str(v) for v in ad_src.var_names]
        if have != t.var_names:
            raise InputError(
                f"modality '{source}' has {len(have)} features but run '{self.run.name}' was "
                f"trained on {len(t.var_names)} (or another order); use the run's own features"
            )
        x_raw = np.asarray(
            ad_src.X.toarray() if hasattr(ad_src.X, "toarray") else ad_src.X, dtype=np.float64
        )
        enc = t.transform(x_raw)
        ids = np.asarray(ad_src.obs_names.astype(str))
        obs = mdata.obs.copy()
        obs.index = obs.index.astype(str)
        obs = obs.reindex(ids)
        cond = self.pre.condition_matrix(
            obs[self.conditions] if self.conditions else None, n_obs=len(ids)
        )
        with torch.no_grad():
            ct = torch.as_tensor(cond) if cond.shape[1] else None
            mu, var = self.model.encode({source: torch.as_tensor(enc.x)}, ct)
        mu, var = mu.numpy().astype(np.float64), var.numpy().astype(np.float64)
        rng = np.random.default_rng(seed)
        reps = int(n_draws)
        if reps < 1:
            raise InputError(f"n_draws must be >= 1, got {n_draws}")
        rep = np.repeat(np.arange(len(ids)), reps)
        z = mu[rep] + temperature * np.sqrt(var[rep]) * rng.standard_normal((len(rep), mu.shape[1]))
        library = {}
        for m, tr in self.pre.transforms.items():
            if tr.kind == "counts":
                lib = (
                    enc.library[:, 0]
                    if (m == source and enc.library is not None)
                    else np.full(len(ids), float(tr.median_library))
                )
                library[m] = np.asarray(lib, dtype=np.float64)[rep]
        cond_obs = (
            obs.iloc[rep][self.conditions].reset_index(drop=True) if self.conditions else None
        )
        data = self.decode(z, cond_obs, library, output=output, rng=rng, noise=noise)
        out_obs = obs.iloc[rep].reset_index(drop=True)
        out_obs[SOURCE_COLUMN] = ids[rep]
        out_obs.index = [
            f"{s}" if reps == 1 else f"{s}-{k}"
            for s, k in zip(ids[rep], np.tile(np.arange(reps), len(ids)), strict=True)
        ]
        provenance = {
            "run": str(self.run.name),
            "run_path": str(self.run.path),
            "refit": self.refit,
            "mode": f"cross-modal from {source}",
            "seed": int(seed),
            "temperature": float(temperature),
            "output": output,
            "noise": noise,
            "conditions": json.dumps({"source": source}),
        }
        return self._mudata(data, out_obs, provenance, latent=z)


def new_mudata(mods: Mapping[str, Any]) -> mudata.MuData:
    """MuData from AnnData objects without mudata's obs/var pulling (and its FutureWarning)."""
    import mudata as md

    with md.set_options(pull_on_update=False):
        return md.MuData(dict(mods))


def _tidy_obs(obs: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Column dtypes like the real metadata: categories stay categories, numbers floats."""
    obs = obs.copy()
    for col in obs.columns:
        if col in reference.columns and isinstance(reference[col].dtype, pd.CategoricalDtype):
            cats = [str(c) for c in reference[col].cat.categories]
            vals = obs[col].astype(str)
            extra = sorted(set(vals) - set(cats))
            obs[col] = pd.Categorical(vals, categories=cats + extra)
        elif obs[col].dtype == object:
            obs[col] = obs[col].astype(str).astype("category")
    return obs


def generate(
    run,
    *,
    conditions: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    n: int = 100,
    mode: Mode = "posterior",
    temperature: float = 1.0,
    output: Output = "sample",
    noise: Noise = "model",
    seed: int = 0,
    mdata: mudata.MuData | None = None,
    refit: int = 0,
) -> mudata.MuData:
    """Generate ``n`` samples per condition set from ``run`` (see the module docstring).

    conditions: {column: value} or a list of them (several sets at once; None = follow the
    real training data). Returns MuData with n * n_sets samples; ``.obs`` holds the conditions
    (and ``source_sample`` in posterior mode), ``.uns["generation"]`` the provenance
    {run, mode, seed, temperature, output, conditions}, ``.obsm["X_latent"]`` the latent points.
    """
    gen = Generator(run, mdata=mdata, refit=refit)
    return gen.generate(
        conditions=conditions,
        n=n,
        mode=mode,
        temperature=temperature,
        output=output,
        noise=noise,
        seed=seed,
    )


# --------------------------------------------------------------------------- files


def _atomic_tmp(path: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(name)


def write_generated(mdata: mudata.MuData, path: str | Path) -> list[Path]:
    """Write generated samples; the format follows the path (see the CLI help).

    ``.h5ad``: one modality (obs and provenance included); ``.h5mu``: any number;
    no extension: a directory with ``<modality>.csv`` (first column the sample id) per
    modality, ``obs.csv`` and ``provenance.json``. Writes are atomic. Returns written paths.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix and suffix not in EXTENSIONS:
        raise InputError(
            f"{path}: unknown output type '{suffix}'; use .h5ad (one modality), .h5mu, or a "
            "path without extension for a directory of CSVs"
        )
    if not path.parent.exists():
        raise InputError(f"{path}: folder {path.parent} does not exist; create it first")
    prov = dict(mdata.uns.get(PROVENANCE_KEY, {}))
    if suffix == ".h5ad":
        if len(mdata.mod) != 1:
            raise InputError(
                f"{path}: the run has {len(mdata.mod)} modalities ({', '.join(mdata.mod)}) and "
                ".h5ad holds one; use .h5mu or a path without extension"
            )
        ((mod, a),) = mdata.mod.items()
        a = a.copy()
        a.obs = mdata.obs.reindex(a.obs_names).copy()
        a.uns[PROVENANCE_KEY] = prov
        a.uns["modality"] = mod
        if "X_latent" in mdata.obsm:
            a.obsm["X_latent"] = np.asarray(mdata.obsm["X_latent"])
        tmp = _atomic_tmp(path, ".h5ad")
        try:
            a.write_h5ad(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return [path]
    if suffix == ".h5mu":
        tmp = _atomic_tmp(path, ".h5mu")
        try:
            mdata.write(str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return [path]
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is not a directory; choose another --out")
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        for mod, a in mdata.mod.items():
            frame = pd.DataFrame(np.asarray(a.X), index=a.obs_names, columns=a.var_names)
            frame.index.name = "sample_id"
            frame.to_csv(tmpdir / f"{mod}.csv")
        obs = mdata.obs.copy()
        obs.index.name = "sample_id"
        obs.to_csv(tmpdir / "obs.csv")
        kinds = {m: str(a.uns.get("kind", "")) for m, a in mdata.mod.items()}
        (tmpdir / "provenance.json").write_text(json.dumps({**prov, "kinds": kinds}, indent=1))
        path.mkdir(exist_ok=True)
        written = []
        for f in sorted(tmpdir.iterdir()):
            os.replace(f, path / f.name)
            written.append(path / f.name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return written


def read_generated(path: str | Path) -> mudata.MuData:
    """Read what :func:`write_generated` wrote (.h5ad, .h5mu or a CSV directory) as MuData."""
    import anndata as ad
    import mudata as md

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory; give the --out of 'generate'")
    suffix = path.suffix.lower()
    try:
        if suffix == ".h5mu":
            with md.set_options(pull_on_update=False):
                return md.read_h5mu(path)
        if suffix == ".h5ad":
            a = ad.read_h5ad(path)
            mod = str(a.uns.get("modality", "rna"))
            obs = a.obs.copy()
            m = new_mudata({mod: a})
            m.obs = obs
            if PROVENANCE_KEY in a.uns:
                m.uns[PROVENANCE_KEY] = dict(a.uns[PROVENANCE_KEY])
            return m
    except OSError as exc:
        raise InputError(f"{path}: not a readable {suffix} file ({exc})") from None
    if not path.is_dir():
        raise InputError(f"{path}: expected .h5ad, .h5mu or a directory of CSVs from 'generate'")
    prov_path = path / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.is_file() else {}
    kinds = prov.pop("kinds", {})
    mods = {}
    for f in sorted(path.glob("*.csv")):
        if f.stem in ("obs", "metadata"):
            continue
        frame = pd.read_csv(f, index_col=0)
        frame.index = frame.index.astype(str)
        a = ad.AnnData(
            X=frame.to_numpy(dtype=np.float32),
            obs=pd.DataFrame(index=frame.index),
            var=pd.DataFrame(index=frame.columns.astype(str)),
        )
        if f.stem in kinds:
            a.uns["kind"] = kinds[f.stem]
        mods[f.stem] = a
    if not mods:
        raise InputError(f"{path}: no <modality>.csv files found; give the --out of 'generate'")
    m = new_mudata(mods)
    obs_path = path / "obs.csv"
    if obs_path.is_file():
        obs = pd.read_csv(obs_path, index_col=0)
        obs.index = obs.index.astype(str)
        m.obs = obs.reindex(m.obs_names)
    if prov:
        m.uns[PROVENANCE_KEY] = prov
    return m


def one_modality(mdata: mudata.MuData, mod: str) -> mudata.MuData:
    """A one-modality MuData (shared obs and provenance kept), e.g. for an .h5ad export."""
    if mod not in mdata.mod:
        raise InputError(f"no modality '{mod}' in the generated data (have {', '.join(mdata.mod)})")
    out = new_mudata({mod: mdata.mod[mod].copy()})
    out.obs = mdata.obs.reindex(out.obs_names).copy()
    if PROVENANCE_KEY in mdata.uns:
        out.uns[PROVENANCE_KEY] = dict(mdata.uns[PROVENANCE_KEY])
    if "X_latent" in mdata.obsm:
        out.obsm["X_latent"] = np.asarray(mdata.obsm["X_latent"])
    return out


def to_bytes(
    mdata: mudata.MuData, *, fmt: Literal["h5ad", "h5mu", "csv"], mod: str | None = None
) -> bytes:
    """Serialise generated samples for a download: one modality as .h5ad or CSV (obs columns
    appended after the features), or everything as .h5mu."""
    if fmt == "csv":
        one = one_modality(mdata, mod or next(iter(mdata.mod)))
        ((name, a),) = one.mod.items()
        frame = pd.DataFrame(np.asarray(a.X), index=a.obs_names, columns=a.var_names)
        frame = frame.join(one.obs, rsuffix="_obs")
        frame.index.name = "sample_id"
        return frame.to_csv().encode()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"generated.{fmt}"
        write_generated(
            one_modality(mdata, mod or next(iter(mdata.mod))) if fmt == "h5ad" else mdata, path
        )
        return path.read_bytes()


def compare_values(
    real: np.ndarray, synthetic: np.ndarray, *, kind: str, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, str]:
    """One feature's real and synthetic values, ready for overlaid histograms.

    real: (n_real,) (NaN = absent, dropped); synthetic: (n_syn,). Both are subsampled to the
    same size (seeded) so their histograms compare directly; counts go to log1p. Returns
    ``(real, synthetic, axis label)``.
    """
    rng = np.random.default_rng(seed)
    a = np.asarray(real, dtype=np.float64)
    a = a[np.isfinite(a)]
    b = np.asarray(synthetic, dtype=np.float64)
    k = min(len(a), len(b))
    a, b = rng.choice(a, k, replace=False), rng.choice(b, k, replace=False)
    if kind == "counts":
        return np.log1p(np.clip(a, 0, None)), np.log1p(np.clip(b, 0, None)), "log1p(count)"
    return a, b, "value"


# --------------------------------------------------------------------------- CLI


def product_sets(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """{column: value or list of values} -> condition sets, all combinations (column order kept).

    ``{"tissue": ["liver", "lung"], "age": 60}`` -> ``[{tissue: liver, age: 60},
    {tissue: lung, age: 60}]``; repeated values count once; ``{}`` -> ``[{}]`` (follow the real
    data). A column with no value at all is an error (say which levels to generate).
    """
    import itertools

    lists: dict[str, list[Any]] = {}
    for col, value in values.items():
        many = value if isinstance(value, list | tuple | np.ndarray | pd.Index) else [value]
        lists[col] = list(dict.fromkeys(many))
        if not lists[col]:
            raise InputError(f"condition '{col}' has no value; choose at least one level of it")
    cols = list(lists)
    return [dict(zip(cols, combo, strict=True)) for combo in itertools.product(*lists.values())]


def condition_sets(items: Sequence[str] | None) -> list[dict[str, str]]:
    """``--condition COL=VALUE`` options -> condition sets.

    A column given once is fixed; a column given several times is varied: the sets are all
    combinations, e.g. ``tissue=liver tissue=lung age=60`` -> [{tissue: liver, age: 60},
    {tissue: lung, age: 60}]. No options -> [{}] (follow the real data).
    """
    from core.cli import parse_assignments

    values: dict[str, list[str]] = {}
    for item in items or []:
        ((col, value),) = parse_assignments([item], flag="--condition").items()
        values.setdefault(col, []).append(value)
    return product_sets(values)


def generate_command(args: argparse.Namespace) -> tuple[str, dict]:
    """``python -m core generate RUN_DIR [--condition COL=VALUE ...] --n N [--mode] [--seed] --out PATH``."""
    import time

    from core.runs import load_run

    conditions = condition_sets(args.condition)
    out = Path(args.out)
    if out.suffix and out.suffix.lower() not in EXTENSIONS:
        raise InputError(
            f"--out {out}: unknown output type '{out.suffix}'; use .h5ad, .h5mu or a path without extension"
        )
    run = load_run(Path(args.run_dir))
    if out.suffix.lower() == ".h5ad" and len(run.modalities) > 1:
        raise InputError(
            f"--out {out}: run '{run.name}' has {len(run.modalities)} modalities "
            f"({', '.join(run.modalities)}) and .h5ad holds one; use .h5mu or a path without extension"
        )
    t0 = time.perf_counter()
    options = {
        "temperature": 1.0
        if getattr(args, "temperature", None) is None
        else float(args.temperature),
        "output": getattr(args, "output", None) or "sample",
        "noise": getattr(args, "noise", None) or "model",
    }
    mdata = generate(
        run, conditions=conditions, n=args.n, mode=args.mode, seed=args.seed, **options
    )
    seconds = time.perf_counter() - t0
    written = write_generated(mdata, out)
    text = (
        f"generated {mdata.n_obs} samples ({', '.join(f'{m}: {a.n_vars} features' for m, a in mdata.mod.items())}) "
        f"in {seconds:.2f} s with mode={args.mode}, seed={args.seed} -> {out}"
    )
    payload = {
        "out": str(out),
        "files": [str(p) for p in written],
        "n_obs": int(mdata.n_obs),
        "modalities": list(mdata.mod),
        "mode": args.mode,
        "seed": args.seed,
        "conditions": conditions,
        **options,
        "seconds": seconds,
    }
    return text, payload
