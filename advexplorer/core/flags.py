"""Flags for unreliable evaluations: signs that a robustness number should not be trusted.

A defence tested with a weak or misled attack proves nothing (Athalye, Carlini, Wagner,
ICML 2018, https://arxiv.org/abs/1802.00420; Croce & Hein's checks in AutoAttack,
https://arxiv.org/abs/2003.01690). Each check here is one small function that returns a
:class:`Flag` when it fires and None otherwise; :func:`run_flags` runs the ones that apply
to a finished attack (every run and screen calls it) and :func:`sweep_flags` the one that
needs several budgets. Titles and suggestions are the torch-free
:data:`advexplorer.config.FLAG_INFO`, so the GUI and reports show the same words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from advexplorer.config import FLAG_INFO, METHOD_INFO, AttackConfig
from advexplorer.core.attacks import AttackResult, run_attack
from advexplorer.core.attacks.ensemble import gradient_problem

#: Random draws for the noise comparison, and PGD steps for the unbounded-ε probe.
NOISE_DRAWS = 10
UNBOUNDED_STEPS = 10


@dataclass(frozen=True)
class Flag:
    """One raised flag: its code (a key of FLAG_INFO) and what was measured."""

    code: str
    detail: str

    @property
    def title(self) -> str:
        return FLAG_INFO[self.code].title

    @property
    def suggestion(self) -> str:
        return FLAG_INFO[self.code].suggestion

    def to_json(self) -> dict:
        return {"code": self.code, "title": self.title, "detail": self.detail, "suggestion": self.suggestion}

    def line(self) -> str:
        """'Title (detail). Suggestion' — how the CLI prints it."""
        return f"{self.title} ({self.detail}). {self.suggestion}"


def _count(mask: torch.Tensor) -> int:
    return int(mask.sum())


def gradient_flag(model, images: torch.Tensor) -> Flag | None:
    """Input gradients that are exactly zero, or not finite, everywhere (or none at all)."""
    problem = gradient_problem(model, images)
    return Flag("gradient-unusable", problem) if problem else None


def noise_flag(noise_success: torch.Tensor, attack_success: torch.Tensor) -> Flag | None:
    """Random noise of the same budget fooled more images than the gradient attack."""
    noise, attack = _count(noise_success), _count(attack_success)
    if noise > attack:
        return Flag("noise-beats-attack", f"noise fooled {noise} of {noise_success.numel()} images, "
                                          f"the attack {attack}")
    return None


def black_box_flag(white_box_success: torch.Tensor, black_box_success: torch.Tensor) -> Flag | None:
    """Images the black-box attack fooled but the white-box attack did not."""
    only_black = _count(black_box_success & ~white_box_success)
    if only_black:
        return Flag("black-box-beats-white-box",
                    f"{only_black} of {white_box_success.numel()} images fooled only by the black-box attack")
    return None


def eps_flag(eps_values: Sequence[float], robust_accuracy: Sequence[float], tolerance: float = 1e-9) -> Flag | None:
    """Robust accuracy that rises between a smaller and a larger ε."""
    pairs = sorted(zip(eps_values, robust_accuracy))
    for (eps_low, low), (eps_high, high) in zip(pairs, pairs[1:]):
        if eps_high > eps_low and high > low + tolerance:
            return Flag("not-decreasing-in-eps",
                        f"robust accuracy {100 * low:.1f}% at ε={eps_low:.4g} but {100 * high:.1f}% "
                        f"at ε={eps_high:.4g}")
    return None


def unbounded_flag(unbounded_success: torch.Tensor) -> Flag | None:
    """An attack allowed to change every pixel to anything did not fool every image."""
    failed = _count(~unbounded_success)
    if failed:
        return Flag("unbounded-eps-fails", f"{failed} of {unbounded_success.numel()} images not fooled "
                                           "at ε = 1.0 (L∞, whole image)")
    return None


def loss_flag(result: AttackResult) -> Flag | None:
    """The loss never rose above its starting value, on images the attack did not fool.

    Only for gradient attacks (their iterates are meant to climb); noise and Square are
    random searches, whose trajectory is the best draw so far."""
    info = METHOD_INFO.get(result.config.method)
    if info is None or not info.uses_gradient or result.loss_trajectory.shape[0] < 2:
        return None
    trajectory = result.loss_trajectory
    standing = ~result.success
    if not bool(standing.any()):
        return None
    start, later = trajectory[0], trajectory[1:].max(dim=0).values
    stuck = standing & ~(later > start)
    if bool(stuck.any()):
        return Flag("loss-not-increasing",
                    f"{_count(stuck)} of {stuck.numel()} images: the loss never rose above its "
                    f"starting value over {trajectory.shape[0] - 1} steps")
    return None


def probability_flag(model, model_notes: Sequence[str] = ()) -> Flag | None:
    """The model returns probabilities (the loader's notes say so, or the classifier does)."""
    if getattr(model, "output", None) == "probabilities" or \
            any("probabilities" in note for note in model_notes):
        return Flag("probability-output", "the model loader found probabilities, not logits")
    return None


def run_flags(model, images: torch.Tensor, allowed_mask, labels, config: AttackConfig,
              result: AttackResult, *, model_notes: Sequence[str] = (), probes: bool = True) -> list[Flag]:
    """The flags of a finished attack, in :data:`FLAG_INFO` order.

    Cheap checks read ``result``; ``probes`` adds three short measurements on the same
    images: one gradient evaluation, :data:`NOISE_DRAWS` random draws at the attack's ε
    (compared with a gradient attack), and :data:`UNBOUNDED_STEPS` PGD steps at ε = 1.0 L∞
    over the whole image. An ensemble result also says whether Square fooled images that
    the white-box attacks did not.
    """
    flags: list[Flag | None] = []
    info = METHOD_INFO[config.method]
    seed = result.seed
    targeted = config.targeted
    no_gradient = gradient_flag(model, images) if probes else None
    flags.append(no_gradient)
    if probes and not no_gradient:  # without gradients a gradient probe says nothing more
        if info.uses_gradient:
            noise = run_attack(model, images, allowed_mask, labels, AttackConfig(
                method="noise", norm=config.norm, eps=config.eps, steps=NOISE_DRAWS, seed=seed,
                targeted=targeted), eps=result.eps)
            flags.append(noise_flag(noise.success, result.success))
    if result.succeeded_by is not None:
        black = torch.tensor([stage == "square" for stage in result.succeeded_by], device=result.success.device)
        flags.append(black_box_flag(result.success & ~black, black))
    if probes and not no_gradient:
        unbounded = run_attack(model, images, None, labels, AttackConfig(
            method="pgd", norm="linf", eps=1.0, steps=UNBOUNDED_STEPS, seed=seed, targeted=targeted,
            early_stop=True))
        flags.append(unbounded_flag(unbounded.success))
    flags.append(loss_flag(result))
    flags.append(probability_flag(model, model_notes))
    raised = [flag for flag in flags if flag is not None]
    order = list(FLAG_INFO)
    return sorted(raised, key=lambda flag: order.index(flag.code))


def sweep_flags(eps_values: Sequence[float], robust_accuracy: Sequence[float]) -> list[Flag]:
    """The flags of an ε sweep (a screen over several budgets)."""
    flag = eps_flag(eps_values, robust_accuracy)
    return [flag] if flag else []


def flags_to_json(flags: Sequence[Flag]) -> list[dict]:
    return [flag.to_json() for flag in flags]


def screen_flags(model, per_eps: Sequence[dict], eps_values: Sequence[float], *, input_shape=None,
                 model_notes: Sequence[str] = ()) -> list[Flag]:
    """The flags of a cohort screen, from its per-ε summary (``screening.summarize`` rows).

    Robust accuracy (or, without labels, the share not flipped) that rises with ε; the
    noise baseline flipping more than the attack at some ε (when it was screened); a
    gradient probe on one random image of ``input_shape`` (C, H, W); probability outputs."""
    flags: list[Flag | None] = []
    if input_shape is not None:
        device = next((p.device for p in model.parameters()), torch.device("cpu")) \
            if hasattr(model, "parameters") else torch.device("cpu")
        probe = torch.rand(1, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)
        flags.append(gradient_flag(model, probe))
    for entry in per_eps:
        if entry.get("noise_flipped") is not None and entry.get("flipped") is not None \
                and entry["noise_flipped"] > entry["flipped"]:
            flags.append(Flag("noise-beats-attack",
                              f"at ε={entry.get('eps', 0):.4g} noise flipped {entry['noise_flipped']} of "
                              f"{entry.get('n')} images, the attack {entry['flipped']}"))
            break
    accuracy = [entry.get("robust_accuracy") for entry in per_eps]
    if all(value is None for value in accuracy):
        accuracy = [None if entry.get("flip_rate") is None else 1 - entry["flip_rate"] for entry in per_eps]
    known = [(e, a) for e, a in zip(eps_values, accuracy) if a is not None]
    if known:
        flags.append(eps_flag([e for e, _ in known], [a for _, a in known]))
    flags.append(probability_flag(model, model_notes))
    order = list(FLAG_INFO)
    return sorted((flag for flag in flags if flag is not None), key=lambda flag: order.index(flag.code))
