"""PGD — projected gradient descent on the loss, L∞ or L2.

Madry, Makelov, Schmidt, Tsipras, Vladu, *Towards Deep Learning Models Resistant to
Adversarial Attacks*, ICLR 2018, https://arxiv.org/abs/1706.06083. Same numbers as
``torchattacks.PGD`` / ``torchattacks.PGDL2`` 3.5; the optional random start and the
restarts are the driver's.
"""

from __future__ import annotations

import torch

from advexplorer.core.attacks.ball import step_and_project
from advexplorer.core.attacks.base import Iterate, StepRule, register


@register
class PGD(StepRule):
    """x' = Π_ε(x + α·u), u = sign(∇ₓ loss) for L∞ or ∇ₓ loss/‖∇ₓ loss‖₂ for L2."""

    name = "pgd"

    def step(self, it: Iterate) -> torch.Tensor:
        return step_and_project(it.adversarial, it.images, it.gradient, it.step_size, it.eps, it.norm)
