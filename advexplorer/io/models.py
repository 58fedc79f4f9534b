"""Loading a classifier and its model card, safely.

The file is read by :mod:`advexplorer.io.model_formats` (TorchScript, state_dict +
architecture, safetensors, ``.pt2`` programs after a safety check, ONNX, Hugging Face
folders; a pickled model only with ``trust_pickle=True``), decided by content rather than
trusted file names.

The model is wrapped in :class:`advexplorer.core.model.Classifier` (normalisation inside,
[0,1] pixel space outside) and checked by a dry run at the card's size (see
:func:`_check_dry_run`): a model that does not fit its card, returns NaN, or returns
probabilities where logits are expected fails here with a message — or, for probabilities,
is adapted with a note — rather than later as a wrong result.

Making a card for a model file is :mod:`advexplorer.io.card_inference`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from advexplorer.core.model import (
    Classifier, ModelForwardError, is_out_of_memory, last_line, pick_device, select_scores)
from advexplorer.errors import UserError
from advexplorer.io.cards import ModelCard, card_path_for, load_card
from advexplorer.io.hashing import sha256_file
from advexplorer.io.model_formats import _load_raw


@dataclass
class LoadedModel:
    """A ready-to-attack model: the wrapped classifier plus where it came from."""

    classifier: Classifier
    card: ModelCard
    path: Path
    card_path: Path | None
    sha256: str
    card_sha256: str | None
    device: torch.device
    format: str
    #: What the loader decided about the model that a user should know (e.g. "its outputs
    #: are probabilities; their logarithms are used as logits"). Recorded with each run.
    notes: list[str] = field(default_factory=list)
    #: ONNX only: the largest |converted torch − onnxruntime| logit on the dry run.
    reference_difference: float | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.card.classes


def load_model(path: str | Path, card: ModelCard | str | Path | None = None, device: str = "auto",
               trust_pickle: bool = False) -> LoadedModel:
    """Load a classifier and its card, wrap it for pixel space and check it on a dry run."""
    path = Path(path)
    if not path.is_file() and not path.is_dir():
        raise UserError(f"No model file at {path}. Check the path (--model).")
    if isinstance(card, ModelCard):
        card_path = card.path
    else:
        card_path = Path(card) if card is not None else card_path_for(path)
        if not card_path.is_file():
            raise UserError(
                f"No model card for {path.name}: expected {card_path.name} beside it. A card is a "
                "JSON file giving 'classes', 'input_size', 'channels', 'mean' and 'std' (see README)."
            )
        card = load_card(card_path)
    target = pick_device(device)
    notes: list[str] = []
    raw, fmt = _load_raw(path, card, target, trust_pickle, notes)
    try:
        classifier = Classifier(raw, card.mean, card.std, card.classes,
                                output_key=card.output_key).to(target)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"Could not move the model to {target} ({exc}).") from None
    notes += _check_dry_run(classifier, card, path)
    difference = _check_onnx_reference(path, classifier, card) if fmt == "onnx" else None
    if difference is not None:
        notes.append(f"{path.name} was converted from ONNX to torch; its logits differ from onnxruntime's "
                     f"by at most {difference:.2g} on the dry run.")
    return LoadedModel(
        classifier=classifier, card=card, path=path.resolve(), card_path=card_path.resolve() if card_path else None,
        sha256=_model_sha256(path), card_sha256=sha256_file(card_path) if card_path else None,
        device=target, format=fmt, notes=notes, reference_difference=difference,
    )


#: Converted ONNX logits may differ from onnxruntime's by float rounding (~1e-5); more
#: than this means the conversion changed what the model computes.
ONNX_TOLERANCE = 1e-3


def _check_onnx_reference(path: Path, classifier: Classifier, card: ModelCard) -> float:
    """Largest |converted − onnxruntime| output on the dry run's noise image; refuse a conversion
    that changed the model."""
    from advexplorer.io import onnx_models

    reference = onnx_models.OnnxReference(onnx_models.read_onnx(path).SerializeToString(), path.name)
    image = _probe_images(card, classifier.device, path)["noise"]
    normalised = image if classifier._identity else (image - classifier.mean) * classifier.inv_std
    difference = onnx_models.reference_difference(classifier.model, reference, normalised)
    if not difference <= ONNX_TOLERANCE:
        raise UserError(f"{path.name} converted to torch gives logits that differ from onnxruntime's by "
                        f"{difference:.3g} on the dry run, so attacks on it would not be attacks on your "
                        "model; export it again with a recent opset, or as TorchScript.")
    return difference


def _model_sha256(path: Path) -> str:
    """SHA-256 of the model file; of a folder, over its files' names and hashes in order."""
    if not path.is_dir():
        return sha256_file(path)
    import hashlib

    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(path).as_posix()}\0{sha256_file(item)}\n".encode())
    return digest.hexdigest()


def _probe_images(card: ModelCard, device: torch.device, path: Path) -> dict[str, torch.Tensor]:
    """The dry run's inputs at the card's size: seeded noise (image-like, varied), then grey,
    black and white (constant images that drive a model's outputs to their extremes)."""
    height, width = card.input_size
    shape = (1, card.channels, height, width)
    try:
        noise = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device)
        return {"noise": noise, "grey": torch.full_like(noise, 0.5), "black": torch.zeros_like(noise),
                "white": torch.ones_like(noise)}
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise UserError(f"There is not enough memory on {device} for one {'×'.join(map(str, shape))} "
                        f"image, the input size the card of {path.name} gives; check 'input_size'.") from None


def _check_dry_run(classifier: Classifier, card: ModelCard, path: Path) -> list[str]:
    """Run the model on a few images of the card's size; refuse what cannot be attacked.

    Checks, on the noise image: the forward runs (its errors and out-of-memory as one line);
    it returns one row of class scores per image, as many classes as the card lists; the
    scores are finite. Then, on every image the model handles, whether the scores are logits
    or probabilities (see :func:`_output_kind`), which is set on the classifier. A model may
    fail or return NaN on the constant images (per-image standardisation divides by a zero
    spread there) without being refused. Returns notes for the user (e.g. "probabilities").
    """
    height, width = card.input_size
    shape = f"1×{card.channels}×{height}×{width}"
    scores: dict[str, torch.Tensor] = {}
    for name, image in _probe_images(card, classifier.device, path).items():
        try:
            with torch.no_grad():
                scores[name] = select_scores(classifier.raw_output(image), card.output_key)
        except ModelForwardError as exc:
            if name != "noise":
                continue  # constant images only help to tell probabilities from logits
            cause = exc.__cause__ or exc
            if is_out_of_memory(cause):
                raise UserError(f"{path.name} runs out of memory on one {shape} input as its card describes "
                                f"({last_line(cause)}); check 'input_size' in the card, or use "
                                "--device cpu or a device with more memory.") from None
            raise UserError(
                f"{path.name} fails on a {shape} input as its card describes ({last_line(cause)}). "
                "Check 'input_size' and 'channels' in the card."
            ) from None
        if name == "noise":
            _check_scores_shape(scores[name], card, path)
    first = scores["noise"]
    if not bool(torch.isfinite(first).all()):
        what = "NaN" if bool(torch.isnan(first).any()) else "infinite"
        raise UserError(
            f"{path.name} returns {what} outputs on a {shape} test image, so none of its predictions "
            "can be trusted (an attack on it would report nonsense). Check the model's weights (they "
            "may hold NaN) and the card's 'mean' and 'std'."
        )
    kind, notes = _output_kind(card, scores, path)
    classifier.output = kind
    return notes


def _check_scores_shape(scores: torch.Tensor, card: ModelCard, path: Path) -> None:
    if scores.dim() != 2:
        raise UserError(
            f"{path.name}'s output has shape {tuple(scores.shape)}; AdvExplorer needs N×C class "
            "logits from an image classifier."
        )
    if scores.shape[0] != 1:
        raise UserError(f"{path.name} returned {scores.shape[0]} rows for one image; it must return N×C logits.")
    classes = 2 if scores.shape[1] == 1 else scores.shape[1]  # a single sigmoid output is two classes
    if classes != card.num_classes:
        raise UserError(
            f"{path.name} outputs {classes} classes but its card lists {card.num_classes} "
            f"({', '.join(card.classes[:5])}{', …' if card.num_classes > 5 else ''}). Fix 'classes' "
            "in the card or load the matching weights."
        )


#: How far a row of probabilities may sum from 1 (float16 softmax rounds to ~1e-3).
PROBABILITY_SUM_TOLERANCE = 1e-3


def _output_kind(card: ModelCard, scores: dict[str, torch.Tensor], path: Path) -> tuple[str, list[str]]:
    """Whether the model returns logits or probabilities, from the card or the dry run.

    Probabilities read as logits are silently wrong: softmax flattens them (a confident 0.99
    becomes 0.50), and a single sigmoid output in [0, 1] read as a logit always predicts
    class 1, so nothing ever flips and the model looks "robust". Rows in [0, 1] that sum to 1
    on every dry-run image are probabilities beyond reasonable doubt and are used as
    ``log p``; a single output in [0, 1] could be either, so the card must say.
    """
    if card.output == "logits":
        return "logits", []
    rows = torch.cat([s.float() for s in scores.values() if bool(torch.isfinite(s).all())])
    low, high = float(rows.min()), float(rows.max())
    in_unit_interval = low >= 0.0 and high <= 1.0
    as_log = ("their logarithms are used as logits (softmax of log p is p), so every probability "
              "shown is the model's own")
    if card.output == "probabilities":
        if not in_unit_interval:
            raise UserError(
                f'The card of {path.name} says "output": "probabilities", but the model returns values '
                f'from {low:.3g} to {high:.3g}, outside [0, 1]; write "output": "logits" or remove the field.'
            )
        return "probabilities", [f"The card says {path.name} outputs probabilities; {as_log}."]
    if rows.shape[1] >= 2:
        sums_to_one = bool(((rows.sum(dim=1) - 1).abs() <= PROBABILITY_SUM_TOLERANCE).all())
        if in_unit_interval and sums_to_one:
            return "probabilities", [
                f"{path.name} outputs probabilities (every row is in [0, 1] and sums to 1 on the dry "
                f'run); {as_log}. Write "output": "logits" in the card if that is wrong.']
        return "logits", []
    if in_unit_interval:
        raise UserError(
            f"{path.name} has a single output that stays between 0 and 1 on every dry-run image "
            f"({low:.3g} to {high:.3g}): it looks like a sigmoid probability, and read as a logit it "
            'would always predict the same class. Add "output": "probabilities" to the card if it is '
            'one (AdvExplorer then uses the classes [1 - p, p]), or "output": "logits" if it is a logit.'
        )
    return "logits", []
