"""The ``advexplorer`` command.

Each subcommand lives in ``advexplorer/commands/<name>.py`` with ``add_arguments(parser)``
and ``run(args) -> int``; only the chosen one is imported, so ``advexplorer --help`` and
the GUI's first window do not pay for importing torch.

Errors a user can fix (:class:`advexplorer.errors.UserError`) are printed on one line and
exit with status 2; nothing else is printed and no partial output is left behind.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from advexplorer import __version__
from advexplorer.errors import UserError

#: name → (module, one-line help). Order is the order of ``--help``.
COMMANDS: dict[str, tuple[str, str]] = {
    "gui": ("advexplorer.commands.gui", "open the desktop app (the default with no command)"),
    "attack": ("advexplorer.commands.attack", "run one masked attack on one image and record it"),
    "min-eps": ("advexplorer.commands.min_eps", "find the smallest ε that flips the prediction"),
    "screen": ("advexplorer.commands.screen", "screen a cohort: flip rate and robust accuracy vs ε"),
    "report": ("advexplorer.commands.report", "render HTML/PDF reports from a run folder"),
    "reproduce": ("advexplorer.commands.reproduce", "re-run a recorded attack and compare"),
    "demo": ("advexplorer.commands.demo", "open the app on the demo, run PGD live, screenshot"),
    "probe": ("advexplorer.commands.probe", "single-residue probes of a protein sequence classifier"),
}


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="advexplorer",
        description="Probe image classifiers with masked adversarial attacks.",
        epilog=f"commands:\n{lines}\n\nRun 'advexplorer COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"advexplorer {__version__}")
    return parser


def build_parser(name: str) -> argparse.ArgumentParser:
    """The argument parser of one subcommand (imports only that command's module)."""
    module_name, text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"advexplorer {name}", description=text)
    module.add_arguments(parser)
    parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["gui", *argv]
    if argv[0] not in COMMANDS:
        _top_parser().parse_args(argv[:1])  # prints help/version, or an error for unknown words
        return 2
    try:
        parser = build_parser(argv[0])
        args = parser.parse_args(argv[1:])
        args.command_line = ["advexplorer", *argv]
        return int(args._run(args) or 0)
    except UserError as error:
        print(f"advexplorer: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("advexplorer: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug, not the user's fault: one line unless debugging
        if os.environ.get("ADVEXPLORER_DEBUG"):
            raise
        print(f"advexplorer: internal error: {type(error).__name__}: {error} "
              "(set ADVEXPLORER_DEBUG=1 to see the traceback, and please report it)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
