"""Widgets generated from config dataclasses (``dataclasses.fields`` + ``typing.get_args``).

A field becomes: Literal -> selectbox of its choices; bool -> checkbox; int / float -> number
input; ``X | None`` -> the same, empty meaning None; str -> text input. dict / list fields are
skipped (the page builds those from the data: conditions, modalities).

Also the small rules that keep widget values valid when their options or defaults change
under them (another dataset, another model, a deleted run): :func:`valid_choices`,
:func:`follow_defaults`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import streamlit as st

from dashboard import state

_UNSET = object()
LABELS = {
    "n_latent": "latent dimensions", "n_hidden": "hidden units", "n_layers": "hidden layers",
    "beta": "beta (KL weight)", "refits": "ensemble refits", "lr": "learning rate",
    "kl_warmup_epochs": "KL warm-up epochs", "patience": "early-stopping patience",
    "translator_target": "translation target", "n_top_genes": "top variable genes",
}  # fmt: skip
# (min, max) of numeric fields, as core's config dataclasses check them (None: no bound); the
# number inputs enforce them, so most out-of-range values cannot be typed in the first place.
# Open bounds (lr > 0, dropout < 1) get the nearest value a user would type.
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "n_latent": (1, None), "n_hidden": (1, None), "n_layers": (1, None),
    "dropout": (0.0, 0.99), "modality_dropout": (0.0, 0.99),
    "epochs": (1, None), "batch_size": (1, None), "lr": (1e-7, None), "weight_decay": (0.0, None),
    "beta": (0.0, None), "kl_warmup_epochs": (0, None), "patience": (0, None),
    "min_delta": (0.0, None), "grad_clip": (0.0, None), "seed": (0, None), "refits": (1, 100),
    "checkpoint_seconds": (0.0, None), "val_frac": (0.0, 0.95), "test_frac": (0.0, 0.95),
    "split_seed": (0, None),
}  # fmt: skip


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else tp), True
    return tp, False


def supported(tp: Any) -> bool:
    tp, _ = _unwrap_optional(tp)
    return typing.get_origin(tp) is Literal or tp in (bool, int, float, str)


def field_input(
    name: str,
    tp: Any,
    default: Any,
    *,
    key: str,
    container=st,
    choices: Iterable[Any] | None = None,
    help: str | None = None,
) -> Any:
    """One widget for a dataclass field; returns the chosen value (typed)."""
    label = LABELS.get(name, name.replace("_", " "))
    tp, optional = _unwrap_optional(tp)
    lo, hi = BOUNDS.get(name, (None, None))
    if typing.get_origin(tp) is Literal or choices is not None:
        options = list(choices if choices is not None else typing.get_args(tp))
        if optional and None not in options:
            options = [None, *options]
        index = options.index(default) if default in options else 0
        return container.selectbox(
            label,
            options,
            index=index,
            key=key,
            help=help,
            format_func=lambda v: "(none)" if v is None else str(v),
        )
    if tp is bool:
        return container.checkbox(label, value=bool(default), key=key, help=help)
    if tp is int:
        return container.number_input(
            label,
            value=None if default is None else int(default),
            min_value=None if lo is None else int(lo),
            max_value=None if hi is None else int(hi),
            step=1,
            key=key,
            help=help,
            placeholder="(none)" if optional else None,
        )
    if tp is float:
        return container.number_input(
            label,
            value=None if default is None else float(default),
            min_value=None if lo is None else float(lo),
            max_value=None if hi is None else float(hi),
            format="%g",
            key=key,
            help=help,
            placeholder="(none)" if optional else None,
        )
    value = container.text_input(
        label, value="" if default is None else str(default), key=key, help=help
    )
    return None if optional and not value.strip() else value


def dataclass_inputs(
    dc: type,
    *,
    names: Iterable[str],
    key_prefix: str,
    container=st,
    choices: Mapping[str, Iterable[Any]] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Widgets for the listed fields of dataclass ``dc``; returns {field: value}."""
    hints = typing.get_type_hints(dc)
    fields = {f.name: f for f in dataclasses.fields(dc)}
    out = {}
    for name in names:
        f = fields[name]
        if not supported(hints[name]) and not (choices and name in choices):
            continue
        default = (defaults or {}).get(name, _default(f))
        out[name] = field_input(
            name,
            hints[name],
            default,
            key=f"{key_prefix}{name}",
            container=container,
            choices=(choices or {}).get(name),
        )
    return out


def form_fields(dc: type) -> list[str]:
    """Names of the fields of ``dc`` that :func:`field_input` can draw."""
    hints = typing.get_type_hints(dc)
    return [f.name for f in dataclasses.fields(dc) if supported(hints[f.name])]


def set_args(section: str, values: Mapping[str, Any]) -> list[str]:
    """``--set section.field=<json>`` arguments for ``python -m core train``."""
    args = []
    for name, value in values.items():
        args += ["--set", f"{section}.{name}={json.dumps(value)}"]
    return args


def valid_choices(key: str, options: Sequence[Any], default: Sequence[Any]) -> list[Any] | None:
    """Before the multiselect ``key`` (e.g. bound to the URL) is drawn with these ``options``:
    drop chosen values that are no longer options (none left -> ``default``). Returns what to
    pass as the widget's ``default=``: ``default`` on first draw (a URL value still wins), None
    once the widget has a value (Streamlit warns when both are set)."""
    default = [v for v in default if v in options]
    chosen = state.get(key)
    if chosen is None:
        return default
    kept = [v for v in chosen if v in options]
    if kept != list(chosen):
        state.put(key, kept or default)
    return None


def follow_defaults(memo_key: str, context: Any, defaults: Mapping[str, Any]) -> None:
    """Before the widgets keyed by ``defaults`` ({widget key: default}) are drawn: when the
    ``context`` the defaults come from changes (e.g. (dataset, model)), give every widget the
    new default unless the user changed it from the one shown before. Needed because a keyed
    widget keeps its value when its ``value=`` argument changes. ``memo_key``: the state key
    that remembers the (context, defaults) shown last."""
    shown = state.get(memo_key)
    if shown is not None and shown[0] != context:
        for key, new in defaults.items():
            current = state.get(key, _UNSET)
            if current is not _UNSET and current == shown[1].get(key, _UNSET) and current != new:
                state.put(key, new)
    state.put(memo_key, (context, dict(defaults)))
