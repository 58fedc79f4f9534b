"""The attack driver: one generator, :func:`attack_steps`, for every method.

The driver owns everything that is not the method's own update rule: evaluating the model
and its input gradient, masking, the random start, restarts, early stop (an image that
succeeds is frozen and drops out of the compute batch), per-image budgets, pass counting,
trajectories and the result. It yields an :class:`AttackStep` after each model evaluation,
so a GUI can draw every step and stop between steps; running to completion is
:func:`run_attack`, a loop over the same generator. The methods themselves are small
:class:`~advexplorer.core.attacks.base.StepRule` classes, one file each.

Conventions (identical to torchattacks 3.5 where both define the behaviour):

* Images are N×C×H×W in pixel space [0,1]; the model wrapper normalises.
* ε and the step size are pixel units (8/255 is ε = 0.0314).
* The allowed mask (1 = may change) multiplies the gradient *before* the rule sees it, and
  multiplies the random start, so the perturbation is exactly zero outside it. After every
  step the perturbation is projected onto the ε-ball and the image clipped to [0,1]; in
  float32 the norm bound holds to within rounding (≈1e-7).
* Untargeted attacks maximise the cross-entropy of the reference class (the given label,
  else the clean prediction); targeted attacks minimise the cross-entropy of the target.
* Step ``index`` 0 is the starting point (the clean image, or the random start); step k is
  the image after k updates. A run of ``steps`` updates costs ``steps`` forward+backward
  passes plus one forward pass to score the final image.
* Without early stop, an attack returns its last iterate (as torchattacks does); with
  early stop an image is frozen at the first iterate that succeeds and stops consuming
  compute. With restarts, the best restart per image is kept (success first, then loss).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import torch
import torch.nn.functional as F

from advexplorer.config import AttackConfig
from advexplorer.core.attacks.ball import project, random_delta
from advexplorer.core.attacks.base import ATTACK_GENERATORS, STEP_RULES, Iterate
from advexplorer.core.attacks.diversity import InputDiversity
from advexplorer.errors import UserError


class AttackStep:
    """One evaluation of the attack: the current adversarial batch and what the model says.

    ``gradient`` is the masked input gradient of ``loss`` (None where no gradient was
    needed: the last step, and the noise baseline). ``loss`` is the objective the attack
    maximises: cross-entropy of the reference class, or minus that of the target.
    ``probabilities`` and ``success`` are computed from ``logits`` only when someone reads
    them, so a consumer that does not look costs the attack nothing.
    Tensors stay on the model's device; copy them (``.cpu().numpy()``) before handing
    them to another thread.
    """

    def __init__(self, *, index: int, restart: int, images: torch.Tensor, adversarial: torch.Tensor,
                 logits: torch.Tensor, loss: torch.Tensor, gradient: torch.Tensor | None,
                 active: torch.Tensor, total_steps: int, wanted: torch.Tensor, targeted: bool,
                 success: torch.Tensor | None = None):
        self.index, self.restart, self.total_steps = index, restart, total_steps
        self.images, self.adversarial, self.logits = images, adversarial, logits
        self.loss, self.gradient, self.active = loss, gradient, active
        self._wanted, self._targeted = wanted, targeted
        if success is not None:
            self.__dict__["success"] = success

    @cached_property
    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.logits.float(), dim=1)

    @cached_property
    def success(self) -> torch.Tensor:
        return _succeeded(self.logits, self._wanted, self._targeted)

    @property
    def perturbation(self) -> torch.Tensor:
        return self.adversarial - self.images


def _keep_better(kept: tuple, candidate: tuple) -> tuple:
    """Per image, keep (adversarial, logits, loss, success) of whichever is better: a
    success beats a failure, and between equals the higher loss wins."""
    adv, logits, loss, success = kept
    new_adv, new_logits, new_loss, new_success = candidate
    better = (new_success & ~success) | ((new_success == success) & (new_loss > loss))
    return (torch.where(better.view(-1, 1, 1, 1), new_adv, adv),
            torch.where(better[:, None], new_logits, logits),
            torch.where(better, new_loss, loss), success | new_success)


def _succeeded(logits: torch.Tensor, wanted: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Targeted: the model predicts the target. Untargeted: it no longer predicts the reference."""
    prediction = logits.argmax(dim=1)
    return prediction == wanted if targeted else prediction != wanted


@dataclass
class AttackResult:
    """The outcome of an attack on a batch (all tensors on the model's device).

    ``reference`` is the class the untargeted attack moves away from (label or clean
    prediction); ``targets`` is set for targeted attacks. ``steps_run`` counts, per
    image, the gradient evaluations it consumed; ``forward_passes``/``backward_passes``
    count image-passes over the whole run (the cost of the attack). Trajectories hold one
    row per yielded step, across restarts in order.
    """

    config: AttackConfig
    seed: int
    images: torch.Tensor
    adversarial: torch.Tensor
    clean_probabilities: torch.Tensor
    adversarial_probabilities: torch.Tensor
    reference: torch.Tensor
    targets: torch.Tensor | None
    success: torch.Tensor
    loss: torch.Tensor
    steps_run: torch.Tensor
    forward_passes: int
    backward_passes: int
    loss_trajectory: torch.Tensor
    probability_trajectory: torch.Tensor
    eps: torch.Tensor = field(repr=False, default=None)
    trajectory_steps: list[tuple[int, int]] = field(default_factory=list)  # (restart, index) per row
    #: What the user should know about how the attack ran (e.g. a loss that fell back).
    notes: list[str] = field(default_factory=list)
    #: The ensemble's per-image verdict: which attack succeeded first (None: none did).
    succeeded_by: list[str | None] | None = None

    @property
    def perturbation(self) -> torch.Tensor:
        return self.adversarial - self.images

    @property
    def clean_prediction(self) -> torch.Tensor:
        return self.clean_probabilities.argmax(dim=1)

    @property
    def adversarial_prediction(self) -> torch.Tensor:
        return self.adversarial_probabilities.argmax(dim=1)

    @property
    def flipped(self) -> torch.Tensor:
        """Whether the predicted class changed from the clean prediction."""
        return self.adversarial_prediction != self.clean_prediction


def perturbation_norms(perturbation: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image L∞, L2 and L0 (non-zero entries, and pixels with any channel changed)."""
    flat = perturbation.detach().flatten(1)
    return {
        "linf": flat.abs().amax(dim=1),
        "l2": flat.norm(dim=1),
        "l0": (flat != 0).sum(dim=1),
        "l0_pixels": (perturbation.detach() != 0).any(dim=1).flatten(1).sum(dim=1),
    }


def prepare_mask(allowed_mask: torch.Tensor | None, images: torch.Tensor) -> torch.Tensor | None:
    """Bring a mask to N×1×H×W (or 1×1×H×W) float {0,1} on the images' device.

    Accepts H×W, 1×H×W, N×H×W, N×1×H×W or N×C×H×W; any non-zero value means "allowed".
    An all-ones mask returns None (no masking needed). A mask with no allowed pixel for an
    image is a :class:`UserError`: an attack that may change nothing is a mistake.
    """
    if allowed_mask is None:
        return None
    mask = torch.as_tensor(allowed_mask, device=images.device)
    height, width = images.shape[-2:]
    if mask.shape[-2:] != (height, width):
        raise UserError(f"The mask is {mask.shape[-1]}×{mask.shape[-2]} pixels but the image is "
                        f"{width}×{height}; draw or resize the mask to the image's size.")
    if mask.dim() == 2:
        mask = mask[None, None]
    elif mask.dim() == 3:
        mask = mask[:, None] if mask.shape[0] == images.shape[0] and mask.shape[0] != 1 else mask[None]
    if mask.dim() != 4:
        raise UserError(f"A mask must be 2-D (H×W); got shape {tuple(mask.shape)}.")
    if mask.shape[1] != 1:
        mask = (mask != 0).any(dim=1, keepdim=True)
    mask = (mask != 0).to(images.dtype)
    if mask.shape[0] not in (1, images.shape[0]):
        raise UserError(f"{mask.shape[0]} masks were given for {images.shape[0]} images.")
    allowed_counts = mask.flatten(1).sum(dim=1)
    if bool((allowed_counts == 0).any()):
        raise UserError("The allowed region of the mask is empty, so the attack could change "
                        "nothing. Paint where the attack may act, or use a protect mask that "
                        "leaves some pixels free.")
    if bool((allowed_counts == mask[0].numel()).all()):
        return None
    return mask.contiguous()


@dataclass
class Batch:
    """What every attack generator starts from: the images (N×C×H×W), the allowed mask, the
    per-image budget (N×1×1×1), the seed drawn for this run, the clean logits, the class the
    untargeted attack moves away from, and the targets (long, on the device) when targeted."""

    images: torch.Tensor
    mask: torch.Tensor | None
    eps: torch.Tensor
    seed: int
    clean_logits: torch.Tensor
    reference: torch.Tensor
    targets: torch.Tensor | None

    @property
    def targeted(self) -> bool:
        return self.targets is not None


def start_batch(model, images: torch.Tensor, allowed_mask, labels, targets, config: AttackConfig,
                eps=None) -> Batch:
    """The set-up the generator-style attacks (APGD, Square, the ensemble) share: shape check,
    mask, per-image ε, a recorded seed, one clean forward pass, reference and target classes
    (checked against the model's class count)."""
    images = images.detach()
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4:
        raise UserError(f"Images must be N×C×H×W; got shape {tuple(images.shape)}.")
    n, device = images.shape[0], images.device
    mask = prepare_mask(allowed_mask, images)
    eps_t = _per_image(config.eps if eps is None else eps, n, images)
    seed = int(config.seed if config.seed is not None else secrets.randbits(31))
    with torch.no_grad():
        clean_logits = model(images)
    num_classes = clean_logits.shape[1]
    reference = labels.to(device).long() if labels is not None else clean_logits.argmax(dim=1)
    if targets is None and config.targeted is not None:
        targets = torch.full((n,), int(config.targeted), dtype=torch.long, device=device)
    if targets is not None:
        targets = targets.to(device).long()
    for name, classes in (("Label", reference), ("Target", targets)):
        if classes is not None and bool(((classes < 0) | (classes >= num_classes)).any()):
            raise UserError(f"{name} class out of range: the model has {num_classes} classes.")
    return Batch(images, mask, eps_t, seed, clean_logits, reference, targets)


def _per_image(value, n: int, like: torch.Tensor) -> torch.Tensor:
    """A scalar or length-N value as an N×1×1×1 tensor (broadcasts over C×H×W)."""
    tensor = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if tensor.dim() == 0:
        tensor = tensor.expand(n)
    if tensor.shape != (n,):
        raise UserError(f"Expected one value per image ({n}), got shape {tuple(tensor.shape)}.")
    return tensor.reshape(n, 1, 1, 1)


def _evaluate(model, x: torch.Tensor, objective_class: torch.Tensor | None, targeted: bool,
              need_grad: bool, check_range: bool = False, diversity: InputDiversity | None = None):
    """One model evaluation: logits, per-image objective and (optionally) its input gradient.

    ``objective_class=None`` means "the class the model predicts here" (the clean
    prediction, when this is the clean image). Grad mode is thread-local, so it is switched
    on here, inside the step, never around a ``yield``. With input ``diversity`` the gradient
    may be taken through a transformed view of ``x`` (one more forward pass), while the
    logits and objective stay the model's on ``x`` itself.
    """
    with torch.enable_grad() if need_grad else torch.no_grad():
        if need_grad:
            x = x.detach().requires_grad_(True)
        view = diversity(x) if need_grad and diversity is not None else x
        with torch.no_grad() if view is not x else contextlib.nullcontext():
            logits = model(x)
        if objective_class is None:
            objective_class = logits.detach().argmax(dim=1)
        elif check_range and bool(((objective_class < 0) | (objective_class >= logits.shape[1])).any()):
            raise UserError(f"Class index out of range: the model has {logits.shape[1]} classes "
                            f"(0 to {logits.shape[1] - 1}).")
        objective = _objective(logits, objective_class, targeted)
        if need_grad:
            followed = objective if view is x else _objective(model(view), objective_class, targeted)
            gradient = torch.autograd.grad(followed.sum(), x)[0]
        else:
            gradient = None
    return logits.detach(), objective.detach(), gradient, objective_class


def _objective(logits: torch.Tensor, objective_class: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per image, what the attack maximises: the cross-entropy of the class, negated when targeted."""
    objective = F.cross_entropy(logits, objective_class, reduction="none")
    return -objective if targeted else objective


def attack_steps(
    model: torch.nn.Module,
    images: torch.Tensor,
    allowed_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    config: AttackConfig | None = None,
    *,
    targets: torch.Tensor | None = None,
    eps: torch.Tensor | float | None = None,
    start_generators: Sequence[torch.Generator] | None = None,
) -> Generator[AttackStep, None, AttackResult]:
    """Run a masked attack one step at a time; the generator's return value is the result.

    ``model`` maps [0,1] images to N×K logits (see :class:`advexplorer.core.model.Classifier`).
    ``labels`` (N,) are the true classes for untargeted attacks; without them the attack
    moves away from the clean prediction. ``targets`` (N,) overrides ``config.targeted``
    per image. ``eps`` (scalar or N values) overrides ``config.eps`` per image, which lets
    one batch sweep several budgets. ``start_generators`` (N) gives each image its own random
    stream for the random start, so its start does not depend on the rest of the batch.
    """
    config = (config or AttackConfig()).validate()
    if config.method in ATTACK_GENERATORS:  # APGD, Square, the ensemble: a generator of their own
        return (yield from ATTACK_GENERATORS[config.method](
            model, images, allowed_mask, labels, config, targets=targets, eps=eps,
            start_generators=start_generators))
    images = images.detach()
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4:
        raise UserError(f"Images must be N×C×H×W; got shape {tuple(images.shape)}.")
    n = images.shape[0]
    device = images.device
    mask = prepare_mask(allowed_mask, images)
    eps_t = _per_image(config.eps if eps is None else eps, n, images)
    alpha_t = _per_image(config.effective_step_size(eps_t.flatten()), n, images)
    # A budget shared by the whole batch is applied as a Python number: scalar arithmetic
    # skips broadcasting an N×1×1×1 tensor every step and rounds exactly as it did.
    shared_budget = eps is None or torch.as_tensor(eps).dim() == 0 or \
        bool((eps_t == eps_t[0]).all() & (alpha_t == alpha_t[0]).all())
    step_eps = float(eps_t[0]) if shared_budget else eps_t
    step_alpha = float(alpha_t[0]) if shared_budget else alpha_t
    seed = config.seed if config.seed is not None else secrets.randbits(31)
    generator = torch.Generator().manual_seed(int(seed))
    total_steps = config.effective_steps
    rule = STEP_RULES[config.method]  # the method's update; everything else is the driver's
    gradient_method = rule.uses_gradient
    # Input diversity (DI-FGSM): gradients through random resize-and-pad views (see .diversity).
    diversity = InputDiversity(config.diversity, seed) if config.diversity and gradient_method else None

    targeted = targets is not None or config.targeted is not None
    if targets is None and config.targeted is not None:
        targets = torch.full((n,), int(config.targeted), dtype=torch.long, device=device)

    # The clean evaluation is step 0 of the first run whenever that run starts at the clean
    # image with a gradient step, so it costs nothing extra; otherwise it is one forward pass.
    shares_clean = gradient_method and not config.random_start
    clean_logits = None
    forward_passes = 0
    reference = labels.to(device).long() if labels is not None else None
    objective_class = targets.to(device).long() if targeted else reference
    if not shares_clean:
        with torch.no_grad():
            clean_logits = model(images)
        forward_passes = n
        num_classes = clean_logits.shape[1]
        for name, classes in (("Label", reference), ("Target", objective_class)):
            if classes is not None and bool(((classes < 0) | (classes >= num_classes)).any()):
                raise UserError(f"{name} class out of range: the model has {num_classes} classes.")
        if reference is None:
            reference = clean_logits.argmax(dim=1)
        objective_class = objective_class if targeted else reference
    clean_probabilities = None if clean_logits is None else torch.softmax(clean_logits.float(), dim=1)

    best_adv = best_logits = best_loss = best_success = None  # set by the first restart
    steps_run = torch.zeros(n, dtype=torch.long, device=device)
    # Gradient evaluations shared by every image are counted here, not per row on the device.
    shared_steps = 0
    backward_passes = 0
    loss_rows: list[torch.Tensor] = []
    logit_rows: list[torch.Tensor] = []
    row_steps: list[tuple[int, int]] = []
    # Success is needed during the run only to freeze images (early stop) or to keep the best
    # noise draw; otherwise it is worked out once, at the end, from the logits.
    eager_success = config.early_stop or rule.keeps_best

    for restart in range(config.restarts):
        starts_clean = not (config.random_start and gradient_method)
        x = images if starts_clean else project(
            images + random_delta(images.shape, eps_t, config.norm, start_generators or generator, mask,
                                  full_budget=False),
            images, eps_t, config.norm)
        state = rule.initial_state(images, config)
        active = torch.ones(n, dtype=torch.bool, device=device)
        # Only early stop can freeze images; until it does, every step works on the whole
        # batch, and indexing, device syncs and per-row bookkeeping are skipped.
        everyone, rows = True, slice(None)
        step_logits = loss = success = None
        # Gradient attacks keep their last iterate; noise (keeps_best) its best draw per image.
        run_adv = run_logits = run_loss = run_success = None

        for index in range(total_steps + 1):
            need_grad = gradient_method and index < total_steps
            x_rows = x if everyone else x[rows]
            if index == 0 and starts_clean and clean_logits is not None:
                # Step 0 is the clean image, already scored (noise baseline, later restarts).
                logits, gradient = clean_logits, None
                objective = _objective(logits, objective_class, targeted)
                if need_grad:
                    logits, objective, gradient, _ = _evaluate(model, x, objective_class,
                                                               targeted, True, diversity=diversity)
                    forward_passes += n
            else:
                logits, objective, gradient, used_class = _evaluate(
                    model, x_rows, objective_class if objective_class is None or everyone
                    else objective_class[rows],
                    targeted, need_grad, check_range=clean_logits is None, diversity=diversity)
                forward_passes += x_rows.shape[0]
                if clean_logits is None:  # first evaluation of a run that shares the clean pass
                    clean_logits = logits
                    clean_probabilities = torch.softmax(logits.float(), dim=1)
                    reference = used_class if reference is None else reference
                    objective_class = used_class
            wanted = objective_class if targeted else reference
            if need_grad:
                backward_passes += x_rows.shape[0]
                if everyone:
                    shared_steps += 1
                else:
                    steps_run[rows] += 1
            if everyone or step_logits is None:
                step_logits, loss = logits, objective
            else:
                step_logits = step_logits.index_copy(0, rows, logits)
                loss = loss.index_copy(0, rows, objective)
            if eager_success:
                success = _succeeded(step_logits, wanted, targeted)
            if gradient is not None and mask is not None:
                gradient = gradient * (mask if mask.shape[0] == 1 else mask[rows])
            full_gradient = gradient if (gradient is None or everyone) else \
                torch.zeros_like(images).index_copy(0, rows, gradient)

            if not rule.keeps_best or index == 0:
                run_adv, run_logits, run_loss, run_success = x, step_logits, loss, success
            else:
                run_adv, run_logits, run_loss, run_success = _keep_better(
                    (run_adv, run_logits, run_loss, run_success), (x, step_logits, loss, success))
            loss_rows.append(loss)
            logit_rows.append(step_logits)
            row_steps.append((restart, index))

            yield AttackStep(index=index, restart=restart, images=images, adversarial=x,
                             logits=step_logits, loss=loss, gradient=full_gradient, active=active,
                             total_steps=total_steps, wanted=wanted, targeted=targeted,
                             success=success)

            if config.early_stop:
                active = active & ~success
                everyone = bool(active.all())
                if not everyone:
                    if not bool(active.any()):
                        break
                    rows = active.nonzero().squeeze(1)
            if index == total_steps:
                break

            def pick(value):  # the rows still being attacked
                return value if everyone or not isinstance(value, torch.Tensor) else value[rows]

            # The method's own update, on the rows still being attacked.
            iterate = Iterate(
                adversarial=pick(x), images=pick(images),
                gradient=None if full_gradient is None else pick(full_gradient), loss=pick(loss),
                eps=pick(step_eps), step_size=pick(step_alpha), eps_per_image=pick(eps_t),
                mask=None if mask is None else (mask if mask.shape[0] == 1 else mask[rows]),
                state={key: pick(value) for key, value in state.items()},
                index=index, config=config, generator=generator)
            new_rows = rule.step(iterate)
            for key, value in iterate.state.items():  # the rule's new per-image state
                state[key] = value if everyone else state[key].index_copy(0, rows, value)
            x = new_rows if everyone else x.index_copy(0, rows, new_rows)

        if run_success is None:
            run_success = _succeeded(run_logits, wanted, targeted)
        run = (run_adv, run_logits, run_loss, run_success)
        # The first run is the best so far; later ones replace it per image where better.
        best_adv, best_logits, best_loss, best_success = run if restart == 0 else \
            _keep_better((best_adv, best_logits, best_loss, best_success), run)
        if config.early_stop and bool(best_success.all()):
            break

    return AttackResult(
        config=replace(config, seed=int(seed)), seed=int(seed), images=images,
        adversarial=best_adv, clean_probabilities=clean_probabilities,
        adversarial_probabilities=torch.softmax(best_logits.float(), dim=1), reference=reference,
        targets=objective_class if targeted else None, success=best_success, loss=best_loss,
        steps_run=steps_run + shared_steps, backward_passes=backward_passes,
        forward_passes=forward_passes + (0 if diversity is None else diversity.extra_passes),
        loss_trajectory=torch.stack(loss_rows),
        probability_trajectory=torch.softmax(torch.stack(logit_rows).float(), dim=2),
        eps=eps_t.flatten(), trajectory_steps=row_steps,
    )


def run_attack(model, images, allowed_mask=None, labels=None, config=None, *, targets=None,
               eps=None, start_generators=None, on_step=None) -> AttackResult:
    """Run :func:`attack_steps` to completion; ``on_step(step)`` sees every step."""
    steps = attack_steps(model, images, allowed_mask, labels, config, targets=targets, eps=eps,
                         start_generators=start_generators)
    return drive(steps, on_step)


def drive(steps: Generator[AttackStep, None, AttackResult], on_step=None) -> AttackResult:
    """Exhaust a generator (attack steps, run steps, screening progress) and return its
    return value; ``on_step`` sees everything it yields."""
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            return stop.value
        if on_step is not None:
            on_step(step)
