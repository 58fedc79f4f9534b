"""Masked adversarial attacks as step generators: FGSM, PGD (L∞, L2), MI-FGSM, random noise,
APGD-CE/DLR, Square (black box) and their ensemble.

* :mod:`.engine` — the driver, :func:`attack_steps`, shared by every method: restarts,
  early stop, the rows still attacked, pass counting, trajectories, the result.
* :mod:`.base` — what a method is: a :class:`StepRule` registered by name.
* :mod:`.ball` — the ε-ball geometry the rules share (directions, projection, random points).
* :mod:`.diversity` — input diversity (DI-FGSM): the gradient methods' gradients taken
  through random resize-and-pad views, for transfer (``AttackConfig.diversity``).
* One file per method: :mod:`.fgsm`, :mod:`.pgd`, :mod:`.mifgsm`, :mod:`.noise`; methods that
  do not fit a step rule are generators of their own: :mod:`.apgd`, :mod:`.square`, :mod:`.ensemble`.

The vocabulary and :class:`AttackConfig` are torch-free (:mod:`advexplorer.config`), so
the GUI form validates with the engine's own rules before torch loads; they are
re-exported here with the engine's public API.
"""

from advexplorer.config import METHODS, NORMS, AttackConfig
from advexplorer.config import MethodName as Method, NormName as Norm
from advexplorer.core.attacks.base import ATTACK_GENERATORS, STEP_RULES, Iterate, StepRule, register
from advexplorer.core.attacks.engine import (
    AttackResult, AttackStep, attack_steps, drive, perturbation_norms, prepare_mask, run_attack,
)

# Importing a method's module registers its rule (menu order comes from config.METHODS).
from advexplorer.core.attacks import fgsm, mifgsm, noise, pgd  # noqa: E402,F401  isort: skip
from advexplorer.core.attacks import apgd, ensemble, square  # noqa: E402,F401  isort: skip

__all__ = [
    "ATTACK_GENERATORS", "METHODS", "NORMS", "AttackConfig", "AttackResult", "AttackStep", "Iterate", "Method", "Norm",
    "STEP_RULES", "StepRule", "attack_steps", "drive", "perturbation_norms", "prepare_mask",
    "register", "run_attack",
]
