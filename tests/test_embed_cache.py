"""core.embed disk cache: hits, misses, reload without pickle, corrupt files, listing."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from core import embed
from core.errors import InputError

TSNE_FAST = {"n_iter": 40, "early_exaggeration_iter": 20}


@pytest.fixture()
def latent():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 6, (3, 6))
    return np.concatenate([rng.normal(c, 1.0, (70, 6)) for c in centres]).astype(np.float32)


class Recorder:
    """A progress callback that records its calls."""

    def __init__(self):
        self.calls: list[tuple[float, str]] = []

    def __call__(self, fraction: float, message: str) -> None:
        self.calls.append((fraction, message))

    @property
    def computed(self) -> bool:
        return any("loaded cached" not in m for _, m in self.calls)


def test_second_call_loads_from_disk_without_recomputing(tmp_path, latent):
    first_rec, second_rec = Recorder(), Recorder()
    assert embed.find_cached(tmp_path, latent, method="tsne", n_components=2, **TSNE_FAST) is None
    first = embed.cached(
        tmp_path, latent, method="tsne", n_components=2, seed=0, progress=first_rec, **TSNE_FAST
    )
    assert not first.from_cache and first_rec.computed
    files = sorted(p.name for p in (tmp_path / "embeddings").iterdir())
    assert files == [f"{first.key}.json", f"{first.key}.npz"]
    second = embed.cached(
        tmp_path, latent, method="tsne", n_components=2, seed=0, progress=second_rec, **TSNE_FAST
    )
    assert second.from_cache and not second_rec.computed and len(second_rec.calls) == 1
    np.testing.assert_array_equal(second.coords, first.coords)
    assert second.params == first.params and second.key == first.key
    found = embed.find_cached(tmp_path, latent, method="tsne", n_components=2, **TSNE_FAST)
    assert found is not None and found.from_cache and found.key == first.key
    assert embed.find_cached(tmp_path, latent, method="tsne", n_components=3, **TSNE_FAST) is None
    # the reloaded map places new points exactly like the one in memory
    z = latent[:5] + 0.1
    np.testing.assert_allclose(second.transform(z), first.transform(z), atol=1e-6)
    np.testing.assert_allclose(second.transform(latent), first.coords, atol=1e-3)


def test_cache_files_load_without_pickle(tmp_path, latent):
    emb = embed.cached(tmp_path, latent, method="pca", n_components=3, seed=0)
    path = tmp_path / "embeddings" / f"{emb.key}.npz"
    with np.load(path, allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)
        np.testing.assert_array_equal(data["coords"], emb.coords)
    meta = json.loads((tmp_path / "embeddings" / f"{emb.key}.json").read_text())
    assert meta["method"] == "pca" and meta["n_obs"] == 210 and meta["latent_sha1"]
    loaded = embed.load_cached(path)
    np.testing.assert_allclose(loaded.transform(latent), emb.coords, atol=1e-4)


def test_key_depends_on_method_params_seed_and_latent(latent):
    key = embed.cache_key(latent, method="umap", n_components=3, seed=0)
    # explicit defaults resolve to the same key
    assert key == embed.cache_key(latent, method="umap", n_components=3, seed=0, n_neighbors=15)
    others = {
        embed.cache_key(latent, method="umap", n_components=2, seed=0),
        embed.cache_key(latent, method="umap", n_components=3, seed=1),
        embed.cache_key(latent, method="umap", n_components=3, seed=0, min_dist=0.3),
        embed.cache_key(latent, method="tsne", n_components=3, seed=0),
        embed.cache_key(latent[:-1], method="umap", n_components=3, seed=0),
        embed.cache_key(latent + 1e-3, method="umap", n_components=3, seed=0),
    }
    assert key not in others and len(others) == 6
    assert key.startswith("umap3d-s0-")


def test_different_params_are_cached_side_by_side(tmp_path, latent):
    a = embed.cached(tmp_path, latent, method="pca", n_components=2, seed=0)
    b = embed.cached(tmp_path, latent, method="pca", n_components=2, seed=0, whiten=True)
    assert a.key != b.key and not b.from_cache
    table = embed.list_cached(tmp_path)
    assert set(table["key"]) == {a.key, b.key}
    assert list(table.columns[:4]) == ["key", "method", "n_components", "seed"]
    row = table.set_index("key").loc[b.key]
    assert (
        row["method"] == "pca"
        and row["n_obs"] == 210
        and json.loads(row["params"]) == {"whiten": True}
    )


def test_list_cached_of_an_empty_run_is_an_empty_table(tmp_path):
    table = embed.list_cached(tmp_path)
    assert table.empty and "method" in table.columns


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b"not a zip file"),
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        lambda p: p.write_bytes(b""),
    ],
    ids=["garbage", "truncated", "empty"],
)
def test_corrupt_cache_file_is_recomputed_not_a_crash(tmp_path, latent, damage):
    first = embed.cached(tmp_path, latent, method="pca", n_components=3, seed=0)
    path = tmp_path / "embeddings" / f"{first.key}.npz"
    damage(path)
    rec = Recorder()
    again = embed.cached(tmp_path, latent, method="pca", n_components=3, seed=0, progress=rec)
    assert not again.from_cache and rec.computed
    np.testing.assert_array_equal(again.coords, first.coords)
    assert zipfile.is_zipfile(path)  # rewritten
    assert embed.cached(tmp_path, latent, method="pca", n_components=3, seed=0).from_cache


def test_a_cache_file_for_another_key_is_not_trusted(tmp_path, latent):
    a = embed.cached(tmp_path, latent, method="pca", n_components=2, seed=0)
    b_key = embed.cache_key(latent, method="pca", n_components=2, seed=0, whiten=True)
    folder = tmp_path / "embeddings"
    (folder / f"{b_key}.npz").write_bytes((folder / f"{a.key}.npz").read_bytes())
    b = embed.cached(tmp_path, latent, method="pca", n_components=2, seed=0, whiten=True)
    assert not b.from_cache and b.params["whiten"] is True
    with pytest.raises(InputError, match="not a readable embedding cache"):
        embed.load_cached(folder / "missing.npz")


def test_no_temporary_files_are_left_behind(tmp_path, latent):
    embed.cached(tmp_path, latent, method="pca", n_components=3, seed=0)
    assert not [p for p in (tmp_path / "embeddings").iterdir() if p.name.startswith(".")]


def test_missing_run_directory_is_an_input_error(tmp_path, latent):
    with pytest.raises(InputError, match="does not exist"):
        embed.cached(tmp_path / "nope", latent, method="pca", n_components=2, seed=0)
