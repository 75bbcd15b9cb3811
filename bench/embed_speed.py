"""How long do the latent maps take? Prints one JSON object (and writes it with --out).

Times ``core.embed.compute`` for 3D UMAP, 2D t-SNE (openTSNE FFT), 3D t-SNE (openTSNE
Barnes-Hut, by default fitted on at most ``TSNE_3D_MAX_FIT`` points and the rest placed by
nearest neighbours) and 3D PCA on a 10-dimensional Gaussian-mixture latent, the unseeded
multi-threaded UMAP for comparison (umap-learn called directly: ``core.embed`` always seeds),
loading a cached 20,000-point map from disk, the first UMAP call of a fresh process, and the
Embeddings page itself (``--page-size``, see :func:`time_page_render`): a run of that many
samples is trained in a temporary runs directory, its 3D UMAP is computed through the page (the
dashboard's background job, progress shown), then a fresh process times the page's first render
from the disk cache, re-renders and "Colour by" changes with ``streamlit.testing.v1.AppTest``
and checks that nothing was recomputed; ``--page-browser`` also times headless Chromium until
the 3D canvas is drawn.

Examples::

    python bench/embed_speed.py                                  # 5k and 20k, default methods
    python bench/embed_speed.py --sizes 5000 --methods pca umap3d --page-size 0
    python bench/embed_speed.py --sizes 5000 20000 50000 --methods tsne3d --tsne3d-max-fit 0
    python bench/embed_speed.py --sizes 1000 --methods pca --cache-size 0 --page-size 2000

Run it alone on the machine: timings on a shared CPU are noisy (the load average is reported).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# core.embed is imported inside functions: it pulls in torch (via core.runs), and the page's
# fresh-process children must pay that import inside the render they time, not before it.
EMBEDDINGS_DIR = "embeddings"  # core.embed.EMBEDDINGS_DIR: a run's cached maps
METHODS = ("pca", "umap3d", "umap3d_parallel", "tsne2d", "tsne3d")
DEFAULT_METHODS = ("pca", "umap3d", "umap3d_parallel", "tsne2d")


def mixture(n: int, *, dim: int = 10, n_clusters: int = 8, seed: int = 0) -> np.ndarray:
    """A Gaussian-mixture latent (n, dim) float32, clusters of unequal size and width."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, (n_clusters, dim))
    widths = rng.uniform(0.5, 1.5, n_clusters)
    weights = rng.dirichlet(np.full(n_clusters, 3.0))
    comp = rng.choice(n_clusters, size=n, p=weights)
    return (centres[comp] + rng.normal(size=(n, dim)) * widths[comp, None]).astype(np.float32)


def _stderr_progress(label: str):
    last = {"pct": -10}

    def report(fraction: float, message: str) -> None:
        pct = int(fraction * 100)
        if pct >= last["pct"] + 10 or fraction >= 1.0:
            last["pct"] = pct
            print(f"  [{label}] {pct:3d}% {message}", file=sys.stderr, flush=True)

    return report


def time_method(method: str, x: np.ndarray, *, seed: int, tsne3d_max_fit: int | None) -> dict:
    from core import embed

    n = len(x)
    label = f"{method} n={n}"
    print(f"{label} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    cpu0 = time.process_time()
    row: dict = {"method": method, "n": n}
    if method == "umap3d_parallel":
        import warnings

        import umap

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            umap.UMAP(n_components=3, n_jobs=-1).fit_transform(x)  # no random_state
        row.update(
            fit_n=n, notes=["umap-learn without random_state: multi-threaded, not reproducible"]
        )
    else:
        spec = {
            "pca": ("pca", 3, {}),
            "umap3d": ("umap", 3, {}),
            "tsne2d": ("tsne", 2, {}),
            "tsne3d": ("tsne", 3, {"max_fit": tsne3d_max_fit}),
        }[method]
        name, k, params = spec
        emb = embed.compute(
            x, method=name, n_components=k, seed=seed, progress=_stderr_progress(label), **params
        )
        row.update(fit_n=int(len(emb.fit_indices)), notes=list(emb.notes), params=emb.params)
    row["seconds"] = round(time.perf_counter() - started, 2)
    row["cpu_seconds"] = round(time.process_time() - cpu0, 2)
    print(f"{label}: {row['seconds']} s", file=sys.stderr, flush=True)
    return row


def time_cache_load(x: np.ndarray, *, seed: int) -> dict:
    """Compute a 3D UMAP into a temporary run folder once, then time loading it back."""
    from core import embed

    with tempfile.TemporaryDirectory(prefix="ole-bench-") as tmp:
        t0 = time.perf_counter()
        first = embed.cached(tmp, x, method="umap", n_components=3, seed=seed)
        compute_s = time.perf_counter() - t0
        loads = []
        for _ in range(5):
            t0 = time.perf_counter()
            again = embed.cached(tmp, x, method="umap", n_components=3, seed=seed)
            loads.append(time.perf_counter() - t0)
            assert again.from_cache and np.array_equal(again.coords, first.coords)
        new = x[:1000] + np.float32(0.05)
        t0 = time.perf_counter()
        again.transform(new)
        transform_s = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (Path(tmp) / "embeddings").iterdir())
    return {
        "method": "umap3d",
        "n": len(x),
        "compute_and_save_seconds": round(compute_s, 2),
        "load_seconds_median": round(float(np.median(loads)), 4),
        "load_seconds_max": round(float(np.max(loads)), 4),
        "transform_1000_new_points_seconds_after_reload": round(transform_s, 3),
        "cache_bytes": size,
        "note": "load = cached() hit: sha1 of the latent + np.load(allow_pickle=False) + checks",
    }


def time_first_umap_call(seed: int, n: int = 5000) -> dict:
    """First vs second UMAP call in this process (import + JIT vs warm), seeded and parallel.

    ``n`` >= 4096 so that umap-learn's approximate kNN (pynndescent) is compiled here too;
    below that size umap uses exact distances and a later, larger call would compile then.
    """
    from core import embed

    x = mixture(n, seed=seed + 1)
    out: dict = {"n": n}
    for label in ("first_call_seconds", "second_call_seconds"):
        t0 = time.perf_counter()
        embed.compute(x, method="umap", n_components=3, seed=seed)
        out[label] = round(time.perf_counter() - t0, 2)
    import warnings

    import umap

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        umap.UMAP(n_components=3, n_jobs=-1).fit_transform(x)
    out["parallel_first_call_seconds"] = round(time.perf_counter() - t0, 2)
    out["note"] = (
        "first call in a fresh process (import + numba JIT, partly from numba's on-disk cache, "
        "pynndescent compiles every process) vs the same call again; parallel = umap-learn "
        "without random_state. The very first call after installing umap-learn compiled for "
        "~70 s (issue 4); that is not re-measured (it means deleting the shared venv's cache)"
    )
    return out


# ---------------------------------------------------------------- the Embeddings page
PAGE_RUN = "bench-page"
ENTRY = REPO / "dashboard" / "app.py"
# Bound widgets keep their option *labels* in the URL (as a copied link has them).
PAGE_QUERY = {"dataset": "synthetic", "run": PAGE_RUN, "emb_method": "UMAP", "emb_dims": "3D"}
PAGE_COLOURS = ("obs:age", "obs:tissue")  # "Colour by" values chosen after the first render
PAGE_RERUNS = 3
UMAP_WAIT_S = 900  # the page's background UMAP job (first call in the process: numba JIT)


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _page_env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OLE_RUNS_DIR": str(root / "runs"),
        "OLE_UPLOAD_DIR": str(root / "uploads"),
        "OLE_DEMO": "0",
    }


def _subprocess(cmd: list[str], root: Path, *, timeout: float) -> tuple[str, dict]:
    """Run ``cmd`` from the repo root with the page's OLE_* variables; (stdout, timings)."""
    t0, c0 = time.perf_counter(), _child_cpu()
    proc = subprocess.run(
        cmd, cwd=REPO, env=_page_env(root), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    timings = {
        "process_seconds": round(time.perf_counter() - t0, 2),
        "process_cpu_seconds": round(_child_cpu() - c0, 2),
    }
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{proc.stderr[-4000:]}")
    return proc.stdout, timings


def _page_child(mode: str, root: Path, n: int) -> dict:
    """This script in a fresh process (``--page-child``): cold caches, like a restarted app."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--page-child", mode]
    cmd += ["--page-root", str(root), "--page-size", str(n)]
    out, timings = _subprocess(cmd, root, timeout=UMAP_WAIT_S + 600)
    return {**json.loads(out.strip().splitlines()[-1]), **timings}


def _decode(obj):
    """Plotly's base64 typed arrays ({"dtype", "bdata"}) -> numpy (as tests/st_apptest.py)."""
    import base64

    if isinstance(obj, dict) and "bdata" in obj and set(obj) <= {"dtype", "bdata", "shape"}:
        arr = np.frombuffer(
            base64.b64decode(obj["bdata"]), np.dtype(obj["dtype"]).newbyteorder("<")
        )
        return (
            arr.reshape([int(d) for d in str(obj["shape"]).split(",")]) if "shape" in obj else arr
        )
    return obj


def _page_view(at) -> dict:
    """What a render drew: map title, points, progress bars, errors; ``_coords`` (n, 3) sorted
    rows of every trace's x/y/z (a colour change regroups the traces, not the points)."""
    charts = at.get("plotly_chart")
    fig = json.loads(charts[0].proto.spec) if charts else {"data": [], "layout": {}}
    traces = fig["data"]
    xyz = [
        np.column_stack([np.asarray(_decode(t[a]), dtype=np.float64) for a in "xyz"])
        for t in traces
        if all(a in t for a in "xyz")
    ]
    coords = np.concatenate(xyz) if xyz else np.empty((0, 3))
    coords = coords[np.lexsort(coords.T[::-1])] if len(coords) else coords
    title = fig.get("layout", {}).get("title", {})
    return {
        "title": title.get("text", "") if isinstance(title, dict) else str(title),
        "n_points": len(coords),
        "n_traces": len(traces),
        "progress_bars": [f"{p.value}% {p.proto.text}" for p in at.get("progress")],
        "errors": [e.value for e in at.error] + [str(e.value) for e in at.exception],
        "_coords": coords,
    }


def _new_app(timeout: float):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ENTRY), default_timeout=timeout)
    for k, v in PAGE_QUERY.items():
        at.query_params[k] = v
    return at


def _maps_on_disk(run_dir: Path) -> list[str]:
    folder = run_dir / EMBEDDINGS_DIR
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def page_precompute(root: Path) -> dict:
    """Child: open the page with UMAP 3D on a run without cached maps and wait for the
    dashboard's background job (``dashboard/maps.py`` -> ``core.embed.cached``) to write the map.

    The page is re-run only every 15 s while waiting (to catch a failed job): in a browser the
    poll is a fragment, not a whole-page rerun, so rerunning every second would slow the job.
    """
    run_dir = root / "runs" / PAGE_RUN
    at = _new_app(120)
    t0, c0 = time.perf_counter(), time.process_time()
    at.run()
    first = _page_view(at)
    first_s = time.perf_counter() - t0
    seen = list(first["progress_bars"])
    next_check = time.perf_counter() + 15
    while not any(f.startswith("umap3d-") and f.endswith(".json") for f in _maps_on_disk(run_dir)):
        if time.perf_counter() - t0 > UMAP_WAIT_S:
            raise TimeoutError(f"no UMAP after {UMAP_WAIT_S} s; progress seen: {seen}")
        if time.perf_counter() > next_check:
            at.run()
            view = _page_view(at)
            if view["errors"]:
                raise RuntimeError(f"the page shows errors: {view['errors']}")
            seen += view["progress_bars"]
            next_check = time.perf_counter() + 15
        time.sleep(0.25)
    ready_s, ready_cpu = time.perf_counter() - t0, time.process_time() - c0
    time.sleep(0.5)  # let the job finish its bookkeeping
    at.run()
    last = _page_view(at)
    if last["errors"] or "3D UMAP" not in last["title"]:
        raise RuntimeError(f"the UMAP map did not show: {last['title']!r} {last['errors']}")
    return {
        "first_render_seconds": round(first_s, 2),
        "first_render_title": first["title"],
        "progress_shown": bool(first["progress_bars"]),
        "progress_seen": seen[:1] + seen[-1:],
        "umap_ready_seconds": round(ready_s, 2),
        "umap_ready_cpu_seconds": round(ready_cpu, 2),
        "map_title": last["title"],
        "maps_on_disk": _maps_on_disk(run_dir),
    }


def page_render(root: Path, n: int) -> dict:
    """Child (fresh process): time the page with the map cached on disk: the first render (cold
    caches), re-renders, and "Colour by" changes; check that nothing was recomputed."""
    run_dir = root / "runs" / PAGE_RUN
    t0 = time.perf_counter()
    import streamlit  # noqa: F401 - timed apart from the renders
    from streamlit.testing.v1 import AppTest  # noqa: F401

    import_s = time.perf_counter() - t0
    files_before = _maps_on_disk(run_dir)
    at = _new_app(120)
    renders: list[dict] = []

    def timed(label: str, action) -> None:
        t, c = time.perf_counter(), time.process_time()
        action()
        seconds, cpu = time.perf_counter() - t, time.process_time() - c  # before inspecting
        view = _page_view(at)
        view.update(seconds=round(seconds, 3), cpu_seconds=round(cpu, 3), render=label)
        renders.append(view)
        print(f"  page {label}: {view['seconds']} s", file=sys.stderr, flush=True)

    timed("first (fresh process)", at.run)
    for i in range(PAGE_RERUNS):
        timed(f"re-render {i + 1}", at.run)
    for colour in PAGE_COLOURS:
        timed(f"colour -> {colour}", lambda c=colour: at.selectbox(key="emb_color").select(c).run())
    # Another browser session on the same server: Streamlit's caches are process-wide.
    at = _new_app(120)
    timed("new session, same process", at.run)
    # A restart without the import cost: every st.cache_* cleared, modules already imported.
    streamlit.cache_data.clear()
    streamlit.cache_resource.clear()
    at = _new_app(120)
    timed("caches cleared, imports warm", at.run)
    files_after = _maps_on_disk(run_dir)

    first = renders[0]["_coords"]
    for view in renders:
        coords = view.pop("_coords")
        view["coords_equal_first"] = bool(
            coords.shape == first.shape and np.array_equal(coords, first)
        )
    checks = {
        "no_errors": all(not v["errors"] for v in renders),
        "umap_3d_shown_every_time": all("3D UMAP" in v["title"] for v in renders),
        "all_points_drawn": all(v["n_points"] == n for v in renders),
        "no_progress_bar": all(not v["progress_bars"] for v in renders),
        "coords_unchanged": all(v["coords_equal_first"] for v in renders),
        "no_new_cache_files": files_after == files_before,
        "colour_changed_title": all(
            "coloured by" in v["title"] for v in renders if v["render"].startswith("colour")
        ),
    }

    return {
        "import_streamlit_seconds": round(import_s, 2),
        "renders": renders,
        "checks": checks,
        "ok": all(checks.values()),
        "maps_on_disk": files_after,
    }


def page_steps(root: Path) -> dict:
    """Child (fresh process): the first render's data steps called directly, each cold:
    import core, load the run, read its latent view (``core.latent.run_view``: obs, features
    and latent cached in the run, so neither the data nor torch is needed), read the cached
    map. For comparison, what the view saves: rebuilding the dataset and encoding it."""
    run_dir = root / "runs" / PAGE_RUN
    steps: dict[str, float] = {}
    t = time.perf_counter()
    from core import embed, runs
    from core import latent as core_latent

    steps["import_core_embed_runs_latent"] = time.perf_counter() - t
    t = time.perf_counter()
    run = runs.load_run(run_dir)
    steps["load_run"] = time.perf_counter() - t
    t = time.perf_counter()
    view = core_latent.run_view(run)
    steps["read_latent_view"] = time.perf_counter() - t
    t = time.perf_counter()
    hit = embed.find_cached(run_dir, view.latent, method="umap", n_components=3, seed=0)
    steps["read_cached_map"] = time.perf_counter() - t
    torch_needed = "torch" in sys.modules
    saved: dict[str, float] = {}
    t = time.perf_counter()
    mdata = run.load_data()
    saved["load_data"] = time.perf_counter() - t
    t = time.perf_counter()
    z = np.asarray(core_latent.encode(run, mdata, refit=0)[0], dtype=np.float32)
    saved["import_torch_and_encode"] = time.perf_counter() - t
    return {
        "seconds": {k: round(v, 3) for k, v in steps.items()},
        "torch_imported": torch_needed,
        "cache_hit_with_default_params": hit is not None,
        "latent_shape": list(view.latent.shape),
        "view_equals_encoding": bool(np.array_equal(view.latent, z)),
        "without_the_view_seconds": {k: round(v, 3) for k, v in saved.items()},
    }


# What the first render of a fresh process imports, in about the order the app does.
PAGE_IMPORTS = (
    "streamlit", "numpy", "pandas", "plotly.graph_objects", "torch", "core.runs", "core.data",
    "core.latent", "dashboard.cache", "dashboard.plots",
)  # fmt: skip


def page_imports(root: Path) -> dict:
    """Seconds to import each of ``PAGE_IMPORTS`` (cumulative order) in a bare interpreter: the
    import share of the first render (the ``--page-child`` process already has numpy and
    pandas from this script, and streamlit is imported before its first render is timed)."""
    code = (
        "import importlib, json, sys, time\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "out = {}\n"
        f"for name in {list(PAGE_IMPORTS)!r}:\n"
        "    t = time.perf_counter(); importlib.import_module(name)\n"
        "    out[name] = round(time.perf_counter() - t, 3)\n"
        "print(json.dumps(out))\n"
    )
    out, timings = _subprocess([sys.executable, "-c", code], root, timeout=300)
    seconds = json.loads(out.strip().splitlines()[-1])
    return {"seconds": seconds, "total_seconds": round(sum(seconds.values()), 2), **timings}


def page_browser(root: Path, n: int) -> dict:
    """A Streamlit server over the run and headless Chromium: seconds from navigation until the
    3D canvas is drawn (first visit: cold server, the plotly bundle loads; reload: warm server;
    a "Colour by" change). Recipe: ../shared/TESTING.md, tests/st_browser.py."""
    import socket
    import urllib.request

    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "streamlit", "run", str(ENTRY), "--server.headless=true"]
    cmd += ["--server.address=127.0.0.1", f"--server.port={port}"]
    cmd += ["--browser.gatherUsageStats=false", "--server.fileWatcherType=none"]
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        cmd, cwd=REPO, env=_page_env(root), stdin=subprocess.DEVNULL,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    app = '[data-testid="stApp"]'
    chart = '[data-testid="stPlotlyChart"]'
    drawn = """(title) => { const gds = [...document.querySelectorAll(
        '[data-testid="stPlotlyChart"] .js-plotly-plot')].filter(
        g => (g.querySelector('.gtitle')||{}).textContent?.includes(title));
      const s = gds.length === 1 && gds[0]._fullLayout && gds[0]._fullLayout.scene
        && gds[0]._fullLayout.scene._scene;
      return !!(s && s.glplot); }"""
    out: dict = {"n": n}
    try:
        t0 = time.perf_counter()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            try:
                with opener.open(url + "/_stcore/health", timeout=1) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if server.poll() is not None or time.perf_counter() - t0 > 60:
                raise RuntimeError((root / "server.log").read_text()[-3000:])
            time.sleep(0.2)
        out["server_start_seconds"] = round(time.perf_counter() - t0, 2)
        query = "&".join(f"{k}={v}" for k, v in PAGE_QUERY.items())
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
                args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                      "--use-angle=swiftshader-webgl", "--enable-unsafe-swiftshader"],
            )  # fmt: skip
            page = browser.new_page(viewport={"width": 1400, "height": 1000})

            def until_drawn(title: str) -> None:
                page.wait_for_selector(f'{app}[data-test-script-state="notRunning"]')
                page.wait_for_function(drawn, arg=title, timeout=120_000)

            t = time.perf_counter()
            page.goto(f"{url}/?{query}", timeout=120_000)
            until_drawn("3D UMAP")
            out["first_visit_seconds"] = round(time.perf_counter() - t, 2)
            t = time.perf_counter()
            page.reload()
            until_drawn("3D UMAP")
            out["reload_seconds"] = round(time.perf_counter() - t, 2)
            t = time.perf_counter()
            page.get_by_test_id("stSelectbox").filter(has_text="Colour by").first.click()
            page.get_by_role("option", name="metadata: age", exact=True).click()
            until_drawn("coloured by age")
            out["colour_change_seconds"] = round(time.perf_counter() - t, 2)
            text = page.inner_text("body")
            out["webgl_ok"] = "WebGL is not supported" not in text
            out["progress_bar_seen"] = page.locator('[data-testid="stProgress"]').count() > 0
            out["charts_in_dom"] = page.locator(chart).count()
            browser.close()
    finally:
        server.terminate()  # only the server this function started
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    out["note"] = (
        "until plotly's gl3d scene of the chart with that title exists (WebGL context made); "
        "first visit includes loading the plotly bundle"
    )
    return out


def time_page_render(n: int, *, seed: int, browser: bool) -> dict:
    """The Embeddings page on a run of ``n`` samples, UMAP 3D cached on disk (issue 4: < 2 s).

    Steps, each in its own process: train a 1-epoch multivae on ``synthetic`` with ``n_obs=n``
    (``python -m core train``); compute its 3D UMAP through the page (dashboard's background
    job; seconds until the map shows, whether progress was shown); then time the page in a
    fresh process (:func:`page_render`), split a first render into its steps in two more fresh
    processes (:func:`page_steps`, :func:`page_imports`) and optionally time Chromium
    (:func:`page_browser`). The temporary runs directory is deleted at the end.
    """
    with tempfile.TemporaryDirectory(prefix="ole-bench-page-") as tmp:
        root = Path(tmp)
        (root / "uploads").mkdir()
        print(f"page: training a run of {n} samples ...", file=sys.stderr, flush=True)
        train = [sys.executable, "-m", "core", "train", "--data", "synthetic"]
        train += ["--model", "multivae", "--epochs", "1", "--seed", str(seed)]
        train += ["--set", f"data.params.n_obs={n}", "--out", str(root / "runs" / PAGE_RUN)]
        _, build = _subprocess(train, root, timeout=1800)
        print("page: 3D UMAP through the page ...", file=sys.stderr, flush=True)
        umap_job = _page_child("precompute", root, n)
        print("page: timing renders in a fresh process ...", file=sys.stderr, flush=True)
        render = _page_child("render", root, n)
        render["first_render_steps"] = _page_child("steps", root, n)
        render["imports_in_a_bare_process"] = page_imports(root)
        out = {
            "n": n,
            "run": "multivae (n_latent 32), 1 epoch, synthetic n_obs=n; built with "
            + " ".join(["python -m core", *train[3:-1], "<tmp>"]),
            "build_run": build,
            "dashboard_fresh_umap3d": umap_job,
            "cached_render": render,
        }
        if browser:
            print("page: headless Chromium ...", file=sys.stderr, flush=True)
            try:
                out["browser"] = page_browser(root, n)
            except Exception as exc:  # noqa: BLE001 - optional part: record, keep the rest
                out["browser"] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    out["note"] = (
        "AppTest (streamlit.testing.v1) runs the script in-process: script time + figure "
        "serialisation, no browser drawing. Query params as a copied link has them: "
        + "&".join(f"{k}={v}" for k, v in PAGE_QUERY.items())
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS),
        help=f"default: {' '.join(DEFAULT_METHODS)} (tsne3d is slow: Barnes-Hut)",
    )  # fmt: skip
    parser.add_argument(
        "--tsne3d-max-fit", type=int,
        help="3D t-SNE fits at most this many points (default core.embed.TSNE_3D_MAX_FIT), "
        "the rest are placed (0: fit all; "
        "Barnes-Hut 3D took ~330 s for 20,000 points)",
    )  # fmt: skip
    parser.add_argument("--cache-size", type=int, default=20000, help="0 skips the cache timing")
    parser.add_argument(
        "--page-size", type=int, default=20000,
        help="samples of the run whose Embeddings page is timed (0 skips the page)",
    )  # fmt: skip
    parser.add_argument(
        "--page-browser", action="store_true",
        help="also time headless Chromium (playwright, /usr/bin/chromium) until the map draws",
    )  # fmt: skip
    parser.add_argument(
        "--page-child", choices=["precompute", "render", "steps"], help=argparse.SUPPRESS
    )
    parser.add_argument("--page-root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--skip-warmup", action="store_true", help="skip the first-call timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the JSON here: {'runs': [report]}")
    parser.add_argument(
        "--append", action="store_true", help="add this run to the runs already in --out"
    )
    args = parser.parse_args(argv)
    if args.page_child:  # a fresh process started by time_page_render
        if args.page_child == "precompute":
            child = page_precompute(args.page_root)
        elif args.page_child == "steps":
            child = page_steps(args.page_root)
        else:
            child = page_render(args.page_root, args.page_size)
        print(json.dumps(child, default=str))
        return 0
    import numba
    import openTSNE
    import sklearn
    import umap

    from core import embed

    report: dict = {
        "benchmark": "embed_speed",
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS"),
        },
        "versions": {
            "numpy": np.__version__,
            "umap-learn": umap.__version__,
            "numba": numba.__version__,
            "openTSNE": openTSNE.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "latent": "Gaussian mixture, 10 dims, 8 clusters, float32, seeded",
        "defaults_3d": {m: embed.default_params(m, n_components=3) for m in embed.METHODS},
        "tsne_n_jobs": 1,
    }
    previous = []
    if args.out and args.append and args.out.is_file():
        previous = json.loads(args.out.read_text()).get("runs", [])

    def save() -> None:
        """Rewrite --out after every step ("complete": false until the end), so a run cut short
        still leaves what it measured."""
        if not args.out:
            return
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(json.dumps({"runs": [*previous, report]}, indent=2, default=str) + "\n")
        os.replace(tmp, args.out)

    def load_avg() -> list[float]:
        return [round(v, 2) for v in os.getloadavg()]

    report["complete"] = False
    if not args.skip_warmup:
        report["umap_first_call"] = time_first_umap_call(args.seed)
        save()
    if args.page_size:  # before the sizes: the page is what issue 4's targets are about
        load = load_avg()
        report["page_render"] = time_page_render(
            args.page_size, seed=args.seed, browser=args.page_browser
        )
        report["page_render"]["load_average_at_start"] = load
        report["page_render"]["load_average_at_end"] = load_avg()
        save()
    max_fit = args.tsne3d_max_fit  # 0 = fit all points
    if max_fit is None:
        max_fit = embed.TSNE_3D_MAX_FIT
    report["tsne3d_max_fit"] = max_fit or "all points"
    report["results"] = []
    for n in args.sizes:
        for m in args.methods:
            load = load_avg()
            row = time_method(m, mixture(n, seed=args.seed), seed=args.seed, tsne3d_max_fit=max_fit)
            row.update(load_average_at_start=load, load_average_at_end=load_avg())
            report["results"].append(row)
            save()
    if args.cache_size:
        report["cache_load"] = time_cache_load(
            mixture(args.cache_size, seed=args.seed), seed=args.seed
        )
    report["machine"]["load_average_at_end"] = load_avg()
    report["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report["complete"] = True
    save()
    text = json.dumps(report, indent=2, default=str)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
