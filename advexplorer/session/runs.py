"""One attack on one image, as the CLI, the GUI and ``reproduce`` all run it.

:func:`run_steps` is a generator over the engine's steps (so the GUI can draw each one and
stop between them) whose return value is a :class:`RunOutcome`; :func:`build_record` turns
request + outcome into the ``record.json`` dict, and :func:`write_run_folder` (the GUI) and
:func:`write_run_dir` (the CLI) write a run folder through :mod:`advexplorer.io.runfolder`,
which owns its file names and writes it all or nothing.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import advexplorer
from advexplorer.core.attacks import (AttackConfig, AttackResult, AttackStep, attack_steps, drive,
                                      perturbation_norms)
from advexplorer.errors import UserError
from advexplorer.io.images import LoadedImage, to_uint8
from advexplorer.io.models import LoadedModel
from advexplorer.io.runfolder import RECORD_VERSION, FILES, RunArrays, jsonable
from advexplorer.io.runfolder import write_run_folder as _write_folder

MASK_MODES = ("none", "allowed", "protect")
#: Which class the saliency maps explain: the clean prediction (both maps), the adversarial
#: prediction (both maps), the label, the target, or ``each`` image's own prediction.
SALIENCY_CLASSES = ("clean", "adversarial", "label", "target", "each")


@dataclass
class RunRequest:
    """Everything a single run needs. Masks are H×W tensors at the model's input size."""

    model: LoadedModel
    image: LoadedImage
    config: AttackConfig
    allowed_mask: torch.Tensor | None = None
    mask_mode: str = "none"
    mask_path: Path | None = None
    diagnostic_mask: torch.Tensor | None = None
    diagnostic_path: Path | None = None
    label: int | None = None
    saliency: str | None = None
    saliency_class: str = "clean"
    robustness: bool = False
    command_line: list[str] | None = None
    annotations: dict | None = None   # QuPath GeoJSON the masks came from (path, sha256, classes)
    #: Transfer: craft on this model, judge on ``model`` (same classes and input size).
    surrogate: LoadedModel | None = None

    def __post_init__(self):
        if self.mask_mode not in MASK_MODES:
            raise UserError(f"Mask mode must be one of {', '.join(MASK_MODES)}, not {self.mask_mode!r}.")
        size = tuple(self.model.card.input_size)
        for name, mask in (("mask", self.allowed_mask), ("diagnostic region", self.diagnostic_mask)):
            if mask is not None and tuple(mask.shape[-2:]) != size:
                raise UserError(f"The {name} is {mask.shape[-1]}×{mask.shape[-2]} at model scale but "
                                f"the model takes {size[1]}×{size[0]}.")
        if self.label is not None:
            self.label = self.model.card.class_index(self.label)
        if self.config.targeted is not None:
            self.model.card.class_index(self.config.targeted)
        if self.saliency_class not in SALIENCY_CLASSES:
            raise UserError(f"Saliency class must be one of {', '.join(SALIENCY_CLASSES)}.")
        if self.saliency_class == "label" and self.label is None:
            raise UserError("Saliency for the label needs a label (--label CLASS).")
        if self.saliency_class == "target" and self.config.targeted is None:
            raise UserError("Saliency for the target needs a targeted attack (--targeted CLASS).")
        if self.surrogate is not None:
            from advexplorer.core.transfer import check_compatible

            s, t = self.surrogate, self.model
            check_compatible(s.path.name, s.card.classes, s.card.input_size, s.card.channels,
                             t.path.name, t.card.classes, t.card.input_size, t.card.channels)


@dataclass
class RunOutcome:
    """What a run produced. ``exported`` is the 8-bit adversarial image as saved to PNG."""

    result: AttackResult
    exported: np.ndarray                      # H×W×C uint8
    exported_probabilities: torch.Tensor      # K
    exported_success: bool
    wall_time_s: float
    explanation: Any = None                   # advexplorer.core.saliency.Explanation
    robustness: Any = None                    # advexplorer.core.robustness.RobustnessSummary
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def adversarial(self) -> np.ndarray:
        """C×H×W float32 adversarial image on the CPU."""
        return self.result.adversarial[0].detach().cpu().numpy()

    @property
    def perturbation(self) -> np.ndarray:
        return self.result.perturbation[0].detach().cpu().numpy()


def explain_request(request, classifier, images, result):
    """Saliency maps before and after a finished attack, for the classes ``request.saliency_class``
    names (the one rule the CLI's run and the GUI's post-attack phase share)."""
    from advexplorer.core.saliency import explain_attack

    clean_class = int(result.clean_prediction[0])
    adversarial_class = int(result.adversarial_prediction[0])
    class_before = {"clean": clean_class, "each": clean_class, "adversarial": adversarial_class,
                    "label": request.label,
                    "target": None if result.targets is None else int(result.targets[0]),
                    }[request.saliency_class]
    class_after = adversarial_class if request.saliency_class == "each" else class_before
    return explain_attack(
        classifier, images, result.adversarial.detach(), method=request.saliency,
        class_index=class_before, class_index_after=class_after,
        diagnostic_mask=request.diagnostic_mask, flipped=bool(result.flipped[0]), seed=result.seed)


def run_steps(request: RunRequest) -> Generator[AttackStep, None, RunOutcome]:
    """Attack, then score the 8-bit export, then (if asked) explain and measure robustness."""
    started = time.perf_counter()
    classifier = request.model.classifier
    device = request.model.device
    images = request.image.tensor[None].to(device)
    mask = None if request.allowed_mask is None else request.allowed_mask.to(device)
    labels = None if request.label is None else torch.tensor([request.label], device=device)
    extras: dict[str, Any] = {}
    if request.surrogate is not None:  # transfer: crafted on the surrogate, judged by the target
        from advexplorer.core.transfer import transfer_steps

        transfer = yield from transfer_steps(request.surrogate.classifier, classifier, images, mask, labels,
                                             request.config)
        result = transfer.target
        surrogate = request.surrogate  # its card decides its preprocessing: recorded like the model's
        extras["transfer"] = {"surrogate": {
            "path": str(surrogate.path), "sha256": surrogate.sha256,
            "card_path": str(surrogate.card_path) if surrogate.card_path else None,
            "card_sha256": surrogate.card_sha256}} | transfer.to_json()
    else:
        result = yield from attack_steps(classifier, images, mask, labels, request.config)

    # What a user saves is an 8-bit PNG: does the rounded image still do what the attack did?
    adversarial_hwc = result.adversarial[0].detach().cpu().permute(1, 2, 0).numpy()
    exported = to_uint8(adversarial_hwc)
    exported_tensor = torch.from_numpy(exported.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
    with torch.no_grad():
        exported_probabilities = torch.softmax(classifier(exported_tensor).float(), dim=1)[0]
    predicted = int(exported_probabilities.argmax())
    if result.targets is not None:
        exported_success = predicted == int(result.targets[0])
    else:
        exported_success = predicted != int(result.reference[0])

    explanation = robustness = None
    if request.saliency:
        explanation = explain_request(request, classifier, images, result)
    if request.robustness or request.saliency:
        from advexplorer.core.robustness import robustness_summary

        robustness = robustness_summary(
            classifier, images, allowed_mask=mask, norm=request.config.norm,
            eps=request.config.eps, label=request.label, seed=result.seed)
    from advexplorer.core.flags import flags_to_json, run_flags

    # Flags for an unreliable evaluation are part of every run (advexplorer.core.flags).
    extras["flags"] = flags_to_json(run_flags(classifier, images, mask, labels, request.config, result,
                                              model_notes=request.model.notes))
    extras["attack_notes"] = list(result.notes)
    if result.succeeded_by is not None:
        extras["ensemble"] = {"succeeded_by": result.succeeded_by[0]}
    return RunOutcome(result=result, exported=exported, exported_probabilities=exported_probabilities.cpu(),
                      exported_success=bool(exported_success), wall_time_s=time.perf_counter() - started,
                      explanation=explanation, robustness=robustness, extras=extras)


def run(request: RunRequest, on_step=None) -> RunOutcome:
    """Run :func:`run_steps` to completion; ``on_step(step)`` sees every step."""
    return drive(run_steps(request), on_step)


def _prediction(probabilities: torch.Tensor, classes: tuple[str, ...], k: int = 5) -> dict[str, Any]:
    probabilities = probabilities.detach().float().cpu()
    top = torch.topk(probabilities, min(k, probabilities.numel()))
    index = int(top.indices[0])
    return {
        "index": index, "class": classes[index], "probability": float(top.values[0]),
        "top5": [{"index": int(i), "class": classes[int(i)], "probability": float(p)}
                 for p, i in zip(top.values, top.indices)],
    }


def versions() -> dict[str, str]:
    """Versions that decide whether a run can be reproduced bit for bit (torchvision's read
    without importing it, which costs seconds)."""
    from advexplorer.io.torchvision_import import torchvision_version

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision_version(), "numpy": np.__version__,
            "advexplorer": advexplorer.__version__}


def _file_entry(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from advexplorer.io.hashing import sha256_file

    path = Path(path)
    return {"path": str(path.resolve()), "sha256": sha256_file(path)}


def trajectory_classes(result: AttackResult, k: int = 3) -> list[int]:
    """The classes worth plotting: top-k before and after, plus the label and the target."""
    clean = torch.topk(result.clean_probabilities[0], min(k, result.clean_probabilities.shape[1])).indices
    after = torch.topk(result.adversarial_probabilities[0], min(k, result.clean_probabilities.shape[1])).indices
    chosen = [int(i) for i in torch.cat([clean, after]).tolist()]
    chosen.append(int(result.reference[0]))
    if result.targets is not None:
        chosen.append(int(result.targets[0]))
    return list(dict.fromkeys(chosen))


def build_record(request: RunRequest, outcome: RunOutcome) -> dict[str, Any]:
    """The ``record.json`` content of a run (see README for the fields)."""
    result = outcome.result
    card = request.model.card
    classes = card.classes
    norms = {k: float(v[0]) for k, v in perturbation_norms(result.perturbation).items()}
    for key in ("l0", "l0_pixels"):
        norms[key] = int(norms[key])
    exported_delta = outcome.exported.astype(np.float32) / 255.0 - \
        request.image.tensor.permute(1, 2, 0).numpy()
    tracked = trajectory_classes(result)
    record: dict[str, Any] = {
        "advexplorer_record": RECORD_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command_line": request.command_line,
        "cwd": os.getcwd(),
        "model": {"path": str(request.model.path), "sha256": request.model.sha256,
                  "format": request.model.format, "notes": list(request.model.notes),
                  "card_path": str(request.model.card_path) if request.model.card_path else None,
                  "card_sha256": request.model.card_sha256, "card": card.to_json()},
        "image": {"path": str(request.image.path) if request.image.path else None,
                  "sha256": request.image.sha256, "file_size": list(request.image.file_size),
                  "notes": list(request.image.notes), **(request.image.provenance or {})},
        "mask": {"mode": request.mask_mode,
                 "path": str(Path(request.mask_path).resolve()) if request.mask_path else None,
                 "sha256": (_file_entry(request.mask_path) or {}).get("sha256"),
                 "allowed_fraction": 1.0 if request.allowed_mask is None
                 else float(request.allowed_mask.float().mean())},
        "diagnostic": _file_entry(request.diagnostic_path),
        "attack": result.config.to_json() | {
            "step_size_used": float(result.config.effective_step_size(result.config.eps))},
        "label": None if request.label is None else {"index": request.label, "name": classes[request.label]},
        "target": None if result.targets is None else
        {"index": int(result.targets[0]), "name": classes[int(result.targets[0])]},
        "device": str(request.model.device),
        "versions": versions(),
        "prediction_before": _prediction(result.clean_probabilities[0], classes),
        "prediction_after": _prediction(result.adversarial_probabilities[0], classes),
        "success": bool(result.success[0]),
        "flipped": bool(result.flipped[0]),
        "norms": norms,
        "steps_run": int(result.steps_run[0]),
        "forward_passes": int(result.forward_passes),
        "backward_passes": int(result.backward_passes),
        "trajectory": {
            "step": [index for _, index in result.trajectory_steps],
            "restart": [restart for restart, _ in result.trajectory_steps],
            "loss": [float(v) for v in result.loss_trajectory[:, 0].tolist()],
            "probabilities": {classes[c]: [float(v) for v in result.probability_trajectory[:, 0, c].tolist()]
                              for c in tracked},
        },
        "exported_png": {
            "file": "adversarial.png",
            "prediction": _prediction(outcome.exported_probabilities, classes),
            "success": outcome.exported_success,
            "still_flips": int(outcome.exported_probabilities.argmax()) != int(result.clean_prediction[0]),
            "linf": float(np.abs(exported_delta).max()),
        },
        "wall_time_s": round(outcome.wall_time_s, 4),
        "files": {role: FILES[role] for role in ("input", "perturbation", "adversarial", "mask")},
    }
    if request.diagnostic_mask is not None:
        record["files"]["diagnostic"] = FILES["diagnostic"]
    if outcome.explanation is not None:
        record["saliency"] = outcome.explanation.to_json()
        record["saliency_class"] = request.saliency_class
        record["files"].update(saliency_before=FILES["saliency_before"], saliency_after=FILES["saliency_after"])
    if outcome.robustness is not None:
        record["robustness"] = outcome.robustness.to_json()
    if request.annotations:
        record["annotations"] = request.annotations
    record.update({k: v for k, v in outcome.extras.items()
                   if k in ("defence", "precision", "flags", "attack_notes", "ensemble", "transfer")})
    # Non-finite measurements ("not measured") become null: record.json is strict JSON.
    return jsonable(record)


def check_output_dir(out_dir: str | Path) -> Path:
    """An output folder must be new or empty: results never mix with other files."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UserError(f"--out {out_dir} is a file; give a new or empty folder.")
        if any(out_dir.iterdir()):
            raise UserError(f"--out {out_dir} is not empty; give a new or empty folder so no "
                            "existing file is overwritten or mixed with this run.")
    if not out_dir.parent.exists():
        raise UserError(f"The parent folder of --out ({out_dir.parent}) does not exist.")
    return out_dir


def write_run_dir(out_dir: str | Path, request: RunRequest, outcome: RunOutcome,
                  record: dict[str, Any] | None = None) -> Path:
    """The CLI's run folder (``--out DIR``): refused unless new or empty, then written like
    :func:`write_run_folder`; the record keeps the command line as given."""
    out_dir = check_output_dir(out_dir)
    record = record if record is not None else build_record(request, outcome)
    return _write_folder(out_dir, record, run_arrays(request, outcome))


def write_run_folder(folder: str | Path, request: RunRequest, outcome: RunOutcome,
                     record: dict[str, Any] | None = None, *, overwrite: bool = False) -> Path:
    """Save a finished run held in memory (the GUI's *Save run folder*, a report's runs) as a
    run folder that ``advexplorer reproduce`` and ``advexplorer report`` read.

    ``folder`` must be new or empty unless ``overwrite``. Written all or nothing. Masks painted
    in the app (no mask file) are stored in the folder at the image's size and the record points
    to them, and a command line such as ``advexplorer gui`` is replaced in the record by the
    equivalent ``advexplorer attack ... --out FOLDER`` (``started_from`` keeps the original), so
    the record names real files and a command a reader can run. ``record`` defaults to
    :func:`build_record` (pass the one kept with the run so its creation time stays).
    Raises :class:`UserError` (destination not writable or not empty).
    """
    record = record if record is not None else build_record(request, outcome)
    return _write_folder(folder, record, run_arrays(request, outcome), overwrite=overwrite,
                         command_as_cli=True)


def run_arrays(request: RunRequest, outcome: RunOutcome) -> RunArrays:
    """The arrays of a run folder, as numpy copies of the request and the outcome."""
    allowed = request.allowed_mask if request.allowed_mask is not None else \
        torch.ones(tuple(request.model.card.input_size))
    source_mask = source_diagnostic = None
    if request.allowed_mask is not None and request.mask_mode != "none" and request.mask_path is None:
        source_mask = mask_at_file_size(request, request.allowed_mask,
                                        protect=request.mask_mode == "protect")
    if request.diagnostic_mask is not None and request.diagnostic_path is None:
        source_diagnostic = mask_at_file_size(request, request.diagnostic_mask)
    explanation = outcome.explanation
    return RunArrays(
        input_image=request.image.tensor.detach().cpu().numpy().astype(np.float32),
        perturbation=outcome.perturbation.astype(np.float32),
        adversarial_png=np.asarray(outcome.exported, dtype=np.uint8),
        allowed_mask=allowed.detach().cpu().numpy() != 0,
        diagnostic_mask=None if request.diagnostic_mask is None else
        request.diagnostic_mask.detach().cpu().numpy() != 0,
        saliency_before=None if explanation is None else np.asarray(explanation.before, dtype=np.float32),
        saliency_after=None if explanation is None else np.asarray(explanation.after, dtype=np.float32),
        source_mask=source_mask, source_diagnostic=source_diagnostic)


def mask_at_file_size(request: RunRequest, mask: torch.Tensor, *, protect: bool = False) -> np.ndarray | None:
    """A mask at the model's input size brought back to the image file's size, so that
    reading it like a ``--mask``/``--protect``/``--diagnostic`` file gives exactly ``mask``.

    With ``protect`` the file marks the pixels that must not change (1 − allowed). Pixels the
    model never sees (outside a centre crop) are 0. None when no file can give ``mask`` back
    exactly (an image smaller than the model's input, where nearest resampling loses pixels).
    """
    from advexplorer.io.images import crop_box, mask_to_model

    card = request.model.card
    width, height = request.image.file_size
    top, left, crop_height, crop_width = crop_box(height, width, card)
    used = (mask.detach().cpu() != 0).float()
    wanted = 1.0 - used if protect else used
    inside = torch.nn.functional.interpolate(wanted[None, None], size=(crop_height, crop_width),
                                             mode="nearest-exact")[0, 0]
    at_file_size = np.zeros((height, width), np.uint8)
    at_file_size[top:top + crop_height, left:left + crop_width] = inside.numpy() != 0
    read_back = mask_to_model(at_file_size, card)
    if protect:
        read_back = 1.0 - read_back
    return at_file_size if torch.equal(read_back, used) else None
