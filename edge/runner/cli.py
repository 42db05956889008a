"""The runner's command line (``python3 -m edge.runner --help``).

Exit codes: 0 ok, 2 bad arguments or inputs, 3 the bundle failed verification,
4 the model could not be loaded or run (missing interpreter, broken model).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.interpreter import EdgeError
from edge.runner.model import BundleModel, InputError, ModelFailure
from edge.runner.verify import BundleError, trusted_keys_from, verify_bundle

EXIT_USAGE, EXIT_BUNDLE, EXIT_MODEL = 2, 3, 4


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m edge.runner", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("bundle", type=Path, help="bundle directory (with bundle.json)")
        sp.add_argument(
            "--trusted-key",
            action="append",
            metavar="KEY.pub",
            help="require a signature by this Ed25519 key (repeatable; default "
            "$TRUCE_EDGE_TRUSTED_KEY)",
        )

    run = sub.add_parser("run", help="one inference from .npy/.npz inputs")
    common(run)
    run.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="[NAME=]FILE",
        help="a .npy per input (NAME=FILE when the model has several) or one .npz",
    )
    run.add_argument("--example", action="store_true", help="use generated example inputs")
    run.add_argument("--batch", type=int, default=1, help="batch size of --example inputs")
    run.add_argument("--output", type=Path, help="write outputs (.npy for one, else .npz)")
    run.add_argument("--threads", type=int, default=None)
    run.add_argument("--json", action="store_true", help="print a JSON summary")

    bench = sub.add_parser("bench", help="latency percentiles, load time, peak memory")
    common(bench)
    bench.add_argument("--runs", type=int, default=100)
    bench.add_argument("--warmup", type=int, default=5)
    bench.add_argument("--threads", type=int, default=None)
    bench.add_argument("--batch", type=int, default=1)
    bench.add_argument("--json", action="store_true")

    serve = sub.add_parser("serve", help="OIP v2 REST endpoint (standard library HTTP)")
    common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept other hosts")
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    serve.add_argument("--max-body", type=int, default=4 << 20, help="bytes (default 4 MiB)")
    serve.add_argument("--max-inflight", type=int, default=4)
    serve.add_argument("--threads", type=int, default=None)
    serve.add_argument("--quiet", action="store_true", help="no access log")

    verify = sub.add_parser("verify", help="check hashes and signature, print bundle.json")
    common(verify)
    return p


def load_inputs(model: BundleModel, specs: list[str]) -> dict[str, np.ndarray]:
    """Arrays from ``--input`` values (never unpickles: ``allow_pickle=False``)."""
    names = [s.name for s in model.inputs]
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        path = Path(file if sep else name)
        try:
            loaded = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {path.name} as .npy/.npz ({exc})") from None
        if isinstance(loaded, np.ndarray):
            if not sep and len(names) != 1:
                raise InputError(f"the model has inputs {names}: write --input NAME=FILE")
            out[name if sep else names[0]] = loaded
        else:
            with loaded:
                out.update({k: loaded[k] for k in loaded.files})
    return out


def _summary(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    return {
        n: {"shape": list(a.shape), "dtype": str(a.dtype), "head": a.reshape(-1)[:8].tolist()}
        for n, a in outputs.items()
    }


def _run(args: argparse.Namespace, keys: list[bytes]) -> int:
    model = BundleModel(args.bundle, threads=args.threads, trusted_keys=keys)
    if args.example == bool(args.input):
        raise InputError("give --input FILE (repeatable) or --example")
    inputs = model.example_inputs(args.batch) if args.example else load_inputs(model, args.input)
    outputs = model.predict(inputs)
    if args.output is not None:
        if len(outputs) == 1 and args.output.suffix != ".npz":
            np.save(args.output, next(iter(outputs.values())))
        else:
            np.savez(args.output, **outputs)  # type: ignore[arg-type]
    summary = _summary(outputs)
    if args.json:
        print(json.dumps({"model": model.name, "version": model.version, "outputs": summary}))
    else:
        for n, s in summary.items():
            print(f"{n}: {s['dtype']} {s['shape']} {s['head']}")
    return 0


def _serve(args: argparse.Namespace, keys: list[bytes]) -> int:
    from edge.runner.serve import EdgeServer

    model = BundleModel(args.bundle, threads=args.threads, trusted_keys=keys)
    server = EdgeServer(
        (args.host, args.port),
        model,
        max_body=args.max_body,
        max_inflight=args.max_inflight,
        quiet=args.quiet,
    )

    def stop(_sig: int, _frame: Any) -> None:  # SIGTERM from systemd: finish and exit 0
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    host, port = server.server_address[:2]
    print(
        f"serving {model.name} version {model.version} ({model.format}) on "
        f"http://{host!s}:{port} (max body {args.max_body} bytes)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        keys = trusted_keys_from(args.trusted_key)
        if args.cmd == "verify":
            meta = verify_bundle(args.bundle, keys)
            print(json.dumps(meta, indent=2))
            return 0
        if args.cmd == "run":
            return _run(args, keys)
        if args.cmd == "bench":
            from edge.runner.bench import bench, format_report

            report = bench(
                args.bundle,
                runs=args.runs,
                warmup=args.warmup,
                threads=args.threads,
                batch=args.batch,
                trusted_keys=keys,
            )
            print(json.dumps(report) if args.json else format_report(report))
            return 0
        return _serve(args, keys)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BUNDLE
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ModelFailure, EdgeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MODEL
