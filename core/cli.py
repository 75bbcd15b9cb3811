"""Command-line interface: ``python -m core <command> ...``.

Each command is a thin wrapper: argparse here, the work in the module that owns it. A handler
has the signature ``handler(args: argparse.Namespace) -> tuple[str, dict]`` and returns the
human-readable summary and a JSON-able payload. With ``--json`` the payload is printed as the
last line of stdout. Bad input (:class:`core.errors.InputError`, a missing file) prints
``error: <message>`` on stderr and exits with status 2, without a traceback. So does every
command-line parse error (a missing or unknown option, a bad value): one line, with a pointer to
the command's ``--help``, instead of argparse's multi-line usage block.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from core.errors import InputError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

# command -> "module:function"; imported only when the command runs, so `--help` is instant.
HANDLERS = {
    "datasets": "core.datasets:datasets_command",
    "validate": "core.data:validate_command",
    "train": "core.train:train_command",
    "encode": "core.latent:encode_command",
    "runs": "core.runs:runs_command",
    "embed": "core.embed:embed_command",
    "perturb": "core.perturb:perturb_command",
    "generate": "core.generate:generate_command",
    "evaluate": "core.evaluate:evaluate_command",
}


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error contract; subcommand parsers inherit it (argparse
    builds them with ``type(parent)``)."""

    def error(self, message: str):  # argparse calls this for every parse error
        text = " ".join(str(message).split())
        print(f"error: {text}; see {self.prog} --help", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def parse_assignments(items: Sequence[str] | None, *, flag: str) -> dict[str, str]:
    """Parse repeated ``KEY=VALUE`` options into a dict; a malformed item is an InputError."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(
                f"{flag} expects KEY=VALUE, got {item!r}; for example {flag} rna=counts"
            )
        out[key.strip()] = value.strip()
    return out


def _add_data_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument(
        "--data",
        action="append",
        required=required,
        metavar="SRC",
        help="built-in dataset name, a .h5ad/.h5mu file, MODALITY=PATH for a CSV/TSV/Parquet "
        "matrix (samples in rows, first column the sample id; repeat for several modalities), "
        "or a directory with one file per modality named <modality>.<csv|tsv|parquet> plus "
        "obs.csv (the sample metadata)",
    )
    p.add_argument("--obs", metavar="PATH", help="metadata table, first column the sample id")
    p.add_argument(
        "--kind",
        action="append",
        metavar="MOD=KIND",
        help="override an inferred modality kind: counts, proportion, continuous or categorical",
    )


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m core",
        description="Omics Latent Explorer: load omics data, train VAEs and look inside them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("datasets", help="list the built-in datasets")
    _add_json(p)

    p = sub.add_parser("validate", help="load and validate data; print a per-modality summary")
    _add_data_options(p, required=True)
    _add_json(p)

    p = sub.add_parser("train", help="train a model into a run directory")
    _add_data_options(p, required=True)
    p.add_argument(
        "--out",
        required=True,
        metavar="RUN_DIR",
        help="run to create: a name (made in $OLE_RUNS_DIR, default <repo>/runs) or a directory path",
    )
    p.add_argument("--model", default="vae", choices=["vae", "cvae", "multivae", "translator"])
    p.add_argument("--condition", action="append", metavar="COL", help="obs column to condition on")
    p.add_argument(
        "--latent",
        type=int,
        default=None,
        metavar="N",
        help="latent dimensions (default: 10 for one modality, 32 for several)",
    )
    p.add_argument("--epochs", type=int, default=100, metavar="N")
    p.add_argument(
        "--beta",
        type=float,
        default=None,
        metavar="B",
        help="KL weight (beta-VAE; default 1, 0.1 for a translator)",
    )
    p.add_argument("--refits", type=int, default=1, metavar="K", help="ensemble refits (seeds)")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        dest="overrides",
        help="any other training/model config field, e.g. --set batch_size=256",
    )
    _add_json(p)

    p = sub.add_parser("encode", help="write posterior means of a run's latent space to CSV")
    p.add_argument("run_dir", metavar="RUN_DIR")
    _add_data_options(p, required=False)
    p.add_argument("--out", required=True, metavar="latent.csv")
    _add_json(p)

    p = sub.add_parser("runs", help="list runs with status and headline metrics")
    p.add_argument("--dir", metavar="RUNS_DIR", help="runs directory (default: $OLE_RUNS_DIR)")
    _add_json(p)

    p = sub.add_parser("embed", help="compute (and cache) a 2D/3D map of a run's latent space")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--method", default="umap", choices=["pca", "umap", "tsne"])
    p.add_argument("--dims", type=int, default=3, choices=[2, 3])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="coords.csv", help="also write the coordinates to CSV")
    # (EMBED helper) method parameters, values parsed as JSON when possible
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="method parameter, e.g. --param n_neighbors=30 --param min_dist=0.3",
    )
    _add_json(p)

    p = sub.add_parser("perturb", help="perturb input features and find the features that respond")
    p.add_argument("run_dir", metavar="RUN_DIR")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--feature", metavar="MOD:FEATURE")
    target.add_argument("--screen", metavar="MOD", help="perturb every feature of a modality")
    p.add_argument(
        "--kind", default=None, choices=["plus_std", "minus_std", "min", "max", "set", "shift"]
    )
    p.add_argument("--value", type=float, metavar="V", help="value for set, k for shift")
    p.add_argument("--subset", metavar="COL=VALUE", help="perturb only these samples")
    p.add_argument("--method", default="bayes", choices=["bayes", "ttest", "ks"])
    p.add_argument("--out", required=True, metavar="table.csv")
    _add_json(p)

    p = sub.add_parser("generate", help="generate synthetic samples per condition")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--condition", action="append", metavar="COL=VALUE")
    p.add_argument("--n", type=int, required=True, metavar="N")
    p.add_argument("--mode", default="posterior", choices=["prior", "posterior"])
    p.add_argument("--seed", type=int, default=0)
    # generation options (added by the GENERATE helper; defaults as in core.generate.generate)
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        metavar="T",
        help="latent spread: z ~ N(0, T^2 I) (prior) or N(mu, T^2 var) (posterior)",
    )
    p.add_argument(
        "--output",
        default="sample",
        choices=["sample", "mean"],
        help="draws from the likelihood (counts stay integers) or its mean",
    )
    p.add_argument(
        "--noise",
        default="model",
        choices=["model", "calibrated"],
        help="likelihood noise: the decoder's own, or re-estimated on training data",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help=".h5ad (one modality), .h5mu, or a directory of CSVs (no extension)",
    )
    _add_json(p)

    p = sub.add_parser("evaluate", help="quality report: synthetic vs held-out real data")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--synthetic", required=True, metavar="FILE")
    p.add_argument("--label", required=True, metavar="COL")
    _add_json(p)
    return parser


def _handler(command: str):
    module_name, func_name = HANDLERS[command].split(":")
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # a parse error: one line, exit 2 (_Parser)
    if extra:  # name the subcommand whose --help lists the options
        prog = f"{parser.prog} {args.command}"
        print(
            f"error: unrecognized arguments: {' '.join(extra)}; see {prog} --help",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    try:
        text, payload = _handler(args.command)(args)
    except (
        InputError,
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
    ) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    try:
        if text:
            print(text)
        if getattr(args, "json", False):
            print(json.dumps(payload, default=str))
        sys.stdout.flush()
    except BrokenPipeError:  # `python -m core datasets | head`: the reader left, not an error
        sys.stdout = None  # silence the interpreter's own flush at exit
    return EXIT_OK
