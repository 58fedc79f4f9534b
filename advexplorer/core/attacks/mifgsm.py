"""MI-FGSM — iterative FGSM with a momentum of L1-normalised gradients.

Dong, Liao, Pang, Su, Zhu, Hu, Li, *Boosting Adversarial Attacks with Momentum*, CVPR 2018,
https://arxiv.org/abs/1710.06081 (Algorithm 1). Same numbers as ``torchattacks.MIFGSM``
3.5 (which divides by the *mean* absolute gradient, a constant multiple of the paper's L1
norm); ``decay=0`` is plain iterative FGSM.
"""

from __future__ import annotations

import torch

from advexplorer.config import AttackConfig
from advexplorer.core.attacks.ball import step_and_project
from advexplorer.core.attacks.base import Iterate, StepRule, register


@register
class MIFGSM(StepRule):
    """g ← μ·g + ∇/mean|∇|;  x' = Π_ε(x + α·sign(g))."""

    name = "mifgsm"

    def initial_state(self, images: torch.Tensor, config: AttackConfig) -> dict[str, torch.Tensor]:
        return {"momentum": torch.zeros_like(images)}

    def step(self, it: Iterate) -> torch.Tensor:
        scale = it.gradient.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        momentum = it.gradient / scale + it.config.decay * it.state["momentum"]
        it.state["momentum"] = momentum
        return step_and_project(it.adversarial, it.images, momentum, it.step_size, it.eps, it.norm)
