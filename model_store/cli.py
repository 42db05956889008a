"""``truce models ...``: register, list, show, alias and remove model versions.

``--json`` outputs are a documented, stable contract (docs/manifest.md): ``register`` and
``show`` print the manifest; ``list`` prints ``{"models": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from model_store.manifest import BatchingConfig, Manifest, ServingConfig
from model_store.names import check_alias, parse_ref, parse_version
from model_store.register import RegisterOptions, register_path
from model_store.remote import DEFAULT_REMOTE_INSTANCES, RemoteOptions, register_remote
from model_store.signature import TensorSpec, parse_tensor_arg
from model_store.store import ModelStore, open_store
from truce.errors import InvalidArgument


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``truce models`` and its sub-commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store", metavar="DIR", help="model store (default: $TRUCE_STORE, else per-user)"
    )
    models = sub.add_parser("models", help="register, list, show, alias and remove models")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True

    p = msub.add_parser("register", parents=[common], help="add a model file as a new version")
    p.add_argument(
        "path", type=Path, nargs="?", help="model file or SavedModel directory (not with --remote)"
    )
    p.add_argument("--name", required=True, help="model name (letters, digits, _ . -)")
    p.add_argument("--format", help="expected format; detected from the content otherwise")
    p.add_argument("--input", action="append", default=[], metavar="NAME:DTYPE:SHAPE")
    p.add_argument("--output", action="append", default=[], metavar="NAME:DTYPE:SHAPE")
    p.add_argument(
        "--sample",
        action="append",
        default=[],
        metavar="[NAME=]FILE.npy",
        help="a sample input; its shape (batch dimension made dynamic) defines the input",
    )
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--max-batch-size", type=int, default=1, help="dynamic batching (1: off)")
    p.add_argument(
        "--max-queue-delay-ms",
        type=float,
        default=0.0,
        help="longest wait for more rows before a batch is sent (default 0: send what is "
        "queued as soon as an instance is free; requests arriving meanwhile form the next batch)",
    )
    p.add_argument(
        "--instances", type=int, help="parallel model instances (default 1; 4 with --remote)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    r = p.add_argument_group("remote models (served by another server, see docs/migration.md)")
    r.add_argument(
        "--remote",
        metavar="URL",
        help="the model on a TorchServe, TF Serving or OIP v2 server, e.g. "
        "http://host:8080/predictions/NAME or grpc://host:8500/v1/models/NAME",
    )
    r.add_argument(
        "--remote-token-env", metavar="VAR", help="env variable holding its bearer token"
    )
    r.add_argument("--remote-timeout", type=float, default=30.0, metavar="S")
    r.add_argument("--remote-body", choices=["json", "npy"], default="json", help="TorchServe")
    r.add_argument("--remote-signature", default="", metavar="NAME", help="TF Serving")
    p.set_defaults(func=_register)

    p = msub.add_parser("list", parents=[common], help="list models and versions")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_list)

    p = msub.add_parser("show", parents=[common], help="show one version's manifest")
    p.add_argument("ref", help="NAME, NAME:VERSION or NAME@ALIAS")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_show)

    p = msub.add_parser("alias", parents=[common], help="point an alias at a version")
    p.add_argument("name")
    p.add_argument("alias", help="e.g. stable, canary")
    p.add_argument("version", nargs="?", help="version number (omit with --delete)")
    p.add_argument("--weight", type=float, help="traffic weight for unversioned requests")
    p.add_argument("--delete", action="store_true", help="remove the alias")
    p.set_defaults(func=_alias)

    p = msub.add_parser("remove", parents=[common], help="remove a version or a whole model")
    p.add_argument("ref", help="NAME:VERSION, or NAME for every version")
    p.set_defaults(func=_remove)


def _key_values(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"bad {flag} {item!r}: write KEY=VALUE")
        out[key] = value
    return out


def _load_samples(items: list[str]) -> dict[str, np.ndarray]:
    samples: dict[str, np.ndarray] = {}
    for i, item in enumerate(items):
        name, sep, file = item.rpartition("=")
        if not sep:
            name, file = f"input__{i}", item
        try:
            samples[name] = np.load(file, allow_pickle=False)
        except FileNotFoundError:
            raise InvalidArgument(f"sample file {file!r} does not exist") from None
        except (ValueError, OSError):
            raise InvalidArgument(
                f"sample file {file!r} is not a numpy .npy array (np.save(file, array))"
            ) from None
    return samples


def _register(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    if (args.path is None) == (args.remote is None):
        raise InvalidArgument("give a model PATH, or --remote URL for a model served elsewhere")
    instances = args.instances or (DEFAULT_REMOTE_INSTANCES if args.remote else 1)
    try:
        serving = ServingConfig(
            batching=BatchingConfig(
                max_batch_size=args.max_batch_size, max_queue_delay_ms=args.max_queue_delay_ms
            ),
            instances=instances,
            device=args.device,
        )
    except ValueError as exc:
        raise InvalidArgument(_first_error(exc)) from None
    if args.remote is not None:
        manifest = register_remote(
            store,
            RemoteOptions(
                name=args.name,
                url=args.remote,
                inputs=[parse_tensor_arg(t) for t in args.input],
                outputs=[parse_tensor_arg(t) for t in args.output],
                token_env=args.remote_token_env,
                timeout_s=args.remote_timeout,
                body=args.remote_body,
                signature_name=args.remote_signature,
                labels=_key_values(args.label, "--label"),
                serving=serving,
            ),
        )
        if args.json:
            _print_json(manifest.model_dump(mode="json"))
        else:
            print(manifest.ref)
        return 0
    opts = RegisterOptions(
        name=args.name,
        format=args.format,
        inputs=[parse_tensor_arg(t) for t in args.input],
        outputs=[parse_tensor_arg(t) for t in args.output],
        samples=_load_samples(args.sample),
        labels=_key_values(args.label, "--label"),
        serving=serving,
    )
    manifest = register_path(store, args.path, opts)
    if args.json:
        _print_json(manifest.model_dump(mode="json"))
    else:
        print(manifest.ref)
    return 0


def list_models(store: ModelStore) -> list[dict[str, Any]]:
    """The ``truce models list --json`` rows."""
    rows = []
    for name in store.model_names():
        versions = store.versions(name)
        latest = store.manifest(name, versions[-1])
        rows.append(
            {
                "name": name,
                "versions": versions,
                "latest": versions[-1],
                "framework": latest.framework,
                "format": latest.format,
                "aliases": {k: v.model_dump() for k, v in store.aliases(name).items()},
            }
        )
    return rows


def _list(args: argparse.Namespace) -> int:
    rows = list_models(open_store(args.store))
    if args.json:
        _print_json({"models": rows})
        return 0
    if not rows:
        print("no models yet: truce models register PATH --name NAME")
        return 0
    print(f"{'NAME':<24} {'LATEST':>6} {'VERSIONS':<12} {'FORMAT':<14} ALIASES")
    for r in rows:
        aliases = ", ".join(f"{k}->{v['version']}" for k, v in r["aliases"].items())
        versions = ",".join(map(str, r["versions"]))
        print(f"{r['name']:<24} {r['latest']:>6} {versions:<12} {r['format']:<14} {aliases}")
    return 0


def _show(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    ref = parse_ref(args.ref)
    manifest = store.manifest(ref.name, store.resolve(ref.name, ref.selector))
    if args.json:
        _print_json(manifest.model_dump(mode="json"))
    else:
        print(describe(manifest))
    return 0


def _tensor_lines(specs: list[TensorSpec]) -> list[str]:
    return [f"    {t.name:<24} {t.datatype:<6} {t.shape}" for t in specs]


def describe(m: Manifest) -> str:
    """Human-readable summary of a manifest."""
    lines = [
        f"{m.ref}  ({m.framework} / {m.format})",
        f"  created   {m.created_at.isoformat(timespec='seconds')}",
    ]
    if m.source:
        lines.append(f"  source    {m.source.filename} (sha256 {m.source.sha256[:12]}...)")
    lines += ["  inputs", *_tensor_lines(m.signature.inputs)]
    lines += ["  outputs", *_tensor_lines(m.signature.outputs)]
    size = sum(f.size for f in m.files)
    lines.append(f"  files     {len(m.files)} ({size / 1e6:.2f} MB), sha256 checked on load")
    b = m.serving.batching
    lines.append(
        f"  serving   device={m.serving.device} instances={m.serving.instances} "
        f"max_batch_size={b.max_batch_size} max_queue_delay_ms={b.max_queue_delay_ms}"
    )
    lin = m.lineage
    if lin.parent_version is not None:
        lines.append(
            f"  lineage   from version {lin.parent_version} by {lin.tool} {lin.tool_version} "
            f"{json.dumps(lin.options, sort_keys=True)}"
        )
    if lin.parity is not None:
        lines.extend(_parity_lines(lin.parity))
    if m.labels:
        lines.append("  labels    " + ", ".join(f"{k}={v}" for k, v in sorted(m.labels.items())))
    return "\n".join(lines)


def _parity_lines(parity: dict[str, Any]) -> list[str]:
    """A short summary of a parity report (``--json`` has all of it)."""
    lines = [
        f"  parity    {str(parity.get('verdict', '?')).upper()} on {parity.get('samples', '?')} "
        f"inputs ({parity.get('source_format', '?')} -> {parity.get('target_format', '?')})"
    ]
    for out in parity.get("outputs", []):
        top1 = out.get("top1_agreement")
        lines.append(
            f"    {out.get('name', '?'):<24} max abs err {out.get('max_abs_err', float('nan')):.2e}"
            f"  cosine {out.get('cosine', float('nan')):.6f}"
            + (f"  top-1 {top1:.0%}" if isinstance(top1, float) else "")
        )
    lines.extend(f"    ! {reason}" for reason in parity.get("reasons", []))
    return lines


def _alias(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    if args.delete:
        store.remove_alias(args.name, args.alias)
        print(f"removed {args.name}@{args.alias}")
        return 0
    if args.version is None:
        raise InvalidArgument("give the VERSION the alias should point at (or --delete)")
    check_alias(args.alias)
    version = parse_version(args.version)
    store.set_alias(args.name, args.alias, version, args.weight)
    weight = f" (weight {args.weight})" if args.weight is not None else ""
    print(f"{args.name}@{args.alias} -> {version}{weight}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    ref = parse_ref(args.ref)
    if ref.alias is not None:
        raise InvalidArgument("remove takes NAME or NAME:VERSION, not an alias")
    removed = store.remove(ref.name, ref.version)
    print(f"removed {ref.name} version{'s' if len(removed) > 1 else ''} {removed}")
    return 0


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
    return str(exc)


def _print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
