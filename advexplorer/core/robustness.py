"""Per-image robustness numbers: margin, gradient norm, local Lipschitz estimate, radius,
minimal ε and the flip rate of random noise.

All numbers live in the attacker's geometry: the norm of the attack (L∞ or L2, in pixel
units) and **only the allowed pixels** of the mask. A gradient is multiplied by the
allowed mask before its norm is taken, because a perturbation can move only those pixels;
the random points of the Lipschitz estimate, the noise draws and the minimal-ε attacks
all change only allowed pixels.

Definitions (z = logits, y = the label if given, else the predicted class):

* margin m(x) = z_y − max_{j≠y} z_j (negative when the model already disagrees with y);
  ``runner_up`` is that j.
* gradient norm = ‖mask ⊙ ∇ₓ m(x)‖_* in the dual norm of the attack (‖·‖₁ for L∞,
  ‖·‖₂ for L2): the first-order rate at which the best perturbation erodes the margin.
* Lipschitz estimate L = the largest ‖mask ⊙ ∇ₓ z_k(x')‖_* over the classes k and over
  random points x' in a small ball around x (plus x itself). It is an *estimate* from
  samples, not a certified bound.
* radius R = m / (2L): the margin is a difference of two logits, each L-Lipschitz, so no
  perturbation smaller than R can flip the prediction *if* L bounds the whole ball (Hein &
  Andriushchenko, *Formal Guarantees on the Robustness of a Classifier against Adversarial
  Manipulation*, NeurIPS 2017, https://arxiv.org/abs/1705.08475; Weng et al., CLEVER,
  ICLR 2018, https://arxiv.org/abs/1801.10578). For a linear model it is exact and
  R ≤ m / ‖w_y − w_j‖_*, the true minimal ε.
* minimal ε: the smallest budget at which the attack flips the prediction, bracketed by
  attacking several copies of the image with different ε in one batch (the engine's
  per-image ε) with early stop, then refining inside the bracket.
* noise flip rate: the share of random perturbations on the surface of the same ε-ball
  (random signs for L∞) that flip the prediction — directed vs random nudges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from advexplorer.config import GRADIENT_METHODS, NORMS, AttackConfig
from advexplorer.core.attacks import AttackResult, prepare_mask, run_attack
from advexplorer.errors import UserError

#: Above this many classes the Lipschitz estimate uses the top-scoring classes at x only
#: (one backward pass per class; 1000 ImageNet classes would cost 1000 passes per point).
MAX_LIPSCHITZ_CLASSES = 16


def _dual_norm(gradient: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-image dual norm of an N×C×H×W gradient: ‖·‖₁ for L∞ attacks, ‖·‖₂ for L2."""
    flat = gradient.flatten(1)
    return flat.abs().sum(dim=1) if norm == "linf" else flat.norm(dim=1)


def _prepare(model: nn.Module, image: torch.Tensor, allowed_mask, norm: str):
    if norm not in NORMS:
        raise UserError(f"Unknown norm {norm!r}; choose linf or l2.")
    image = torch.as_tensor(image)
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[0] != 1:
        raise UserError(f"Robustness numbers are per image (1×C×H×W); got shape {tuple(image.shape)}.")
    device = getattr(model, "device", image.device)
    image = image.detach().float().to(device)
    mask = prepare_mask(allowed_mask, image)  # 1×1×H×W, or None for "everything allowed"
    return image, mask


def _check_label(label, num_classes: int) -> int | None:
    if label is None:
        return None
    label = int(label)
    if not 0 <= label < num_classes:
        raise UserError(f"Label {label} is out of range: the model has {num_classes} classes "
                        f"(0 to {num_classes - 1}).")
    return label


@dataclass(frozen=True)
class RobustnessSummary:
    """The robustness numbers of one image (definitions in the module docstring)."""

    norm: str
    eps: float
    radius: float
    reference: int
    runner_up: int
    margin: float
    gradient_norm: float
    lipschitz_estimate: float
    radius_estimate: float | None
    noise_flip_rate: float
    noise_draws: int
    samples: int
    lipschitz_classes: tuple[int, ...]
    allowed_fraction: float
    seed: int
    cost: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The ``robustness`` object of ``record.json``."""
        return {
            "margin": self.margin,
            "gradient_norm": self.gradient_norm,
            "lipschitz_estimate": self.lipschitz_estimate,
            "radius_estimate": self.radius_estimate,
            "noise_flip_rate": self.noise_flip_rate,
            "reference": self.reference,
            "runner_up": self.runner_up,
            "norm": self.norm,
            "dual_norm": "l1" if self.norm == "linf" else "l2",
            "eps": self.eps,
            "lipschitz_ball_radius": self.radius,
            "lipschitz_samples": self.samples,
            "lipschitz_classes": list(self.lipschitz_classes),
            "noise_draws": self.noise_draws,
            "allowed_fraction": self.allowed_fraction,
            "restricted_to_allowed_mask": self.allowed_fraction < 1.0,
            "seed": self.seed,
            "cost": dict(self.cost),
        }


def margin_and_gradient(model: nn.Module, image: torch.Tensor, *, allowed_mask=None,
                        norm: str = "linf", label: int | None = None) -> dict:
    """Margin m(x), runner-up and the dual norm of the masked margin gradient (one image)."""
    image, mask = _prepare(model, image, allowed_mask, norm)
    with torch.enable_grad():
        x = image.clone().requires_grad_(True)
        logits = model(x)
        reference = _check_label(label, logits.shape[1])
        if reference is None:
            reference = int(logits.detach().argmax(dim=1))
        others = logits.detach()[0].clone()
        others[reference] = -math.inf
        runner_up = int(others.argmax())
        margin = logits[0, reference] - logits[0, runner_up]
        gradient = torch.autograd.grad(margin, x)[0]
    if mask is not None:
        gradient = gradient * mask
    return {"margin": float(margin.detach()), "reference": reference, "runner_up": runner_up,
            "gradient_norm": float(_dual_norm(gradient, norm)[0]),
            "logits": logits.detach()[0]}


def _ball_points(image: torch.Tensor, mask, radius: float, norm: str, count: int,
                 generator: torch.Generator) -> torch.Tensor:
    """``count`` points in the ``radius``-ball around ``image`` (first one = the image),
    moving only allowed pixels, clipped to [0,1]. L∞: uniform in the cube; L2: a uniform
    direction with a uniform length (as the engine's random start)."""
    shape = (count - 1, *image.shape[1:])
    if norm == "linf":
        delta = torch.rand(shape, generator=generator).mul_(2).sub_(1).mul_(radius)
        delta = delta.to(image.device)
        if mask is not None:
            delta = delta * mask
    else:
        delta = torch.randn(shape, generator=generator).to(image.device)
        if mask is not None:
            delta = delta * mask
        lengths = torch.rand(count - 1, generator=generator).to(image.device) * radius
        delta = delta / delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1) * lengths.view(-1, 1, 1, 1)
    points = torch.clamp(image + delta, 0.0, 1.0)
    return torch.cat([image, points], dim=0)


def lipschitz_estimate(model: nn.Module, image: torch.Tensor, *, allowed_mask=None,
                       norm: str = "linf", radius: float = 8 / 255, samples: int = 16,
                       seed: int = 0, classes=None, batch_size: int = 16) -> dict:
    """Local Lipschitz estimate of the logits: max over classes and sampled points of the
    masked dual-norm input gradient (definition in the module docstring).

    Points are evaluated ``batch_size`` at a time; each class costs one backward pass over
    the batch (gradients of ``z_k`` summed over the batch are per-point gradients, since the
    points do not interact in an eval-mode model). ``classes=None`` means all classes, or
    the :data:`MAX_LIPSCHITZ_CLASSES` highest-scoring ones at x for larger models.
    """
    image, mask = _prepare(model, image, allowed_mask, norm)
    if int(samples) < 1:
        raise UserError(f"The Lipschitz estimate needs at least 1 sample point (got {samples}).")
    if not float(radius) >= 0:
        raise UserError(f"The Lipschitz ball radius {radius:g} must be ≥ 0.")
    generator = torch.Generator().manual_seed(int(seed))
    points = _ball_points(image, mask, float(radius), norm, int(samples) + 1, generator)
    best = torch.zeros((), device=image.device)
    forward = backward = 0
    chosen: tuple[int, ...] | None = None if classes is None else tuple(int(c) for c in classes)
    for start in range(0, points.shape[0], max(1, int(batch_size))):
        with torch.enable_grad():
            x = points[start:start + batch_size].clone().requires_grad_(True)
            logits = model(x)
            forward += x.shape[0]
            if chosen is None:
                count = logits.shape[1]
                if count <= MAX_LIPSCHITZ_CLASSES:
                    chosen = tuple(range(count))
                else:  # the first point is the clean image
                    chosen = tuple(int(c) for c in logits[0].detach().topk(MAX_LIPSCHITZ_CLASSES).indices)
            for position, k in enumerate(chosen):
                last = position == len(chosen) - 1
                gradient = torch.autograd.grad(logits[:, k].sum(), x, retain_graph=not last)[0]
                backward += x.shape[0]
                if mask is not None:
                    gradient = gradient * mask
                best = torch.maximum(best, _dual_norm(gradient, norm).max())
    return {"lipschitz_estimate": float(best), "classes": chosen,
            "forward_passes": forward, "backward_passes": backward}


def noise_flip_rate(model: nn.Module, image: torch.Tensor, *, allowed_mask=None, norm: str = "linf",
                    eps: float, draws: int = 32, seed: int = 0, batch_size: int = 16) -> dict:
    """Share of random perturbations of size ε (engine's ``noise`` method: random signs·ε
    for L∞, a random direction of length ε for L2; allowed pixels only) that change the
    clean prediction."""
    image, mask = _prepare(model, image, allowed_mask, norm)
    if int(draws) < 1:
        raise UserError(f"The noise flip rate needs at least 1 draw (got {draws}).")
    flips = forward = 0
    chunk = max(1, int(batch_size))
    for number, start in enumerate(range(0, int(draws), chunk)):
        count = min(chunk, int(draws) - start)
        # One noise step per copy: every copy gets its own draw from one seeded generator.
        config = AttackConfig(method="noise", norm=norm, eps=float(eps), steps=1, seed=int(seed) + number)
        result = run_attack(model, image.repeat(count, 1, 1, 1), mask, None, config)
        flips += int(result.flipped.sum())
        forward += result.forward_passes
    return {"noise_flip_rate": flips / int(draws), "draws": int(draws), "forward_passes": forward}


def robustness_summary(model: nn.Module, image: torch.Tensor, *, allowed_mask=None,
                       norm: str = "linf", eps: float, label: int | None = None, seed: int = 0,
                       samples: int = 16, radius: float | None = None,
                       noise_draws: int = 32) -> RobustnessSummary:
    """Margin, its gradient norm, Lipschitz estimate, radius R = m/(2L) and noise flip rate.

    ``eps`` is the attack budget (the noise is drawn at the same ε); ``radius`` is the ball
    of the Lipschitz estimate (default ε). Everything respects ``allowed_mask`` (H×W, 1 =
    may change). Cost: 1 + ⌈(samples+1)/16⌉ forward passes of up to 16 images, one backward
    per class per batch, and 2·``noise_draws`` forward passes of the noise baseline.
    """
    image, mask = _prepare(model, image, allowed_mask, norm)
    radius = float(eps if radius is None else radius)
    base = margin_and_gradient(model, image, allowed_mask=mask, norm=norm, label=label)
    lipschitz = lipschitz_estimate(model, image, allowed_mask=mask, norm=norm, radius=radius,
                                   samples=samples, seed=seed)
    noise = noise_flip_rate(model, image, allowed_mask=mask, norm=norm, eps=eps,
                            draws=noise_draws, seed=seed)
    big_l = lipschitz["lipschitz_estimate"]
    # L = 0 means a locally constant model: no finite radius can be stated from it.
    radius_estimate = None if big_l <= 0 else max(base["margin"], 0.0) / (2.0 * big_l)
    allowed_fraction = 1.0 if mask is None else float(mask.float().mean())
    return RobustnessSummary(
        norm=norm, eps=float(eps), radius=radius, reference=base["reference"],
        runner_up=base["runner_up"], margin=base["margin"], gradient_norm=base["gradient_norm"],
        lipschitz_estimate=big_l, radius_estimate=radius_estimate,
        noise_flip_rate=noise["noise_flip_rate"], noise_draws=noise["draws"], samples=int(samples),
        lipschitz_classes=tuple(lipschitz["classes"]), allowed_fraction=allowed_fraction,
        seed=int(seed),
        cost={"forward_passes": 1 + lipschitz["forward_passes"] + noise["forward_passes"],
              "backward_passes": 1 + lipschitz["backward_passes"]},
    )


# --------------------------------------------------------------------------- minimal ε

@dataclass(frozen=True)
class MinimalEps:
    """The smallest ε found to flip the prediction, and what it cost to find.

    ``eps`` is the smallest budget at which the attack succeeded (None when even
    ``eps_max`` did not: ``found`` is False); ``bracket`` = (largest ε that failed below
    it, ``eps``), so the true minimal ε *for this attack* lies in the bracket, whose
    relative width is at most ``tolerance``. ``result`` is the attack at ``eps`` (one
    image; at ``eps_max`` when nothing was found). ``evaluations`` lists every (ε, success) tried, round by round.
    """

    eps: float | None
    found: bool
    bracket: tuple[float, float | None]
    cost: dict
    result: AttackResult | None
    evaluations: tuple[dict, ...]
    rounds: int
    norm: str
    method: str
    steps: int
    tolerance: float
    eps_max: float
    seed: int
    reference: int
    adversarial_prediction: int | None

    def to_json(self) -> dict:
        """The ``min_eps`` object of a min-eps ``record.json``."""
        return {
            "eps": self.eps, "found": self.found,
            "bracket": [self.bracket[0], self.bracket[1]],
            "relative_bracket_width": (None if self.bracket[1] is None or self.bracket[1] == 0 else
                                       (self.bracket[1] - self.bracket[0]) / self.bracket[1]),
            "norm": self.norm, "method": self.method, "steps": self.steps,
            "tolerance": self.tolerance, "eps_max": self.eps_max, "seed": self.seed,
            "reference": self.reference, "adversarial_prediction": self.adversarial_prediction,
            "rounds": self.rounds, "cost": dict(self.cost),
            "evaluations": [dict(e) for e in self.evaluations],
        }


def _select(result: AttackResult, row: int) -> AttackResult:
    """One image's slice of a batched attack result, as if it had been attacked alone.

    Its trajectories end where early stop froze it, and its pass counts are its own (one
    forward per evaluation, one backward per gradient step), not the whole batch's.
    """
    one = slice(row, row + 1)
    probabilities = result.probability_trajectory[:, row]
    evaluations = probabilities.shape[0]
    if bool(result.success[row]) and result.config.early_stop and result.config.restarts == 1:
        reference = result.reference[row] if result.targets is None else result.targets[row]
        hits = probabilities.argmax(dim=1) != reference if result.targets is None else \
            probabilities.argmax(dim=1) == reference
        evaluations = int(hits.nonzero()[0, 0]) + 1 if bool(hits.any()) else evaluations
    return replace(
        result, images=result.images[one], adversarial=result.adversarial[one],
        clean_probabilities=result.clean_probabilities[one],
        adversarial_probabilities=result.adversarial_probabilities[one],
        reference=result.reference[one], targets=None if result.targets is None else result.targets[one],
        success=result.success[one], loss=result.loss[one], steps_run=result.steps_run[one],
        forward_passes=evaluations, backward_passes=int(result.steps_run[row]),
        loss_trajectory=result.loss_trajectory[:evaluations, one],
        probability_trajectory=result.probability_trajectory[:evaluations, one], eps=result.eps[one],
        trajectory_steps=list(result.trajectory_steps[:evaluations]))


DEFAULT_EPS_MAX = {"linf": 64 / 255, "l2": 8.0}


class EpsBracket:
    """The search for the smallest ε that flips one image: which budgets to try next, and
    the bracket (``low``, ``high``) that the answers so far leave.

    It only proposes budgets and learns from the answers; whoever uses it decides how the
    attacks are batched. :func:`minimal_eps` attacks one image at ``grid`` budgets per round
    in one batch; the cohort screen (:func:`advexplorer.core.screening.screen_steps`) packs
    one budget per flipped image into its shared engine calls (``grid=1``: bisection).

    Without an upper end (``high=None``) the first round is the geometric ladder
    ``high_limit·2^-(grid-1) … high_limit``; if nothing on it flips, the search ends with
    ``found`` False. Each later round splits (low, high) into ``grid+1`` equal parts, so
    the bracket shrinks ``grid+1``-fold per round, until (high − low) ≤ ``tolerance``·high
    or ``max_rounds`` rounds have run. Below the smallest budget that flipped, every budget
    tried failed, so the new ``low`` is the largest of those (success is assumed monotone
    in ε within a round; see the caveat in :func:`minimal_eps`).
    """

    def __init__(self, *, low: float = 0.0, high: float | None = None, high_limit: float | None = None,
                 grid: int = 4, tolerance: float = 0.0, max_rounds: int = 12):
        if high is None and high_limit is None:
            raise ValueError("give the bracket's upper end or the largest ε to try")
        self.low, self.high, self.high_limit = float(low), high, high_limit
        self.grid, self.tolerance, self.max_rounds = int(grid), float(tolerance), int(max_rounds)
        self.rounds = 0
        self.exhausted = False  # the ladder up to high_limit never flipped

    @property
    def found(self) -> bool:
        return self.high is not None

    @property
    def done(self) -> bool:
        if self.exhausted or self.rounds >= self.max_rounds:
            return True
        return self.high is not None and self.high - self.low <= self.tolerance * self.high

    def next_budgets(self) -> list[float]:
        """The ε values to attack in the next round (ascending); empty when the search is done."""
        if self.done:
            return []
        if self.high is None:
            return [self.high_limit * 2.0 ** -(self.grid - 1 - i) for i in range(self.grid)]
        low, high = self.low, self.high
        return [low + (high - low) * (i + 1) / (self.grid + 1) for i in range(self.grid)]

    def record(self, budgets: list[float], flipped: list[bool]) -> int | None:
        """Learn one round's answers; return the position in ``budgets`` of the new upper
        end (the smallest ε that flipped), or None when none flipped."""
        self.rounds += 1
        winners = [i for i, success in enumerate(flipped) if success]
        if winners:
            first = winners[0]
            self.high = budgets[first]
            if first > 0:
                self.low = budgets[first - 1]
            return first
        self.low = budgets[-1]
        if self.high is None:
            self.exhausted = True
        return None


def minimal_eps(model: nn.Module, image: torch.Tensor, *, allowed_mask=None, norm: str = "linf",
                label: int | None = None, method: str = "pgd", steps: int = 20,
                eps_max: float | None = None, tolerance: float = 0.01, seed: int = 0,
                grid: int = 4, max_rounds: int = 12, random_start: bool = False,
                on_round=None) -> MinimalEps:
    """Smallest ε at which ``method`` flips the prediction (attacking allowed pixels only).

    Work is shared three ways: every round attacks ``grid`` copies of the image at
    ``grid`` different ε in **one batch** (the engine's per-image ε); early stop drops a
    copy from the batch as soon as it flips, so large ε cost few steps; and each round only
    searches inside the bracket left by the previous one. Round 1 tries a geometric ladder
    ``eps_max·2^-(grid-1) … eps_max``; later rounds split (lo, hi) into ``grid+1`` equal
    parts, shrinking the bracket ``grid+1``-fold per round, until (hi − lo) ≤
    ``tolerance``·hi (the search is :class:`EpsBracket`, shared with the cohort screen's
    ``--min-eps``). The attack is deterministic (no random start unless asked), so the
    bracket is reproducible. ``on_round(evaluations)`` sees each round's (ε, success).

    ``grid=4`` is the default because it needed the fewest passes and rounds on the
    bundled histology sample (``benchmarks/min_eps_cost.py``: 4 rounds vs 10 single-image
    attacks for bisection, 0.6× its wall time on one CPU thread); on a GPU, where a batch
    of 16 costs about what one image does, a larger grid saves rounds.

    Caveat: PGD's success is not exactly monotone in ε (its step size scales with ε and a
    fixed number of steps need not converge), so what is found is *a* boundary: an ε that
    flips with a tried ε just below it that did not. Different grids can land on
    different such boundaries (on the histology sample, 18.9/255 to 20/255); every ε tried
    is in ``evaluations``.
    """
    image, mask = _prepare(model, image, allowed_mask, norm)
    if method not in GRADIENT_METHODS:
        raise UserError(f"The minimal-ε search needs a gradient attack ({', '.join(GRADIENT_METHODS)}), "
                        f"not {method!r}.")
    if not 0 < float(tolerance) < 1:
        raise UserError(f"Tolerance {tolerance:g} must be in (0, 1) (a relative bracket width, e.g. 0.01).")
    if int(grid) < 1:
        raise UserError(f"The ε grid needs at least 1 value per round (got {grid}).")
    eps_max = float(DEFAULT_EPS_MAX[norm] if eps_max is None else eps_max)
    config = AttackConfig(method=method, norm=norm, eps=eps_max, steps=int(steps), early_stop=True,
                          seed=int(seed), random_start=bool(random_start)).validate()
    labels = None
    if label is not None:
        with torch.no_grad():
            num_classes = model(image).shape[1]
        labels = torch.tensor([_check_label(label, num_classes)], device=image.device)

    forward = backward = rounds = 0
    evaluations: list[dict] = []
    best = reference = None

    def attack(values: list[float]) -> tuple[AttackResult, list[bool]]:
        nonlocal forward, backward, rounds, reference
        count = len(values)
        eps = torch.tensor(values, dtype=image.dtype, device=image.device)
        batch_labels = None if labels is None else labels.expand(count)
        result = run_attack(model, image.repeat(count, 1, 1, 1), mask, batch_labels, config, eps=eps)
        forward += result.forward_passes
        backward += result.backward_passes
        rounds += 1
        reference = int(result.reference[0])
        success = [bool(s) for s in result.success.tolist()]
        evaluations.extend({"round": rounds, "eps": v, "success": s} for v, s in zip(values, success))
        if on_round is not None:
            on_round(evaluations[-count:])
        return result, success

    search = EpsBracket(high_limit=eps_max, grid=grid, tolerance=tolerance,
                        max_rounds=max(1, int(max_rounds)))
    while budgets := search.next_budgets():
        result, success = attack(budgets)
        upper = search.record(budgets, success)
        if upper is not None:
            best = _select(result, upper)  # the attack at the new smallest flipping ε
        elif not search.found:
            best = _select(result, len(budgets) - 1)  # the attack at eps_max
    lo, hi = search.low, search.high

    return MinimalEps(
        eps=hi, found=hi is not None, bracket=(lo, hi),
        cost={"forward_passes": forward, "backward_passes": backward,
              "attack_batches": rounds, "images_attacked": len(evaluations)},
        result=best, evaluations=tuple(evaluations), rounds=rounds, norm=norm, method=method,
        steps=config.effective_steps, tolerance=float(tolerance), eps_max=eps_max, seed=int(seed),
        reference=int(reference) if reference is not None else -1,
        adversarial_prediction=None if hi is None else int(best.adversarial_prediction[0]),
    )
