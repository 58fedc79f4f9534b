"""The ``advexplorer`` command.

Each subcommand lives in ``advexplorer/commands/<name>.py`` with ``add_arguments(parser)``
and ``run(args) -> int``; only the chosen one is imported, so ``advexplorer --help`` and
the GUI's first window do not pay for importing torch.

Every problem that is not a bug is printed on ONE line and exits with status 2, with no
partial output left behind:

* a mistake in the arguments: ``advexplorer attack: error: argument --eps: …; see
  'advexplorer attack --help'`` (not argparse's usage block);
* an error a user can fix (:class:`advexplorer.errors.UserError`);
* the machine's limits: a full disk, a folder that cannot be written, running out of memory.

Anything else is a bug: one line saying so (``ADVEXPLORER_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
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
    "train": ("advexplorer.commands.train", "fine-tune a model (clean, PGD-AT, TRADES, fast-AT) into a twin"),
    "card": ("advexplorer.commands.card", "make a model's card (MODEL.json) from what the file says + a dry run"),
}

#: What each command is doing when the machine runs out of memory ("out of memory while …").
ACTIVITY: dict[str, str] = {
    "gui": "running the app", "attack": "running the attack", "min-eps": "searching the minimal ε",
    "screen": "screening the cohort", "report": "writing the report",
    "reproduce": "re-running the attack", "demo": "running the demo",
    "probe": "probing the sequence classifier",
}

#: A value that starts with a minus sign: -1/255, -0.5, -2e-3, -1,2 (argparse alone would
#: take "-1/255" for an option and say "expected one argument").
_NEGATIVE_VALUE = re.compile(r"-\.?\d[\d.,/eE+\-]*")


class ArgumentsError(UserError):
    """A mistake in the command line, found by argparse."""


class _Parser(argparse.ArgumentParser):
    """argparse, except that a mistake is raised (and printed as one line by :func:`main`)
    instead of printing the whole usage block."""

    def error(self, message: str):  # documented hook: must not return
        raise ArgumentsError(message)


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items())
    parser = _Parser(
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
    parser = _Parser(prog=f"advexplorer {name}", description=text)
    module.add_arguments(parser)
    parser.set_defaults(_run=module.run)
    return parser


def attach_negative_values(argv: list[str]) -> list[str]:
    """``--eps -1/255`` → ``--eps=-1/255``, so a negative value reaches the option's type,
    which refuses it with the real reason."""
    joined: list[str] = []
    for token in argv:
        previous = joined[-1] if joined else ""
        if _NEGATIVE_VALUE.fullmatch(token) and previous.startswith("--") and "=" not in previous:
            joined[-1] = f"{previous}={token}"
        else:
            joined.append(token)
    return joined


def machine_error_message(error: BaseException, activity: str = "working",
                          args: argparse.Namespace | None = None) -> str | None:
    """One line for an error that is the machine's, not a bug (a full disk, a folder that
    cannot be written, no memory left); None for anything else."""
    where = "another --out" if args is not None and hasattr(args, "out") else "another place"
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        what = "the disk is full" if error.errno == errno.ENOSPC else "the disk quota is used up"
        path = f" (writing {error.filename})" if error.filename else ""
        return f"{what}{path}: free space or choose {where}"
    if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        path = error.filename if error.filename else "the output"
        return f"cannot write to {path}: {error.strerror or error}; choose {where}"
    accelerator = _out_of_memory(error)
    if accelerator is None:
        return None
    device = getattr(args, "device", None)
    on = f" on {device}" if device and device != "auto" else ""
    advice = ["a smaller --batch-size" if args is not None and hasattr(args, "batch_size") else None,
              "a smaller input size", "--device cpu" if accelerator else None]
    return (f"out of memory while {activity}{on}; use "
            + " or ".join(a for a in advice if a) + ("" if accelerator else ", or free memory"))


def _out_of_memory(error: BaseException) -> bool | None:
    """None when ``error`` is not about memory; else whether an accelerator ran out."""
    if isinstance(error, MemoryError):
        return False
    torch = sys.modules.get("torch")  # never import torch just to classify an error
    if torch is not None:
        kinds = tuple(kind for kind in (getattr(torch, "OutOfMemoryError", None),
                                        getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None))
                      if isinstance(kind, type))
        if kinds and isinstance(error, kinds):
            return True
    if isinstance(error, RuntimeError):
        text = str(error).lower()
        if "out of memory" in text:  # CUDA, MPS
            return True
        if "not enough memory" in text:  # torch's CPU allocator
            return False
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_attack-process"]:  # the packaged app as its own attack process (not a command)
        from advexplorer.gui.attack_process import child_main

        return child_main(argv[1:])
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["gui", *argv]
    name = argv[0]
    prog = f"advexplorer {name}" if name in COMMANDS else "advexplorer"
    args = None
    try:
        if name in ("-h", "--help", "--version"):
            _top_parser().parse_args(argv[:1])  # prints help or the version, and exits 0
        if name not in COMMANDS:
            raise ArgumentsError(f"unknown command {name!r} (commands: {', '.join(COMMANDS)})")
        parser = build_parser(name)
        args = parser.parse_args(attach_negative_values(argv[1:]))
        args.command_line = ["advexplorer", *argv]
        return int(args._run(args) or 0)
    except ArgumentsError as error:
        print(f"{prog}: error: {str(error).rstrip('.')}; see '{prog} --help'", file=sys.stderr)
        return 2
    except UserError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the machine's limits, or a bug: one line unless debugging
        message = machine_error_message(error, ACTIVITY.get(name, "working"), args)
        if message is not None:
            print(f"{prog}: error: {message}", file=sys.stderr)
            return 2
        if os.environ.get("ADVEXPLORER_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(error).__name__}: {error} "
              "(set ADVEXPLORER_DEBUG=1 to see the traceback, and please report it)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
