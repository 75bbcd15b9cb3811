"""Benchmark the negative-binomial loss kernel; prints one JSON object.

Compares, on seeded simulated counts (bench/train_speed.py's simulator, n_genes = 2,000):

- ``reference``: the elementwise formula ``core.likelihoods.nb_log_prob`` through autograd (torch's
  lgamma forward, digamma backward; what the NB head used before);
- ``fused``: ``core.likelihoods.nb_nll``, the fused autograd function (eager, cache-sized row
  blocks, vectorised lgamma / digamma series) the NB head uses now;
- ``compiled``: the same function with OLE_COMPILE_NB=1 (torch.compile / inductor), skipped with
  ``--no-compile``; ``compile_s`` is the first call's time, compilation included.

Two measurements per batch size: the loss alone (forward + backward of a (batch, n_genes) loss) and
a whole training step of the benchmark's VAE (2,000 -> 128 -> 10, NB) built the way
``python -m core train`` builds it (Preprocessor -> TensorData -> build_model; gather, loss,
backward, gradient clipping, fused AdamW). Variants run interleaved in ``--rounds`` rounds and the
best round is reported (the machine is shared: minima are the least noisy), as milliseconds of
wall time and of process CPU time. ``max_rel_diff``: how far each variant is from the reference
(largest difference over the largest reference value, for the loss and both gradients).

Usage: ``python bench/nb_kernel_speed.py [--batch-sizes 128,1024] [--rounds 3] [--no-compile]
[--out bench/results/nb_kernel_speed.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
N_VARS = 2000
N_OBS = 4096  # rows the training step samples batches from


def _timed(fn, reps: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per call of ``fn`` averaged over ``reps`` calls."""
    t, c = time.perf_counter(), time.process_time()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1e3, (time.process_time() - c) / reps * 1e3


def _best(rows: list[tuple[float, float]]) -> dict:
    return {
        "wall_ms": round(min(r[0] for r in rows), 3),
        "cpu_ms": round(min(r[1] for r in rows), 3),
    }


class _Variant:
    """Switches core.likelihoods between the reference formula, the eager and compiled kernels."""

    def __init__(self) -> None:
        import core.likelihoods as lik

        self.lik = lik
        self.fused = lik.nb_nll

    def reference(self, x, log_mu, log_theta, mask=None):
        lp = self.lik.nb_log_prob(x, log_mu, log_theta, factorial=False)
        return -(lp if mask is None else lp * mask).sum(dim=-1)

    def use(self, name: str) -> None:
        self.lik.nb_nll = self.reference if name == "reference" else self.fused
        if name == "compiled":
            os.environ[self.lik.COMPILE_ENV] = "1"
        else:
            os.environ.pop(self.lik.COMPILE_ENV, None)


def loss_timings(counts, batch_size: int, variants: list[str], rounds: int, sw: _Variant) -> dict:
    """Forward + backward of the NB loss alone on a (batch_size, n_vars) block."""
    import torch

    x = counts[:batch_size].contiguous()
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(x.shape, generator=g)
    lib = x.sum(1, keepdim=True).clamp_min(1.0)
    log_mu = (torch.log_softmax(logits, -1) + lib.log()).requires_grad_()
    log_theta = (torch.randn(x.shape[1], generator=g) * 0.5 + 1.0).requires_grad_()
    reps = max(2, 4096 // batch_size)

    def run():
        log_mu.grad = None
        log_theta.grad = None
        sw.lik.nb_nll(x, log_mu, log_theta).mean().backward()

    out: dict = {}
    results: dict = {}
    for name in variants:  # first calls (compilation) and agreement
        sw.use(name)
        t = time.perf_counter()
        run()
        if name == "compiled":
            out["compile_s"] = round(time.perf_counter() - t, 2)
        nll = sw.lik.nb_nll(x, log_mu.detach(), log_theta.detach())
        results[name] = (nll, log_mu.grad.clone(), log_theta.grad.clone())
    ref = results["reference"]
    out["max_rel_diff"] = {
        name: {
            "loss": float((r[0] - ref[0]).abs().max() / ref[0].abs().max()),
            "grad_log_mu": float((r[1] - ref[1]).abs().max() / ref[1].abs().max()),
            "grad_log_theta": float((r[2] - ref[2]).abs().max() / ref[2].abs().max()),
        }
        for name, r in results.items()
        if name != "reference"
    }
    rows: dict[str, list] = {name: [] for name in variants}
    for _ in range(rounds):
        for name in variants:
            sw.use(name)
            run()
            rows[name].append(_timed(run, reps))
    for name in variants:
        out[name] = _best(rows[name])
    return out


def step_timings(counts, batch_size: int, variants: list[str], rounds: int, sw: _Variant) -> dict:
    """One training step of the benchmark VAE (as core.train.fit runs it), per variant."""
    import anndata
    import mudata
    import torch

    from core.models import ModelConfig, build_model, specs_from_preprocessor
    from core.preprocess import Preprocessor
    from core.train import TensorData

    n_obs, n_vars = counts.shape
    adata = anndata.AnnData(counts.numpy())
    adata.obs_names = [f"cell{i}" for i in range(n_obs)]
    adata.var_names = [f"gene{j}" for j in range(n_vars)]
    adata.uns["kind"] = "counts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        mdata = mudata.MuData({"rna": adata})
    pre = Preprocessor.fit(mdata)
    data = TensorData.from_mdata(pre, mdata, device=torch.device("cpu"))
    torch.manual_seed(0)
    config = ModelConfig(model="vae", n_latent=10, n_hidden=128, n_layers=1)
    model = build_model(specs_from_preprocessor(pre), n_cond=0, config=config)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, fused=True)
    gen = torch.Generator().manual_seed(1)
    perm = torch.randperm(n_obs, generator=gen)

    def step():
        pos = torch.randint(0, n_obs, (batch_size,), generator=gen)
        terms = model.loss(data.batch(perm[pos]), kl_weight=1.0, generator=gen)
        total = terms["total"]
        if not bool(torch.isfinite(total)):
            raise RuntimeError("non-finite loss in the benchmark step")
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()

    reps = max(4, 8192 // batch_size)
    rows: dict[str, list] = {name: [] for name in variants}
    for name in variants:  # warm-up (and compilation)
        sw.use(name)
        for _ in range(3):
            step()
    for _ in range(rounds):
        for name in variants:
            sw.use(name)
            step()
            rows[name].append(_timed(step, reps))
    out = {}
    for name in variants:
        best = _best(rows[name])
        best["samples_per_s"] = round(batch_size / best["wall_ms"] * 1e3, 1)
        out[name] = best
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-sizes", default="128,1024")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    a = ap.parse_args(argv)
    # as bench/train_speed.py's children: spinning OpenMP threads on a shared 2-core machine make
    # 2-thread torch many times slower; must be set before torch starts its thread pool
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.path.insert(0, str(REPO_ROOT))
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import torch
    from train_speed import simulate_counts

    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    counts = torch.from_numpy(simulate_counts(N_OBS, N_VARS, seed=a.seed))
    sw = _Variant()
    variants = ["reference", "fused"] + ([] if a.no_compile else ["compiled"])
    result: dict = {
        "benchmark": "nb_kernel_speed",
        "config": {"n_vars": N_VARS, "n_obs": N_OBS, "rounds": a.rounds, "seed": a.seed},
        "machine": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "load_avg_start": list(os.getloadavg()),
        },
        "zero_fraction": round(float((counts == 0).float().mean()), 3),
        "results": [],
    }
    try:
        for bs in [int(b) for b in a.batch_sizes.split(",")]:
            loss = loss_timings(counts, bs, variants, a.rounds, sw)
            step = step_timings(counts, bs, variants, a.rounds, sw)
            speedup = {
                f"{kind}_{name}_vs_reference": round(
                    rows["reference"]["wall_ms"] / rows[name]["wall_ms"], 2
                )
                for kind, rows in (("loss", loss), ("step", step))
                for name in variants[1:]
            }
            result["results"].append(
                {"batch_size": bs, "loss_fwd_bwd": loss, "train_step": step, "speedup": speedup}
            )
    finally:
        sw.use("fused")
    result["machine"]["load_avg_end"] = list(os.getloadavg())
    result["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=2)
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
