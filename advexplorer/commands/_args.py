"""Argument types and option groups shared by the subcommands."""

from __future__ import annotations

import argparse
from fractions import Fraction


def number(text: str) -> float:
    """A number, or a fraction such as ``8/255`` (ε and step sizes are pixel units)."""
    try:
        return float(Fraction(text.strip())) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (examples: 0.03, 8/255)") from None


def number_list(text: str) -> list[float]:
    """A comma-separated list of numbers or fractions: ``0,1/255,2/255``."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("give at least one value, e.g. 0,2/255,8/255")
    return [number(p) for p in parts]


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", required=required, metavar="M",
                       help="TorchScript (.pt/.ts), state_dict (.pt/.pth/.safetensors) or "
                            ".pt2 file; its card is the .json with the same stem "
                            "(default: the bundled histology model)")
    group.add_argument("--card", metavar="CARD.json",
                       help="model card, if it is not beside the model with the same stem")
    group.add_argument("--device", default="auto",
                       help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    group.add_argument("--trust-pickle", action="store_true",
                       help="allow loading a fully pickled model: unpickling runs arbitrary "
                            "code, so only for files you trust")


def add_mask_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--mask", metavar="A.png",
                       help="allowed mask: non-zero pixels may be changed by the attack")
    group.add_argument("--protect", metavar="P.png",
                       help="protect mask: non-zero pixels must not be changed")
