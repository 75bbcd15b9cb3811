"""core.embed: compute (PCA / UMAP / t-SNE), transform, subsampling. Tiny data, few iterations."""

from __future__ import annotations

import numpy as np
import pytest

from core import embed
from core.errors import InputError

FAST = {
    "pca": {},
    "umap": {"n_epochs": 40},
    "tsne": {"n_iter": 60, "early_exaggeration_iter": 30},
}


def blobs(n_per: int = 60, n_clusters: int = 4, dim: int = 8, seed: int = 0):
    """Well separated Gaussian clusters: latent (n, dim) float32 and labels (n,)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (n_clusters, dim))
    x = np.concatenate([rng.normal(c, 1.0, (n_per, dim)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(n_clusters), n_per)


@pytest.fixture(scope="module")
def data():
    return blobs()


@pytest.fixture(scope="module")
def fitted(data):
    """One embedding per (method, dims) for the slow methods, computed once per module."""
    x, _ = data
    out = {}
    for method in ("umap", "tsne"):
        for k in (2, 3):
            out[method, k] = embed.compute(x, method=method, n_components=k, seed=0, **FAST[method])
    return out


def cluster_separation(coords: np.ndarray, labels: np.ndarray) -> float:
    """Smallest distance between cluster centroids / largest within-cluster spread."""
    cents = np.array([coords[labels == c].mean(0) for c in np.unique(labels)])
    spread = max(coords[labels == c].std(0).max() for c in np.unique(labels))
    d = np.linalg.norm(cents[:, None] - cents[None], axis=-1)
    return float(d[np.triu_indices(len(cents), 1)].min() / spread)


# --- shapes, determinism, structure -----------------------------------------------------------


@pytest.mark.parametrize("method,k", [("umap", 2), ("umap", 3), ("tsne", 2), ("tsne", 3)])
def test_shapes_and_structure(fitted, data, method, k):
    x, labels = data
    emb = fitted[method, k]
    assert emb.coords.shape == (len(x), k) and emb.coords.dtype == np.float32
    assert emb.method == method and emb.n_components == k and emb.seed == 0
    assert np.isfinite(emb.coords).all()
    assert len(emb.axis_names) == k
    assert emb.reference.shape == x.shape and emb.reference_coords.shape == (len(x), k)
    # the blobs are far apart: the map must keep them apart
    assert cluster_separation(emb.coords, labels) > 1.5


@pytest.mark.parametrize("method,k", [("umap", 3), ("tsne", 2), ("tsne", 3)])
def test_same_seed_same_map_other_seed_other_map(fitted, data, method, k):
    x, _ = data
    again = embed.compute(x, method=method, n_components=k, seed=0, **FAST[method])
    np.testing.assert_array_equal(again.coords, fitted[method, k].coords)
    other = embed.compute(x, method=method, n_components=k, seed=1, **FAST[method])
    assert not np.allclose(other.coords, fitted[method, k].coords)


def test_input_is_not_mutated(data):
    x, _ = data
    before = x.copy()
    embed.compute(x, method="tsne", n_components=2, seed=0, **FAST["tsne"])
    np.testing.assert_array_equal(x, before)


def test_pca_matches_sklearn_up_to_sign_and_fixes_signs(data):
    from sklearn.decomposition import PCA

    x, _ = data
    emb = embed.compute(x, method="pca", n_components=3)
    ref = PCA(n_components=3).fit_transform(x.astype(np.float64))
    for j in range(3):
        assert np.allclose(np.abs(emb.coords[:, j]), np.abs(ref[:, j]), atol=1e-3)
    comps = emb.state["components"]
    assert (comps[np.arange(3), np.abs(comps).argmax(1)] > 0).all()
    # negated data: same (sign-fixed) components, so exactly negated coordinates
    flipped = embed.compute(-x, method="pca", n_components=3)
    np.testing.assert_allclose(flipped.coords, -emb.coords, atol=1e-4)


def test_pca_whiten_gives_unit_variance(data):
    x, _ = data
    emb = embed.compute(x, method="pca", n_components=2, whiten=True)
    np.testing.assert_allclose(emb.coords.std(0, ddof=1), 1.0, rtol=1e-3)
    assert emb.params == {"whiten": True}


def test_pca_of_low_dimensional_latent_pads_with_zeros():
    x = np.random.default_rng(0).normal(size=(50, 2))
    emb = embed.compute(x, method="pca", n_components=3)
    assert emb.coords.shape == (50, 3) and np.all(emb.coords[:, 2] == 0)
    assert any("dimensions" in n for n in emb.notes)


# --- transform -------------------------------------------------------------------------------


def test_pca_transform_is_the_exact_projection(data):
    x, _ = data
    emb = embed.compute(x, method="pca", n_components=3)
    np.testing.assert_allclose(emb.transform(x), emb.coords, atol=1e-4)
    z = np.random.default_rng(5).normal(size=(7, x.shape[1]))
    expected = (z - x.astype(np.float64).mean(0)) @ emb.state["components"].T
    np.testing.assert_allclose(emb.transform(z), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method,k", [("umap", 3), ("tsne", 2)])
def test_transform_reference_returns_reference_coords(fitted, data, method, k):
    x, _ = data
    emb = fitted[method, k]
    np.testing.assert_allclose(emb.transform(x), emb.coords, atol=1e-3)


@pytest.mark.parametrize("method,k", [("umap", 3), ("tsne", 2)])
def test_new_point_lands_near_its_nearest_reference_points(fitted, data, method, k):
    x, labels = data
    emb = fitted[method, k]
    rng = np.random.default_rng(3)
    span = np.ptp(emb.coords, axis=0).max()
    for i in (0, 75, 150, 230):
        z = x[i] + rng.normal(0, 0.05, x.shape[1]).astype(np.float32)
        placed = emb.transform(z[None])[0]
        near = np.argsort(np.linalg.norm(x - z, axis=1))[:10]
        # within the cloud of its nearest references, and in its own cluster
        assert np.linalg.norm(placed - emb.coords[near].mean(0)) < 0.1 * span
        cents = np.array([emb.coords[labels == c].mean(0) for c in range(4)])
        assert np.argmin(np.linalg.norm(cents - placed, axis=1)) == labels[i]


def test_transform_checks_dimensions(fitted):
    with pytest.raises(InputError, match="dimensions"):
        fitted["umap", 3].transform(np.zeros((2, 3)))
    assert fitted["umap", 3].transform(np.zeros((0, 8))).shape == (0, 3)


def test_coordinates_are_read_only(fitted):
    with pytest.raises(ValueError):
        fitted["umap", 2].coords[0, 0] = 1.0


# --- max_fit (3D t-SNE subsampling) ----------------------------------------------------------


def test_3d_tsne_defaults_to_a_capped_fit():
    assert embed.default_params("tsne", n_components=3)["max_fit"] == embed.TSNE_3D_MAX_FIT
    assert embed.default_params("tsne", n_components=2)["max_fit"] == 0
    assert embed.default_params("umap", n_components=3)["max_fit"] == 0
    # resolved params round-trip: passing them back gives the same map settings
    params = embed.default_params("tsne", n_components=3)
    assert embed.default_params("tsne", n_components=3) == embed._resolve_params(
        "tsne", 3, n_obs=None, params=params
    )
    with pytest.raises(InputError, match="max_fit"):
        embed.compute(np.ones((9, 2)), method="tsne", max_fit=2)


def test_max_fit_fits_a_subsample_places_the_rest_and_says_so(data):
    x, labels = data
    with pytest.warns(UserWarning, match="fitted on 80 of 240"):
        emb = embed.compute(x, method="tsne", n_components=3, seed=0, max_fit=80, **FAST["tsne"])
    assert emb.coords.shape == (240, 3) and len(emb.fit_indices) == 80
    assert emb.reference.shape == (80, x.shape[1])
    assert any("80 of 240" in n for n in emb.notes)
    np.testing.assert_array_equal(emb.coords[emb.fit_indices], emb.reference_coords)
    assert cluster_separation(emb.coords, labels) > 1.0


# --- progress --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_progress_is_monotone_and_ends_at_one(data, method):
    x, _ = data
    seen: list[tuple[float, str]] = []
    embed.compute(
        x, method=method, n_components=2, progress=lambda f, m: seen.append((f, m)), **FAST[method]
    )
    fractions = [f for f, _ in seen]
    assert fractions[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions)
    if method == "tsne":  # real iteration progress from openTSNE's callbacks
        assert sum("iteration" in m for _, m in seen) >= 5


def test_umap_progress_reports_epochs(data):
    x, _ = data
    seen: list[tuple[float, str]] = []
    embed.compute(
        x[:120],
        method="umap",
        n_components=3,
        n_epochs=400,
        progress=lambda f, m: seen.append((f, m)),
    )
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("epoch" in m for _, m in seen)


# --- parameters and errors --------------------------------------------------------------------


def test_small_data_clips_neighbours_and_perplexity_with_a_note():
    x, _ = blobs(n_per=6, n_clusters=2)
    emb = embed.compute(x, method="tsne", n_components=2, **FAST["tsne"])
    assert emb.params["perplexity"] == pytest.approx(11 / 3)
    assert any("perplexity" in n for n in emb.notes)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"method": "mds"}, "unknown embedding method"),
        ({"method": "pca", "n_components": 4}, "n_components"),
        ({"method": "umap", "n_neighbours": 5}, "unknown umap parameter"),
        ({"method": "umap", "metric": "hamming"}, "metric must be one of"),
        ({"method": "tsne", "perplexity": -1}, "bad tsne parameters"),
        ({"method": "pca", "seed": -3}, "seed"),
    ],
)
def test_bad_options_are_input_errors(data, kwargs, match):
    with pytest.raises(InputError, match=match):
        embed.compute(data[0], **kwargs)


def test_nan_rows_are_named():
    x = np.ones((10, 3))
    x[4, 1] = np.nan
    with pytest.raises(InputError, match="row 4, column 1"):
        embed.compute(x, method="pca")
    with pytest.raises(InputError, match="at least 3"):
        embed.compute(np.ones((2, 3)), method="pca")
    with pytest.raises(InputError, match="2D array"):
        embed.compute(np.ones(5), method="pca")


# --- stratified_subsample ---------------------------------------------------------------------


def test_stratified_subsample_is_proportional_with_one_per_label():
    labels = np.array(["a"] * 900 + ["b"] * 90 + ["c"] * 9 + ["d"])
    idx = embed.stratified_subsample(labels, max_n=100, seed=0)
    assert len(idx) == 100 and np.all(np.diff(idx) > 0) and idx.dtype == np.int64
    picked = dict(zip(*np.unique(labels[idx], return_counts=True), strict=True))
    assert picked["d"] == 1 and picked["c"] >= 1
    assert 87 <= picked["a"] <= 90 and 8 <= picked["b"] <= 10
    np.testing.assert_array_equal(idx, embed.stratified_subsample(labels, max_n=100, seed=0))
    assert not np.array_equal(idx, embed.stratified_subsample(labels, max_n=100, seed=1))


def test_stratified_subsample_edge_cases():
    np.testing.assert_array_equal(embed.stratified_subsample(["x", "y"], max_n=5), [0, 1])
    uni = embed.stratified_subsample(None, max_n=10, n_obs=1000, seed=2)
    assert len(uni) == 10 and len(set(uni)) == 10 and uni.max() < 1000
    with_nan = embed.stratified_subsample([np.nan] * 5 + ["a"] * 95, max_n=10)
    assert (with_nan < 5).sum() >= 1  # missing labels are a group of their own
    with pytest.raises(InputError, match="distinct labels"):
        embed.stratified_subsample(list(range(20)), max_n=5)
    with pytest.raises(InputError, match="n_obs"):
        embed.stratified_subsample(None, max_n=5)
    with pytest.raises(InputError, match="max_n"):
        embed.stratified_subsample(["a"], max_n=0)


@pytest.mark.parametrize("method", ["pca", "umap", "tsne"])
def test_three_points_still_give_a_map(method):
    x = np.random.default_rng(0).normal(size=(3, 4))
    params = {"umap": {"n_epochs": 10}, "tsne": {"n_iter": 10}, "pca": {}}[method]
    emb = embed.compute(x, method=method, n_components=3, **params)
    assert emb.coords.shape == (3, 3) and np.isfinite(emb.coords).all()
