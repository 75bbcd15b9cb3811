"""Embeddings: the run's latent space as a 2D/3D PCA, UMAP or t-SNE map."""

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import cache, colors, emb_controls, maps, plots, state, widgets

st.title("Embeddings")
ref = widgets.current_run()
view = cache.run_view(ref.path, ref.version)  # obs + features + latent, no data loaded
obs = view.obs
ui = emb_controls.render(obs, list(ref.run.modalities), view.var_names)

# The map: PCA at once; UMAP / t-SNE from the disk cache, or computed in the background while
# the PCA map is shown (dashboard/jobs.py explains why).
params = maps.params_for(
    ui.method, n_neighbors=ui.n_neighbors, min_dist=ui.min_dist, perplexity=ui.perplexity
)
result = maps.get_map(
    ref.path, ref.version, method=ui.method, dims=ui.dims, seed=ui.seed, params=params
)
shown = ui.method
if result.coords is None:
    job = result.job
    if job.error is not None:
        widgets.show_error(job.error)
    else:

        @st.fragment(run_every=1.0)
        def _poll():
            if job.done:
                st.rerun(scope="app")
            st.progress(
                job.fraction,
                text=f"{job.label} of {len(obs):,} samples: {job.message} "
                f"({job.elapsed:.0f} s). Showing the PCA map meanwhile.",
            )

        _poll()
    result = maps.get_map(
        ref.path, ref.version, method="pca", dims=ui.dims, seed=ui.seed, params=()
    )
    shown = "pca"
for note in result.notes:
    st.caption(f":material/info: {note}")

# Colour (never triggers a recomputation of the map) and the points drawn.
coloring = colors.coloring(
    ui.color,
    obs=obs,
    feature=ui.feature,
    data=lambda: cache.run_data(ref.path, ref.version),
    matrix_of=lambda mod: cache.modality_matrix(
        cache.run_data(ref.path, ref.version), (ref.path, ref.version), mod
    ),
    errors=lambda: cache.sample_errors(ref.path, ref.version),
)
n_obs = len(obs)
idx = np.arange(n_obs)
if n_obs > ui.max_points:
    from core.embed import stratified_subsample

    strat = ref.run.config.data.label
    if strat not in obs:
        strat = next((c for c in obs.columns if colors.is_categorical(obs[c])), None)
    labels = obs[strat].astype(str).to_numpy() if strat else None
    idx = stratified_subsample(labels, max_n=ui.max_points, seed=ui.seed, n_obs=n_obs)
    how = f"proportional per {strat}" if strat else "uniform"
    st.info(
        f"Drawing a stratified subsample of **{len(idx):,} of {n_obs:,}** samples ({how}). "
        "Raise 'Max. points drawn' in the settings to draw more.",
        icon=":material/filter_alt:",
    )

values = coloring.values
if values is not None:
    values = values.iloc[idx] if isinstance(values, pd.Series) else np.asarray(values)[idx]
label = emb_controls.METHOD_LABELS[shown]
title = f"{ui.dims}D {label} of {ref.name}: {len(idx):,} samples"
title += f", coloured by {coloring.name}" if coloring.name else ""
fig = plots.embedding_scatter(
    result.coords[idx],
    color=values,
    color_kind=coloring.kind,
    color_name=coloring.name,
    hover=obs.iloc[idx],
    point_size=ui.size,
    opacity=ui.opacity,
    title=title,
    axis_prefix=emb_controls.AXIS_LABELS[shown],
)
if ui.dims == 2:  # plotly selects in 2D only: box / lasso -> a subset for the Perturbation page
    st.plotly_chart(
        fig,
        key=state.EMB_MAP,
        config={"displaylogo": False},
        on_select=lambda: maps.keep_selection(ref.path, state.EMB_MAP),
        selection_mode=("box", "lasso"),
    )
else:
    st.plotly_chart(fig, key=state.EMB_MAP, config={"displaylogo": False})
picked = state.selection(ref.path)
if picked:
    s1, s2 = st.columns([4, 1])
    s1.caption(
        f":material/select: {len(picked):,} samples selected: the Perturbation page can "
        "perturb only these."
    )
    s2.button("Clear selection", on_click=state.put, args=(state.EMB_SELECTION, None))
elif ui.dims == 2:
    st.caption("Draw a box or lasso on the map to select samples for the Perturbation page.")

# Downloads: all samples' coordinates (+ the colour values) and the figure as it is drawn.
coords = pd.DataFrame(
    result.coords, index=obs.index, columns=[f"{label}{i + 1}" for i in range(ui.dims)]
)
if coloring.values is not None:
    coords[coloring.name] = np.asarray(coloring.values)
stem = f"{ref.name}_{shown}{ui.dims}d"
d1, d2, _ = st.columns([1, 1, 3])
widgets.csv_download(
    "Coordinates (CSV)", coords, f"{stem}.csv", container=d1, index=True, index_label="sample"
)
d2.download_button(
    "Figure (HTML)",
    lambda: fig.to_html(include_plotlyjs=True),
    file_name=f"{stem}.html",
    mime="text/html",
    on_click="ignore",
    icon=":material/download:",
)
