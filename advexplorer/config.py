"""The torch-free vocabulary shared by the GUI, the CLI, the engine and the reports.

Names of attack methods, norms, saliency methods, defences and precisions with the labels
people read (and their parsers: ``--defense jpeg:75``, ``--adaptive``, ``--precision``); the one
parser of numbers such as ``8/255``, ``0.5/255`` or ``2e-3``; the one formatter of budgets;
and :class:`AttackConfig`, so a form can be validated with the engine's own rules before
torch is imported (importing this module imports neither torch nor Qt).

A new attack or saliency method is added here once and appears in every menu, option
list, record and report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from advexplorer.errors import UserError

# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Method:
    """One attack method: its record name, the label people read, and where it comes from."""

    name: str
    label: str           # short: tables, titles ("PGD")
    description: str     # menus ("PGD — projected gradient descent")
    citation: str = ""
    url: str = ""
    iterative: bool = True
    uses_gradient: bool = True
    random_start: bool = False   # whether a random start makes sense
    momentum: bool = False
    black_box: bool = False      # sees only the model's outputs (its steps are queries)


METHOD_INFO: dict[str, Method] = {m.name: m for m in (
    Method("pgd", "PGD", "PGD — projected gradient descent", "Madry et al., ICLR 2018",
           "https://arxiv.org/abs/1706.06083", random_start=True),
    Method("fgsm", "FGSM", "FGSM — one gradient-sign step", "Goodfellow, Shlens, Szegedy, ICLR 2015",
           "https://arxiv.org/abs/1412.6572", iterative=False),
    Method("mifgsm", "MI-FGSM", "MI-FGSM — with momentum", "Dong et al., CVPR 2018",
           "https://arxiv.org/abs/1710.06081", random_start=True, momentum=True),
    Method("noise", "Random noise (baseline)", "Random noise — baseline",
           "random signs on the ε-ball's surface", uses_gradient=False),
    Method("apgd-ce", "APGD-CE", "APGD-CE — auto step size, cross-entropy", "Croce & Hein, ICML 2020",
           "https://arxiv.org/abs/2003.01690", random_start=True),
    Method("apgd-dlr", "APGD-DLR", "APGD-DLR — auto step size, logit-ratio loss", "Croce & Hein, ICML 2020",
           "https://arxiv.org/abs/2003.01690", random_start=True),
    Method("square", "Square", "Square — black-box, outputs only", "Andriushchenko et al., ECCV 2020",
           "https://arxiv.org/abs/1912.00049", uses_gradient=False, black_box=True),
    Method("ensemble", "Ensemble", "Ensemble — APGD-CE → APGD-T → Square, worst case",
           "after AutoAttack, Croce & Hein, ICML 2020", "https://arxiv.org/abs/2003.01690"),
)}
#: Attack names in menu order (the first is the default).
METHODS: tuple[str, ...] = tuple(METHOD_INFO)
#: Attacks that follow a gradient (the minimal-ε search accepts these).
GRADIENT_METHODS: tuple[str, ...] = tuple(n for n, m in METHOD_INFO.items()
                                          if m.uses_gradient and n != "ensemble")

NORM_LABELS: dict[str, str] = {"linf": "L∞", "l2": "L2"}
NORM_DESCRIPTIONS: dict[str, str] = {"linf": "L∞ (max per pixel)", "l2": "L2 (Euclidean)"}
NORMS: tuple[str, ...] = tuple(NORM_LABELS)

@dataclass(frozen=True)
class FlagInfo:
    """A warning that an evaluation may be unreliable: what it means and what to do about it."""

    code: str
    title: str
    suggestion: str


#: Flags for unreliable evaluations (after AutoAttack's checks, Croce & Hein 2020), in the
#: order they are shown. The measured detail of each raised flag is added by core.flags.
FLAG_INFO: dict[str, FlagInfo] = {f.code: f for f in (
    FlagInfo("gradient-unusable", "Input gradients are zero or not finite",
             "White-box attacks cannot work here (gradient masking): rely on the Square attack "
             "or the ensemble, which runs it."),
    FlagInfo("noise-beats-attack", "Random noise flips more images than the gradient attack",
             "The gradient attack is failing, not the model resisting: use more steps or restarts, "
             "APGD (automatic step size), or the ensemble."),
    FlagInfo("black-box-beats-white-box", "The black-box attack succeeds where the white-box one fails",
             "The gradients mislead the white-box attacks (masking): report the ensemble's worst case, "
             "not the white-box number."),
    FlagInfo("not-decreasing-in-eps", "Robust accuracy does not decrease as ε grows",
             "A larger budget can only help an attacker: the attack is unreliable; use more steps, "
             "restarts or the ensemble."),
    FlagInfo("unbounded-eps-fails", "An unbounded ε (1.0, L∞) does not reach 100 % success",
             "An attacker who may set every pixel to anything must win: the attack or the model's "
             "gradients are broken; try the Square attack or the ensemble."),
    FlagInfo("loss-not-increasing", "The attack's loss did not increase over the steps",
             "The steps go nowhere: check the step size, or use APGD, whose step size adapts."),
    FlagInfo("probability-output", "The model's output is already a probability",
             "Softmax outputs saturate and their gradients vanish; attack the model's logits "
             "(export it without its final softmax) for a reliable number."),
)}

SALIENCY_LABELS: dict[str, str] = {
    "gradient": "Gradient (saliency)",
    "smoothgrad": "SmoothGrad",
    "integrated-gradients": "Integrated gradients",
    "gradcam": "Grad-CAM",
}
SALIENCY_METHODS: tuple[str, ...] = tuple(SALIENCY_LABELS)

MethodName = Literal["fgsm", "pgd", "mifgsm", "noise", "apgd-ce", "apgd-dlr", "square", "ensemble"]

#: Attacks whose gradient may be taken through input diversity (AttackConfig.diversity).
DIVERSITY_METHODS: tuple[str, ...] = ("fgsm", "pgd", "mifgsm")

#: Square's default query budget (model evaluations per image).
DEFAULT_QUERIES = 1000
NormName = Literal["linf", "l2"]


def method_label(name: str | None) -> str:
    """'PGD' for 'pgd'; an unknown name is shown as it is."""
    info = METHOD_INFO.get(name or "")
    return info.label if info else str(name or "")


def norm_label(name: str | None) -> str:
    return NORM_LABELS.get(name or "", str(name or ""))


# --------------------------------------------------------------------------- numbers


def parse_number(text: str | float | int, what: str = "value") -> float:
    """A number such as ``0.03`` or ``2e-3``, or a fraction such as ``8/255`` or ``0.5/255``.

    Raises :class:`UserError` naming ``what`` for anything else (empty text, ``abc``,
    ``1/0``, ``nan``, ``inf``).
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        text = str(text).strip()
        if not text:
            raise UserError(f"{what} is empty; enter a number such as 8/255 or 0.03.")
        try:
            if "/" in text:
                numerator, denominator = text.split("/", 1)
                value = float(Fraction(numerator.strip()) / Fraction(denominator.strip()))
            else:
                value = float(text)
        except (ValueError, ZeroDivisionError):
            raise UserError(f"{what}: {text!r} is not a number (examples: 0.03, 8/255, 0.5/255).") from None
    if not math.isfinite(value):
        raise UserError(f"{what}: {text!r} is not a finite number (examples: 0.03, 8/255).")
    return value


def parse_number_list(text: str, what: str = "values") -> list[float]:
    """A comma-separated list of numbers or fractions: ``0,1/255,2/255``."""
    parts = [part for part in str(text).split(",") if part.strip()]
    if not parts:
        raise UserError(f"{what}: give at least one value, e.g. 0,2/255,8/255.")
    return [parse_number(part, what) for part in parts]


def over_255(value: float | None) -> str:
    """A pixel-unit value as a fraction of 255: 0.0313725 → '8/255', 0.01 → '2.55/255'."""
    if value is None or not math.isfinite(float(value)):
        return "—"
    scaled = float(value) * 255.0
    if abs(scaled - round(scaled)) < 1e-4:
        return f"{int(round(scaled))}/255"
    return f"{scaled:.4g}/255"  # 4 digits: 12.05/255 must not read as 12/255


def format_budget(value: float | None, norm: str = "linf", *, raw: bool = False) -> str:
    """The one way a budget (ε, a step size, a perturbation's norm) is written.

    L∞ values read as fractions of 255 ('8/255'), with ``raw=True`` followed by the
    pixel-unit number ('8/255 (0.03137)'); L2 values are plain numbers ('0.5').
    """
    if value is None or not math.isfinite(float(value)):
        return "—"
    if norm != "linf":
        return f"{float(value):.4g}"
    text = over_255(value)
    return f"{text} ({float(value):.4g})" if raw else text


def eps_argument(value: float) -> str:
    """ε for a command line: '8/255' when that is exactly the float, else its repr."""
    scaled = round(float(value) * 255)
    return f"{scaled}/255" if scaled > 0 and scaled / 255 == float(value) else repr(float(value))


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class AttackConfig:
    """Everything that defines an attack, in pixel units. Defaults follow the papers.

    ``step_size=None`` means ε for FGSM and 2.5·ε/steps for the iterative attacks (Madry
    et al.; 2/255 for ε=8/255 with 10 steps, torchattacks' default).
    """

    method: MethodName = "pgd"
    norm: NormName = "linf"
    eps: float = 8 / 255
    step_size: float | None = None
    steps: int = 10
    targeted: int | None = None
    random_start: bool = False
    seed: int | None = None
    restarts: int = 1
    early_stop: bool = False
    decay: float = 1.0
    queries: int = DEFAULT_QUERIES  # Square's budget (one query = one model evaluation per image)
    #: Input diversity (DI-FGSM, Xie et al. 2019): the probability that a gradient is taken
    #: through a random resize-and-pad of the image; 0 = off. For FGSM, PGD and MI-FGSM.
    diversity: float = 0.0

    def validate(self) -> "AttackConfig":
        """Raise :class:`UserError` with a fix-it message for any out-of-range value."""
        if self.method not in METHODS:
            raise UserError(f"Unknown attack {self.method!r}; choose one of {', '.join(METHODS)}.")
        if self.norm not in NORMS:
            raise UserError(f"Unknown norm {self.norm!r}; choose linf or l2.")
        eps = float(self.eps)
        if not math.isfinite(eps) or not eps > 0:
            raise UserError(f"ε = {eps:g} is out of range: it must be greater than 0 "
                            "(pixel units; e.g. 8/255).")
        if self.norm == "linf" and eps > 1:
            raise UserError(f"ε = {eps:g} is out of range: an L∞ budget must be in (0, 1] "
                            "(pixel units; e.g. 8/255).")
        if self.norm == "l2" and eps > 1000:
            raise UserError(f"ε = {eps:g} is out of range for an L2 budget (typical: 0.5 to 5).")
        if int(self.steps) < 1:
            raise UserError(f"steps = {self.steps} is out of range: run at least 1 step.")
        if self.step_size is not None and not (math.isfinite(float(self.step_size))
                                               and float(self.step_size) > 0):
            raise UserError(f"Step size {float(self.step_size):g} must be greater than 0 (e.g. 2/255).")
        if int(self.restarts) < 1:
            raise UserError(f"restarts = {self.restarts} must be at least 1.")
        if int(self.queries) < 1:
            raise UserError(f"A query budget of {self.queries} lets the Square attack ask the model "
                            "nothing; give --queries 1 or more (the paper uses 10000, 1000 is quick).")
        if not self.decay >= 0:
            raise UserError(f"Momentum decay {self.decay:g} must be ≥ 0 (the paper uses 1.0).")
        diversity = float(self.diversity)
        if not 0 <= diversity <= 1:
            raise UserError(f"Input diversity {diversity:g} is a probability: give a value from 0 (off) "
                            "to 1 (the paper uses 0.5).")
        if diversity > 0 and self.method not in DIVERSITY_METHODS:
            raise UserError(f"Input diversity works with the gradient attacks FGSM, PGD and MI-FGSM; "
                            f"{self.info.label} does not use it. Set it to 0, or choose one of those.")
        return self

    @property
    def info(self) -> Method:
        return METHOD_INFO[self.method]

    @property
    def effective_steps(self) -> int:
        if self.method == "square":
            return int(self.queries)
        return 1 if self.method == "fgsm" else int(self.steps)

    def effective_step_size(self, eps: Any):
        """The step size used for budget ``eps`` (a number or a per-image tensor)."""
        if self.method == "fgsm":
            return eps
        if self.step_size is not None:
            return self.step_size
        return 2.5 * eps / self.effective_steps

    def describe(self) -> str:
        """'PGD L∞ ε=8/255, 10 steps' — one line for titles and status bars."""
        text = f"{self.info.label} {norm_label(self.norm)} ε={format_budget(self.eps, self.norm)}"
        if self.method == "square":
            text += f", {self.effective_steps} queries"
        elif self.info.iterative:
            text += f", {self.effective_steps} steps"
        if self.diversity:
            text += f", input diversity p={float(self.diversity):g}"
        return text

    def to_json(self) -> dict:
        return {
            "method": self.method, "norm": self.norm, "eps": float(self.eps),
            "step_size": None if self.step_size is None else float(self.step_size),
            "steps": self.effective_steps, "targeted": self.targeted,
            "random_start": self.random_start, "seed": self.seed, "restarts": self.restarts,
            "early_stop": self.early_stop, "decay": self.decay, "queries": int(self.queries),
            "diversity": float(self.diversity),
        }

    @classmethod
    def from_json(cls, data: dict) -> "AttackConfig":
        """The inverse of :meth:`to_json` (unknown keys are ignored)."""
        fields = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in fields})


# --------------------------------------------------------------------------- defences and precision
# ``--defense blur:SIGMA | jpeg:QUALITY | bits:DEPTH | median:SIZE | noise:SIGMA``,
# ``--adaptive none|bpda|eot`` and ``--precision float32|float16|bfloat16|int8|int8-static``,
# parsed once for the CLI and the GUI. The models are in advexplorer.core.defences and
# advexplorer.core.quantisation.


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


#: What the number after the colon is called in usage lines (``blur:SIGMA``).
DEFENCE_METAVARS = {"blur": "SIGMA", "jpeg": "QUALITY", "bits": "DEPTH", "median": "SIZE", "noise": "SIGMA"}


def defence_usage() -> str:
    """'blur:SIGMA | jpeg:QUALITY | bits:DEPTH | median:SIZE | noise:SIGMA'."""
    return " | ".join(f"{kind}:{DEFENCE_METAVARS.get(kind, 'VALUE')}" for kind in DEFENCE_KINDS)


def parse_defence(text: str) -> DefenceSpec:
    """``'jpeg:75'`` → DefenceSpec; one clear message for anything else."""
    kinds = defence_usage()
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
