"""Square attack — a score-based black-box attack: random squares, kept when the margin drops.

Andriushchenko, Croce, Flammarion, Hein, *Square Attack: a query-efficient black-box
adversarial attack via random search*, ECCV 2020, https://arxiv.org/abs/1912.00049
(Algorithms 1–3). It never computes a gradient: each step asks the model once per image
still standing (one *query*), so it also tests models whose gradients are useless (masked,
quantised, non-differentiable). The square's side shrinks on the paper's schedule
(``p_init`` = 0.8 of the image, halved at 10, 50, 200, 500, … of 10 000 queries, rescaled
to the budget), and the random search keeps a candidate when the loss improves — the
margin z_y − max_{i≠y} z_i untargeted, the cross-entropy of the target when targeted.

Masks: squares are placed only where they overlap the allowed mask, and every change is
multiplied by it, so the perturbation is exactly zero outside it.

Why a generator of its own rather than a :class:`~.base.StepRule`: there is no gradient,
the kept point is the best candidate (not the last), and the cost is counted in queries.
Each yielded :class:`~.engine.AttackStep` is one query batch; ``step.index`` is the number of
queries spent per image after the initial one (the GUI's queries counter).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import replace

import torch
import torch.nn.functional as F

from advexplorer.config import AttackConfig
from advexplorer.core.attacks.base import register_generator
from advexplorer.core.attacks.engine import AttackResult, AttackStep, start_batch

#: Fraction of the image's pixels the first square covers (torchattacks' and AutoAttack's default).
P_INIT = 0.8


def square_fraction(query: int, budget: int, p_init: float = P_INIT) -> float:
    """The paper's schedule of the square's area fraction p, rescaled to a ``budget`` of queries."""
    it = int(query / budget * 10000)
    for limit, divisor in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32),
                           (4000, 64), (6000, 128), (8000, 256)):
        if it <= limit:
            return p_init / divisor
    return p_init / 512


def margin_and_loss(logits: torch.Tensor, wanted: torch.Tensor, targeted: bool):
    """(margin, loss) to minimise: margin ≤ 0 means success. Untargeted: z_y − max others
    (both); targeted: max others − z_t and the cross-entropy of the target."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    wanted_logit = logits[rows, wanted]
    others = logits.clone()
    others[rows, wanted] = -float("inf")
    best_other = others.max(dim=1)[0]
    if targeted:
        return best_other - wanted_logit, F.cross_entropy(logits, wanted, reduction="none")
    margin = wanted_logit - best_other
    return margin, margin


def _signs(shape, generator, device) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=generator).mul_(2).sub_(1).float().to(device)


def _positions(side: int, mask: torch.Tensor | None, n: int, height: int, width: int, generator):
    """Top-left corners (row, column) of an ``side``×``side`` square, one per mask row (one
    shared square without a mask), drawn uniformly among squares that touch an allowed pixel."""
    if mask is None:
        row = torch.randint(0, height - side + 1, (1,), generator=generator)
        column = torch.randint(0, width - side + 1, (1,), generator=generator)
        return row, column
    overlap = F.avg_pool2d(mask.float().cpu(), side, stride=1).flatten(1) > 0
    choice = torch.multinomial(overlap.float(), 1, generator=generator).squeeze(1)
    columns = width - side + 1
    return choice // columns, choice % columns


def _windows(row, column, side, shape, device) -> torch.Tensor:
    """An N×1×H×W (or 1×1×H×W) 0/1 tensor with the squares at (row, column)."""
    height, width = shape[-2:]
    rows = torch.arange(height)[None, :]
    columns = torch.arange(width)[None, :]
    in_rows = (rows >= row[:, None]) & (rows < row[:, None] + side)
    in_columns = (columns >= column[:, None]) & (columns < column[:, None] + side)
    return (in_rows[:, :, None] & in_columns[:, None, :])[:, None].float().to(device)


def _eta_rectangles(rows: int, columns: int) -> torch.Tensor:
    delta = torch.zeros(rows, columns)
    centre_row, centre_column = rows // 2 + 1, columns // 2 + 1
    top, left = centre_row - 1, centre_column - 1
    for counter in range(max(centre_row, centre_column)):
        delta[max(top, 0):min(top + 2 * counter + 1, rows),
              max(0, left):min(left + 2 * counter + 1, columns)] += 1.0 / (counter + 1) ** 2
        top, left = top - 1, left - 1
    return delta / (delta ** 2).sum().sqrt()


def eta(side: int, generator) -> torch.Tensor:
    """The L2 attack's square pattern (Algorithm 3): two opposite-sign halves of decaying rings."""
    delta = torch.zeros(side, side)
    delta[:side // 2] = _eta_rectangles(side // 2, side)
    delta[side // 2:] = -_eta_rectangles(side - side // 2, side)
    delta /= (delta ** 2).sum().sqrt()
    return delta.t() if bool(torch.rand(1, generator=generator) > 0.5) else delta


def _placed(pattern: torch.Tensor, row, column, side, shape, device) -> torch.Tensor:
    """``pattern`` (side×side) placed at each (row, column): an N×1×H×W (or 1×…) tensor."""
    placed = torch.zeros(row.shape[0], 1, *shape[-2:])
    for i, (r, c) in enumerate(zip(row.tolist(), column.tolist())):
        placed[i, 0, r:r + side, c:c + side] = pattern
    return placed.to(device)


def _l2_norm(x: torch.Tensor) -> torch.Tensor:
    return (x ** 2).flatten(1).sum(dim=1).sqrt().view(-1, 1, 1, 1)


def _initial_point(images, eps, norm, mask, generator):
    """Algorithm 2/3's start: vertical stripes of ±ε (L∞) or a grid of η squares (L2)."""
    n, channels, height, width = images.shape
    device = images.device
    if norm == "linf":
        delta = eps * _signs((n, channels, 1, width), generator, device)
        delta = delta.expand(-1, -1, height, -1)
        return (images + (delta if mask is None else delta * mask)).clamp(0.0, 1.0)
    side = max(height // 5, 1)
    start = (height - side * 5) // 2
    delta = torch.zeros_like(images)
    # Whole squares only (torchattacks assumes sides that are multiples of 5 and would fail).
    for row in range(start, height - side + 1, side):
        for column in range(start, width - side + 1, side):
            delta[:, :, row:row + side, column:column + side] += \
                eta(side, generator).view(1, 1, side, side).to(device) * _signs((n, channels, 1, 1), generator, device)
    if mask is not None:
        delta = delta * mask
    return (images + delta / (_l2_norm(delta) + 1e-12) * eps).clamp(0.0, 1.0)


def linf_bounds(images: torch.Tensor, eps) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel, the lowest and highest value an L∞ candidate may take: the ε-box around
    ``images`` cut to [0,1]. Computed once per set of standing images, not per query."""
    return (images - eps).clamp_(min=0.0), (images + eps).clamp_(max=1.0)


def _candidate(images, best, eps, norm, mask, side, generator, bounds=None):
    """One random-search proposal per image (Algorithm 2 for L∞, Algorithm 3 for L2).

    ``bounds``: :func:`linf_bounds` of ``images`` (L∞ only). Clamping to them is the same as
    min(max(·, x−ε), x+ε) then [0,1], in one pass over the batch instead of five.
    """
    n, channels, height, width = images.shape
    device = images.device
    row, column = _positions(side, mask, n, height, width, generator)
    window = _windows(row, column, side, images.shape, device)
    if norm == "linf":
        if mask is not None:
            window = window * mask  # N×1×H×W: masked before it is spread over the channels
        # ±2ε per image and channel (small), then placed in the square: one full-size product.
        change = window * (_signs((n, channels, 1, 1), generator, device) * (2.0 * eps))
        lower, upper = bounds if bounds is not None else linf_bounds(images, eps)
        return torch.clamp(best + change, min=lower, max=upper)
    delta = best - images
    row2, column2 = _positions(side, mask, n, height, width, generator)
    window2 = _windows(row2, column2, side, images.shape, device)
    in_window = delta * window
    norms_window = (in_window ** 2).sum(dim=(-2, -1), keepdim=True).sqrt()          # N×C×1×1
    norms_image = _l2_norm(delta)
    norms_both = _l2_norm(delta * torch.max(window, window2))
    pattern = _placed(eta(side, generator), row, column, side, images.shape, device)
    new = pattern * _signs((n, channels, 1, 1), generator, device) + in_window / (1e-12 + norms_window)
    new = new / (1e-12 + (new ** 2).sum(dim=(-2, -1), keepdim=True).sqrt()) * (
        torch.clamp(eps ** 2 - norms_image ** 2, min=0.0) / channels + norms_both ** 2).sqrt()
    delta = delta * (1 - window2) * (1 - window) + new * window
    if mask is not None:
        delta = delta * mask
    return (images + delta / (_l2_norm(delta) + 1e-12) * eps).clamp(0.0, 1.0)


def square_steps(model, images, allowed_mask=None, labels=None, config: AttackConfig | None = None, *,
                 targets=None, eps=None, start_generators=None) -> Generator[AttackStep, None, AttackResult]:
    """The Square attack as a step generator: one yielded step per query batch.

    ``config.queries`` is the budget per image (after one initial query); restarts attack
    the images still standing again. ``start_generators`` is accepted for the driver's
    signature; the random search draws from the config's seed.
    """
    config = (config or AttackConfig(method="square")).validate()
    batch = start_batch(model, images, allowed_mask, labels, targets, config, eps)
    images, mask, eps_t, seed = batch.images, batch.mask, batch.eps, batch.seed
    n, channels, height, width = images.shape
    device = images.device
    generator = torch.Generator().manual_seed(seed)
    budget = int(config.queries)
    clean_logits, reference, targets, targeted = batch.clean_logits, batch.reference, batch.targets, batch.targeted
    wanted = targets if targeted else reference

    best = images.clone()
    best_logits = clean_logits.clone()
    margin_best, loss_best = margin_and_loss(clean_logits, wanted, targeted)
    forward_passes = n
    queries_used = torch.zeros(n, dtype=torch.long, device=device)
    loss_rows, logit_rows, row_steps = [], [], []

    def step(index, restart, active):
        # The kept tensors are replaced, never written in place, so a step can hold them as they are.
        loss_rows.append(-loss_best)
        logit_rows.append(best_logits)
        row_steps.append((restart, index))
        return AttackStep(index=index, restart=restart, images=images, adversarial=best,
                          logits=best_logits, loss=-loss_best, gradient=None,
                          active=active, total_steps=budget, wanted=wanted, targeted=targeted,
                          success=margin_best <= 0)

    def put(kept, rows, values, everyone):
        """``kept`` with ``values`` in ``rows`` (a new tensor)."""
        return values if everyone else kept.index_copy(0, rows, values)

    for restart in range(config.restarts):
        rows = (margin_best > 0).nonzero().squeeze(1)
        if rows.numel() == 0:
            if restart == 0:  # every image is already misclassified: the clean point is the step
                yield step(0, 0, torch.zeros(n, dtype=torch.bool, device=device))
            break
        x_rows, eps_rows = images[rows], eps_t[rows]
        mask_rows = None if mask is None else (mask if mask.shape[0] == 1 else mask[rows])
        start = _initial_point(x_rows, eps_rows, config.norm, mask_rows, generator)
        with torch.no_grad():
            logits = model(start)
        forward_passes += rows.numel()
        queries_used[rows] += 1
        margin, loss = margin_and_loss(logits, wanted[rows], targeted)
        # A restart replaces the point of the images it attacks (they are all still standing).
        everyone = rows.numel() == n
        best, best_logits = put(best, rows, start, everyone), put(best_logits, rows, logits, everyone)
        margin_best, loss_best = put(margin_best, rows, margin, everyone), put(loss_best, rows, loss, everyone)
        active = torch.zeros(n, dtype=torch.bool, device=device)
        active[rows] = True
        yield step(0, restart, active)

        standing_rows = None  # the rows of the current working set (below); None: not made yet
        for query in range(budget):
            standing = active & (margin_best > 0)
            count = int(standing.sum())
            if count == 0:
                break
            everyone = count == n  # until an image is fooled, no row indexing at all
            rows = None if everyone else standing.nonzero().squeeze(1)

            def pick(value):
                return value if everyone or value is None or value.shape[0] == 1 else value[rows]

            if standing_rows is None or standing_rows != count:
                # What depends only on which images stand is gathered when that changes (at
                # most once per fooled image), not on every query.
                standing_rows = count
                x_rows, eps_rows, mask_rows, wanted_rows = pick(images), pick(eps_t), pick(mask), pick(wanted)
                bounds = linf_bounds(x_rows, eps_rows) if config.norm == "linf" else None
            fraction = square_fraction(query, budget)
            smallest = 1 if config.norm == "linf" else 3
            side = min(max(int(round(math.sqrt(fraction * height * width))), smallest), height, width)
            if config.norm == "l2" and side % 2 == 0 and side < min(height, width):
                side += 1
            best_rows = pick(best)
            candidate = _candidate(x_rows, best_rows, eps_rows, config.norm, mask_rows, side, generator, bounds)
            with torch.no_grad():
                logits = model(candidate)
            forward_passes += candidate.shape[0]
            queries_used += standing.long()
            margin, loss = margin_and_loss(logits, wanted_rows, targeted)
            loss_rows_best = pick(loss_best)
            improved = loss < loss_rows_best
            keep = improved | (margin <= 0)
            # Most proposals are rejected once the search has settled: then nothing changes,
            # and the kept tensors are not copied at all.
            if bool(keep.any()):
                loss_best = put(loss_best, rows, torch.where(improved, loss, loss_rows_best), everyone)
                margin_best = put(margin_best, rows, torch.where(keep, margin, pick(margin_best)), everyone)
                best = put(best, rows, torch.where(keep.view(-1, 1, 1, 1), candidate, best_rows), everyone)
                best_logits = put(best_logits, rows, torch.where(keep[:, None], logits, pick(best_logits)),
                                  everyone)
            active = standing
            yield step(query + 1, restart, active)

    success = margin_best <= 0
    return AttackResult(
        config=replace(config, seed=int(seed)), seed=int(seed), images=images, adversarial=best,
        clean_probabilities=torch.softmax(clean_logits.float(), dim=1),
        adversarial_probabilities=torch.softmax(best_logits.float(), dim=1), reference=reference,
        targets=wanted if targeted else None, success=success, loss=-loss_best,
        steps_run=queries_used, forward_passes=forward_passes, backward_passes=0,
        loss_trajectory=torch.stack(loss_rows) if loss_rows else -loss_best[None],
        probability_trajectory=torch.softmax(
            torch.stack(logit_rows if logit_rows else [best_logits]).float(), dim=2),
        eps=eps_t.flatten(), trajectory_steps=row_steps)


register_generator("square", square_steps)
