"""Random noise of the full budget — the baseline that says whether direction matters.

Each step is an independent draw on the surface of the ε-ball around the clean image
(random signs ·ε for L∞, a random direction of length ε for L2), allowed pixels only; the
result keeps, per image, the best draw (a flip first, then the highest loss). No gradient
is computed.
"""

from __future__ import annotations

import torch

from advexplorer.core.attacks.ball import random_delta
from advexplorer.core.attacks.base import Iterate, StepRule, register


@register
class Noise(StepRule):
    """x' = clip(x₀ + δ), δ a fresh random point on the ε-sphere (inside the mask)."""

    name = "noise"
    keeps_best = True

    def step(self, it: Iterate) -> torch.Tensor:
        delta = random_delta(it.images.shape, it.eps_per_image, it.norm, it.generator, it.mask,
                             full_budget=True)
        return torch.clamp(it.images + delta, 0.0, 1.0)
