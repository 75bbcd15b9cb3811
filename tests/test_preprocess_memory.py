"""Preprocessing float32 counts stays float32 and makes no full-size float64 copies."""

import tracemalloc

import anndata as ad
import mudata as md
import numpy as np

from core.preprocess import BLOCK_ROWS, CountsTransform, Preprocessor, aligned_matrix

N_OBS, N_VARS = 20_000, 100  # float32 matrix: 8 MB; a float64 copy: 16 MB; ~10 row blocks


def counts_mdata(X: np.ndarray) -> md.MuData:
    a = ad.AnnData(X)
    a.obs_names = [f"c{i}" for i in range(len(X))]
    a.var_names = [f"g{j}" for j in range(X.shape[1])]
    a.uns["kind"] = "counts"
    return md.MuData({"rna": a})


def simulated_counts(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(rng.gamma(1.0, 3.0, N_VARS), size=(N_OBS, N_VARS)).astype(np.float32)


def test_tensors_of_float32_counts_make_no_float64_copy():
    mdata = counts_mdata(simulated_counts())
    pre = Preprocessor.fit(mdata)
    nbytes = N_OBS * N_VARS * 4
    tracemalloc.start()
    try:
        tens = pre.tensors(mdata)["rna"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tens.x.dtype == tens.target.dtype == tens.library.dtype == np.float32
    assert tens.mask is None
    # the outputs x and target (2 x float32) plus less than one float32 copy of temporaries
    # (row blocks, boolean masks); a full float64 copy is 2 x float32 (the code before this
    # test peaked at ~10 x float32)
    assert peak < 3 * nbytes, f"peak {peak / 2**20:.1f} MiB for {nbytes / 2**20:.1f} MiB of counts"


def test_fit_on_float32_counts_makes_no_full_copy():
    mdata = counts_mdata(simulated_counts())
    tracemalloc.start()
    try:
        Preprocessor.fit(mdata)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # float64 row blocks and their masks only; a full copy of the counts alone would be more
    assert peak < N_OBS * N_VARS * 4, f"fit peaked at {peak / 2**20:.1f} MiB"


def test_blocked_counts_transform_matches_float64_reference():
    """Rows in several blocks, NaN only in a late block, inf, a column subset: same numbers
    as the plain float64 formula, float32 out, input untouched."""
    X = simulated_counts(1)[: 2 * BLOCK_ROWS + 17, :50].copy()
    X[2 * BLOCK_ROWS + 3, 7] = np.nan
    X[5, 2] = 1e6
    before = X.copy()
    t = CountsTransform([f"g{j}" for j in range(50)])
    t.keep = [0, 2, 3, 7, 11, 49]
    t.fit(X)
    enc = t.transform(X)
    assert np.array_equal(X, before, equal_nan=True)
    assert enc.x.dtype == enc.target.dtype == enc.library.dtype == enc.mask.dtype == np.float32
    counts = X.astype(np.float64)[:, t.keep]
    observed = ~np.isnan(counts)
    counts = np.nan_to_num(counts, nan=0.0)
    lib = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    np.testing.assert_array_equal(enc.x, np.log1p(counts / lib * 1e4).astype(np.float32))
    np.testing.assert_array_equal(enc.target, counts.astype(np.float32))
    np.testing.assert_array_equal(enc.library, lib.astype(np.float32))
    np.testing.assert_array_equal(enc.mask, observed.astype(np.float32))
    assert enc.mask[: 2 * BLOCK_ROWS].all()  # rows before the first NaN stay observed
    assert t.median_library == max(float(np.median(counts.sum(axis=1))), 1.0)


def test_aligned_matrix_is_a_float64_copy():
    mdata = counts_mdata(simulated_counts()[:100])
    out = aligned_matrix(mdata, "rna")
    assert out.dtype == np.float64
    out[:] = -1.0  # callers (perturbation) change it: the data must not change
    assert (mdata.mod["rna"].X >= 0).all()
