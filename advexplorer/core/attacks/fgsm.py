"""FGSM — one signed gradient step of size ε.

Goodfellow, Shlens, Szegedy, *Explaining and Harnessing Adversarial Examples*, ICLR 2015,
https://arxiv.org/abs/1412.6572. With ``norm="l2"`` the step is the L2-normalised gradient
(the fast gradient method). :class:`advexplorer.config.AttackConfig` runs it for one step
with step size ε.
"""

from __future__ import annotations

import torch

from advexplorer.core.attacks.ball import step_and_project
from advexplorer.core.attacks.base import Iterate, StepRule, register


@register
class FGSM(StepRule):
    """x' = clip(x + ε·sign(∇ₓ loss)) — the step size is ε, so the single step spends the budget."""

    name = "fgsm"

    def step(self, it: Iterate) -> torch.Tensor:
        return step_and_project(it.adversarial, it.images, it.gradient, it.step_size, it.eps, it.norm)
