"""``advexplorer demo``: open the app on the bundled sample, run PGD live, optionally screenshot.

``advexplorer demo --screenshot docs/screenshot.png --steps 20`` opens the window on the
bundled histology model's first sample with its protect mask, runs a 20-step PGD while
the views update, saves a PNG of the whole window after the last step and exits 0. It
works without a display (``QT_QPA_PLATFORM=offscreen``) and under Xvfb.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from advexplorer import config
from advexplorer.commands._args import budget


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--screenshot", metavar="FILE.png",
                        help="save a screenshot of the window after the last step, then exit")
    parser.add_argument("--steps", type=int, default=20, help="PGD iterations (default 20)")
    parser.add_argument("--eps", type=budget, default=8 / 255,
                        help="L∞ budget (default 8/255, which flips the bundled sample even "
                             "with its protect mask)")
    parser.add_argument("--saliency", default="smoothgrad", choices=(*config.SALIENCY_METHODS, "none"),
                        help="saliency method shown before/after, or 'none' (default smoothgrad)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--size", default="1600x1000", metavar="WxH",
                        help="window size for the screenshot (default 1600x1000)")


def run(args) -> int:
    from advexplorer.errors import UserError

    if args.steps < 1:
        raise UserError("--steps must be at least 1.")
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {args.size!r} must look like 1600x1000.") from None
    screenshot = Path(args.screenshot) if args.screenshot else None
    if screenshot is not None and not screenshot.parent.exists():
        raise UserError(f"The folder of --screenshot ({screenshot.parent}) does not exist.")
    from advexplorer.gui.platform_check import xcb_problem

    if xcb_problem():  # name the missing system package instead of Qt's abort
        raise UserError(xcb_problem())
    from advexplorer.gui.app import DemoOptions, check_demo_model, run_app
    from advexplorer.gui.main_window import StartOptions

    check_demo_model()

    def size_window(window):
        window.resize(width, height)

    options = StartOptions(device=args.device, remember=False)
    demo = DemoOptions(steps=args.steps, eps=args.eps, screenshot=screenshot,
                       saliency=None if args.saliency == "none" else args.saliency)
    return run_app(options, demo=demo, on_window=size_window)
