"""``truce convert NAME[:VERSION|@ALIAS] --to TARGET [--to TARGET ...] [options]``.

Progress lines go to stderr as each step starts; a summary table (or ``--json``) goes to
stdout at the end. Exit status: 0 when every target was registered, 1 when any target failed
to convert or failed its parity check (nothing registered for it unless ``--force``, which
registers it labelled ``parity=failed``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from converters.job import QUANTIZE_MODES
from converters.runner import DEFAULT_TIMEOUT_S
from converters.service import ConvertOptions, Outcome, convert_model
from converters.targets import TARGETS
from model_store.names import parse_ref
from model_store.store import open_store
from truce.errors import InvalidArgument


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``convert`` to the ``truce`` command line."""
    p = sub.add_parser(
        "convert",
        help="convert a stored model to other formats, verify parity, register the results",
        description="Convert a model version to other formats. Each conversion runs in its own "
        "process, is verified against the source through the serving runtimes, and is "
        "registered as a new version only if it passes.",
    )
    p.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]", help="the source model version")
    p.add_argument(
        "--to",
        dest="targets",
        action="append",
        required=True,
        choices=TARGETS,
        metavar="TARGET",
        help=f"target format, repeatable: {', '.join(TARGETS)}",
    )
    p.add_argument(
        "--quantize",
        action="append",
        metavar="MODE",
        help=f"TFLite quantization, repeatable or comma-separated: {', '.join(QUANTIZE_MODES)} "
        "(default none)",
    )
    p.add_argument(
        "--calibration",
        metavar="DIR",
        type=Path,
        help="int8 calibration samples (.npy/.npz); default: generated, seeded",
    )
    p.add_argument(
        "--calibration-samples",
        type=int,
        default=64,
        metavar="N",
        help="generated calibration samples (default 64)",
    )
    p.add_argument(
        "--inputs",
        metavar="DIR",
        type=Path,
        help="parity inputs (.npy/.npz); default: generated from the signature",
    )
    p.add_argument(
        "--samples", type=int, default=32, metavar="N", help="parity inputs to compare (default 32)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of generated inputs (default 0)")
    p.add_argument(
        "--atol", type=float, metavar="X", help="absolute tolerance (default by quantization)"
    )
    p.add_argument(
        "--rtol", type=float, metavar="X", help="relative tolerance (default by quantization)"
    )
    p.add_argument(
        "--min-cosine", type=float, metavar="X", help="minimum cosine similarity per output"
    )
    p.add_argument(
        "--min-top1", type=float, metavar="X", help="minimum top-1 agreement (classifiers)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="register conversions that fail parity, labelled parity=failed",
    )
    p.add_argument(
        "--as",
        dest="register_as",
        metavar="NAME",
        help="register under this model name (default: the source's name)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds per conversion before it is stopped (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--store", metavar="DIR", help="model store (default: $TRUCE_STORE, else per-user)"
    )
    p.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    p.set_defaults(func=run)


def options_from(args: argparse.Namespace) -> ConvertOptions:
    """``ConvertOptions`` from parsed arguments (validates numbers)."""
    quantize = [q.strip() for item in (args.quantize or ["none"]) for q in item.split(",")]
    if args.samples < 1 or args.calibration_samples < 1:
        raise InvalidArgument("--samples and --calibration-samples must be at least 1")
    if args.timeout <= 0:
        raise InvalidArgument("--timeout must be a positive number of seconds")
    tolerance = {
        key: value
        for key, value in (
            ("atol", args.atol),
            ("rtol", args.rtol),
            ("min_cosine", args.min_cosine),
            ("min_top1", args.min_top1),
        )
        if value is not None
    }
    if any(v < 0 for v in tolerance.values()):
        raise InvalidArgument("tolerances must not be negative")
    return ConvertOptions(
        targets=list(args.targets),
        quantize=[q for q in quantize if q],
        samples=args.samples,
        seed=args.seed,
        inputs_dir=args.inputs,
        calibration_dir=args.calibration,
        calibration_samples=args.calibration_samples,
        tolerance=tolerance,
        force=args.force,
        register_as=args.register_as,
        timeout_s=args.timeout,
    )


def run(args: argparse.Namespace) -> int:
    """Handler of ``truce convert``."""
    ref = parse_ref(args.ref)
    opts = options_from(args)
    store = open_store(args.store)

    def progress(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    outcomes = convert_model(store, ref.name, ref.selector, opts, progress=progress)
    if args.json:
        print(json.dumps([o.to_dict() for o in outcomes], indent=2))
    else:
        print(summary_table(outcomes))
        for line in failure_details(outcomes):
            print(line)
    ok = all(o.manifest is not None for o in outcomes)
    return 0 if ok else 1


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _errors(o: Outcome) -> str:
    outputs = (o.result.parity or {}).get("outputs", [])
    errs = [x["max_abs_err"] for x in outputs if x.get("max_abs_err") is not None]
    top1 = [x["top1_agreement"] for x in outputs if x.get("top1_agreement") is not None]
    text = f"{max(errs):.1e}" if errs else "-"
    return f"{text} / {min(top1):.0%}" if top1 else text


def summary_table(outcomes: list[Outcome]) -> str:
    """The end-of-run table: target, version, size, time, max abs err / top-1, verdict."""
    header = ("target", "version", "size", "time", "max abs err / top-1", "verdict")
    rows = [header]
    for o in outcomes:
        verdict = o.status if o.result.error is None else "error"
        if o.result.error is None and not o.result.passed:
            verdict = "parity failed" if o.manifest is None else "registered, parity failed"
        rows.append(
            (
                o.label,
                o.manifest.ref if o.manifest else "-",
                _size(o.result.size_bytes) if o.result.size_bytes else "-",
                f"{o.seconds:.1f} s",
                _errors(o),
                verdict,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def failure_details(outcomes: list[Outcome]) -> list[str]:
    """One block per failed target: the error, or the parity reasons."""
    lines: list[str] = []
    for o in outcomes:
        if o.result.error is not None:
            lines.append(f"{o.label}: error: {o.result.error}")
        elif not o.result.passed:
            reasons = (o.result.parity or {}).get("reasons", [])
            tail = "registered with label parity=failed" if o.manifest else "nothing registered"
            lines.append(f"{o.label}: parity check failed ({tail}):")
            lines.extend(f"  - {r}" for r in reasons[:10])
    return lines
