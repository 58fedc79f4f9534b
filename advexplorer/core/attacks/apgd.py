"""APGD — projected gradient ascent with an automatic step size, on the CE or the DLR loss.

Croce & Hein, *Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks*, ICML 2020, https://arxiv.org/abs/2003.01690 (Algorithm 1, §3).
The step size starts at 2ε and is halved at checkpoints (22 % of the steps, then ever
closer: −3 % each time down to 6 %) when the loss oscillated (it rose in fewer than 75 %
of the steps since the last checkpoint) or when the best loss did not improve since the
last checkpoint and the step was not halved then; after halving, the search restarts
from the best point found. The update has momentum 0.75. The arithmetic is that of
``torchattacks.APGD`` / ``APGDT`` 3.5 (the authors' code), so with the same seed on the
CPU the two agree image for image.

Why a generator of its own rather than a :class:`~.base.StepRule`: APGD maximises its own
loss (DLR is not the driver's cross-entropy), keeps per image the best point and the
first success (not the last iterate), and its checkpoints read the history of the loss
since the last one — the driver's step/objective/result contract fits none of these.
It yields the driver's :class:`~.engine.AttackStep` once per model evaluation and returns
an :class:`~.engine.AttackResult`, so the GUI, CLI and tests use it unchanged.

The DLR loss needs the third-largest logit (the fourth for the targeted version): on a
model with fewer classes (a binary head) DLR is undefined, and the attack uses the
cross-entropy instead and says so in ``result.notes`` — as the authors' code advises.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from advexplorer.config import AttackConfig
from advexplorer.core.attacks.base import register_generator
from advexplorer.core.attacks.engine import AttackResult, AttackStep, start_batch

#: Momentum of the update (α in the paper) and the oscillation threshold ρ.
MOMENTUM, RHO = 0.75, 0.75


def dlr_loss(logits: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Untargeted DLR: −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3), per image (needs ≥ 3 classes)."""
    ordered, order = logits.sort(dim=1)
    rows = torch.arange(logits.shape[0], device=logits.device)
    top_is_reference = (order[:, -1] == reference).float()
    best_other = ordered[:, -2] * top_is_reference + ordered[:, -1] * (1.0 - top_is_reference)
    return -(logits[rows, reference] - best_other) / (ordered[:, -1] - ordered[:, -3] + 1e-12)


def targeted_dlr_loss(logits: torch.Tensor, reference: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR: −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2), per image (needs ≥ 4 classes)."""
    ordered = logits.sort(dim=1)[0]
    rows = torch.arange(logits.shape[0], device=logits.device)
    return -(logits[rows, reference] - logits[rows, target]) / (
        ordered[:, -1] - 0.5 * ordered[:, -3] - 0.5 * ordered[:, -4] + 1e-12)


@dataclass
class _Objective:
    """What one APGD run maximises and when an image counts as fooled."""

    loss: str                       # "ce" or "dlr"
    reference: torch.Tensor         # the true / clean class per image
    target: torch.Tensor | None     # the target class per image (targeted losses)
    success_is_target: bool         # targeted success (predicts the target) or any misclassification

    def __call__(self, logits: torch.Tensor, rows) -> torch.Tensor:
        reference = self.reference[rows]
        target = None if self.target is None else self.target[rows]
        if self.loss == "dlr":
            return dlr_loss(logits, reference) if target is None else \
                targeted_dlr_loss(logits, reference, target)
        if target is None:
            return F.cross_entropy(logits, reference, reduction="none")
        return -F.cross_entropy(logits, target, reduction="none")

    def succeeded(self, logits: torch.Tensor, rows) -> torch.Tensor:
        prediction = logits.argmax(dim=1)
        if self.success_is_target:
            return prediction == self.target[rows]
        return prediction != self.reference[rows]


def checkpoint_schedule(steps: int) -> tuple[int, int, int]:
    """(first checkpoint, shortest interval, decrease) in steps: 22 %, 6 %, 3 % of ``steps``."""
    return max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)


def _project(candidate, images, eps, norm, *, inner: bool):
    """torchattacks' APGD projection onto the ε-ball, then [0,1] (``inner``: its second form)."""
    if norm == "linf":
        return torch.clamp(torch.min(torch.max(candidate, images - eps), images + eps), 0.0, 1.0)
    delta = candidate - images
    length = (delta ** 2).sum(dim=(1, 2, 3), keepdim=True).sqrt()
    return torch.clamp(images + delta / (length + 1e-12) * torch.min(eps * torch.ones_like(delta),
                                                                      length + (1e-12 if inner else 0.0)),
                       0.0, 1.0)


def _start(images, eps, norm, mask, generator):
    """The paper's random start: a random point on the ε-sphere's L∞ / L2 scale, in the mask."""
    if norm == "linf":
        t = 2 * torch.rand(images.shape, generator=generator).to(images.device) - 1
        if mask is not None:
            t = t * mask
        scale = t.reshape(t.shape[0], -1).abs().max(dim=1, keepdim=True)[0].reshape(-1, 1, 1, 1)
        return (images + eps * t / scale).clamp(0.0, 1.0)
    t = torch.randn(images.shape, generator=generator).to(images.device)
    if mask is not None:
        t = t * mask
    return (images + eps * t / ((t ** 2).sum(dim=(1, 2, 3), keepdim=True).sqrt() + 1e-12)).clamp(0.0, 1.0)


def _loss_and_gradient(model, x, objective: _Objective, rows, mask):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        loss = objective(logits, rows)
        gradient = torch.autograd.grad(loss.sum(), x)[0].detach()
    if mask is not None:
        gradient = gradient * mask
    return logits.detach(), loss.detach(), gradient


def apgd_run(model, images, eps, norm, steps, objective: _Objective, mask, generator, rows):
    """One APGD run (Algorithm 1) on ``images`` (the rows ``rows`` of the batch).

    A generator: yields ``(index, x, logits, loss, gradient, fooled)`` after every model
    evaluation, and returns, per image: the adversarial image
    (the first fooling point seen last, as torchattacks, else the highest-loss point), its
    logits, its loss, whether it fooled the model, and the best loss.
    """
    first, shortest, decrease = checkpoint_schedule(steps)
    n = images.shape[0]
    x_adv = _start(images, eps, norm, mask, generator)
    logits, loss, gradient = _loss_and_gradient(model, x_adv, objective, rows, mask)
    fooled = objective.succeeded(logits, rows)
    yield 0, x_adv, logits, loss, gradient, fooled
    x_best, x_best_adv, gradient_best = x_adv.clone(), x_adv.clone(), gradient.clone()
    logits_best_adv, logits_best = logits.clone(), logits.clone()
    loss_best = loss.clone()
    loss_history = torch.zeros(steps, n, device=images.device)
    step_size = 2.0 * eps * torch.ones(n, 1, 1, 1, device=images.device)
    x_previous = x_adv.clone()
    since_check, interval = 0, first
    loss_best_last_check = loss_best.clone()
    reduced_last_check = torch.ones(n, dtype=torch.bool, device=images.device)

    for i in range(steps):
        with torch.no_grad():
            momentum_term = x_adv - x_previous
            x_previous = x_adv.clone()
            a = MOMENTUM if i > 0 else 1.0
            if norm == "linf":
                z = _project(x_adv + step_size * torch.sign(gradient), images, eps, norm, inner=False)
            else:
                direction = gradient / ((gradient ** 2).sum(dim=(1, 2, 3), keepdim=True).sqrt() + 1e-12)
                z = _project(x_adv + step_size * direction, images, eps, norm, inner=False)
            x_adv = _project(x_adv + (z - x_adv) * a + momentum_term * (1 - a), images, eps, norm,
                             inner=True)
        logits, loss, gradient = _loss_and_gradient(model, x_adv, objective, rows, mask)
        now_fooled = objective.succeeded(logits, rows)
        x_best_adv[now_fooled] = x_adv[now_fooled]
        logits_best_adv[now_fooled] = logits[now_fooled]
        fooled = fooled | now_fooled
        yield i + 1, x_adv, logits, loss, gradient, fooled

        loss_history[i] = loss
        improved = loss > loss_best
        x_best[improved] = x_adv[improved]
        gradient_best[improved] = gradient[improved]
        logits_best[improved] = logits[improved]
        loss_best[improved] = loss[improved]
        since_check += 1
        if since_check == interval:
            # Checkpoint: halve where the loss rose in at most ρ of the last steps, or where
            # the best loss stalled and the step was not halved at the previous checkpoint.
            rises = torch.zeros(n, device=images.device)
            for back in range(interval):
                rises += (loss_history[i - back] > loss_history[i - back - 1]).float()
            oscillating = rises <= interval * RHO
            stalled = ~reduced_last_check & (loss_best_last_check >= loss_best)
            halve = oscillating | stalled
            reduced_last_check = halve.clone()
            loss_best_last_check = loss_best.clone()
            if bool(halve.any()):
                step_size[halve] /= 2.0
                x_adv[halve] = x_best[halve]
                gradient[halve] = gradient_best[halve]
            since_check, interval = 0, max(interval - decrease, shortest)

    # The kept points were scored when they were found: no extra model evaluation.
    adversarial = torch.where(fooled.view(-1, 1, 1, 1), x_best_adv, x_best)
    final_logits = torch.where(fooled[:, None], logits_best_adv, logits_best)
    return adversarial, final_logits, objective(final_logits, rows), objective.succeeded(final_logits, rows), loss_best


def dlr_fallback_note(loss: str, targeted: bool, num_classes: int) -> tuple[str, str | None]:
    """The loss APGD can use on a model with ``num_classes`` outputs, and a note if it changed."""
    needed = 4 if targeted else 3
    if loss == "dlr" and num_classes < needed:
        kind = "targeted DLR" if targeted else "DLR"
        return "ce", (f"APGD-DLR: the {kind} loss needs at least {needed} classes and this model has "
                      f"{num_classes}; the cross-entropy loss was used instead (as the APGD authors advise).")
    return loss, None


def apgd_steps(model, images, allowed_mask=None, labels=None, config: AttackConfig | None = None, *,
               targets=None, eps=None, start_generators=None, loss: str | None = None,
               any_misclassification: bool = False) -> Generator[AttackStep, None, AttackResult]:
    """APGD as a step generator (see the module docstring). ``loss`` overrides the method's
    ("ce" for apgd-ce, "dlr" for apgd-dlr). ``any_misclassification``: a targeted loss whose
    success is any change of class (the ensemble's APGD-T). ``start_generators`` is accepted
    for the driver's signature; APGD draws its starts from the config's seed."""
    config = (config or AttackConfig(method="apgd-ce")).validate()
    batch = start_batch(model, images, allowed_mask, labels, targets, config, eps)
    images, mask, eps_t, seed = batch.images, batch.mask, batch.eps, batch.seed
    n, device = images.shape[0], images.device
    generator = torch.Generator().manual_seed(seed)
    loss_name = loss or ("dlr" if config.method == "apgd-dlr" else "ce")
    clean_logits, reference, targets, targeted = batch.clean_logits, batch.reference, batch.targets, batch.targeted
    num_classes = clean_logits.shape[1]
    notes = []
    loss_name, note = dlr_fallback_note(loss_name, targeted, num_classes)
    if note:
        notes.append(note)
    objective = _Objective(loss_name, reference, targets.to(device).long() if targeted else None,
                           success_is_target=targeted and not any_misclassification)
    everyone = torch.arange(n, device=device)
    wanted = objective.target if objective.success_is_target else reference

    adversarial = images.clone()
    final_logits = clean_logits.clone()
    final_loss = objective(clean_logits, everyone)
    success = torch.zeros(n, dtype=torch.bool, device=device)
    forward_passes, backward_passes = n, 0
    steps_run = torch.zeros(n, dtype=torch.long, device=device)
    loss_rows, logit_rows, row_steps = [], [], []

    for restart in range(config.restarts):
        # As the authors' code: later restarts attack only the images still standing.
        standing = (~success).nonzero().squeeze(1)
        if standing.numel() == 0:
            break
        rows = standing
        x_rows, eps_rows = images[rows], eps_t[rows]
        mask_rows = None if mask is None else (mask if mask.shape[0] == 1 else mask[rows])
        active = torch.zeros(n, dtype=torch.bool, device=device)
        active[rows] = True
        run = apgd_run(model, x_rows, eps_rows, config.norm, config.steps, objective, mask_rows,
                       generator, rows)
        while True:
            try:
                index, x, logits, loss_values, gradient, fooled = next(run)
            except StopIteration as stop:
                run_adv, run_logits, run_loss, run_success, _ = stop.value
                break
            forward_passes += x.shape[0]
            backward_passes += x.shape[0]
            steps_run[rows] += 1
            full_logits = final_logits.index_copy(0, rows, logits)
            full_loss = final_loss.index_copy(0, rows, loss_values)
            loss_rows.append(full_loss)
            logit_rows.append(full_logits)
            row_steps.append((restart, index))
            yield AttackStep(
                index=index, restart=restart, images=images, adversarial=adversarial.index_copy(0, rows, x),
                logits=full_logits, loss=full_loss,
                gradient=torch.zeros_like(images).index_copy(0, rows, gradient), active=active,
                total_steps=config.steps, wanted=wanted, targeted=objective.success_is_target,
                success=success.index_copy(0, rows, fooled))
        # Keep, per image, a success over a failure, then the higher loss (first restart: take all).
        better = run_success | (restart == 0) | (~success[rows] & (run_loss > final_loss[rows]))
        keep = rows[better]
        adversarial[keep] = run_adv[better]
        final_logits[keep] = run_logits[better]
        final_loss[keep] = run_loss[better]
        success[keep] = run_success[better]
        if config.early_stop and bool(success.all()):
            break

    return AttackResult(
        config=replace(config, seed=int(seed)), seed=int(seed), images=images, adversarial=adversarial,
        clean_probabilities=torch.softmax(clean_logits.float(), dim=1),
        adversarial_probabilities=torch.softmax(final_logits.float(), dim=1), reference=reference,
        targets=objective.target if objective.success_is_target else None, success=success,
        loss=final_loss, steps_run=steps_run, forward_passes=forward_passes,
        backward_passes=backward_passes,
        loss_trajectory=torch.stack(loss_rows) if loss_rows else final_loss[None],
        probability_trajectory=torch.softmax(torch.stack(logit_rows if logit_rows else [final_logits]).float(), dim=2),
        eps=eps_t.flatten(), trajectory_steps=row_steps, notes=notes)


register_generator("apgd-ce", apgd_steps)
register_generator("apgd-dlr", apgd_steps)
