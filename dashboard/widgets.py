"""Small Streamlit building blocks shared by the pages (error display, prerequisites)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from dashboard import cache, state
from dashboard.settings import get_settings

log = logging.getLogger("ole.dashboard")
USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
)


def user_message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def show_error(exc: Exception) -> None:
    """st.error with the message of a core error; other errors logged with their traceback
    on the server and summarised on screen (never a traceback in the page)."""
    from core.errors import InputError

    if isinstance(exc, (InputError, *USER_ERRORS)):
        st.error(user_message(exc), icon=":material/error:")
    else:
        log.exception("unexpected error in page")
        st.error(
            f"Unexpected error ({type(exc).__name__}): {user_message(exc)}. "
            "The details are in the server log.",
            icon=":material/bug_report:",
        )


@contextmanager
def guard() -> Iterator[None]:
    """Wrap a page body or fragment: errors become st.error (st.stop / st.rerun pass through,
    they are BaseExceptions)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the UI must never show a traceback
        show_error(exc)


@dataclass(frozen=True)
class RunRef:
    """The run chosen in the sidebar: path (str, a cache key), version stamp, loaded Run."""

    path: str
    version: float
    run: object

    @property
    def name(self) -> str:
        return Path(self.path).name


def current_run(*, need_done: bool = True) -> RunRef:
    """The sidebar's run, loaded; st.info + st.stop when there is none or it is not finished."""
    name = state.run()
    if not name:
        st.info(
            "No trained run for this dataset yet. Train one on the **Train** page, then "
            "choose it in the sidebar.",
            icon=":material/info:",
        )
        st.stop()
    path = get_settings().runs_dir / name
    if need_done:
        status = run_status(path)
        run_state = status.get("state")
        if run_state in ("queued", "running"):
            follow_training(name, path)  # progress, then a rerun when it is done
            st.stop()
        from core.runs import WEIGHTS_MANIFEST

        kept = run_state == "cancelled" and (path / WEIGHTS_MANIFEST).is_file()
        if run_state != "done" and not kept:
            why = {
                "failed": "failed",
                "cancelled": "was cancelled before its first epoch finished (no weights)",
            }.get(run_state, f"is not ready ({run_state or 'no status'})")
            st.info(
                f"Run **{name}** {why}; this page needs a trained run. Pick another run, or "
                "train one on the **Train** page.",
                icon=":material/hourglass:",
            )
            st.stop()
        if kept:
            st.caption(
                f":material/info: Run **{name}** was cancelled; showing the best weights saved "
                "before it stopped."
            )
    version = cache.run_version(path)
    return RunRef(str(path), version, cache.load_run(str(path), version))


def follow_training(name: str, path: Path) -> None:
    """Progress of a queued / running run, polled every 1.5 s; reruns the page when it ends."""
    from dashboard import training

    @st.fragment(run_every=1.5)
    def _follow() -> None:
        status = training.read_status(path)
        if status.get("state") not in ("queued", "running"):
            st.rerun(scope="app")
        frac, text = training.progress(status, training.read_history(path))
        st.info(
            f"Training **{name}**; this page shows it as soon as it is done.",
            icon=":material/model_training:",
        )
        st.progress(frac, text=text)

    _follow()


def run_status(path: Path) -> dict:
    import json

    try:
        return json.loads((path / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def csv_download(label: str, frame, file_name: str, *, container=st, **to_csv) -> None:
    """A download button for ``frame`` as CSV (``to_csv`` defaults to index=False); clicking
    it does not rerun the page."""
    to_csv = {"index": False, **to_csv}
    container.download_button(
        label,
        frame.to_csv(**to_csv),
        file_name=file_name,
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
    )
