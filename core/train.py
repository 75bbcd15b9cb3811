"""Training: fit preprocessing + model on a MuData and write a run directory.

``train(config, mdata, *, out, progress)`` is the one entry point (the CLI, the dashboard's
background job and tests all use it). The loop is plain torch: data are transformed once into
tensors on the device and mini-batches are gathered by index (no DataLoader, no workers), with
AdamW, linear KL warm-up (:func:`kl_weight`), early stopping on the validation loss (best
weights restored), optional one-cycle schedule, gradient clipping, seeded everything
(``torch.Generator`` + a forked global RNG for initialisation and dropout), NaN/Inf detection,
cancellation via a ``cancel`` file checked every batch, and ensemble refits.

Batch indices of an epoch come from a seeded permutation sharded by (rank, world_size), the
same contract as torch's DistributedSampler, so the loop runs unchanged under DDP:
``torchrun --nproc_per_node=N -m core train ...`` (gloo on CPU, nccl on GPU) trains one model
with gradients all-reduced every step; every rank preprocesses identically, only rank 0 writes
the run directory, and cancel / NaN decisions are all-reduced so no rank is left waiting.
SIGTERM to the CLI process is a graceful cancel.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import CancelledError, InputError, RunError
from core.runs import (
    CANCEL,
    CONFIG,
    FEATURES,
    HISTORY,
    LOG,
    METRICS,
    MODEL,
    PREPROCESS,
    REPO_ROOT,
    SPLIT,
    STATUS,
    WEIGHTS_MANIFEST,
    DataConfig,
    Run,
    RunConfig,
    TrainConfig,
    apply_overrides,
    load_data_config,
    load_run,
    new_run_path,
    sha256_file,
    train_defaults,
    write_json_atomic,
    write_status,
    write_text_atomic,
)

ProgressFn = Callable[[dict], None]
KNN_K = 15


class TrainingFailed(RunError):
    """Training stopped because the loss became NaN / Inf (the run's status is 'failed')."""


# -- small pure helpers --------------------------------------------------------------------------
def kl_weight(epoch: float, *, n_warmup: int, beta: float = 1.0) -> float:
    """KL weight at a (fractional) epoch: linear warm-up from 0 to ``beta`` over n_warmup epochs.

    epoch >= 0; n_warmup >= 0 (0 = no warm-up); beta >= 0. Reaches beta at epoch == n_warmup.
    """
    if not math.isfinite(epoch) or epoch < 0:
        raise ValueError(f"epoch must be a finite number >= 0, got {epoch}")
    if n_warmup < 0:
        raise ValueError(f"n_warmup must be >= 0, got {n_warmup}")
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {beta}")
    if n_warmup == 0:
        return float(beta)
    return float(beta) * min(1.0, epoch / n_warmup)


def epoch_batches(n: int, batch_size: int, *, generator, rank: int = 0, world_size: int = 1):
    """Shuffled batch index tensors for one epoch over ``n`` items, sharded like
    DistributedSampler (rank takes every world_size-th index of a shared permutation, padded
    so every rank gets the same number of batches). Returns a list of LongTensors.
    """
    import torch

    perm = torch.randperm(n, generator=generator)
    if world_size > 1:
        per = math.ceil(n / world_size)
        perm = torch.cat([perm, perm[: per * world_size - n]])[rank::world_size]
    return list(perm.split(batch_size))


def resolve_device(name: str = "auto"):
    """torch.device for "auto" (CUDA when available), "cpu" or "cuda"."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was requested but no CUDA GPU is available; use auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_label(obs: pd.DataFrame, *, exclude: Sequence[str] = ()) -> str | None:
    """First categorical obs column with 2-50 levels (the default kNN label), or None."""
    for col in obs.columns:
        s = obs[col]
        if (
            col in exclude
            or pd.api.types.is_numeric_dtype(s)
            and not isinstance(s.dtype, pd.CategoricalDtype)
        ):
            continue
        n = s.astype(str).nunique()
        if 2 <= n <= 50:
            return str(col)
    return None


def make_split(
    mdata, *, stratify: str | None, val_frac: float, test_frac: float, seed: int
) -> np.ndarray:
    """(n_obs,) array of "train" / "val" / "test" (core.data.split_samples when available)."""
    try:
        from core.data import split_samples
    except ImportError:  # pragma: no cover - the data layer provides it
        split_samples = None
    if split_samples is not None:
        return np.asarray(
            split_samples(
                mdata, stratify=stratify, val_frac=val_frac, test_frac=test_frac, seed=seed
            ),
            dtype=object,
        )
    rng = np.random.default_rng(seed)  # pragma: no cover
    n = mdata.n_obs
    out = np.full(n, "train", dtype=object)
    groups = mdata.obs[stratify].astype(str).to_numpy() if stratify else np.zeros(n, dtype=object)
    for g in pd.unique(groups):
        idx = rng.permutation(np.nonzero(groups == g)[0])
        n_val, n_test = int(round(len(idx) * val_frac)), int(round(len(idx) * test_frac))
        out[idx[:n_val]] = "val"
        out[idx[n_val : n_val + n_test]] = "test"
    return out


def any_rank(flag: bool, *, world_size: int, device=None) -> bool:
    """True when ``flag`` is true on any rank (an all-reduce under torch.distributed)."""
    if world_size <= 1:
        return bool(flag)
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


# -- tensors -------------------------------------------------------------------------------------
class TensorData:
    """Every sample's model tensors on one device; ``batch(idx)`` gathers a mini-batch dict.

    tens: {mod: core.preprocess.ModalityTensors}; cond: (n_obs, n_cond) condition matrix.
    loss_constants: precompute the per-sample NB log-factorial sums the loss needs (training);
    inference (encode / decode) can skip them.
    """

    def __init__(
        self, tens: Mapping, cond: np.ndarray, *, device, loss_constants: bool = True
    ) -> None:
        import torch

        self.device = device
        self.n_obs = len(cond)

        def t(a):  # C-contiguous float32: index_select on rows is ~10x slower otherwise
            return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32), device=device)

        self.x = {m: t(v.x) for m, v in tens.items()}
        self.target = {m: t(v.target) for m, v in tens.items()}
        self.present = {m: t(v.present.astype(np.float32)) for m, v in tens.items()}
        self.library = {m: t(v.library) for m, v in tens.items() if v.library is not None}
        self.mask = {m: t(v.mask) for m, v in tens.items() if v.mask is not None}
        self.cond = t(cond) if cond.shape[1] else None
        self.numpy = dict(tens)
        # per-sample sum of lgamma(x + 1) of counts targets: a constant of the NB likelihood,
        # computed once here instead of once per training step
        from core.likelihoods import log_factorial_sum

        self.log_factorial = {}
        for m in self.library if loss_constants else []:
            mask = self.mask.get(m)
            # written into one preallocated (n_obs,) tensor, block by block: keeping the small
            # per-block results alive between the big lgamma temporaries fragmented the heap
            # (+220 MiB RSS at 20,000 x 2,000); results are the same as concatenating them
            lf = torch.empty(self.n_obs, dtype=self.target[m].dtype, device=device)
            for i in range(0, self.n_obs, 1024):
                lf[i : i + 1024] = log_factorial_sum(
                    self.target[m][i : i + 1024], None if mask is None else mask[i : i + 1024]
                )
            self.log_factorial[m] = lf

    @classmethod
    def from_mdata(cls, pre, mdata, *, device) -> TensorData:
        """Tensors of every sample of ``mdata`` (features checked by the caller)."""
        return cls(
            pre.tensors(mdata), pre.condition_matrix(mdata.obs, n_obs=mdata.n_obs), device=device
        )

    def batch(self, idx) -> dict:
        """Mini-batch dict (see core.models.BATCH_KEYS) for a LongTensor of sample indices."""
        idx = idx.to(self.device)

        def g(d):
            return {m: v.index_select(0, idx) for m, v in d.items()}

        return {
            "x": g(self.x),
            "target": g(self.target),
            "present": g(self.present),
            "library": g(self.library),
            "mask": g(self.mask),
            "log_factorial": g(self.log_factorial),
            "cond": None if self.cond is None else self.cond.index_select(0, idx),
        }


@dataclass
class FitResult:
    state_dict: dict
    history: list[dict] = field(default_factory=list)
    best_val: float = float("nan")
    best_epoch: int = 0
    epochs: int = 0
    stopped: str = "epochs"  # epochs | early_stopping | cancelled
    compiled_nb: bool = False  # the NB loss ran through torch.compile (core.likelihoods)


def _mean_terms(sums: Mapping[str, float], n: int, prefix: str) -> dict[str, float]:
    return {f"{prefix}_{k}": v / max(n, 1) for k, v in sums.items()}


def evaluate_loss(
    model, data: TensorData, idx, *, kl_w: float, seed: int, batch_size: int = 4096
) -> dict[str, float]:
    """Mean loss terms over samples ``idx`` (eval mode, a fixed-seed reparameterisation)."""
    import torch

    was = model.training
    model.eval()
    gen = torch.Generator(device=data.device).manual_seed(seed)
    sums: dict[str, float] = {}
    with torch.no_grad():
        for part in torch.as_tensor(idx).split(batch_size):
            terms = model.loss(data.batch(part), kl_weight=kl_w, generator=gen)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(part)
    model.train(was)
    return {k: v / max(len(idx), 1) for k, v in sums.items()}


SCALE_PARAMS = ("log_theta", "logvar")  # per-feature dispersion / variance of the heads
SCALE_LR_FACTOR = 10.0


def param_groups(model, *, lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: network weights, and the per-feature scale parameters of the likelihoods.

    The scale parameters (NB log inverse dispersion, Gaussian log variance) start at 0 and must
    travel several units; at the network's learning rate they would still be far from their
    optimum after a typical run, so they get a 10x learning rate and no weight decay (decay
    would pull every variance towards 1). Frozen parameters stay out.
    """
    nets, scales = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (scales if name.rsplit(".", 1)[-1] in SCALE_PARAMS else nets).append(p)
    groups = [{"params": nets, "lr": lr, "weight_decay": weight_decay}]
    if scales:
        groups.append({"params": scales, "lr": lr * SCALE_LR_FACTOR, "weight_decay": 0.0})
    return groups


MATMUL_ENV = "OLE_MATMUL_PRECISION"


@contextlib.contextmanager
def matmul_precision(device):
    """Float32 matrix products during CPU training at torch's "medium" precision (restored on
    exit); ``$OLE_MATMUL_PRECISION`` (highest | high | medium) overrides it.

    On CPUs with bf16 instructions oneDNN then computes float32 products from split bf16 parts:
    on the training shapes (128-1,024 x 2,000 x 128) the largest error relative to the result
    stayed below 1e-6 (4e-7 at "highest") at about twice the speed, which made whole training
    steps about 20% faster at batch 128 and 1,024 (bench/train_speed.py). Without such
    instructions it is plain float32.
    GPUs keep torch's setting.
    """
    import torch

    wanted = os.environ.get(MATMUL_ENV, "medium" if device.type == "cpu" else "").strip()
    if not wanted:
        yield
        return
    if wanted not in ("highest", "high", "medium"):
        raise InputError(f"{MATMUL_ENV} must be highest, high or medium, got {wanted!r}")
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(wanted)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _in_matmul_precision(fit_fn):
    """Run ``fit_fn(model, data, ...)`` under :func:`matmul_precision` for ``data.device``."""

    @functools.wraps(fit_fn)
    def wrapper(model, data, *args, **kwargs):
        with matmul_precision(data.device):
            return fit_fn(model, data, *args, **kwargs)

    return wrapper


@_in_matmul_precision
def fit(
    model,
    data: TensorData,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: TrainConfig,
    *,
    seed: int,
    refit: int = 0,
    on_epoch: Callable[[dict], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    checkpoint: Callable[[dict], None] | None = None,
    rank: int = 0,
    world_size: int = 1,
    ddp_model=None,
) -> FitResult:
    """Train ``model`` in place; returns the best weights (by val loss) and the history.

    ddp_model: the DistributedDataParallel wrapper when running under torch.distributed (its
    forward is the model's loss); rank / world_size shard each epoch's permutation.
    """
    import torch

    from core.likelihoods import use_compiled_nb

    device = data.device
    compiled_nb = use_compiled_nb(
        model, device=device, samples_x_epochs=len(train_idx) * cfg.epochs
    )
    gen = torch.Generator().manual_seed(seed)  # batch order (CPU)
    noise = torch.Generator(device=device).manual_seed(seed + 1)  # reparameterisation
    groups = param_groups(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    params = [p for g in groups for p in g["params"]]
    try:  # the fused kernel is ~10x faster than the per-tensor loop (CPU and CUDA)
        opt = torch.optim.AdamW(groups, fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.AdamW(groups)
    train_t = torch.as_tensor(train_idx, dtype=torch.long)
    n_batches = math.ceil(math.ceil(len(train_idx) / world_size) / cfg.batch_size)
    sched = None
    if cfg.one_cycle:
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in groups], total_steps=max(cfg.epochs * n_batches, 1)
        )
    runner = ddp_model if ddp_model is not None else model
    # gloo all-reduces CPU tensors, nccl CUDA tensors
    sync_device = device if world_size > 1 and device.type == "cuda" else None
    best_val, best_epoch, best_state, wait = float("inf"), 0, None, 0
    res = FitResult(state_dict={}, compiled_nb=compiled_nb)
    last_ckpt = time.monotonic()
    t0 = time.monotonic()
    for epoch in range(cfg.epochs):
        model.train()
        sums: dict[str, torch.Tensor] = {}
        seen = 0
        batches = epoch_batches(
            len(train_idx), cfg.batch_size, generator=gen, rank=rank, world_size=world_size
        )
        for b, pos in enumerate(batches):
            cancel = should_cancel is not None and should_cancel()
            if any_rank(cancel, world_size=world_size, device=sync_device):
                res.stopped = "cancelled"
                break
            w = kl_weight(
                epoch + b / max(len(batches), 1), n_warmup=cfg.kl_warmup_epochs, beta=cfg.beta
            )
            batch = data.batch(train_t[pos])
            terms = (
                runner(batch, kl_weight=w, generator=noise)
                if ddp_model is not None
                else model.loss(batch, kl_weight=w, generator=noise)
            )
            total = terms["total"]
            if any_rank(not bool(torch.isfinite(total)), world_size=world_size, device=sync_device):
                bad = [k for k, v in terms.items() if not torch.isfinite(v)]
                raise TrainingFailed(
                    f"training stopped: the loss became {float(total.detach())} at epoch {epoch + 1}, "
                    f"batch {b + 1} (non-finite terms: {', '.join(bad)}); lower the learning "
                    "rate (--set lr=1e-4), check the data for extreme values, or change the "
                    "modality kind"
                )
            opt.zero_grad(set_to_none=True)
            total.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
            opt.step()
            if sched is not None and sched.last_epoch + 1 < sched.total_steps:
                sched.step()
            n = len(pos)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.detach() * n
            seen += n
        if res.stopped == "cancelled" and seen == 0:
            break
        row = {
            "refit": refit,
            "epoch": epoch + 1,
            "kl_weight": kl_weight(epoch + 1, n_warmup=cfg.kl_warmup_epochs, beta=cfg.beta),
            "lr": opt.param_groups[0]["lr"],
        }
        row.update(_mean_terms({k: float(v) for k, v in sums.items()}, seen, "train"))
        if len(val_idx):
            val = evaluate_loss(model, data, val_idx, kl_w=cfg.beta, seed=seed + 2)
            row.update({f"val_{k}": v for k, v in val.items()})
            score = val["total"]
        else:
            score = row["train_total"]
        row["seconds"] = time.monotonic() - t0
        res.history.append(row)
        res.epochs = epoch + 1
        # early stopping counts only once the KL weight has reached beta
        eligible = epoch + 1 >= min(cfg.kl_warmup_epochs, cfg.epochs)
        if eligible and math.isfinite(score) and score < best_val - cfg.min_delta:
            best_val, best_epoch, wait = score, epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif eligible:
            wait += 1
        if on_epoch is not None:
            on_epoch(row)
        if (
            checkpoint is not None
            and best_state is not None
            and (time.monotonic() - last_ckpt > cfg.checkpoint_seconds)
        ):
            checkpoint(best_state)
            last_ckpt = time.monotonic()
        if res.stopped == "cancelled":
            break
        if cfg.patience and len(val_idx) and wait >= cfg.patience:
            res.stopped = "early_stopping"
            break
    if best_state is None:
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        best_epoch = res.epochs
    model.load_state_dict(best_state)
    res.state_dict = {k: v.cpu() for k, v in best_state.items()}
    res.best_val, res.best_epoch = best_val, best_epoch
    return res


# -- metrics -------------------------------------------------------------------------------------
def knn_accuracy(
    latent: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray, *, k: int = KNN_K
) -> float:
    """Accuracy of a k-NN classifier fitted on latent[train] predicting labels[test]."""
    from sklearn.neighbors import KNeighborsClassifier

    if train.sum() < 2 or test.sum() < 1:
        return float("nan")
    clf = KNeighborsClassifier(n_neighbors=min(k, int(train.sum())))
    clf.fit(latent[train], labels[train])
    return float((clf.predict(latent[test]) == labels[test]).mean())


def pca_baseline(x: np.ndarray, train: np.ndarray, n_components: int, *, seed: int = 0):
    """PCA (fitted on train rows) of the preprocessed inputs x (n_obs, n_features)."""
    from sklearn.decomposition import PCA

    n_components = max(1, min(n_components, x.shape[1], int(train.sum()) - 1))
    pca = PCA(n_components=n_components, random_state=seed).fit(x[train])
    return pca.transform(x)


def compute_metrics(
    model,
    data: TensorData,
    split: np.ndarray,
    *,
    labels: np.ndarray | None,
    label: str | None,
    n_latent: int,
    seed: int,
) -> dict:
    """Headline metrics on the validation split (test for kNN when present).

    recon: per modality, mean squared error of the reconstruction (decoded posterior mean)
    against the observed values vs the per-feature training-mean baseline, on present val
    samples, in a space where the likelihood mean is the right point prediction: counts as
    counts per 10k (x / library * 1e4), proportion / continuous in the standardised space,
    categorical as one-hot probabilities (a Brier score). ratio = mse / baseline_mse (< 1 is
    better than the mean). knn: 15-NN accuracy of ``label`` on latent means vs PCA of the
    preprocessed inputs with n_latent components.
    """
    import torch

    from core.preprocess import SCALE_FACTOR

    model.eval()
    all_idx = torch.arange(data.n_obs)
    means = []
    preds: dict[str, list] = {m: [] for m in model.decoded}
    with torch.no_grad():
        for part in all_idx.split(4096):
            b = data.batch(part)
            mu, _ = model.encode(b["x"], b["cond"], b["present"])
            params = model.decode(mu, b["cond"], None)  # counts: proportions (library 1)
            for m, v in model.means(params).items():
                preds[m].append(v.cpu().numpy())
            means.append(mu.cpu().numpy())
    latent = np.concatenate(means)
    train, val, test = (split == "train"), (split == "val"), (split == "test")
    evalset = val if val.any() else (test if test.any() else train)
    recon = {}
    for m in model.decoded:
        t = data.numpy[m]
        kind = model.specs[m].kind
        pred = np.concatenate(preds[m])
        if kind == "counts":
            obs = t.target / t.library * SCALE_FACTOR
            pred = pred * SCALE_FACTOR
        elif kind == "categorical":
            obs = t.x
        else:
            obs = t.target
        w = t.mask if t.mask is not None else np.ones_like(obs)
        rows = evalset & t.present
        tr = train & t.present
        base = (obs[tr] * w[tr]).sum(axis=0) / np.maximum(w[tr].sum(axis=0), 1)
        if rows.any() and w[rows].sum() > 0:
            mse = float((((pred[rows] - obs[rows]) ** 2) * w[rows]).sum() / w[rows].sum())
            bmse = float((((base[None, :] - obs[rows]) ** 2) * w[rows]).sum() / w[rows].sum())
        else:
            mse = bmse = float("nan")
        recon[m] = {
            "mse": mse,
            "baseline_mse": bmse,
            "ratio": mse / bmse if bmse and math.isfinite(bmse) else float("nan"),
        }
    out = {"recon": recon}
    if labels is not None:
        target = test if test.any() else evalset
        x_all = np.concatenate([data.numpy[m].x for m in model.modalities], axis=1)
        pcs = pca_baseline(x_all, train, n_latent, seed=seed)
        out["knn"] = {
            "label": label,
            "k": KNN_K,
            "latent": knn_accuracy(latent, labels, train, target),
            "pca": knn_accuracy(pcs, labels, train, target),
        }
    return out


def translation_metrics(
    model, pre, data: TensorData, mdata, split: np.ndarray, *, target: str | None, seed: int
) -> dict:
    """Mean per-sample Pearson (data units, held-out samples having source and target) of
    translating each source modality into ``target`` (every decoded modality when None):
    the model (posterior from the source alone), the per-feature mean, and - when a target is
    given - the SVD-MLP baseline on the source's preprocessed input.
    """
    import torch

    from core.baselines import fit_svd_mlp, mean_baseline, per_sample_pearson
    from core.preprocess import aligned_matrix

    model.eval()
    train = split == "train"
    held = split == "test" if (split == "test").any() else split == "val"
    targets = [target] if target is not None else list(model.decoded)
    out: dict = {"metric": "mean per-sample Pearson (data units)", "pairs": {}}
    for t in targets:
        tr = pre.transforms[t]
        obs_t = aligned_matrix(mdata, t)[:, tr.keep]
        for s in model.modalities:
            if s == t:
                continue
            both = data.numpy[s].present & data.numpy[t].present
            test_rows, train_rows = np.nonzero(held & both)[0], np.nonzero(train & both)[0]
            if len(test_rows) < 2 or len(train_rows) < 5:
                continue
            idx = torch.as_tensor(test_rows)
            with torch.no_grad():
                b = data.batch(idx)
                mu, _ = model.encode({s: b["x"][s]}, b["cond"], {s: b["present"][s]})
                lib = {
                    t: torch.full(
                        (len(idx), 1), float(getattr(tr, "median_library", 1.0)), device=mu.device
                    )
                }
                pred = model.means(model.decode(mu, b["cond"], lib, modalities=[t]))[t]
            pred = tr.inverse_transform(pred.cpu().numpy())
            truth = obs_t[test_rows]
            row = {
                "n_test": int(len(test_rows)),
                "model": per_sample_pearson(truth, pred),
                "mean": per_sample_pearson(
                    truth, mean_baseline(obs_t[train_rows], n_obs=len(test_rows))
                ),
            }
            if target is not None and tr.kind != "categorical":
                xs = data.numpy[s].x
                yt = data.numpy[t].x if tr.kind == "counts" else data.numpy[t].target
                svd = fit_svd_mlp(xs[train_rows], yt[train_rows], seed=seed)
                ys = svd.predict(xs[test_rows])
                if tr.kind == "counts":  # log1p CP10k -> counts at the median library
                    ys = np.expm1(np.maximum(ys, 0)) / 1e4 * tr.median_library
                else:
                    ys = tr.inverse_transform(ys)
                row["svd_mlp"] = per_sample_pearson(truth, ys)
            out["pairs"][f"{s}->{t}"] = row
    return out


# -- the entry point -----------------------------------------------------------------------------
def _prepare_out(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    allowed = {STATUS, LOG, CANCEL}
    leftovers = [
        p.name for p in out.iterdir() if p.name not in allowed and not p.name.startswith(".")
    ]
    if leftovers:
        raise RunError(
            f"run directory {out} already exists and holds a run ({', '.join(sorted(leftovers)[:3])}"
            "...); choose another --out or delete it first"
        )
    (out / CANCEL).unlink(missing_ok=True)


HISTORY_WRITE_S = 1.0  # while training, history.csv and status.json are rewritten this often
SMALL_STEP = 2**17  # batch elements (samples x input features) below which one thread wins


@contextlib.contextmanager
def cpu_threads_for(tcfg: TrainConfig, n_features: int):
    """Train on one CPU thread when a step is small (batch_size x n_features < SMALL_STEP).

    The per-step matrices are then too small to split: a second thread only adds
    synchronisation. Measured on 2 cores, 500 x 1,240 features, batch 32, 10 epochs: 7.4 s wall /
    5.5 CPU-s on one thread vs 10.1 s / 9.3 CPU-s on two (the machine also serving the
    dashboard). Larger steps, and GPUs, keep torch's default. Restores the setting on exit.
    """
    import torch

    small = tcfg.batch_size * n_features < SMALL_STEP
    if not small or resolve_device(tcfg.device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(
    config: RunConfig,
    mdata,
    *,
    out: Path,
    progress: ProgressFn | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Run:
    """Fit preprocessing and ``config.train.refits`` models on ``mdata``; write run ``out``.

    Returns the loaded :class:`core.runs.Run`. A cancelled run keeps its best weights so far
    (state "cancelled"); a NaN/Inf loss marks it "failed" and raises TrainingFailed.
    progress(dict) is called after every epoch with keys epoch, n_epochs, refit, n_refits,
    metrics (train_* / val_* loss terms).
    Under torch.distributed (world_size > 1) every rank calls this; only rank 0 writes files.
    """
    out = Path(out)
    is_main = rank == 0
    if is_main:
        _prepare_out(out)
        write_json_atomic(out / CONFIG, config.to_dict())
        write_status(
            out,
            "running",
            created=time.time(),
            pid=os.getpid(),
            epoch=0,
            n_epochs=config.train.epochs,
            refit=0,
            n_refits=config.train.refits,
        )
    try:
        n_features = sum(int(a.n_vars) for a in mdata.mod.values())
        with cpu_threads_for(config.train, n_features):
            result = _train(
                config, mdata, out=out, progress=progress, rank=rank, world_size=world_size
            )
    except CancelledError:
        if is_main:
            write_status(out, "cancelled", error="cancelled by request before any weights")
        return Run(out) if is_main else None  # type: ignore[return-value]
    except TrainingFailed as exc:
        if is_main:
            write_status(out, "failed", error=str(exc))
        raise
    except BaseException as exc:
        if is_main:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if not isinstance(exc, InputError):  # a bad input's message stands on its own
                msg = f"{type(exc).__name__}: {msg}"
            write_status(out, "failed", error=msg)
        raise
    return result


def check_config(config: RunConfig, mdata) -> tuple[list[str], str | None, np.ndarray]:
    """Everything training checks before it fits, without fitting (InputError, one line).

    The model's needs (cvae / vae conditions, translator modalities and target), enough
    samples, the label and every condition column (:func:`core.data.check_condition`), and a
    valid split. Returns (modalities to model, label column or None, split (n_obs,) of
    "train" / "val" / "test"): what :func:`train` goes on with. The dashboard calls it before
    launching a job, so a bad setting never becomes a failed run.
    """
    from core.data import check_condition

    dcfg, mcfg = config.data, config.model
    mods = list(dcfg.modalities or list(mdata.mod))
    missing = [m for m in mods if m not in mdata.mod]
    if missing:
        raise InputError(f"modality {missing[0]!r} is not in the data; have {', '.join(mdata.mod)}")
    if mcfg.model == "cvae" and not dcfg.conditions:
        raise InputError("model 'cvae' needs at least one --condition COLUMN (an obs column)")
    if mcfg.model == "vae" and dcfg.conditions:
        raise InputError("conditions were given for model 'vae'; use --model cvae (or multivae)")
    if mcfg.model == "translator":
        if len(mods) < 2:
            raise InputError("model 'translator' needs at least two modalities")
        if mcfg.translator_target is not None and mcfg.translator_target not in mods:
            raise InputError(
                f"translator_target {mcfg.translator_target!r} is not one of the "
                f"modalities {', '.join(mods)}"
            )
        if mcfg.translator_scheme == "frozen_target" and mcfg.translator_target is None:
            raise InputError(
                "the frozen_target scheme needs a target modality; add --set translator_target=MOD"
            )
    if mdata.n_obs < 10:
        raise InputError(f"only {mdata.n_obs} samples: too few to train (need at least 10)")
    label = dcfg.label or pick_label(mdata.obs)
    if label is not None and label not in mdata.obs.columns:
        raise InputError(f"label column {label!r} is not in the sample metadata")
    for column in dcfg.conditions:  # one level, missing numbers: a clear error, not a silent fill
        check_condition(mdata, column)
    split = make_split(
        mdata,
        stratify=label if dcfg.stratify == "label" else dcfg.stratify,
        val_frac=dcfg.val_frac,
        test_frac=dcfg.test_frac,
        seed=dcfg.split_seed,
    )
    return mods, label, split


def _train(
    config: RunConfig, mdata, *, out: Path, progress: ProgressFn | None, rank: int, world_size: int
) -> Run:
    import torch

    from core.models import build_model, specs_from_preprocessor
    from core.preprocess import Preprocessor, feature_hash

    is_main = rank == 0
    dcfg, tcfg, mcfg = config.data, config.train, config.model
    t_start = time.monotonic()
    mods, label, split = check_config(config, mdata)
    train_mask = split == "train"
    pre = Preprocessor.fit(
        mdata, train=train_mask, conditions=dcfg.conditions, config=dcfg.preprocess, modalities=mods
    )
    device = resolve_device(tcfg.device)
    if world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    data = TensorData.from_mdata(pre, mdata, device=device)
    specs = specs_from_preprocessor(pre)
    n_cond = pre.conditions.n_cond
    labels = mdata.obs[label].astype(str).to_numpy() if label is not None else None

    if is_main:
        write_json_atomic(out / PREPROCESS, pre.state())
        write_json_atomic(
            out / FEATURES,
            {
                m: {"input": t.var_names, "model": t.features, "sha256": feature_hash(t.var_names)}
                for m, t in pre.transforms.items()
            },
        )
        write_json_atomic(
            out / MODEL,
            {
                "specs": {m: s.to_dict() for m, s in specs.items()},
                "n_cond": n_cond,
                "condition_names": pre.conditions.names,
            },
        )
        split_df = pd.DataFrame({"sample": np.asarray(mdata.obs_names, dtype=str), "split": split})
        write_text_atomic(out / SPLIT, split_df.to_csv(index=False))

    train_idx = np.nonzero(train_mask)[0]
    val_idx = np.nonzero(split == "val")[0]
    cancel_file = out / CANCEL
    history: list[dict] = []
    manifest: dict[str, str] = {}
    fits: list = []
    stopped = "epochs"

    def should_cancel() -> bool:
        return cancel_file.exists()

    last_write = [-math.inf]

    def write_progress(*, force: bool) -> None:
        """history.csv + status.json, at most every HISTORY_WRITE_S (rewriting the whole
        history every epoch made long runs' epochs slower and slower)."""
        now = time.monotonic()
        if not force and now - last_write[0] < HISTORY_WRITE_S:
            return
        last_write[0] = now
        row = history[-1]
        write_text_atomic(out / HISTORY, pd.DataFrame(history).to_csv(index=False))
        write_status(
            out,
            "running",
            epoch=row["epoch"],
            n_epochs=tcfg.epochs,
            refit=row["refit"],
            n_refits=tcfg.refits,
            phase=row["phase"],
        )

    for k in range(tcfg.refits):
        seed = tcfg.seed + k
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            model = build_model(specs, n_cond=n_cond, config=mcfg).to(device)
            fname = f"refit_{k}.pt"
            phases = ["target", "sources"] if model.scheme == "frozen_target" else ["joint"]

            def save_weights(state, fname=fname):
                if not is_main:
                    return
                _save_state(out / fname, state)
                manifest[fname] = sha256_file(out / fname)
                write_json_atomic(out / WEIGHTS_MANIFEST, manifest)

            for phase in phases:
                if phase != "joint":
                    model.set_phase(phase)
                ddp = None
                if world_size > 1:  # wrap per phase: the set of trained parameters changes
                    from torch.nn.parallel import DistributedDataParallel

                    ddp = _LossDDP(model, DistributedDataParallel)

                def on_epoch(row, k=k, phase=phase):
                    row["phase"] = phase
                    history.append(row)
                    if not is_main:
                        return
                    write_progress(force=False)
                    if progress is not None:
                        progress(
                            {
                                "epoch": row["epoch"],
                                "n_epochs": tcfg.epochs,
                                "refit": k,
                                "n_refits": tcfg.refits,
                                "phase": phase,
                                "metrics": {
                                    c: v for c, v in row.items() if c.startswith(("train_", "val_"))
                                },
                            }
                        )

                res = fit(
                    model,
                    data,
                    train_idx,
                    val_idx,
                    tcfg,
                    seed=seed,
                    refit=k,
                    on_epoch=on_epoch,
                    should_cancel=should_cancel,
                    checkpoint=save_weights,
                    rank=rank,
                    world_size=world_size,
                    ddp_model=ddp,
                )
                if is_main and history:
                    write_progress(force=True)  # the last epochs of this fit
                if res.stopped == "cancelled":
                    break
            if res.stopped == "cancelled" and not res.history:
                break
            save_weights(res.state_dict)
            fits.append((model, res))
        if res.stopped == "cancelled":
            stopped = "cancelled"
            break
    if not fits:
        raise CancelledError("cancelled before the first epoch finished")
    if not is_main:
        return None  # type: ignore[return-value]
    model0, res0 = fits[0]
    metrics = {
        "modalities": list(pre.modalities),
        "kinds": pre.kinds,
        "n_obs": int(mdata.n_obs),
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "val_loss": res0.best_val if math.isfinite(res0.best_val) else None,
        "best_epoch": res0.best_epoch,
        "epochs": res0.epochs,
        "stopped": res0.stopped,
        "n_refits": len(fits),
        "seconds": time.monotonic() - t_start,
        "device": str(device),
        "n_params": int(sum(p.numel() for p in model0.parameters())),
        "compiled_nb_loss": res0.compiled_nb,
    }
    metrics.update(
        compute_metrics(
            model0, data, split, labels=labels, label=label, n_latent=mcfg.n_latent, seed=tcfg.seed
        )
    )
    if model0.translator:
        metrics["translation"] = translation_metrics(
            model0, pre, data, mdata, split, target=model0.target, seed=tcfg.seed
        )
    write_json_atomic(out / METRICS, metrics)
    from core.latent import run_view

    # the dashboard's first map of this run then needs no data loading (before "done" is seen)
    run_view(Run(out), load_data=lambda: mdata)
    if stopped == "cancelled":
        write_status(
            out,
            "cancelled",
            error="cancelled by request; the best weights so far were kept",
            epoch=res0.epochs,
        )
    else:
        write_status(out, "done", epoch=res0.epochs, finished=time.time())
    return load_run(out)


class _LossDDP:
    """Calls DDP(model) so that gradients are all-reduced; forward = model.loss."""

    def __init__(self, model, ddp_cls) -> None:
        import torch

        class _Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, batch, kl_weight, generator):
                return self.m.loss(batch, kl_weight=kl_weight, generator=generator)

        self.ddp = ddp_cls(_Wrap(model))

    def __call__(self, batch, *, kl_weight, generator):
        return self.ddp(batch, kl_weight, generator)


def _save_state(path: Path, state: Mapping) -> None:
    """torch.save of a plain tensor state dict, atomically."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, buf)
    from core.runs import write_bytes_atomic

    write_bytes_atomic(path, buf.getvalue())


# -- CLI -----------------------------------------------------------------------------------------
def absolute_source(src: str) -> str:
    """A data source with its file path made absolute (built-in names stay as they are), so a
    run can rebuild its dataset from any working directory."""
    mod, sep, path = src.partition("=")
    if sep and Path(path).expanduser().exists():
        return f"{mod}={Path(path).expanduser().resolve()}"
    if not sep and Path(src).expanduser().exists():
        return str(Path(src).expanduser().resolve())
    return src


def config_from_args(args, *, n_modalities: int = 1) -> RunConfig:
    """RunConfig from parsed ``python -m core train`` arguments.

    Options left out (``--latent``, ``--beta``) take the defaults of
    :func:`core.model_config.model_defaults` (for data with ``n_modalities`` modalities) and
    :func:`core.runs.train_defaults`.
    """
    from core.cli import parse_assignments
    from core.model_config import ModelConfig, model_defaults

    kinds = parse_assignments(getattr(args, "kind", None), flag="--kind")
    data = DataConfig(
        sources=[absolute_source(s) for s in args.data],
        obs=absolute_source(args.obs) if args.obs else None,
        kinds=kinds,
        conditions=list(args.condition or []),
    )
    defaults = model_defaults(args.model, n_modalities)
    if args.latent is not None:
        defaults["n_latent"] = args.latent
    model = ModelConfig(model=args.model, **defaults)
    train_kw = train_defaults(args.model)
    if args.beta is not None:
        train_kw["beta"] = args.beta
    tr = TrainConfig(epochs=args.epochs, refits=args.refits, seed=args.seed, **train_kw)
    cfg = RunConfig(data=data, model=model, train=tr)
    overrides = parse_assignments(getattr(args, "overrides", None), flag="--set")
    return apply_overrides(cfg, overrides) if overrides else cfg


def train_command(args) -> tuple[str, dict]:
    """CLI: ``python -m core train ...``; prints one progress line per epoch to stderr."""

    out = new_run_path(args.out)
    try:
        cfg = config_from_args(args)
        mdata = load_data_config(cfg.data)
        cfg = config_from_args(args, n_modalities=len(mdata.mod))
    except BaseException as exc:  # a queued background job must not stay "queued" forever
        if (out / STATUS).exists():
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            write_status(out, "failed", error=msg)
        raise
    t0 = time.monotonic()

    def progress(p: dict) -> None:
        m = p["metrics"]
        val = m.get("val_total")
        print(
            f"refit {p['refit'] + 1}/{p['n_refits']} epoch {p['epoch']}/{p['n_epochs']} "
            f"train {m.get('train_total', float('nan')):.4g}"
            + (f" val {val:.4g}" if val is not None else "")
            + f" ({time.monotonic() - t0:.0f}s)",
            file=sys.stderr,
            flush=True,
        )

    _cancel_on_sigterm(out)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world_size > 1:  # launched by torchrun: one process per GPU (nccl) or CPU worker (gloo)
        import torch.distributed as dist

        backend = "nccl" if resolve_device(cfg.train.device).type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    try:
        run = train(
            cfg,
            mdata,
            out=out,
            progress=progress if rank == 0 else None,
            rank=rank,
            world_size=world_size,
        )
    finally:
        if world_size > 1:
            dist.destroy_process_group()
    if rank != 0:
        return "", {"rank": rank}
    metrics = run.metrics
    lines = [
        f"run {run.name}: {run.state} after {metrics.get('epochs')} epochs "
        f"({metrics.get('seconds', 0):.1f}s) -> {run.path}"
    ]
    if metrics.get("val_loss") is not None:
        lines.append(f"validation loss {metrics['val_loss']:.4g}")
    for m, r in metrics.get("recon", {}).items():
        lines.append(
            f"  {m}: reconstruction MSE {r['mse']:.4g} vs mean baseline {r['baseline_mse']:.4g}"
        )
    if "knn" in metrics:
        kn = metrics["knn"]
        lines.append(
            f"  15-NN accuracy on {kn['label']}: latent {kn['latent']:.3f}, PCA {kn['pca']:.3f}"
        )
    for pair, r in metrics.get("translation", {}).get("pairs", {}).items():
        svd = f", SVD-MLP {r['svd_mlp']:.3f}" if "svd_mlp" in r else ""
        lines.append(
            f"  translation {pair}: per-sample Pearson {r['model']:.3f} "
            f"(mean baseline {r['mean']:.3f}{svd})"
        )
    return "\n".join(lines), {"run": str(run.path), "status": run.status, "metrics": metrics}


def _cancel_on_sigterm(out: Path) -> None:
    """SIGTERM (e.g. a process manager stopping the job) -> a graceful cancel: the loop stops
    at its next batch, keeps the best weights and marks the run "cancelled"."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        if out.is_dir():
            (out / CANCEL).write_text("SIGTERM\n")

    signal.signal(signal.SIGTERM, handler)


def _out_of(argv: Sequence[str]) -> Path:
    for i, a in enumerate(argv):
        if a == "--out" and i + 1 < len(argv):
            return new_run_path(argv[i + 1])
        if a.startswith("--out="):
            return new_run_path(a.split("=", 1)[1])
    raise InputError("launch_job needs --out RUN_DIR in the training arguments")


def launch_job(argv: list[str]) -> subprocess.Popen:
    """Start ``python -m core train ARGV...`` as a background process.

    Writes status.json "queued" first, logs stdout/stderr to <run>/train.log, runs in its own
    session with stdin closed, so it outlives the caller (e.g. a Streamlit page). Follow it
    through status.json / history.csv; stop it with core.runs.request_cancel(run_dir).
    """
    argv = list(argv)
    if not argv or argv[0] != "train":
        argv = ["train", *argv]
    out = _out_of(argv)
    _prepare_out(out)
    write_status(out, "queued", created=time.time(), epoch=0)
    env = dict(os.environ)
    # idle OpenMP threads sleep instead of spinning, so the job leaves the dashboard's CPU alone
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["PYTHONPATH"] = str(REPO_ROOT) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    log = open(out / LOG, "ab")  # noqa: SIM115 - handed to the child process
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core", *argv],
            cwd=str(REPO_ROOT),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    finally:
        log.close()
    return proc
