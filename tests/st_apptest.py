"""AppTest helpers shared by the page tests (tests/test_app_*.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

ENTRY = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"


def new_app(**query: str) -> AppTest:
    """The app from its entry script (never a page file directly), with URL query params."""
    at = AppTest.from_file(str(ENTRY), default_timeout=90)
    for k, v in query.items():
        at.query_params[k] = v
    return at


def open_page(page: str, **query: str) -> AppTest:
    """Run the entry, then switch to ``page`` (e.g. "embeddings"; resolved as ../pages/x.py)."""
    at = new_app(**query).run()
    assert not at.exception, at.exception
    at.switch_page(f"../pages/{page}.py").run()
    return at


def assert_clean(at: AppTest) -> None:
    """No exception and no st.error on screen (the page guard turns exceptions into errors)."""
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def decode_typed_arrays(obj):
    """Plotly>=6 serialises numpy arrays as {"dtype": "f8", "bdata": "<base64>"}."""
    if isinstance(obj, dict):
        if set(obj) <= {"dtype", "bdata", "shape"} and "bdata" in obj:
            dtype = np.dtype(obj["dtype"]).newbyteorder("<")
            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=dtype)
            if "shape" in obj:
                arr = arr.reshape([int(d) for d in str(obj["shape"]).split(",")])
            return arr
        return {k: decode_typed_arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_typed_arrays(v) for v in obj]
    return obj


def figures(at: AppTest) -> list[dict]:
    """Every st.plotly_chart on the page as figure JSON (arrays decoded)."""
    return [decode_typed_arrays(json.loads(c.proto.spec)) for c in at.get("plotly_chart")]


def figure(at: AppTest, key: str) -> dict:
    """The figure of the st.plotly_chart with this key."""
    for chart in at.get("plotly_chart"):
        if chart.proto.id and key in chart.proto.id or getattr(chart, "key", None) == key:
            return decode_typed_arrays(json.loads(chart.proto.spec))
    raise AssertionError(f"no plotly chart with key {key!r}")
