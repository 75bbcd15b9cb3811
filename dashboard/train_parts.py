"""Train page parts: the new-run form (built from the config dataclasses) and the live panel."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.model_config import ModelConfig, model_defaults
from core.runs import DataConfig, TrainConfig, request_cancel, train_defaults
from dashboard import forms, plots, state, training, widgets
from dashboard.settings import Settings

MAIN = {"model": ["model", "n_latent"], "train": ["epochs", "beta", "refits"]}
SEEN_STATE = "_train_seen_state"


def new_run_form(dataset: str, mdata, settings: Settings) -> None:
    """Widgets for every drawable field of ModelConfig / TrainConfig (main ones up front, the
    rest under 'Advanced'), conditions from the metadata; launches ``python -m core train``."""
    mods = list(mdata.mod)
    multi = len(mods) > 1
    with st.form("train_form"):
        c1, c2, c3 = st.columns(3)
        default_model = "multivae" if multi else "vae"
        suggested = {"model": default_model, **model_defaults(default_model, len(mods))}
        model = forms.dataclass_inputs(
            ModelConfig, names=MAIN["model"], key_prefix="m_", container=c1, defaults=suggested
        )
        tr = forms.dataclass_inputs(
            TrainConfig,
            names=MAIN["train"],
            key_prefix="t_",
            container=c2,
            defaults=train_defaults(default_model),
        )
        conditions = c3.multiselect(
            "conditions (CVAE)",
            list(mdata.obs.columns),
            help="Metadata columns the encoder and decoder see.",
        )
        name = c3.text_input("run name", placeholder="automatic")
        with st.expander("Advanced"):
            a1, a2, a3 = st.columns(3)
            model |= forms.dataclass_inputs(
                ModelConfig,
                key_prefix="m_",
                container=a1,
                defaults=suggested,
                names=[n for n in forms.form_fields(ModelConfig) if n not in model],
                choices={"translator_target": [None, *mods]},
            )
            tr |= forms.dataclass_inputs(
                TrainConfig,
                key_prefix="t_",
                container=a2,
                names=[n for n in forms.form_fields(TrainConfig) if n not in tr],
            )
            data = forms.dataclass_inputs(
                DataConfig,
                key_prefix="d_",
                container=a3,
                names=["val_frac", "test_frac", "split_seed"],
            )
            data["label"] = a3.selectbox(
                "label column (kNN metric)",
                [None, *mdata.obs.columns],
                format_func=lambda v: "(automatic)" if v is None else v,
            )
        launch = st.form_submit_button("Train", type="primary", icon=":material/play_arrow:")
    if not launch:
        return
    from core.runs import check_name
    from core.train import launch_job

    run_name = name.strip() or training.default_run_name(dataset, model["model"], settings.runs_dir)
    check_name(run_name)
    if (settings.runs_dir / run_name).exists():
        st.error(f"a run named {run_name!r} already exists; choose another name")
        return
    sources, kinds = training.dataset_sources(dataset, settings.upload_dir)
    argv = training.train_argv(
        out=settings.runs_dir / run_name,
        sources=sources,
        kinds=kinds,
        conditions=conditions,
        sections={"model": model, "train": tr, "data": data},
    )
    launch_job(argv)
    state.put(state.TRAIN_LAUNCHED, run_name)
    state.request_run(run_name)
    st.rerun()


def live_panel(run_name: str, path: Path) -> None:
    """Status, progress bar with time left, cancel button and loss curves (train solid, val
    dashed) of a run, re-read from status.json / history.csv every 1.5 s."""

    @st.fragment(run_every=1.5)
    def live() -> None:
        with widgets.guard():
            status = training.read_status(path)
            history = training.read_history(path)
            run_state = status.get("state", "unknown")
            st.subheader(f"{run_name}: {run_state}")
            if run_state in ("queued", "running"):
                frac, text = training.progress(status, history)
                st.progress(frac, text=text)
                if st.button("Cancel", icon=":material/stop_circle:", key="train_cancel"):
                    request_cancel(path)
                    st.toast(f"Asked {run_name} to stop after the current batch.")
            elif run_state == "failed":
                st.error(status.get("error") or "training failed; see train.log in the run folder")
            elif run_state == "cancelled":
                st.warning("This run was cancelled; the best weights so far were kept.")
            seen = state.get(SEEN_STATE)
            state.put(SEEN_STATE, (run_name, run_state))
            if seen is not None and seen[0] == run_name and seen[1] != run_state:
                st.rerun(scope="app")  # refresh the sidebar (status icons) and the runs table
            if len(history):
                refit = int(history["refit"].max()) if "refit" in history else 0
                shown = history[history["refit"] == refit] if "refit" in history else history
                terms = training.loss_terms(history)
                st.plotly_chart(
                    plots.loss_curves({run_name: shown}, terms=terms), key="live_curves"
                )
            elif run_state in ("queued", "running"):
                st.caption("Waiting for the first epoch...")

    live()
