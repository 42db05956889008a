"""The ``truce`` command line: one entry point, one sub-command group per package.

Each package contributes its commands through ``add_commands(subparsers)``; a command's
handler takes the parsed ``argparse.Namespace`` and returns an exit code. User mistakes
raise ``TruceError`` and are printed as one line (``error: ...``), never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from truce import __version__
from truce.errors import ErrorCode, TruceError

# Modules that provide ``add_commands``; imported lazily so ``truce --help`` stays fast and a
# missing optional extra only affects its own commands.
_COMMAND_MODULES = (
    "model_store.cli",
    "gateway.cli",
    "converters.cli",
    "edge.cli",
    "loadtests.cli",
)

#: exit codes by error kind; 2 is argparse's own usage error
EXIT_CODES: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 2,
    ErrorCode.NOT_FOUND: 3,
    ErrorCode.ALREADY_EXISTS: 4,
    ErrorCode.FAILED_PRECONDITION: 5,
    ErrorCode.DATA_LOSS: 6,
    ErrorCode.UNIMPLEMENTED: 7,
    ErrorCode.UNAVAILABLE: 8,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="truce",
        description="One model serving and deployment gateway for PyTorch and TensorFlow.",
    )
    parser.add_argument("--version", action="version", version=f"truce {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that package has no commands yet
            raise
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except TruceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_CODES.get(exc.code, 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
