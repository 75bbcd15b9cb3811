"""Train page parts: the new-run form (built from the config dataclasses) and the live panel."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.errors import InputError
from core.model_config import ModelConfig
from core.runs import WEIGHTS_MANIFEST, DataConfig, TrainConfig, request_cancel
from dashboard import forms, plots, state, training, widgets
from dashboard.settings import Settings

MAIN = {"model": ["n_latent"], "train": ["epochs", "beta", "refits"]}
SEEN_STATE = "_train_seen_state"
M, T, D = training.MODEL_PREFIX, training.TRAIN_PREFIX, training.DATA_PREFIX


def form_expander(dataset: str, *, has_run: bool):
    """The expander around the new-run form: open when there is no run yet, folded away on the
    script run after a launch (so that the live panel is on screen). It tracks its state
    (``on_change="rerun"``): a plain expander keeps whatever the browser last showed."""
    if state.get(state.TRAIN_FOLD):
        state.put(state.TRAIN_FOLD, None)
        state.put(state.TRAIN_FORM, False)
    return st.expander(
        f"New run on **{dataset}**",
        icon=":material/add_circle:",
        expanded=not has_run,
        key=state.TRAIN_FORM,
        on_change="rerun",
    )


def model_picker(dataset: str, mods: list[str]) -> str:
    """The model selectbox. It sits outside the form: a choice inside a form reaches Python
    only on submit, so the form could not show the chosen model's defaults."""
    default = "multivae" if len(mods) > 1 else "vae"
    forms.follow_defaults(state.TRAIN_MODEL_DEFAULT, dataset, {f"{M}model": default})
    left, right = st.columns([1, 2])
    model = forms.dataclass_inputs(
        ModelConfig, names=["model"], key_prefix=M, container=left, defaults={"model": default}
    )["model"]
    right.caption(
        "vae: one modality or all concatenated · cvae: conditioned on metadata columns · "
        "multivae: one encoder/decoder per modality · translator: predicts one modality from "
        "the others. The settings below start at this model's defaults."
    )
    return model


def new_run_form(dataset: str, mdata, settings: Settings) -> None:
    """Widgets for every drawable field of ModelConfig / TrainConfig (main ones up front, the
    rest under 'Advanced'), conditions from the metadata; checks the whole configuration, then
    launches ``python -m core train``."""
    mods = list(mdata.mod)
    model_name = model_picker(dataset, mods)
    defaults = training.form_defaults(model_name, len(mods))
    forms.follow_defaults(state.TRAIN_FORM_DEFAULTS, (dataset, model_name), defaults)
    shown_m = {k[len(M) :]: v for k, v in defaults.items() if k.startswith(M)}
    shown_t = {k[len(T) :]: v for k, v in defaults.items() if k.startswith(T)}
    with st.form("train_form"):
        c1, c2, c3 = st.columns(3)
        model = forms.dataclass_inputs(
            ModelConfig, names=MAIN["model"], key_prefix=M, container=c1, defaults=shown_m
        )
        tr = forms.dataclass_inputs(
            TrainConfig, names=MAIN["train"], key_prefix=T, container=c2, defaults=shown_t
        )
        conditions = c3.multiselect(
            training.CONDITIONS_LABEL,
            list(mdata.obs.columns),
            help="Metadata columns the encoder and decoder see (model cvae, or multivae).",
        )
        name = c3.text_input("run name", placeholder="automatic")
        with st.expander("Advanced"):
            a1, a2, a3 = st.columns(3)
            model |= forms.dataclass_inputs(
                ModelConfig,
                key_prefix=M,
                container=a1,
                defaults=shown_m,
                names=[
                    n for n in forms.form_fields(ModelConfig) if n not in model and n != "model"
                ],
                choices={"translator_target": [None, *mods]},
            )
            tr |= forms.dataclass_inputs(
                TrainConfig,
                key_prefix=T,
                container=a2,
                defaults=shown_t,
                names=[n for n in forms.form_fields(TrainConfig) if n not in tr],
            )
            data = forms.dataclass_inputs(
                DataConfig,
                key_prefix=D,
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

    sections = {"model": {"model": model_name, **model}, "train": tr, "data": data}
    try:  # everything the job would refuse is refused here, before a run directory exists
        run_name = name.strip() or training.default_run_name(dataset, model_name, settings.runs_dir)
        check_name(run_name)
        if (settings.runs_dir / run_name).exists():
            raise InputError(f"a run named {run_name!r} already exists; choose another name")
        sources, kinds = training.dataset_sources(dataset, settings.upload_dir)
        config = training.build_config(
            sources=sources, kinds=kinds, conditions=conditions, sections=sections
        )
        training.check_config(config, mdata)
        argv = training.train_argv(
            out=settings.runs_dir / run_name,
            sources=sources,
            kinds=kinds,
            conditions=conditions,
            sections=sections,
        )
        launch_job(argv)
    except InputError as exc:
        st.error(training.ui_message(exc), icon=":material/error:")
        return  # the rest of the page (live panel, all runs) still renders
    state.put(state.TRAIN_LAUNCHED, run_name)
    state.request_run(run_name)
    state.put(state.TRAIN_FOLD, True)  # fold the form away: the live panel comes next
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
                st.error(training.status_error(status), icon=":material/error:")
            elif run_state == "cancelled":
                st.warning(
                    "This run was cancelled; the best weights so far were kept."
                    if (path / WEIGHTS_MANIFEST).is_file()
                    else "This run was cancelled before its first epoch finished; it has no "
                    "weights.",
                    icon=":material/stop_circle:",
                )
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
