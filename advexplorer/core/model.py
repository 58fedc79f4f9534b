"""The classifier wrapper: pixel space [0,1] in, plain N×C logits out.

Attacks, saliency and metrics all see the model through :class:`Classifier`, so that
normalisation is applied exactly once, inside the model, and ε stays in pixel units.

Logit rule for models that do not return a plain tensor (documented for users):

1. a tensor is used as it is;
2. a mapping: the value under the card's ``output_key`` if it names one, else ``"logits"``,
   else ``"out"``, else its only tensor; a mapping with several tensors and none of those
   keys is refused with a message that names them;
3. an object with a ``logits`` attribute (e.g. a HuggingFace output or a namedtuple field);
4. a tuple/list/namedtuple: its first element (recursively) — torchvision's Inception and
   GoogLeNet auxiliary outputs put the main logits first;
5. a single-logit head (N×1, a sigmoid classifier) becomes two classes ``[0, z]``, whose
   softmax is exactly ``[1-σ(z), σ(z)]``.

Models that output **probabilities** (the card's ``"output": "probabilities"``, or detected
by the loader's dry run) have them turned into log-probabilities, ``log p`` (``[log(1-p),
log p]`` for a single sigmoid output): softmax(log p) = p, so every probability, margin and
loss downstream is the model's own.

Anything else (N×C×H×W segmentation maps, scalars) is refused with a message.

Every forward pass is checked: logits that are NaN or infinite raise
:class:`NonFiniteLogitsError` (an undefined prediction must never be counted as "robust" or
"attack failed"), and an exception inside the model's own forward becomes a one-line
:class:`ModelForwardError` that says on which input shape it happened.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from advexplorer.errors import UserError


OUTPUT_KINDS = ("logits", "probabilities")


class NonFiniteLogitsError(UserError):
    """The model returned NaN or infinite logits: its prediction is undefined there."""


class ModelForwardError(UserError):
    """The model's own forward pass raised (or ran out of memory) on the input it was given."""


def select_scores(output, output_key: str | None = None) -> torch.Tensor:
    """The tensor of class scores in a model's raw output (rules 1–4 of the module docstring)."""
    if output_key is not None:
        if isinstance(output, Mapping) and isinstance(output.get(output_key), torch.Tensor):
            return output[output_key]
        if isinstance(getattr(output, output_key, None), torch.Tensor):
            return getattr(output, output_key)
        raise UserError(f"The model's output has no tensor under {output_key!r} (the card's "
                        f"'output_key'); it returned {_describe(output)}.")
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        for key in ("logits", "out"):
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
        tensors = [key for key, value in output.items() if isinstance(value, torch.Tensor)]
        if len(tensors) == 1:
            return output[tensors[0]]
        if not tensors:
            raise UserError("The model returned a dict without tensors; it must return logits.")
        names = ", ".join(repr(str(key)) for key in tensors)
        raise UserError(
            f"The model returns a dict with tensors under {names} and none is called 'logits'; "
            f'say which one holds the class logits with "output_key": "{tensors[0]}" (for example) '
            "in the model card."
        )
    if isinstance(getattr(output, "logits", None), torch.Tensor):
        return output.logits
    if isinstance(output, Sequence) and not isinstance(output, (str, bytes)) and len(output) > 0:
        return select_scores(output[0])
    raise UserError(
        f"The model returned {type(output).__name__}; it must return N×C logits "
        "(a tensor, or a tuple/dict whose first entry or 'logits' is one)."
    )


def scores_to_logits(scores: torch.Tensor, kind: str = "logits") -> torch.Tensor:
    """N×C logits from N×C (or N×1) scores that are logits or probabilities (rule 5 and below)."""
    if scores.dim() != 2:
        raise UserError(
            f"The model's output has shape {tuple(scores.shape)}; AdvExplorer needs N×C class "
            "logits from an image classifier."
        )
    if kind == "probabilities":
        if scores.shape[1] == 1:  # one sigmoid probability p of class 1: classes [1 - p, p]
            scores = torch.cat([1 - scores, scores], dim=1)
        # log p, with p = 0 kept finite (and its gradient zero) rather than -inf, whose
        # gradient would turn into NaN in the chain rule.
        return torch.log(scores.clamp_min(torch.finfo(scores.dtype).tiny))
    if scores.shape[1] == 1:  # sigmoid head: class 1 has logit z, class 0 has logit 0
        scores = torch.cat([torch.zeros_like(scores), scores], dim=1)
    return scores


def extract_logits(output, output_key: str | None = None, kind: str = "logits") -> torch.Tensor:
    """Apply the logit rule of the module docstring to a model's raw output."""
    return scores_to_logits(select_scores(output, output_key), kind)


def check_finite_logits(logits: torch.Tensor, where: str = "") -> None:
    """Raise :class:`NonFiniteLogitsError` if any logit is NaN or infinite.

    One reduction and one device synchronisation. ``where`` completes the message
    (e.g. "on a 4×3×64×64 batch").
    """
    if bool(torch.isfinite(logits).all()):
        return
    finite_rows = torch.isfinite(logits).all(dim=1)
    rows = (~finite_rows).nonzero().flatten().tolist()
    what = "NaN" if bool(torch.isnan(logits).any()) else "infinite"
    if logits.shape[0] > 1:
        which = ", ".join(str(r) for r in rows[:5]) + (", …" if len(rows) > 5 else "")
        what = f"{what} logits for {len(rows)} of {logits.shape[0]} images " \
               f"({'rows' if len(rows) > 1 else 'row'} {which})"
    else:
        what = f"{what} logits"
    raise NonFiniteLogitsError(
        f"The model returned {what}{' ' + where if where else ''}, so its prediction there is "
        "undefined; the run was stopped rather than counted as robust. The model is numerically "
        "unstable on these inputs (a log of 0 or a division by zero inside it, or weights that hold "
        "NaN): fix the model, or check the card's 'mean' and 'std'."
    )


def shape_text(images: torch.Tensor) -> str:
    """``1×3×224×224 image`` / ``8×3×224×224 batch``: how messages name an input."""
    dims = "×".join(str(d) for d in images.shape)
    return f"{dims} image" if images.dim() == 4 and images.shape[0] == 1 else f"{dims} batch"


def is_out_of_memory(error: BaseException) -> bool:
    """CPU and GPU allocators say "not enough memory" / "out of memory" in a RuntimeError."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("not enough memory" in text or "out of memory" in text)


def error_name_and_message(error: BaseException) -> tuple[str, str]:
    """``("ValueError", "bad input")``, also for TorchScript, which wraps the model's own
    exception in ``torch.jit.Error`` with ``builtins.ValueError: bad input`` as its last line."""
    line = last_line(error)
    if isinstance(error, torch.jit.Error):
        head, separator, rest = line.partition(": ")
        if separator and all(part.isidentifier() for part in head.split(".")):
            return head.rpartition(".")[2], rest
    return type(error).__name__, line


def last_line(error: BaseException) -> str:
    """The informative line of an exception (TorchScript puts it last, after a stack)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


class Classifier(nn.Module):
    """Wrap a model so it takes images in [0,1] and returns N×C logits.

    ``mean``/``std`` are the model's normalisation (per channel). Parameters are frozen
    (``requires_grad=False``) so that input gradients do not build weight gradients.
    ``output`` says whether the model returns logits or probabilities and ``output_key``
    which entry of a dict output holds them (see the module docstring).
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float],
                 classes: Sequence[str] | None = None, *, output: str = "logits",
                 output_key: str | None = None):
        super().__init__()
        if output not in OUTPUT_KINDS:
            raise UserError(f"A model's output is 'logits' or 'probabilities', not {output!r}.")
        std_values = torch.tensor(std, dtype=torch.float32)
        if not bool(torch.isfinite(torch.tensor(mean, dtype=torch.float32)).all()) or \
                not bool((std_values > 0).all() & torch.isfinite(1.0 / std_values).all()):
            raise UserError(f"Normalisation mean {list(mean)} / std {list(std)} is not usable: every "
                            "value must be a finite number and every std positive.")
        self.output = output
        self.output_key = output_key
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

    def raw_output(self, images: torch.Tensor):
        """The wrapped model's own output on normalised ``images``; its failures as one line."""
        x = images if self._identity else (images - self.mean) * self.inv_std
        try:
            return self.model(x)
        except UserError:
            raise
        except Exception as error:  # the model's code, not ours: say what and where
            if is_out_of_memory(error):
                raise ModelForwardError(
                    f"The model ran out of memory on a {shape_text(images)} ({last_line(error)}); "
                    "use a smaller --batch-size, check 'input_size' in the card, or use a device "
                    "with more memory."
                ) from error
            name, message = error_name_and_message(error)
            raise ModelForwardError(
                f"The model's forward raised {name} on a {shape_text(images)}: {message}; "
                "check 'input_size' and 'channels' in the card."
            ) from error

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = extract_logits(self.raw_output(images), self.output_key, self.output)
        check_finite_logits(logits, f"on a {shape_text(images)}")
        return logits

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
