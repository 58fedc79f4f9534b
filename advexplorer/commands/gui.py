"""``advexplorer gui`` (also ``advexplorer`` with no command): open the desktop app."""

from __future__ import annotations

import argparse
from pathlib import Path

from advexplorer.commands._args import add_mask_arguments, add_model_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", nargs="?", metavar="PROJECT.advx",
                        help="a saved project to open (what a double-click on a .advx file runs)")
    add_model_arguments(parser)
    parser.add_argument("--image", action="extend", nargs="+", default=[], metavar="I",
                        help="image files or folders to open (default: the model card's samples)")
    add_mask_arguments(parser)
    parser.add_argument("--diagnostic", metavar="D.png",
                        help="diagnostic-region mask for the first image (used by the saliency checks)")
    parser.add_argument("--no-default-model", action="store_true",
                        help="start without loading the bundled model")


def options_from_args(args):
    """The window's :class:`StartOptions` from parsed arguments (no Qt import needed here)."""
    from advexplorer.gui.main_window import StartOptions

    def path(value):
        return Path(value) if value else None

    return StartOptions(
        model=path(args.model), card=path(args.card), device=args.device,
        trust_pickle=bool(args.trust_pickle), images=[Path(p) for p in args.image],
        mask=path(args.mask), protect=path(args.protect), diagnostic=path(args.diagnostic),
        use_default_model=not getattr(args, "no_default_model", False))


def run(args) -> int:
    from advexplorer.errors import UserError

    for name in ("model", "card", "mask", "protect", "diagnostic"):
        value = getattr(args, name, None)
        if value and not Path(value).exists():
            raise UserError(f"--{name} {value}: no such file.")
    for value in args.image:
        if not Path(value).exists():
            raise UserError(f"--image {value}: no such file or folder.")
    project = getattr(args, "project", None)
    if project and not Path(project).is_file():
        raise UserError(f"{project}: no such project file; give a .advx file saved with File → Save project.")
    from advexplorer.gui.platform_check import xcb_problem

    problem = xcb_problem()  # Qt would abort with a cryptic message; name the missing package
    if problem:
        raise UserError(problem)
    try:
        from advexplorer.gui.app import run_app
    except ImportError as exc:
        raise UserError(f"The desktop app needs PySide6, pyqtgraph and superqt ({exc}); install them "
                        "with: pip install 'advexplorer[gui]'.") from None
    if project:
        def open_project(window):
            from PySide6.QtCore import QTimer

            QTimer.singleShot(0, lambda: window.workspace.project.open(project))

        return run_app(options_from_args(args), on_window=open_project)
    return run_app(options_from_args(args))
