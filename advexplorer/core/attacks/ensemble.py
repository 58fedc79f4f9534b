"""The ensemble evaluation: APGD-CE → APGD-T → Square, each on the images still standing.

In the spirit of AutoAttack (Croce & Hein, ICML 2020, https://arxiv.org/abs/2003.01690):
robustness is the worst case over diverse attacks, never an average. The cheap white-box
attack runs first; the targeted DLR attack (APGD-T: towards each of the most likely other
classes in turn) and the black-box Square attack run only on the images that survived,
so a robust image costs the whole ensemble and a fragile one only the first attack.
``result.succeeded_by`` says, per image, which attack fooled the model first (None: none).

A model without usable input gradients (an error when differentiating, or gradients that
are zero or not finite everywhere) gets only the black-box part, and ``result.notes`` says
so — an evaluation that silently skipped its strongest parts would look robust.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace

import torch
import torch.nn.functional as F

from advexplorer.config import AttackConfig
from advexplorer.core.attacks.apgd import apgd_steps
from advexplorer.core.attacks.base import register_generator
from advexplorer.core.attacks.engine import AttackResult, AttackStep, start_batch
from advexplorer.core.attacks.square import square_steps

#: How many of the most likely other classes APGD-T aims at, one after the other (AutoAttack: 9).
TARGET_CLASSES = 3
#: The stages' names in records, in the order they run.
STAGES = ("apgd-ce", "apgd-t", "square")


def gradient_problem(model, images: torch.Tensor) -> str | None:
    """Why the model's input gradients cannot drive an attack, or None when they can.

    One forward and backward pass of the cross-entropy of the clean prediction."""
    try:
        with torch.enable_grad():
            x = images.detach().clone().requires_grad_(True)
            logits = model(x)
            loss = F.cross_entropy(logits, logits.detach().argmax(dim=1))
            gradient = torch.autograd.grad(loss, x)[0]
    except RuntimeError as exc:
        return f"the model cannot be differentiated ({str(exc).splitlines()[0]})"
    if not bool(torch.isfinite(gradient).all()):
        return "its input gradients are not finite (NaN or infinite)"
    if bool((gradient == 0).all()):
        return "its input gradients are exactly zero"
    return None


def _widen(step: AttackStep, rows: torch.Tensor, base: AttackStep | None, full_images, stage: str,
           adversarial, logits, loss, success) -> AttackStep:
    """A stage's step on the standing rows as a step of the whole batch (the rest as they are)."""
    n = full_images.shape[0]
    active = torch.zeros(n, dtype=torch.bool, device=full_images.device)
    active[rows] = step.active
    gradient = None if step.gradient is None else \
        torch.zeros_like(full_images).index_copy(0, rows, step.gradient)
    widened = AttackStep(
        index=step.index, restart=step.restart, images=full_images,
        adversarial=adversarial.index_copy(0, rows, step.adversarial),
        logits=logits.index_copy(0, rows, step.logits), loss=loss.index_copy(0, rows, step.loss),
        gradient=gradient, active=active, total_steps=step.total_steps, wanted=None, targeted=False,
        success=success.index_copy(0, rows, step.success))
    widened.stage = stage  # the GUI shows which attack of the ensemble is running
    return widened


def ensemble_steps(model, images, allowed_mask=None, labels=None, config: AttackConfig | None = None, *,
                   targets=None, eps=None, start_generators=None) -> Generator[AttackStep, None, AttackResult]:
    """APGD-CE (``config.steps``), APGD-T and Square (``config.queries``), worst case per image.

    Targeted (``config.targeted`` or ``targets``): the three attacks aim at the target and
    success means predicting it. Yields every stage's steps as steps of the whole batch,
    each with a ``stage`` attribute.
    """
    config = (config or AttackConfig(method="ensemble")).validate()
    batch = start_batch(model, images, allowed_mask, labels, targets, config, eps)
    images, mask, eps_t, seed = batch.images, batch.mask, batch.eps.flatten(), batch.seed
    n, device = images.shape[0], images.device
    config = replace(config, seed=batch.seed)
    clean_logits, reference, targets, targeted = batch.clean_logits, batch.reference, batch.targets, batch.targeted
    num_classes = clean_logits.shape[1]
    notes: list[str] = []
    problem = gradient_problem(model, images)
    stages = list(STAGES)
    if problem:
        stages = ["square"]
        notes.append(f"Ensemble: {problem}, so only the black-box Square attack was run; "
                     "a white-box robustness number for this model would mean nothing.")

    adversarial = images.clone()
    logits = clean_logits.clone()
    loss = torch.zeros(n, device=device)
    success = torch.zeros(n, dtype=torch.bool, device=device)
    succeeded_by: list[str | None] = [None] * n
    forward_passes, backward_passes = n, 0
    steps_run = torch.zeros(n, dtype=torch.long, device=device)
    loss_rows, probability_rows, row_steps = [], [], []
    ordered_classes = clean_logits.argsort(dim=1, descending=True)

    def run_stage(stage, steps):
        """Drive one attack, widening its steps; returns its result."""
        nonlocal forward_passes, backward_passes
        while True:
            try:
                step = next(steps)
            except StopIteration as stop:
                result = stop.value
                break
            widened = _widen(step, rows, None, images, stage, adversarial, logits, loss, success)
            loss_rows.append(widened.loss)
            probability_rows.append(torch.softmax(widened.logits.float(), dim=1))
            row_steps.append((len(row_steps), step.index))
            yield widened
        forward_passes += result.forward_passes
        backward_passes += result.backward_passes
        steps_run[rows] += result.steps_run
        for note in result.notes:
            if note not in notes:
                notes.append(note)
        return result

    for stage in stages:
        # APGD-T aims at each of the most likely other classes in turn (untargeted runs only).
        aims = [None]
        if stage == "apgd-t" and not targeted:
            aims = list(range(1, min(TARGET_CLASSES, num_classes - 1) + 1))
        for aim in aims:
            rows = (~success).nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            mask_rows = None if mask is None else (mask if mask.shape[0] == 1 else mask[rows])
            stage_targets = targets[rows] if targeted else (
                None if aim is None else ordered_classes[rows, aim])
            if stage == "square":
                steps = square_steps(model, images[rows], mask_rows, reference[rows],
                                     replace(config, method="square"), targets=stage_targets,
                                     eps=eps_t[rows])
            else:
                steps = apgd_steps(model, images[rows], mask_rows, reference[rows],
                                   replace(config, method="apgd-ce" if stage == "apgd-ce" else "apgd-dlr",
                                           targeted=None),
                                   targets=stage_targets, eps=eps_t[rows],
                                   any_misclassification=stage == "apgd-t" and not targeted)
            result = yield from run_stage(stage, steps)
            first_time = result.success & ~success[rows]
            for row in rows[first_time].tolist():
                succeeded_by[row] = stage
            # Worst case: a success replaces what is kept; failures keep the first attack's point.
            keep = first_time | (torch.tensor(stage == stages[0], device=device) & ~result.success)
            kept_rows = rows[keep]
            adversarial[kept_rows] = result.adversarial[keep]
            logits[kept_rows] = torch.log(result.adversarial_probabilities[keep].clamp_min(1e-30))
            loss[kept_rows] = result.loss[keep]
            success[rows] = success[rows] | result.success

    return AttackResult(
        config=config, seed=int(seed), images=images, adversarial=adversarial,
        clean_probabilities=torch.softmax(clean_logits.float(), dim=1),
        adversarial_probabilities=torch.softmax(logits.float(), dim=1), reference=reference,
        targets=targets if targeted else None, success=success, loss=loss, steps_run=steps_run,
        forward_passes=forward_passes, backward_passes=backward_passes,
        loss_trajectory=torch.stack(loss_rows) if loss_rows else loss[None],
        probability_trajectory=torch.stack(probability_rows) if probability_rows
        else torch.softmax(logits.float(), dim=1)[None],
        eps=eps_t, trajectory_steps=row_steps, notes=notes, succeeded_by=succeeded_by)


register_generator("ensemble", ensemble_steps)
