"""Perturb an input feature, follow the samples through the latent space, find what responds.

The question (MOVE, Allesoe et al. 2023): if one input feature of every sample is changed
(a drug set from 0 to 1, a protein raised by one standard deviation), how do the samples move
in the latent space and which features of every modality change with them, consistently over
the samples and over the independently trained refits of the run?

Perturbations (``kind``):

- continuous / proportion / counts features: ``plus_std`` and ``minus_std`` (add or subtract
  one standard deviation of the feature over the samples that have the modality), ``shift``
  (add ``value`` standard deviations, default 1), ``min`` / ``max`` (set to the feature's
  observed minimum / maximum), ``set`` (set to ``value``). Counts are shifted on the log1p
  scale (x -> expm1(log1p(x) + k * sd(log1p x))) so a shift means the same fold change for
  every sample; proportions are clipped to [0, 1].
- categorical features: ``set`` a level (``value`` is the level code; default the last level,
  i.e. "1" for a 0/1 flag); ``min`` / ``max`` are the first / last level.

Which samples are perturbed: those in ``subset`` (all by default) that have the perturbed
modality and a value for the feature. For a categorical ``set``, samples already at that level
are left out (as MOVE does): setting a drug that a patient already takes changes nothing and
would only dilute the effect; the change measured is "what if these samples took the drug".

The baseline is the run's own encoding of the unchanged data (posterior mean per refit); the
perturbed data are encoded the same way after changing the one feature, and every modality is
decoded from both latent means. The decoded change per refit and sample feeds the statistics
in :mod:`core.associations`. For speed the whole dataset is preprocessed once
(:class:`PerturbContext`); a perturbation re-transforms only the perturbed modality and only
for the perturbed samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import pandas as pd

from core import associations
from core.associations import Method
from core.errors import InputError

PerturbKind = Literal["plus_std", "minus_std", "min", "max", "set", "shift"]
PERTURB_KINDS: tuple[str, ...] = get_args(PerturbKind)
CATEGORICAL_KINDS: tuple[str, ...] = ("set", "min", "max")

#: Columns every association table has, in this order (more may follow).
TABLE_COLUMNS = ["source", "target", "target_modality", "effect", "score", "fdr", "significant"]


# --------------------------------------------------------------------------- definitions


def split_feature(feature: str, var_names: dict[str, Sequence[str]]) -> tuple[str, str]:
    """ "MOD:FEATURE" -> (mod, feature), checked against ``var_names`` {mod: [names]}.

    A bare feature name is accepted when exactly one modality has it.
    """
    mod, sep, name = str(feature).partition(":")
    if sep and mod in var_names:
        if name not in set(map(str, var_names[mod])):
            raise InputError(
                f"feature {name!r} is not in modality {mod!r}; pick one of its "
                f"{len(var_names[mod])} features (e.g. {mod}:{var_names[mod][0]})"
            )
        return mod, name
    bare = str(feature)
    hits = [m for m, names in var_names.items() if bare in set(map(str, names))]
    if len(hits) == 1:
        return hits[0], bare
    if len(hits) > 1:
        raise InputError(
            f"feature {bare!r} exists in several modalities ({', '.join(hits)}); write it as "
            f"MOD:FEATURE, e.g. {hits[0]}:{bare}"
        )
    raise InputError(
        f"unknown feature {feature!r}; write it as MOD:FEATURE with MOD one of "
        f"{', '.join(var_names)}"
    )


def default_kind(data_kind: str) -> PerturbKind:
    """The perturbation used when none is given: set a level for categorical, else plus_std."""
    return "set" if data_kind == "categorical" else "plus_std"


def check_perturbation(
    *, data_kind: str, kind: str, value: float | None, n_levels: int | None = None
) -> None:
    """Raise InputError if ``kind`` / ``value`` do not fit a feature of ``data_kind``."""
    if kind not in PERTURB_KINDS:
        raise InputError(f"unknown perturbation {kind!r}; choose one of {', '.join(PERTURB_KINDS)}")
    if data_kind == "categorical":
        if kind not in CATEGORICAL_KINDS:
            raise InputError(
                f"perturbation {kind!r} does not apply to a categorical feature; use set "
                "(with --value LEVEL_CODE), min or max"
            )
        if (
            kind == "set"
            and value is not None
            and (value != round(value) or not 0 <= value < (n_levels or np.inf))
        ):
            raise InputError(
                f"level code {value:g} is not a level of this categorical feature; use an "
                f"integer from 0 to {(n_levels or 1) - 1}"
            )
    elif kind == "set" and value is None:
        raise InputError("perturbation 'set' needs a value; pass --value V")
    if value is not None and not np.isfinite(value):
        raise InputError(f"perturbation value must be a finite number, got {value}")


def perturb_values(
    x: np.ndarray,
    *,
    kind: PerturbKind,
    value: float | None = None,
    data_kind: str = "continuous",
    reference: np.ndarray | None = None,
    n_levels: int | None = None,
) -> np.ndarray:
    """The perturbed values of one feature.

    x: (n,) current values of the perturbed samples (data units). reference: the feature's
    values over all samples with the modality (for the sd / min / max; default ``x``).
    n_levels: number of levels of a categorical feature. Returns array of shape (n,), float64.
    """
    check_perturbation(data_kind=data_kind, kind=kind, value=value, n_levels=n_levels)
    x = np.asarray(x, dtype=np.float64)
    ref = np.asarray(x if reference is None else reference, dtype=np.float64)
    ref = ref[np.isfinite(ref)]
    if ref.size == 0:
        raise InputError("the perturbed feature has no observed values; pick another feature")
    if data_kind == "categorical":
        top = (n_levels if n_levels else int(ref.max()) + 1) - 1
        level = {"min": 0.0, "max": float(top)}.get(kind, float(top) if value is None else value)
        return np.full_like(x, level)
    if kind == "min":
        return np.full_like(x, ref.min())
    if kind == "max":
        return np.full_like(x, ref.max())
    if kind == "set":
        out = np.full_like(x, float(value))
    else:
        k = {"plus_std": 1.0, "minus_std": -1.0}.get(kind, 1.0 if value is None else value)
        if data_kind == "counts":
            sd = float(np.log1p(np.maximum(ref, 0.0)).std())
            out = np.expm1(np.log1p(np.maximum(x, 0.0)) + k * sd)
        else:
            out = x + k * float(ref.std())
    if data_kind == "counts":
        out = np.maximum(out, 0.0)
    elif data_kind == "proportion":
        out = np.clip(out, 0.0, 1.0)
    return out


def subset_mask(obs: pd.DataFrame, subset: str | np.ndarray | Sequence[int] | None) -> np.ndarray:
    """Which samples to perturb: (n_obs,) bool.

    subset: None (all), "COL=VALUE" (an obs column; numeric columns compare as numbers), a
    boolean mask (n_obs,), or integer positions (e.g. a selection on the Embeddings page).
    """
    n = len(obs)
    if subset is None:
        return np.ones(n, dtype=bool)
    if isinstance(subset, str):
        col, sep, val = subset.partition("=")
        col, val = col.strip(), val.strip()
        if not sep or not col:
            raise InputError(
                f"subset expects COL=VALUE, got {subset!r}; e.g. --subset tissue=liver"
            )
        if col not in obs.columns:
            raise InputError(
                f"subset column {col!r} is not in the sample metadata; available: "
                f"{', '.join(map(str, obs.columns)) or 'none'}"
            )
        s = obs[col]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            try:
                mask = s.to_numpy(dtype=np.float64) == float(val)
            except ValueError:
                raise InputError(
                    f"subset column {col!r} is numeric; give a number, not {val!r}"
                ) from None
        else:
            mask = (s.astype(str) == val).to_numpy()
        if not mask.any():
            levels = sorted(map(str, s.dropna().unique()))[:8]
            raise InputError(
                f"no sample has {col}={val}; values in {col!r} include {', '.join(levels)}"
            )
        return mask
    arr = np.asarray(subset)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise InputError(f"subset mask must have shape ({n},), got {arr.shape}")
        return arr.copy()
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InputError("subset must be COL=VALUE, a boolean mask or integer sample positions")
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise InputError(f"subset positions must be in 0..{n - 1}")
    mask = np.zeros(n, dtype=bool)
    mask[arr.astype(int)] = True
    return mask


def perturbed_rows(
    values: np.ndarray,
    present: np.ndarray,
    subset: np.ndarray,
    *,
    data_kind: str,
    target_level: float | None = None,
) -> np.ndarray:
    """Positions (sorted int array) of the samples that get perturbed.

    values: (n_obs,) the feature in data units (NaN where absent or missing); present: (n_obs,)
    bool, the sample has the modality; subset: (n_obs,) bool. For a categorical ``set``,
    samples already at ``target_level`` are left out (see the module docstring).
    """
    keep = np.asarray(subset, dtype=bool) & np.asarray(present, dtype=bool) & ~np.isnan(values)
    if data_kind == "categorical" and target_level is not None:
        keep &= values != target_level
    return np.flatnonzero(keep)


# --------------------------------------------------------------------------- engine


@dataclass
class PerturbContext:
    """Everything a perturbation needs, computed once per (run, dataset).

    x: {mod: (n_obs, n_in) float32 encoder input}; present: {mod: (n_obs,) bool};
    library: {counts mod: (n_obs, 1)}; cond: (n_obs, n_cond); data: {mod: (n_obs, n_vars)
    float64 in data units, NaN rows where absent}; z0: (n_refits, n_obs, n_latent) baseline
    posterior means; recon0: {mod: (n_refits, n_obs, n_features) float32 decoded baseline in
    data units, NaN rows where the sample lacks the modality}; recon0_mean: the same averaged
    over refits (n_obs, n_features); scale: {mod: (n_features,)}
    spread of each decoded feature over the samples (sd per refit, averaged over refits);
    features: {mod: model features}. Treat it as read-only: it may be cached and shared.
    """

    run: object
    obs: pd.DataFrame
    obs_names: np.ndarray
    pre: object
    models: list
    x: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    library: dict[str, np.ndarray]
    cond: np.ndarray
    data: dict[str, np.ndarray]
    features: dict[str, list[str]]
    kinds: dict[str, str]
    z0: np.ndarray = field(repr=False)
    recon0: dict[str, np.ndarray] = field(repr=False)
    scale: dict[str, np.ndarray] = field(repr=False)
    recon0_mean: dict[str, np.ndarray] = field(repr=False)
    batch_size: int = 4096

    @property
    def n_refits(self) -> int:
        return len(self.models)

    @property
    def n_obs(self) -> int:
        return len(self.obs_names)

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    def target_names(self) -> list[str]:
        """Every decoded feature as "MOD:FEATURE", in modality order (the table's targets)."""
        return [f"{m}:{f}" for m, feats in self.features.items() for f in feats]


def _run_preprocessor(run):
    """The run's fitted :class:`core.preprocess.Preprocessor` (public attribute or JSON)."""
    pre = getattr(run, "preprocessor", None)
    if pre is not None:
        return pre() if callable(pre) else pre
    import json

    from core.preprocess import Preprocessor

    path = run.path / "preprocess.json"
    return Preprocessor.from_state(json.loads(path.read_text()))


def _forward(ctx_models, refit: int, pre, x, present, cond, library, batch_size: int):
    """Encode (posterior mean) and decode every modality for rows given as numpy arrays.

    x: {mod: (n, n_in)}, present: {mod: (n,)}, cond: (n, n_cond), library: {mod: (n, 1)}.
    Returns z (n, n_latent) float32 and {mod: (n, n_features) float32 in data units}.
    """
    import torch

    model = ctx_models[refit]
    n = len(cond)
    zs, outs = [], {m: [] for m in pre.transforms}
    with torch.no_grad():
        for start in range(0, max(n, 1), batch_size):
            sl = slice(start, start + batch_size)
            xb = {m: torch.from_numpy(np.ascontiguousarray(v[sl])) for m, v in x.items()}
            pb = {
                m: torch.from_numpy(np.ascontiguousarray(v[sl], dtype=np.float32))
                for m, v in present.items()
            }
            cb = torch.from_numpy(np.ascontiguousarray(cond[sl])) if cond.shape[1] else None
            lb = {m: torch.from_numpy(np.ascontiguousarray(v[sl])) for m, v in library.items()}
            mean, _ = model.encode(xb, cb, pb)
            params = model.decode(mean, cb, lb)
            means = model.means(params)
            zs.append(mean.numpy())
            for m, t in pre.transforms.items():
                outs[m].append(t.inverse_transform(means[m].numpy()))
    z = np.concatenate(zs) if zs else np.zeros((0, model.n_latent), np.float32)
    return z.astype(np.float32), {m: np.concatenate(v).astype(np.float32) for m, v in outs.items()}


def build_context(
    run,
    mdata,
    *,
    batch_size: int = 4096,
    progress: Callable[[dict], None] | None = None,
) -> PerturbContext:
    """Preprocess ``mdata`` once with the run's preprocessing and encode/decode the baseline.

    Cost: one pass of every refit over all samples. Returns a :class:`PerturbContext`.
    """
    from core.preprocess import aligned_matrix

    pre = _run_preprocessor(run)
    pre.check_features(mdata, run_name=getattr(run, "name", "this run"))
    n_refits = int(getattr(run, "n_refits", 1) or 1)
    models = [run.model(refit=r) for r in range(n_refits)]
    tensors = pre.tensors(mdata)
    x = {m: t.x for m, t in tensors.items()}
    present = {m: t.present for m, t in tensors.items()}
    library = {m: t.library for m, t in tensors.items() if t.library is not None}
    cond = pre.condition_matrix(mdata.obs, n_obs=mdata.n_obs)
    data = {m: aligned_matrix(mdata, m) for m in pre.transforms}
    features = {m: list(t.features) for m, t in pre.transforms.items()}
    z0, recon0 = [], {m: [] for m in pre.transforms}
    for r in range(n_refits):
        z, rec = _forward(models, r, pre, x, present, cond, library, batch_size)
        z0.append(z)
        for m, v in rec.items():
            v[~present[m]] = np.nan
            recon0[m].append(v)
        if progress is not None:
            progress({"stage": "baseline", "step": r + 1, "total": n_refits})
    recon0 = {m: np.stack(v) for m, v in recon0.items()}
    scale = {
        m: (
            v[:, present[m]].std(axis=1, dtype=np.float64).mean(axis=0)
            if present[m].any()
            else np.ones(v.shape[2])
        )
        for m, v in recon0.items()
    }
    return PerturbContext(
        run=run,
        obs=mdata.obs,
        obs_names=np.asarray(mdata.obs_names, dtype=str),
        pre=pre,
        models=models,
        x=x,
        present=present,
        library=library,
        cond=cond,
        data=data,
        features=features,
        kinds={m: t.kind for m, t in pre.transforms.items()},
        z0=np.stack(z0),
        recon0=recon0,
        scale=scale,
        recon0_mean={m: v.mean(axis=0) for m, v in recon0.items()},
        batch_size=batch_size,
    )


@dataclass
class PerturbResult:
    """One perturbation of one feature.

    rows: (n_pert,) positions of the perturbed samples in the dataset; obs_names: their ids.
    z_before / z_after: (n_refits, n_pert, n_latent) posterior means; ``displacement`` is
    their difference. before / after: {mod: (n_refits, n_pert, n_features)} decoded values in
    data units (NaN where the sample lacks the modality). table: one row per target (every
    decoded feature except the source) with TABLE_COLUMNS and the method's extra columns.
    """

    source: str
    kind: str
    value: float | None
    method: str
    rows: np.ndarray
    obs_names: np.ndarray
    z_before: np.ndarray
    z_after: np.ndarray
    before: dict[str, np.ndarray]
    after: dict[str, np.ndarray]
    table: pd.DataFrame
    seconds: float

    @property
    def displacement(self) -> np.ndarray:
        """(n_refits, n_pert, n_latent) latent shift of every perturbed sample per refit."""
        return self.z_after - self.z_before

    def delta(self, mod: str) -> np.ndarray:
        """(n_refits, n_pert, n_features) decoded change of modality ``mod``."""
        return self.after[mod] - self.before[mod]

    def target_values(self, target: str) -> tuple[np.ndarray, np.ndarray]:
        """Decoded values of "MOD:FEATURE" before and after, each (n_refits, n_pert)."""
        mod, _, name = target.partition(":")
        if mod not in self.before:
            raise InputError(f"unknown target modality {mod!r}; use MOD:FEATURE")
        names = list(self.table.attrs.get("features", {}).get(mod, []))
        if name not in names:
            raise InputError(f"target {target!r} is not a decoded feature of this run")
        j = names.index(name)
        return self.before[mod][:, :, j], self.after[mod][:, :, j]


def resolve_feature(pre, feature: str, kind: str | None = None, value: float | None = None):
    """Check a perturbation against a run's preprocessing before any work is done.

    pre: the run's :class:`core.preprocess.Preprocessor`. Returns (mod, name, column index
    in the modality's input features, data kind, perturbation kind, number of levels or None).
    """
    var_names = {m: list(t.var_names) for m, t in pre.transforms.items()}
    mod, name = split_feature(feature, var_names)
    t = pre.transforms[mod]
    j = t.var_names.index(name)
    if j not in t.keep:
        raise InputError(
            f"feature {mod}:{name} is not used by the model (not among the modality's selected "
            "features); pick one of the run's features"
        )
    data_kind = t.kind
    kind = kind or default_kind(data_kind)
    n_levels = len(t.levels[j]) if data_kind == "categorical" else None
    check_perturbation(data_kind=data_kind, kind=kind, value=value, n_levels=n_levels)
    return mod, name, j, data_kind, kind, n_levels


def perturb(
    run,
    mdata=None,
    *,
    feature: str,
    kind: PerturbKind | None = None,
    value: float | None = None,
    subset: str | np.ndarray | Sequence[int] | None = None,
    method: Method = "bayes",
    alpha: float = 0.05,
    context: PerturbContext | None = None,
    keep_values: bool = True,
    progress: Callable[[dict], None] | None = None,
) -> PerturbResult:
    """Perturb one feature ("MOD:FEATURE") and score every decoded feature's response.

    run: a :class:`core.runs.Run`; mdata: its dataset (default ``run.load_data()``), or pass a
    prebuilt ``context`` (from :func:`build_context`) to skip the baseline pass. kind / value /
    subset: see the module docstring. method: "bayes" | "ttest" | "ks" (core.associations);
    FDR is controlled over this feature's targets. keep_values=False drops the per-sample
    decoded arrays (screens). Returns a :class:`PerturbResult`.
    """
    t0 = time.perf_counter()
    if method not in associations.METHODS:
        raise InputError(
            f"unknown method {method!r}; choose one of {', '.join(associations.METHODS)}"
        )
    if context is None:
        context = build_context(
            run, mdata if mdata is not None else run.load_data(), progress=progress
        )
    ctx = context
    mod, name, j, data_kind, kind, n_levels = resolve_feature(ctx.pre, feature, kind, value)
    source = f"{mod}:{name}"
    column = ctx.data[mod][:, j]
    observed = column[ctx.present[mod] & ~np.isnan(column)]
    new_level = None
    if data_kind == "categorical":
        new_level = perturb_values(
            observed[:1],
            kind=kind,
            value=value,
            data_kind=data_kind,
            reference=observed,
            n_levels=n_levels,
        )[0]
    rows = perturbed_rows(
        column,
        ctx.present[mod],
        subset_mask(ctx.obs, subset),
        data_kind=data_kind,
        target_level=new_level,
    )
    if rows.size < 2:
        why = (
            f"already have level {n_levels and ctx.pre.transforms[mod].levels[j][int(new_level)]}"
            if data_kind == "categorical"
            else "lack this feature"
        )
        raise InputError(
            f"fewer than 2 samples to perturb for {source} (the others {why} or are outside "
            "the subset); choose another feature, level or subset"
        )
    X = ctx.data[mod][rows].copy()
    X[:, j] = perturb_values(
        X[:, j], kind=kind, value=value, data_kind=data_kind, reference=observed, n_levels=n_levels
    )
    x = {m: v[rows] for m, v in ctx.x.items()}
    x[mod] = ctx.pre.transforms[mod].transform(X).x
    present = {m: v[rows] for m, v in ctx.present.items()}
    library = {m: v[rows] for m, v in ctx.library.items()}
    cond = ctx.cond[rows]

    n_pert = rows.size
    z_after = np.empty((ctx.n_refits, n_pert, ctx.z0.shape[2]), dtype=np.float32)
    after = {
        m: np.empty((ctx.n_refits, n_pert, len(f)), dtype=np.float32)
        for m, f in ctx.features.items()
    }
    for r in range(ctx.n_refits):
        z_after[r], rec = _forward(
            ctx.models, r, ctx.pre, x, present, cond, library, ctx.batch_size
        )
        for m, v in rec.items():
            after[m][r] = v
        if progress is not None:
            progress({"stage": "perturb", "feature": source, "step": r + 1, "total": ctx.n_refits})
    for m, v in after.items():
        v[:, ~present[m]] = np.nan
    before = {m: v[:, rows] for m, v in ctx.recon0.items()} if keep_values else None
    table = association_table(ctx, source, before, after, rows, method=method, alpha=alpha)
    return PerturbResult(
        source=source,
        kind=kind,
        value=None if value is None else float(value),
        method=method,
        rows=rows,
        obs_names=ctx.obs_names[rows],
        z_before=ctx.z0[:, rows],
        z_after=z_after,
        before=before if keep_values else {},
        after=after if keep_values else {},
        table=table,
        seconds=time.perf_counter() - t0,
    )


def association_table(
    ctx: PerturbContext,
    source: str,
    before: dict[str, np.ndarray] | None,
    after: dict[str, np.ndarray],
    rows: np.ndarray,
    *,
    method: Method = "bayes",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Score every decoded feature except ``source`` -> DataFrame sorted by score (desc).

    before / after: {mod: (n_refits, n_pert, n_features)} for the perturbed samples ``rows``
    (positions in the dataset); before=None reads the baseline from the context. Each
    modality is summarised on the samples that have it (float32, no NaN) and the decision
    (FDR, empirical null) is taken over all targets of this source together. Columns:
    TABLE_COLUMNS, then ``n_samples``, ``baseline`` (mean decoded target before the
    perturbation), ``effect_std`` (effect / the target's spread over all samples) and the
    method's own statistics.
    """
    names, mods, parts, baseline, n_samples = [], [], [], [], []
    for m, feats in ctx.features.items():
        keep = np.array([f"{m}:{f}" != source for f in feats])
        valid = ctx.present[m][rows]
        a = after[m] if valid.all() else after[m][:, valid]
        if before is None:  # read the baseline rows refit by refit, without a copy
            b, b_rows = ctx.recon0[m], rows[valid]
        else:
            b, b_rows = (before[m] if valid.all() else before[m][:, valid]), None
        summary = associations.summarize_rows(
            b, a, b_rows, scale=ctx.scale[m], with_ks=method == "ks", with_sd=method != "ks"
        )
        base = (
            ctx.recon0_mean[m][rows[valid]].mean(axis=0, dtype=np.float64)
            if valid.any()
            else np.full(len(feats), np.nan)
        )
        if not keep.all():  # the perturbed feature is never its own target
            summary, base = summary.take(keep), base[keep]
        names += [f"{m}:{f}" for f, k in zip(feats, keep, strict=True) if k]
        mods += [m] * int(keep.sum())
        parts.append(summary)
        baseline.append(base)
        n_samples.append(np.full(int(keep.sum()), int(valid.sum())))
    summary = associations.concat(parts)
    stats = associations.decide(summary, method=method, alpha=alpha)
    if "effect_std" not in stats:  # effect in units of the target's spread, for every method
        with np.errstate(invalid="ignore", divide="ignore"):
            stats["effect_std"] = stats["effect"] / np.where(summary.scale > 0, summary.scale, 1.0)
    table = pd.DataFrame(
        {
            "source": source,
            "target": names,
            "target_modality": mods,
            "effect": stats["effect"],
            "score": stats["score"],
            "fdr": stats["fdr"],
            "significant": stats["significant"].astype(bool),
            "n_samples": np.concatenate(n_samples),
            "baseline": np.concatenate(baseline),
        }
    )
    for key, v in stats.items():
        if key not in table.columns:
            table[key] = v
    table = rank(table)
    table.attrs["features"] = {m: list(f) for m, f in ctx.features.items()}
    table.attrs["method"] = method
    return table


def rank(table: pd.DataFrame) -> pd.DataFrame:
    """Rows by score (desc), exact ties (e.g. -log10 p capped at 300) by |effect_std| (desc)."""
    order = np.lexsort(
        (
            -np.nan_to_num(table["effect_std"].abs().to_numpy(), nan=-1.0),
            -np.nan_to_num(table["score"].to_numpy(dtype=np.float64), nan=-np.inf),
        )
    )
    return table.iloc[order].reset_index(drop=True)


def screen(
    run,
    mdata=None,
    *,
    modality: str,
    kind: PerturbKind | None = None,
    value: float | None = None,
    subset: str | np.ndarray | Sequence[int] | None = None,
    method: Method = "bayes",
    alpha: float = 0.05,
    features: Sequence[str] | None = None,
    context: PerturbContext | None = None,
    progress: Callable[[dict], None] | None = None,
) -> pd.DataFrame:
    """Perturb every feature of ``modality`` (or ``features`` of it) one at a time.

    Returns one association table: the per-feature tables of :func:`perturb` stacked, sorted
    by source then score. FDR stays per perturbed feature. A feature with too few samples to
    perturb (e.g. every sample already takes the drug) is skipped and listed in
    ``table.attrs["skipped"]``. progress gets {"stage": "screen", "feature", "step", "total"}.
    """
    if context is None:
        context = build_context(
            run, mdata if mdata is not None else run.load_data(), progress=progress
        )
    ctx = context
    if modality not in ctx.features:
        raise InputError(
            f"modality {modality!r} is not in this run; choose one of {', '.join(ctx.features)}"
        )
    names = list(features) if features is not None else list(ctx.features[modality])
    tables, skipped = [], []
    for i, name in enumerate(names):
        try:
            res = perturb(
                run,
                feature=f"{modality}:{name}",
                kind=kind,
                value=value,
                subset=subset,
                method=method,
                alpha=alpha,
                context=ctx,
                keep_values=False,
            )
            tables.append(res.table)
        except InputError as exc:
            if "fewer than 2 samples" not in str(exc):
                raise
            skipped.append(name)
        if progress is not None:
            progress(
                {
                    "stage": "screen",
                    "feature": f"{modality}:{name}",
                    "step": i + 1,
                    "total": len(names),
                }
            )
    if not tables:
        raise InputError(f"no feature of {modality!r} could be perturbed; check the subset")
    out = pd.concat(tables, ignore_index=True)
    out.attrs["skipped"] = skipped
    out.attrs["method"] = method
    return out


# --------------------------------------------------------------------------- CLI


def _stderr_progress(event: dict) -> None:
    import sys

    stage, step, total = event.get("stage"), event.get("step"), event.get("total")
    if stage == "screen" or step == total:
        label = event.get("feature") or stage
        print(f"[perturb] {stage} {step}/{total} {label}", file=sys.stderr, flush=True)


def write_table(table: pd.DataFrame, path) -> None:
    """Write an association table as CSV atomically (temporary file + rename)."""
    from pathlib import Path

    from core.runs import write_text_atomic

    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(
            f"output folder {path.parent} does not exist; create it or pick another --out"
        )
    write_text_atomic(path, table.to_csv(index=False))


def top_hits(table: pd.DataFrame, n: int = 10) -> list[dict]:
    """The ``n`` strongest pairs as JSON-able dicts (source, target, effect, score, fdr)."""
    cols = ["source", "target", "effect", "score", "fdr", "significant"]
    top = rank(table).head(n)
    return [
        {
            k: (bool(v) if k == "significant" else v if isinstance(v, str) else float(v))
            for k, v in row.items()
        }
        for row in top[cols].to_dict(orient="records")
    ]


def perturb_command(args) -> tuple[str, dict]:
    """CLI: ``python -m core perturb RUN_DIR (--feature MOD:FEATURE | --screen MOD) ...``."""
    from core.runs import load_run

    t0 = time.perf_counter()
    run = load_run(args.run_dir)
    pre = run.preprocessor
    if args.feature:  # fail fast, before the baseline pass
        resolve_feature(pre, args.feature, args.kind, args.value)
    elif args.screen not in pre.transforms:
        raise InputError(
            f"modality {args.screen!r} is not in run {run.name!r}; choose one of "
            f"{', '.join(pre.transforms)}"
        )
    else:
        first = pre.transforms[args.screen].features[0]
        resolve_feature(pre, f"{args.screen}:{first}", args.kind, args.value)
    ctx = build_context(run, run.load_data(), progress=_stderr_progress)
    if args.feature:
        res = perturb(
            run,
            feature=args.feature,
            kind=args.kind,
            value=args.value,
            subset=args.subset,
            method=args.method,
            context=ctx,
            keep_values=False,
            progress=_stderr_progress,
        )
        table, skipped = res.table, []
    else:
        table = screen(
            run,
            modality=args.screen,
            kind=args.kind,
            value=args.value,
            subset=args.subset,
            method=args.method,
            context=ctx,
            progress=_stderr_progress,
        )
        skipped = list(table.attrs.get("skipped", []))
    write_table(table, args.out)
    seconds = time.perf_counter() - t0
    n_sig = int(table["significant"].sum())
    hits = top_hits(table)
    payload = {
        "run": run.name,
        "method": args.method,
        "kind": args.kind,
        "n_sources": int(table["source"].nunique()),
        "n_pairs": len(table),
        "n_significant": n_sig,
        "skipped": skipped,
        "top": hits,
        "out": str(args.out),
        "seconds": round(seconds, 3),
    }
    lines = [
        f"{len(table)} pairs from {payload['n_sources']} perturbed feature(s), {n_sig} "
        f"significant ({args.method}); wrote {args.out} in {seconds:.1f} s"
    ]
    lines += [
        f"  {h['source']} -> {h['target']}: effect {h['effect']:+.4g}, score "
        f"{h['score']:.3g}, fdr {h['fdr']:.3g}"
        for h in hits[:5]
    ]
    if skipped:
        lines.append(f"skipped (too few samples to perturb): {', '.join(skipped)}")
    return "\n".join(lines), payload


# --------------------------------------------------------------------------- ground truth


def truth_metrics(
    table: pd.DataFrame,
    planted: pd.DataFrame,
    *,
    sources: Sequence[str] | None = None,
    target_modalities: Sequence[str] | None = None,
) -> dict:
    """Compare an association table with known (planted) source -> target pairs.

    table: from :func:`perturb` / :func:`screen`; planted: DataFrame with ``source`` and
    ``target`` ("MOD:FEATURE"). Rows scored are those whose source is in ``sources`` (default:
    the planted sources present in the table) and whose target modality is in
    ``target_modalities`` (default: the modalities of the planted targets). Returns
    {"auroc" (of ``score``, ties count half), "precision" and "recall" (of ``significant``),
    "n_pairs", "n_planted", "n_significant"}; NaN where undefined.
    """
    from scipy.stats import rankdata

    pairs = set(zip(planted["source"].astype(str), planted["target"].astype(str), strict=True))
    srcs = set(sources) if sources is not None else {s for s, _ in pairs}
    mods = (
        set(target_modalities)
        if target_modalities is not None
        else {t.partition(":")[0] for _, t in pairs}
    )
    rows = table[
        table["source"].isin(srcs) & table["target"].astype(str).str.partition(":")[0].isin(mods)
    ]
    truth = np.array([(s, t) in pairs for s, t in zip(rows["source"], rows["target"], strict=True)])
    score = np.nan_to_num(rows["score"].to_numpy(dtype=np.float64), nan=-np.inf)
    sig = rows["significant"].to_numpy(dtype=bool)
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos and n_neg:
        ranks = rankdata(score)
        auroc = (ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    else:
        auroc = float("nan")
    tp = int((sig & truth).sum())
    return {
        "auroc": float(auroc),
        "precision": tp / int(sig.sum()) if sig.any() else float("nan"),
        "recall": tp / n_pos if n_pos else float("nan"),
        "n_pairs": len(rows),
        "n_planted": n_pos,
        "n_significant": int(sig.sum()),
    }
