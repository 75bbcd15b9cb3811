"""Slow embeddings (UMAP, t-SNE) in a background thread that writes the disk cache.

Why a thread and not a progress bar in the script: a 3D UMAP of 20,000 points takes ~20 s
(and the first UMAP after an install spends ~70 s compiling), a 3D t-SNE minutes. Computing
inside the script would block the page, and every widget change would restart the work. The
page instead shows the instant PCA map, submits the slow map here and polls the job's progress
with ``st.fragment(run_every=...)``; when it is done the page reruns and reads the coordinates
from ``core.embed.cached``'s disk cache (instant, also after a restart).

One worker: on a 2-core machine two maps at once would only slow both down. Jobs are shared by
all sessions (keyed by run + parameters), so two people asking for the same map share one job.
The registry is a ``st.cache_resource`` object (not module state) and never holds arrays from
one session for another beyond the job's own inputs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import streamlit as st


@dataclass
class Job:
    """Progress of one background computation (fraction in [0, 1], last message)."""

    key: str
    label: str
    fraction: float = 0.0
    message: str = "queued"
    started: float = field(default_factory=time.monotonic)
    future: Future | None = None

    def update(self, fraction: float, message: str = "") -> None:
        self.fraction = float(min(max(fraction, 0.0), 1.0))
        if message:
            self.message = message

    @property
    def done(self) -> bool:
        return self.future is not None and self.future.done()

    @property
    def error(self) -> BaseException | None:
        return self.future.exception() if self.done else None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class JobRegistry:
    def __init__(self, *, workers: int = 1) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ole-embed")

    def submit(self, key: str, label: str, fn: Callable[[Job], object]) -> Job:
        """Start ``fn(job)`` unless a job with this key is running or finished fine."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not (job.done and job.error is not None):
                return job
            job = Job(key=key, label=label)
            job.future = self._pool.submit(fn, job)
            self._jobs[key] = job
            return job

    def get(self, key: str) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def forget(self, key: str) -> None:
        with self._lock:
            self._jobs.pop(key, None)


@st.cache_resource(show_spinner=False)
def registry() -> JobRegistry:
    return JobRegistry(workers=1)
