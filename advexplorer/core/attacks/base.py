"""What an attack method is: a small update rule, registered by name.

A method says only how the adversarial image moves from one step to the next; the driver
(:func:`advexplorer.core.attacks.engine.attack_steps`) owns everything around it: the model
evaluations and gradients, the mask, random starts and restarts, early stop and the rows
still being attacked, pass counting, trajectories and the result.

A new method is one file in this package::

    @register
    class MyAttack(StepRule):
        \"\"\"One line; the paper and its link.\"\"\"
        name = "myattack"            # also listed in advexplorer.config.METHOD_INFO

        def step(self, it: Iterate) -> torch.Tensor:
            return step_and_project(it.adversarial, it.images, it.gradient,
                                    it.step_size, it.eps, it.norm)

plus its import in ``advexplorer/core/attacks/__init__.py`` and its entry (label,
citation) in :data:`advexplorer.config.METHOD_INFO`, which puts it in every menu and
option list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from advexplorer.config import METHOD_INFO, AttackConfig


@dataclass(slots=True)
class Iterate:
    """What a rule sees at one step, for the rows (images) still being attacked.

    ``eps`` and ``step_size`` are Python numbers when the whole batch shares one budget
    (cheaper arithmetic), else per-row N×1×1×1 tensors; ``eps_per_image`` is always the
    tensor. ``gradient`` is the input gradient of ``loss`` (the objective the attack
    maximises), already multiplied by the allowed mask; it is None for methods that do not
    use gradients. ``state`` holds the method's own per-image tensors (see
    :meth:`StepRule.initial_state`); a rule replaces its entries with the rows' new values.
    ``mask`` is the allowed mask (1×1×H×W, or one per row) or None for the whole image.
    """

    adversarial: torch.Tensor
    images: torch.Tensor
    gradient: torch.Tensor | None
    loss: torch.Tensor
    eps: torch.Tensor | float
    step_size: torch.Tensor | float
    eps_per_image: torch.Tensor
    mask: torch.Tensor | None
    state: dict[str, torch.Tensor]
    index: int
    config: AttackConfig
    generator: torch.Generator

    @property
    def norm(self) -> str:
        return self.config.norm


class StepRule:
    """One attack method's update rule; subclasses set ``name`` and implement :meth:`step`."""

    #: The method's name in records and on the command line (a key of config.METHOD_INFO).
    name: ClassVar[str]
    #: Keep the best iterate per image (success first, then loss) rather than the last one:
    #: for methods whose iterates are independent draws, such as random noise.
    keeps_best: ClassVar[bool] = False

    @property
    def uses_gradient(self) -> bool:
        """Whether the driver computes input gradients for this method (from the vocabulary)."""
        return METHOD_INFO[self.name].uses_gradient

    def initial_state(self, images: torch.Tensor, config: AttackConfig) -> dict[str, torch.Tensor]:
        """Per-image tensors the rule carries between steps (first dimension N), fresh for
        each restart; the driver hands the rule only the rows still being attacked."""
        return {}

    def step(self, it: Iterate) -> torch.Tensor:
        """The next adversarial images of ``it``'s rows: inside the ε-ball, in [0,1], and
        unchanged outside the allowed mask (the helpers in :mod:`.ball` keep all three)."""
        raise NotImplementedError


#: name → rule, filled by :func:`register` as the method modules are imported.
STEP_RULES: dict[str, StepRule] = {}


def register(rule_class: type[StepRule]) -> type[StepRule]:
    """Class decorator: make a rule available to the driver under its ``name``."""
    if rule_class.name not in METHOD_INFO:
        raise ValueError(f"attack {rule_class.name!r} is not in advexplorer.config.METHOD_INFO; "
                         "add its label and citation there")
    STEP_RULES[rule_class.name] = rule_class()
    return rule_class


#: name → step generator, for methods that do not fit a :class:`StepRule` (their own loss,
#: best-point bookkeeping or no gradient at all: APGD, Square, the ensemble). A generator
#: takes :func:`~.engine.attack_steps`' arguments, yields the same ``AttackStep`` once per
#: model evaluation and returns an ``AttackResult``; ``attack_steps`` hands such methods to it.
ATTACK_GENERATORS: dict[str, Callable] = {}


def register_generator(name: str, generator: Callable) -> Callable:
    """Make ``generator`` the whole attack for method ``name`` (a key of config.METHOD_INFO)."""
    if name not in METHOD_INFO:
        raise ValueError(f"attack {name!r} is not in advexplorer.config.METHOD_INFO; "
                         "add its label and citation there")
    ATTACK_GENERATORS[name] = generator
    return generator
