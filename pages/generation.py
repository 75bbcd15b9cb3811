"""Generation: synthetic samples per condition, drawn on the real map, with a quality report."""

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import evaluate as eval_core
from core import generate as gen_core
from dashboard import cache, colors, emb_controls, plots, state, widgets
from dashboard import generation_view as view


@st.cache_resource(show_spinner="Encoding the run's samples...", max_entries=4)
def generator(path: str, version: float):
    """core.generate.Generator over the run's cached data (shared: never mutated)."""
    return gen_core.Generator(cache.load_run(path, version), mdata=cache.run_data(path, version))


@st.cache_resource(show_spinner="Fitting the 3D PCA map...", max_entries=4)
def pca_map(path: str, version: float):
    """The run's 3D PCA map (core.embed, disk-cached); its transform places new points."""
    from core import embed

    z = cache.latent(path, version)
    return embed.cached(Path(path), z, method="pca", n_components=3, seed=0)


def conditions_text(provenance) -> str:
    """'tissue=liver, age=60; tissue=lung' from the provenance's JSON condition sets."""
    sets = json.loads(provenance["conditions"])
    sets = sets if isinstance(sets, list) else [sets]
    text = "; ".join(", ".join(f"{k}={v}" for k, v in c.items()) for c in sets if c)
    return text or "none"


HELP_MODE = "posterior: around real samples of the condition; prior: z ~ N(0, T²I) (conditional)"
HELP_OUT = "sample: draws from the likelihood (counts stay integers); mean: likelihood mean"

st.title("Generation")
ref = widgets.current_run()
run, gen = ref.run, generator(ref.path, ref.version)
obs = gen.obs
categorical = [c for c in obs.columns if colors.is_categorical(obs[c])]
st.caption(f"Model conditions: {', '.join(run.conditions) or 'none (use posterior mode)'}.")

c1, c2, c3, c4, c5 = st.columns(5)
mode = c1.selectbox("Mode", gen_core.MODES, 1, help=HELP_MODE, **state.bound(state.GEN_MODE))
n = c2.number_input("Samples per condition", 1, 20_000, 500, **state.bound(state.GEN_N))
temperature = c3.slider("Temperature", 0.0, 2.0, 1.0, 0.1, **state.bound(state.GEN_TEMPERATURE))
output = c4.selectbox(
    "Decode as",
    gen_core.OUTPUTS,
    gen_core.OUTPUTS.index("sample"),
    help=HELP_OUT,
    **state.bound(state.GEN_OUTPUT),
)
seed = c5.number_input("Seed", 0, 1_000_000, 0, **state.bound(state.GEN_SEED))
columns = st.multiselect("Condition on", list(obs.columns), **state.bound(state.GEN_CONDITIONS))
values = view.condition_inputs(gen, columns)  # several levels -> one condition set per level
problem = view.problem(mode, values, gen.conditions)
if problem:
    st.error(problem, icon=":material/error:")
go_clicked = st.button(
    "Generate", type="primary", icon=":material/auto_awesome:", disabled=bool(problem)
)

if go_clicked:
    opts = {"n": int(n), "mode": mode, "temperature": float(temperature), "output": output}
    with widgets.guard(), st.spinner("Generating..."):
        sets = gen_core.product_sets(values)
        result = gen.generate(conditions=sets, seed=int(seed), **opts)
        state.put(state.GEN_RESULT, (ref.path, result))
        state.put(state.GEN_REPORT, None)
saved = state.get(state.GEN_RESULT)
if not saved or saved[0] != ref.path:
    if not (problem or go_clicked):  # an error on screen already says what to do
        st.info("Choose conditions and press **Generate**.", icon=":material/info:")
    st.stop()
syn = saved[1]
prov = syn.uns[gen_core.PROVENANCE_KEY]
st.caption(
    f"{syn.n_obs:,} synthetic samples · mode {prov['mode']} · T = {prov['temperature']} "
    f"· {prov['output']} · seed {prov['seed']} · conditions: {conditions_text(prov)}"
)

# -- the real 3D map with the generated samples placed on it (transform, not refit)
label = st.selectbox(
    "Colour / evaluate by", categorical or ["(none)"], **state.bound(state.GEN_LABEL)
)
emb = pca_map(ref.path, ref.version)
color = obs[label] if label in obs.columns else None
fig = plots.embedding_scatter(
    emb.coords,
    color=color,
    color_kind="categorical" if color is not None else "none",
    hover=obs,
    point_size=2.5,
    opacity=0.5,
    title="Real samples (dots) and generated samples (diamonds), 3D PCA",
    axis_prefix=emb_controls.AXIS_LABELS["pca"],
)
xyz = dict(zip("xyz", emb.transform(np.asarray(syn.obsm["X_latent"])).T, strict=True))
marker = {"symbol": "diamond", "size": 3, "color": "#111827", "opacity": 0.9}
fig.add_trace(go.Scatter3d(**xyz, mode="markers", name="generated", marker=marker))
st.plotly_chart(fig, key="gen_map")

# -- distributions of chosen features, real vs synthetic
mods = list(syn.mod)
options = [f"{m}:{v}" for m in mods for v in syn.mod[m].var_names[:2000]]
chosen = st.multiselect(
    "Compare features",
    options,
    default=options[:2],
    max_selections=4,
    **state.bound(state.GEN_FEATURES),
)
real = cache.run_matrices(ref.path, ref.version)
match = eval_core.real_match(syn, obs)  # real samples of the generated conditions
rows = match.mask(obs)
for feat, cell in zip(chosen, st.columns(max(1, len(chosen))), strict=False):
    m, v = feat.split(":", 1)
    a, b, xl = gen_core.compare_values(
        real[m][rows, list(run.var_names[m]).index(v)],
        syn.mod[m][:, v].X[:, 0],
        kind=run.kinds[m],
    )
    hist = plots.histograms({"real": a, "synthetic": b}, title=feat, xlabel=xl)
    cell.plotly_chart(hist, key=f"gen_hist_{feat}")
if chosen:
    st.caption(f"Real: {int(rows.sum()):,} samples of the run ({match.describe()}).")

# -- quality report against the run's held-out samples
st.subheader("Quality report")
report = state.get(state.GEN_REPORT)
if st.button("Compare with held-out real data", icon=":material/fact_check:"):
    with widgets.guard(), st.spinner("Scoring synthetic vs held-out samples..."):
        mdata = cache.run_data(ref.path, ref.version)
        report = (ref.path, label, eval_core.evaluate_run(run, syn, label=label, mdata=mdata))
        state.put(state.GEN_REPORT, report)
if report and report[0] == ref.path:
    view.show_report(report[2], report[1])

view.downloads(syn, ref.name)
