"""Transfer attacks: craft the perturbation on a surrogate model, judge it on the target.

The threat model of an attacker who has a copy (or a differently trained cousin) of the
model but not the model itself (Papernot et al. 2016, https://arxiv.org/abs/1605.07277).
Any method runs on the surrogate; MI-FGSM's momentum is known to transfer better (Dong et
al. 2018, https://arxiv.org/abs/1710.06081). The target is asked only to score the clean
and the final adversarial images, so success is the target's own verdict.

:func:`check_compatible` needs only the two model cards and imports no torch, so the GUI
can refuse a surrogate the moment it is picked, even before the engine has loaded.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from advexplorer.config import AttackConfig
from advexplorer.errors import UserError

if TYPE_CHECKING:  # torch is imported where an attack runs, not to compare two cards
    import torch

    from advexplorer.core.attacks import AttackResult, AttackStep


def _classes_text(classes: Sequence[str]) -> str:
    shown = ", ".join(classes[:4]) + (", …" if len(classes) > 4 else "")
    return f"{len(classes)} classes ({shown})"


def check_compatible(surrogate_name: str, surrogate_classes: Sequence[str], surrogate_size, surrogate_channels: int,
                     target_name: str, target_classes: Sequence[str], target_size, target_channels: int) -> None:
    """Refuse, in one line saying how they differ, a surrogate whose classes (names and
    order), input size or channels differ from the target's."""
    differences = []
    if tuple(surrogate_classes) != tuple(target_classes):
        differences.append(f"classes: {_classes_text(surrogate_classes)} vs {_classes_text(target_classes)}")
    if tuple(surrogate_size) != tuple(target_size):
        differences.append(f"input size: {surrogate_size[1]}×{surrogate_size[0]} vs "
                           f"{target_size[1]}×{target_size[0]} pixels")
    if int(surrogate_channels) != int(target_channels):
        differences.append(f"channels: {surrogate_channels} vs {target_channels}")
    if differences:
        raise UserError(f"The surrogate {surrogate_name} does not match the target {target_name} — "
                        f"{'; '.join(differences)}. A transfer attack needs the same classes in the "
                        "same order and the same input size; give a surrogate trained for the same task.")


@dataclass
class TransferOutcome:
    """``target``: the attack as the target sees it (its probabilities and success);
    ``surrogate``: the attack as crafted (the surrogate's own view)."""

    target: AttackResult
    surrogate: AttackResult

    def to_json(self) -> dict:
        """Per image: success and prediction on each model, and the surrogate's probabilities
        before and after (the target's are the run's own), so both can be shown side by side."""
        def rows(probabilities):
            return [[round(float(p), 6) for p in row] for row in probabilities.detach().float().cpu().tolist()]

        return {"surrogate_success": [bool(v) for v in self.surrogate.success.tolist()],
                "target_success": [bool(v) for v in self.target.success.tolist()],
                "surrogate_prediction_after": [int(v) for v in self.surrogate.adversarial_prediction.tolist()],
                "surrogate_probabilities_before": rows(self.surrogate.clean_probabilities),
                "surrogate_probabilities_after": rows(self.surrogate.adversarial_probabilities)}


def transfer_steps(surrogate, target, images: torch.Tensor, allowed_mask=None, labels=None,
                   config: AttackConfig | None = None) -> Generator[AttackStep, None, TransferOutcome]:
    """Attack ``surrogate`` (its steps are yielded), then score the result on ``target``."""
    import torch

    from advexplorer.core.attacks import attack_steps

    crafted: AttackResult = yield from attack_steps(surrogate, images, allowed_mask, labels, config)
    with torch.no_grad():
        clean = torch.softmax(target(crafted.images).float(), dim=1)
        adversarial = torch.softmax(target(crafted.adversarial).float(), dim=1)
    reference = labels.to(clean.device).long() if labels is not None else clean.argmax(dim=1)
    if crafted.targets is not None:
        success = adversarial.argmax(dim=1) == crafted.targets
    else:
        success = adversarial.argmax(dim=1) != reference
    judged = replace(crafted, clean_probabilities=clean, adversarial_probabilities=adversarial,
                     reference=reference, success=success,
                     forward_passes=crafted.forward_passes + 2 * images.shape[0] if images.dim() == 4
                     else crafted.forward_passes + 2,
                     notes=[*crafted.notes, "Transfer: crafted on the surrogate; the probabilities and "
                                            "success are the target's."])
    return TransferOutcome(target=judged, surrogate=crafted)
