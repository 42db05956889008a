"""``truce edge ...``: export bundles, deploy them over SSH, roll back, show status.

    truce edge export NAME[:VERSION|@ALIAS] --target rpi|android|ios|linux-arm64 --out PATH
    truce edge deploy BUNDLE ssh://user@host[:port]/dir [...] [--inventory FILE]
    truce edge rollback TARGET [...]      truce edge status TARGET [...]
    truce edge verify BUNDLE              truce edge keygen KEY

Exit status: 0 when every target succeeded, 1 when any failed (each is reported).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge import deploy as dep
from edge.export import EDGE_FORMATS, QUANTIZE, TARGETS, ExportOptions, export_bundle
from truce.errors import InvalidArgument


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            "comma-separated numbers, e.g. 0.485,0.456,0.406"
        ) from None


def _ssh_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inventory", type=Path, metavar="FILE", help="one ssh:// target per line")
    p.add_argument("--identity", type=Path, metavar="KEY", help="SSH private key (ssh -i)")
    p.add_argument(
        "--known-hosts", type=Path, metavar="FILE", help="require host keys from this file"
    )
    p.add_argument("--python", default="python3", help="Python on the device (default python3)")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``truce edge`` and its sub-commands."""
    edge = sub.add_parser("edge", help="bundles for Raspberry Pi and phones; deploy over SSH")
    esub = edge.add_subparsers(dest="edge_command", metavar="ACTION")
    esub.required = True

    p = esub.add_parser("export", help="bundle a stored model for a device")
    p.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]")
    p.add_argument("--target", required=True, choices=TARGETS)
    p.add_argument("--format", choices=EDGE_FORMATS, help="default tflite")
    p.add_argument("--quantize", choices=QUANTIZE, default="none", help="TFLite only")
    p.add_argument("--out", required=True, type=Path, help="bundle dir; PATH.tar.gz is written too")
    p.add_argument("--sign-key", type=Path, metavar="KEY", help="Ed25519 private key (signs)")
    p.add_argument("--mean", type=_floats, help="input normalisation recorded for apps")
    p.add_argument("--std", type=_floats)
    p.add_argument("--store", metavar="DIR", help="model store (default: $TRUCE_STORE)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_export)

    p = esub.add_parser("deploy", help="upload, verify, smoke-test and switch on devices")
    p.add_argument("bundle", type=Path, help="bundle directory or .tar.gz")
    p.add_argument("targets", nargs="*", metavar="ssh://user@host[:port]/dir")
    _ssh_args(p)
    p.add_argument("--install-requirements", action="store_true", help="pip into DIR/venv")
    p.add_argument("--systemd", action="store_true", help="install/restart a serve unit")
    p.add_argument("--serve-host", default="127.0.0.1", help="unit's --host (0.0.0.0: LAN)")
    p.add_argument("--serve-port", type=int, default=8080)
    p.add_argument("--trusted-key", type=Path, metavar="KEY.pub", help="pin a signing key")
    p.add_argument("--keep", type=int, default=5, help="bundles kept on the device")
    p.set_defaults(func=_deploy)

    for name, text in (
        ("rollback", "switch back to the previous bundle"),
        ("status", "show what each device runs"),
    ):
        p = esub.add_parser(name, help=text)
        p.add_argument("targets", nargs="*", metavar="ssh://user@host[:port]/dir")
        _ssh_args(p)
        p.set_defaults(func=_each, edge_each=name)

    p = esub.add_parser("verify", help="check a bundle's hashes and signature here")
    p.add_argument("bundle", type=Path)
    p.add_argument("--trusted-key", type=Path, action="append", metavar="KEY.pub")
    p.set_defaults(func=_verify)

    p = esub.add_parser("keygen", help="create an Ed25519 signing key (KEY and KEY.pub)")
    p.add_argument("key", type=Path)
    p.set_defaults(func=_keygen)


def _export(args: argparse.Namespace) -> int:
    from model_store.store import open_store

    opts = ExportOptions(
        target=args.target,
        out=args.out,
        format=args.format,
        quantize=args.quantize,
        sign_key=args.sign_key,
        mean=args.mean,
        std=args.std,
        progress=lambda m: print(m, file=sys.stderr),
    )
    r = export_bundle(open_store(args.store), args.ref, opts)
    report = {
        "bundle": str(r.directory),
        "archive": str(r.archive),
        "model": r.model.ref,
        "format": r.model.format,
        "source": r.source.ref,
        "converted": r.converted,
        "signed": args.sign_key is not None,
        "smoke": r.smoke,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"bundle {r.directory} and {r.archive.name}: {r.model.ref} ({r.model.format}) "
            f"from {r.source.ref}{', signed' if args.sign_key else ''}"
        )
    return 0


def _ssh_opts(args: argparse.Namespace) -> dep.SshOptions:
    return dep.SshOptions(identity=args.identity, known_hosts=args.known_hosts, python=args.python)


def _print_reports(reports: list[dict[str, Any]], as_json: bool) -> int:
    if as_json:
        print(json.dumps(reports, indent=2))
    else:
        for r in reports:
            if not r.get("ok"):
                print(f"{r['target']}: FAILED: {r.get('error')}")
            elif "rolled_back" in r:
                print(f"{r['target']}: rolled back {r['rolled_back']} -> now {r['release']}")
            elif "smoke" in r:
                outs = ((r.get("smoke") or {}).get("outputs")) or {}
                shapes = ", ".join(f"{k} {v.get('shape')}" for k, v in outs.items())
                print(
                    f"{r['target']}: now {r['release']} (was {r.get('previous')}); "
                    f"smoke inference ok: {shapes}"
                )
            else:
                b = r.get("bundle") or {}
                m = b.get("model") or {}
                print(
                    f"{r['target']}: {r.get('release') or 'nothing deployed'} "
                    f"{m.get('name', '')} v{m.get('version', '?')} ({m.get('format', '')}) "
                    f"history {len(r.get('history') or [])}"
                )
    return 0 if all(r.get("ok") for r in reports) else 1


def _deploy(args: argparse.Namespace) -> int:
    if args.keep < 2:
        raise InvalidArgument("--keep must be at least 2 (the current and the previous bundle)")
    targets = dep.collect_targets(args.targets, args.inventory)
    opts = dep.DeployOptions(
        install_requirements=args.install_requirements,
        systemd=args.systemd,
        serve_host=args.serve_host,
        serve_port=args.serve_port,
        trusted_key=args.trusted_key,
        keep=args.keep,
    )
    reports = dep.deploy(
        args.bundle, targets, _ssh_opts(args), opts, progress=lambda m: print(m, file=sys.stderr)
    )
    return _print_reports(reports, args.json)


def _each(args: argparse.Namespace) -> int:
    targets = dep.collect_targets(args.targets, args.inventory)
    return _print_reports(dep.each(args.edge_each, targets, _ssh_opts(args)), args.json)


def _verify(args: argparse.Namespace) -> int:
    from edge.bundle import verify
    from edge.runner.verify import trusted_keys_from

    keys = trusted_keys_from([str(k) for k in args.trusted_key] if args.trusted_key else None)
    meta = verify(args.bundle, keys)
    m = meta["model"]
    signer = meta.get("_signed_by")
    print(
        f"ok: {m.get('name')} v{m.get('version')} ({m.get('format')}) for {meta.get('target')}, "
        f"{len(meta['files'])} files"
        + (f", signed by {signer[:16]}..." if signer else ", unsigned")
    )
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from edge.signing import keygen

    key, pub = keygen(args.key)
    print(f"wrote {key} (private: keep it on the build machine) and {pub} (copy to devices)")
    return 0
