"""The classifier wrapper: pixel space [0,1] in, plain N×C logits out.

Attacks, saliency and metrics all see the model through :class:`Classifier`, so that
normalisation is applied exactly once, inside the model, and ε stays in pixel units.

Logit rule for models that do not return a plain tensor (documented for users):

1. a tensor is used as it is;
2. a mapping: the value under ``"logits"``, else ``"out"``, else its first tensor value;
3. an object with a ``logits`` attribute (e.g. a HuggingFace output or a namedtuple field);
4. a tuple/list/namedtuple: its first element (recursively) — torchvision's Inception and
   GoogLeNet auxiliary outputs put the main logits first;
5. a single-logit head (N×1, a sigmoid classifier) becomes two classes ``[0, z]``, whose
   softmax is exactly ``[1-σ(z), σ(z)]``.

Anything else (N×C×H×W segmentation maps, scalars) is refused with a message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from advexplorer.errors import UserError


def extract_logits(output) -> torch.Tensor:
    """Apply the logit rule of the module docstring to a model's raw output."""
    if isinstance(output, torch.Tensor):
        logits = output
    elif isinstance(output, Mapping):
        for key in ("logits", "out"):
            if key in output and isinstance(output[key], torch.Tensor):
                return _as_two_dim(output[key])
        tensors = [v for v in output.values() if isinstance(v, torch.Tensor)]
        if not tensors:
            raise UserError("The model returned a dict without tensors; it must return logits.")
        logits = tensors[0]
    elif hasattr(output, "logits") and isinstance(getattr(output, "logits"), torch.Tensor):
        logits = output.logits
    elif isinstance(output, Sequence) and not isinstance(output, (str, bytes)) and len(output) > 0:
        return extract_logits(output[0])
    else:
        raise UserError(
            f"The model returned {type(output).__name__}; it must return N×C logits "
            "(a tensor, or a tuple/dict whose first entry or 'logits' is one)."
        )
    return _as_two_dim(logits)


def _as_two_dim(logits: torch.Tensor) -> torch.Tensor:
    if logits.dim() != 2:
        raise UserError(
            f"The model's output has shape {tuple(logits.shape)}; AdvExplorer needs N×C class "
            "logits from an image classifier."
        )
    if logits.shape[1] == 1:  # sigmoid head: class 1 has logit z, class 0 has logit 0
        logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
    return logits


class Classifier(nn.Module):
    """Wrap a model so it takes images in [0,1] and returns N×C logits.

    ``mean``/``std`` are the model's normalisation (per channel). Parameters are frozen
    (``requires_grad=False``) so that input gradients do not build weight gradients.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float],
                 classes: Sequence[str] | None = None):
        super().__init__()
        self.model = model
        _eval_mode(model)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        channels = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1))
        self.classes = tuple(classes) if classes is not None else None
        # Skip the normalisation arithmetic when it is the identity.
        self._identity = bool(torch.all(self.mean == 0) and torch.all(self.inv_std == 1))

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images if self._identity else (images - self.mean) * self.inv_std
        return extract_logits(self.model(x))

    def train(self, mode: bool = True):  # the wrapped model always stays in eval mode
        self.training = False
        _eval_mode(self.model)
        return self


def _eval_mode(model: nn.Module) -> None:
    """Put a model in eval mode; torch.export modules refuse ``eval()`` and are already fixed."""
    try:
        model.eval()
    except (NotImplementedError, RuntimeError):
        pass


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; otherwise the named device."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"Unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"Device {name!r} was asked for but no CUDA GPU is available; use --device cpu or auto.")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"Device {name!r} was asked for but MPS is not available; use --device cpu or auto.")
    return device
