"""The demo run shipped in assets/demo-run (copied on first launch) is valid and current.

If the simulator, the preprocessing or the model code changes, this fails: rebuild the asset
with ``bash assets/build-demo-run.sh``.
"""

import json
from pathlib import Path

import pytest

from core import embed, latent
from core.runs import load_run
from dashboard import demo

REBUILD = "stale demo run: rebuild it with `bash assets/build-demo-run.sh`"


@pytest.fixture(scope="module")
def demo_run():
    assert (demo.DEMO_ASSET / "weights.json").is_file(), f"missing {demo.DEMO_ASSET}"
    return load_run(demo.DEMO_ASSET)


def test_demo_run_is_the_documented_model(demo_run):
    cfg = demo_run.config
    assert cfg.data.sources == ["synthetic"] and cfg.model.model == "multivae"
    assert cfg.train.refits == int(demo.DEMO_ARGS[demo.DEMO_ARGS.index("--refits") + 1])
    assert json.loads((demo.DEMO_ASSET / "status.json").read_text())["state"] == "done"
    assert not (demo.DEMO_ASSET / "train.log").exists()
    sizes = [p.stat().st_size for p in Path(demo.DEMO_ASSET).glob("refit_*.pt")]
    assert len(sizes) == cfg.train.refits and max(sizes) < 2 * 1024**2


def test_demo_maps_are_cached_for_its_latent(demo_run):
    z, _ = latent.encode(demo_run, demo_run.load_data())
    for method in ("pca", "umap"):
        for dims in (3, 2):
            found = embed.find_cached(demo.DEMO_ASSET, z, method=method, n_components=dims)
            assert found is not None, f"{method} {dims}D map not cached: {REBUILD}"


def test_demo_view_is_cached_so_first_launch_needs_no_data(demo_run):
    def no_data():
        raise AssertionError(f"the demo's latent view is missing or stale: {REBUILD}")

    view = latent.run_view(demo_run, load_data=no_data)
    z, _ = latent.encode(demo_run, demo_run.load_data())
    assert view.latent.shape == z.shape
    assert abs(view.latent - z).max() < 1e-5, REBUILD
