"""Argument types and option groups shared by the subcommands.

Numbers go through :func:`advexplorer.config.parse_number`, the parser the GUI form uses
too, so ``8/255``, ``0.5/255``, ``2e-3`` and ``-1/255`` mean the same everywhere; a value
out of range is refused with the reason (argparse prints it on one line, see
:mod:`advexplorer.cli`).
"""

from __future__ import annotations

import argparse

from advexplorer import config
from advexplorer.errors import UserError


def number(text: str) -> float:
    """A number, or a fraction such as ``8/255`` (ε and step sizes are pixel units)."""
    try:
        return config.parse_number(text, "value")
    except UserError as error:
        raise argparse.ArgumentTypeError(_reason(error)) from None


def positive_number(text: str) -> float:
    """A number or fraction greater than 0 (a step size, a tolerance)."""
    value = number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not greater than 0")
    return value


def budget(text: str) -> float:
    """A budget ε: a number or fraction greater than 0, in pixel units."""
    value = number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"ε = {text} is out of range: it must be greater than 0 "
                                         "(a budget in pixel units, e.g. 8/255)")
    return value


def probability(text: str) -> float:
    """A probability from 0 to 1 (a number or a fraction such as ``1/2``)."""
    value = number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a probability from 0 to 1")
    return value


def number_list(text: str) -> list[float]:
    """A comma-separated list of numbers or fractions: ``0,1/255,2/255``."""
    try:
        return config.parse_number_list(text, "values")
    except UserError as error:
        raise argparse.ArgumentTypeError(_reason(error)) from None


def _reason(error: UserError) -> str:
    """The part of the parser's message after 'value: ' (argparse names the option itself)."""
    text = str(error)
    for prefix in ("value: ", "values: "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


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
