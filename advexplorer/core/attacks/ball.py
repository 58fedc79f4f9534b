"""The geometry every attack shares: step directions, the ε-ball and random points in it.

Budgets ``eps`` are pixel units, either a Python number (the whole batch shares one budget)
or an N×1×1×1 tensor (one budget per image). The functions are the conventions of
torchattacks 3.5 (sign / L2-normalised directions, projection then clipping to [0,1]), so
attacks built from them agree with it bit for bit.
"""

from __future__ import annotations

import torch


def unit_direction(gradient: torch.Tensor, norm: str) -> torch.Tensor:
    """The step direction as a new tensor: the sign for L∞, unit L2 norm per image for L2."""
    if norm == "linf":
        return gradient.sign()
    norms = gradient.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-10  # as torchattacks
    return gradient / norms


def project(adversarial: torch.Tensor, images: torch.Tensor, eps: torch.Tensor | float,
            norm: str) -> torch.Tensor:
    """Project onto the ε-ball around ``images`` and clip to [0,1], overwriting ``adversarial``.

    Callers pass a freshly computed tensor; working in place saves an allocation per
    operation, and since + and × commute exactly in IEEE arithmetic the result is the same
    as ``clamp(images + clamp(adversarial − images, −ε, ε), 0, 1)``.
    """
    delta = adversarial.sub_(images)
    if norm == "linf":
        delta.clamp_(-eps, eps)
    else:
        norms = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        delta.mul_(torch.clamp(eps / norms, max=1.0))  # norm 0 → inf → factor 1
    return delta.add_(images).clamp_(0.0, 1.0)


def step_and_project(adversarial: torch.Tensor, images: torch.Tensor, direction: torch.Tensor,
                     step_size: torch.Tensor | float, eps: torch.Tensor | float,
                     norm: str) -> torch.Tensor:
    """One projected step: ``project(adversarial + step_size · unit(direction))``.

    ``unit_direction`` returns a fresh tensor, so α·u + x is computed in place on it (the
    same numbers as x + α·u).
    """
    moved = unit_direction(direction, norm).mul_(step_size).add_(adversarial)
    return project(moved, images, eps, norm)


def random_delta(shape, eps: torch.Tensor, norm: str, generator: torch.Generator | list[torch.Generator],
                 mask: torch.Tensor | None, *, full_budget: bool) -> torch.Tensor:
    """A random perturbation drawn on the CPU (so a seed means the same thing on any device).

    ``eps`` is an N×1×1×1 tensor on the images' device. ``full_budget=False``: the PGD
    random start (uniform in the L∞ ball; uniform radius in the L2 ball, as torchattacks).
    ``full_budget=True``: the noise baseline, on the ball's surface (random signs ·ε for
    L∞, a random direction of length ε for L2). ``mask`` (allowed = 1) zeroes the rest.
    ``generator`` may be a list of N generators: each row is then drawn from its own.
    """
    if not isinstance(generator, torch.Generator):  # one stream per image: rows drawn alone
        return torch.cat([random_delta((1, *shape[1:]), eps[i:i + 1] if eps.shape[0] > 1 else eps, norm,
                                       stream, mask if mask is None or mask.shape[0] == 1 else mask[i:i + 1],
                                       full_budget=full_budget) for i, stream in enumerate(generator)])
    device = eps.device
    if norm == "linf":
        if full_budget:
            delta = torch.randint(0, 2, shape, generator=generator).mul_(2).sub_(1).float()
        else:
            delta = torch.rand(shape, generator=generator).mul_(2).sub_(1)
        delta = delta.to(device) * eps
        return delta if mask is None else delta * mask
    delta = torch.randn(shape, generator=generator).to(device)
    if mask is not None:
        delta = delta * mask
    norms = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1).clamp_min(1e-12)
    radius = torch.ones(shape[0], 1, 1, 1) if full_budget else \
        torch.rand(shape[0], generator=generator).view(-1, 1, 1, 1)
    return delta / norms * radius.to(device) * eps
