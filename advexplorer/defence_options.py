"""The torch-free vocabulary of defences, adaptive attacks and numeric precisions.

``--defense blur:SIGMA | jpeg:QUALITY | bits:DEPTH | median:SIZE | noise:SIGMA``,
``--adaptive none|bpda|eot`` and ``--precision float32|float16|bfloat16|int8|int8-static`` are parsed
here once, for the CLI and the GUI alike, before torch is imported (this module imports
neither torch nor Qt). The models themselves are in :mod:`advexplorer.core.defences` and
:mod:`advexplorer.core.quantisation`.

It sits beside :mod:`advexplorer.config` (same layer, same rules) so the attack vocabulary
and the defence vocabulary can change independently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from advexplorer.errors import UserError


@dataclass(frozen=True)
class DefenceKind:
    name: str
    parameter: str            # what the number after the colon is
    label: str
    citation: str
    low: float                # allowed range of the parameter (inclusive)
    high: float
    integer: bool = False
    random: bool = False      # a random defence: EOT is the adaptive attack for it


DEFENCE_KINDS: dict[str, DefenceKind] = {
    "blur": DefenceKind("blur", "σ in pixels", "Gaussian blur (low-pass)",
                        "low-pass filtering as a defence; broken by BPDA, Athalye et al. 2018, "
                        "https://arxiv.org/abs/1802.00420", 0.1, 20.0),
    "jpeg": DefenceKind("jpeg", "quality 1–100", "JPEG compression",
                        "Dziugaite et al. 2016, https://arxiv.org/abs/1608.00853; Guo et al. 2018", 1, 100,
                        integer=True),
    "bits": DefenceKind("bits", "bits per channel 1–8", "bit-depth reduction",
                        "Xu, Evans & Qi 2018, https://arxiv.org/abs/1704.01155", 1, 8, integer=True),
    "median": DefenceKind("median", "window side 2–15 pixels", "median filter",
                          "Xu, Evans & Qi 2018, https://arxiv.org/abs/1704.01155", 2, 15, integer=True),
    "noise": DefenceKind("noise", "σ of Gaussian noise", "random Gaussian noise",
                         "randomised input noise; broken by EOT, Athalye et al. 2018", 0.001, 1.0,
                         random=True),
}
ADAPTIVE_MODES = ("none", "bpda", "eot")
ADAPTIVE_LABELS = {
    "none": "naive (gradients through the defence as implemented)",
    "bpda": "BPDA: identity on the backward pass (Athalye et al. 2018)",
    "eot": "EOT over the defence's randomness, with BPDA (Athalye et al. 2018)",
}
PRECISIONS = ("float32", "float16", "bfloat16", "int8", "int8-static")


@dataclass(frozen=True)
class DefenceSpec:
    """One preprocessing defence, e.g. ``DefenceSpec("jpeg", 75)``."""

    kind: str
    value: float

    @property
    def info(self) -> DefenceKind:
        return DEFENCE_KINDS[self.kind]

    def text(self) -> str:
        value = int(self.value) if self.info.integer else f"{self.value:g}"
        return f"{self.kind}:{value}"

    def describe(self) -> str:
        return f"{self.info.label} ({self.info.parameter.split(' ')[0]} {self.text().split(':')[1]})"


def parse_defence(text: str) -> DefenceSpec:
    """``'jpeg:75'`` → DefenceSpec; one clear message for anything else."""
    kinds = " | ".join(f"{k}:{v.parameter.split(' ')[0].upper()}" for k, v in DEFENCE_KINDS.items())
    kind, colon, value_text = str(text).strip().partition(":")
    kind = kind.lower()
    if kind not in DEFENCE_KINDS or not colon:
        raise UserError(f"--defense {text!r}: give one of {kinds} (e.g. jpeg:75).")
    info = DEFENCE_KINDS[kind]
    try:
        value = float(value_text)
    except ValueError:
        raise UserError(f"--defense {text!r}: {value_text!r} is not a number ({info.parameter}).") from None
    if not math.isfinite(value) or not info.low <= value <= info.high or \
            (info.integer and value != int(value)):
        kind_text = "a whole number" if info.integer else "a number"
        raise UserError(f"--defense {text!r}: the {info.parameter} must be {kind_text} from "
                        f"{info.low:g} to {info.high:g}.")
    return DefenceSpec(kind, value)


def parse_adaptive(text: str, defence: DefenceSpec | None) -> str:
    """``none``/``bpda``/``eot``; an adaptive attack without a defence is a mistake."""
    mode = (text or "none").strip().lower()
    if mode not in ADAPTIVE_MODES:
        raise UserError(f"--adaptive {text!r}: choose one of {', '.join(ADAPTIVE_MODES)}.")
    if mode != "none" and defence is None:
        raise UserError(f"--adaptive {mode} attacks through a defence; add --defense (e.g. jpeg:75).")
    return mode


def parse_precision(text: str) -> str:
    """``float32``/``float16``/``bfloat16``/``int8``."""
    precision = (text or "float32").strip().lower()
    if precision not in PRECISIONS:
        raise UserError(f"--precision {text!r}: choose one of {', '.join(PRECISIONS)}.")
    return precision
