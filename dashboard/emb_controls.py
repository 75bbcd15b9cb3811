"""Embeddings page controls: map method, dimensions, colour and the point/map settings.

Every control is bound to the URL (``state.bound``), so a copied link reopens the same view.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from dashboard import colors, state

METHOD_LABELS = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
AXIS_LABELS = {"pca": "PC", "umap": "UMAP", "tsne": "t-SNE"}


@dataclass(frozen=True)
class Controls:
    method: str
    dims: int
    color: str
    feature: str | None
    n_neighbors: int
    min_dist: float
    perplexity: float
    seed: int
    size: float
    opacity: float
    max_points: int


def render(obs, modalities: list[str], feature_names: dict[str, list[str]]) -> Controls:
    c1, c2, c3, c4 = st.columns([1.2, 0.8, 1.6, 1.6])
    method = c1.segmented_control(
        "Map",
        list(METHOD_LABELS),
        default="pca",
        required=True,
        format_func=METHOD_LABELS.get,
        **state.bound(state.EMB_METHOD),
    )
    dims = c2.segmented_control(
        "Dimensions",
        [3, 2],
        default=3,
        required=True,
        format_func=lambda d: f"{d}D",
        **state.bound(state.EMB_DIMS),
    )
    error_cols = list(modalities) + (["all"] if len(modalities) > 1 else [])
    color = c3.selectbox(
        "Colour by",
        colors.options(obs, error_cols),
        format_func=colors.label,
        **state.bound(state.EMB_COLOR),
    )
    feature = None
    if color == colors.FEATURE:
        feature = c4.selectbox(
            "Feature (type to search)",
            colors.feature_options(feature_names),
            **state.bound(state.EMB_FEATURE),
        )
    with st.expander("Map and point settings", icon=":material/tune:"):
        p1, p2, p3, p4 = st.columns(4)
        n_neighbors = p1.slider("UMAP neighbours", 2, 100, 15, **state.bound(state.EMB_NEIGHBORS))
        min_dist = p1.slider(
            "UMAP min. distance", 0.0, 0.99, 0.1, 0.01, **state.bound(state.EMB_MIN_DIST)
        )
        perplexity = p2.slider(
            "t-SNE perplexity", 2.0, 100.0, 30.0, 1.0, **state.bound(state.EMB_PERPLEXITY)
        )
        seed = p2.number_input("Seed", 0, 10_000, 0, **state.bound(state.EMB_SEED))
        size = p3.slider("Point size", 1.0, 12.0, 3.0, 0.5, **state.bound(state.EMB_SIZE))
        opacity = p3.slider("Opacity", 0.1, 1.0, 0.8, 0.05, **state.bound(state.EMB_OPACITY))
        max_points = p4.number_input(
            "Max. points drawn",
            100,
            500_000,
            20_000,
            100,
            help="Larger data is drawn as a stratified subsample.",
            **state.bound(state.EMB_MAX_POINTS),
        )
    return Controls(
        method=method or "pca",
        dims=int(dims or 3),
        color=color or colors.NONE,
        feature=feature,
        n_neighbors=int(n_neighbors),
        min_dist=float(min_dist),
        perplexity=float(perplexity),
        seed=int(seed),
        size=float(size),
        opacity=float(opacity),
        max_points=int(max_points),
    )
