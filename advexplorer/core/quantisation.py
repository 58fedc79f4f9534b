"""The same model at lower precision: float16, bfloat16, int8 — and attacks on each.

* ``float16`` / ``bfloat16`` — a copy of the network cast to that type; the input is cast
  on the way in and the logits back to float32. Autograd works natively, so attacks see
  the low-precision model's own gradient.
* ``int8`` — PyTorch *dynamic* quantisation (``torch.ao.quantization.quantize_dynamic``):
  the weights of every ``nn.Linear`` (and LSTM/GRU) become int8 and activations are
  quantised on the fly. Convolutions are **not** quantised by dynamic quantisation (that
  needs static quantisation with calibration data and a fused, quantisation-ready network,
  which arbitrary user models are not), so a CNN keeps its convolutions in float32 and only
  its classifier head goes to int8; :attr:`QuantisedClassifier.quantised_layers` says
  which layers were converted. TorchScript and torch.export models cannot be converted and
  are refused with a message.
* ``int8-static`` — PyTorch *static* quantisation in FX graph mode
  (``torch.ao.quantization.quantize_fx``: ``prepare_fx`` → calibration → ``convert_fx``,
  the default qconfig of the active quantised engine, e.g. x86/fbgemm): convolutions *and*
  linear layers become int8, with activation ranges observed on calibration images. It
  needs a network ``torch.fx`` can trace symbolically (plain torchvision CNNs such as the
  bundled histology MobileNetV3 can; networks with data-dependent Python control flow, and
  TorchScript, cannot) and calibration images; a network that cannot be traced is refused
  with the tracer's reason and the advice to use dynamic ``int8``.

Quantised int8 kernels have no autograd, so the int8 model is attacked with BPDA through
the quantiser (Athalye et al. 2018, https://arxiv.org/abs/1802.00420): the forward pass is
the int8 model, the backward pass the float32 one (straight-through). :func:`transfer`
scores, on the quantised model, adversarial images made against float32.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from advexplorer.core.attacks import AttackConfig, run_attack
from advexplorer.core.defences import HeldCount, robust_count
from advexplorer.core.model import Classifier, check_finite_logits, extract_logits
from advexplorer.config import parse_precision
from advexplorer.errors import UserError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DYNAMIC_LAYERS = (nn.Linear, nn.LSTM, nn.GRU)
#: Calibration images per forward pass of static quantisation.
CALIBRATION_BATCH = 32


def _normalised(classifier: Classifier, images: torch.Tensor) -> torch.Tensor:
    """What the network itself sees: the classifier's normalisation applied to pixels."""
    return images if classifier._identity else (images - classifier.mean) * classifier.inv_std


def static_int8(network: nn.Module, classifier: Classifier, calibration: torch.Tensor
                ) -> tuple[nn.Module, list[str], str]:
    """Static int8 quantisation of ``network`` in FX graph mode, calibrated on ``calibration``
    (N×C×H×W pixels in [0,1]); returns the converted network, the names of its quantised
    layers and the engine used."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    engine = torch.backends.quantized.engine
    if engine == "none":  # pragma: no cover - a build without quantised kernels
        raise UserError("This PyTorch build has no quantised kernels; int8-static cannot run here.")
    inputs = _normalised(classifier, calibration.to(classifier.mean.device)).cpu()
    try:
        prepared = prepare_fx(network, get_default_qconfig_mapping(engine), example_inputs=(inputs[:1],))
    except Exception as error:  # torch.fx's TraceError and friends: the network is not traceable
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"int8-static needs a network torch.fx can trace, and this one cannot be traced "
                        f"({reason[:160]}); use --precision int8 (dynamic quantisation of its Linear "
                        "layers) instead.") from None
    with torch.no_grad():
        for start in range(0, len(inputs), CALIBRATION_BATCH):
            prepared(inputs[start:start + CALIBRATION_BATCH])
    converted = convert_fx(prepared)
    layers = [name for name, module in converted.named_modules()
              if name and ".quantized" in type(module).__module__   # fused conv+ReLU are intrinsic ones
              and hasattr(module, "weight")]
    if not layers:
        raise UserError("int8-static found no convolution or linear layer to quantise in this network.")
    return converted, layers, engine


def _plain_module(network: nn.Module, precision: str) -> None:
    if isinstance(network, (torch.jit.ScriptModule, torch.fx.GraphModule)) or \
            type(network).__name__ in ("ExportedProgram",):
        raise UserError(f"{precision} needs a plain PyTorch module (a state_dict model); TorchScript "
                        "and torch.export models cannot be converted. Load the weights as a state_dict.")


class QuantisedClassifier(nn.Module):
    """``classifier`` at ``precision``; int8 is attacked with BPDA through the quantiser.

    ``calibration`` (N×C×H×W pixels) is needed by ``int8-static`` only: the images whose
    activations set the quantisation ranges."""

    def __init__(self, classifier: Classifier, precision: str, calibration: torch.Tensor | None = None):
        super().__init__()
        self.precision = parse_precision(precision)
        self.reference = classifier
        self.classes = getattr(classifier, "classes", None)
        self.quantised_layers: list[str] = []
        self.calibration_images = 0
        self.engine = None
        if self.precision == "float32":
            self.low = classifier
            return
        _plain_module(classifier.model, self.precision)
        network = copy.deepcopy(classifier.model).eval()
        if self.precision == "int8-static":
            if classifier.device.type != "cpu":
                raise UserError("int8 static quantisation runs on the CPU only; use --device cpu.")
            if calibration is None or len(calibration) == 0:
                raise UserError("int8-static needs calibration images (a screen uses its cohort, an attack "
                                "the card's samples and the image); none were given.")
            network, self.quantised_layers, self.engine = static_int8(network, classifier, calibration)
            self.calibration_images = int(len(calibration))
        elif self.precision == "int8":
            if classifier.device.type != "cpu":
                raise UserError("int8 dynamic quantisation runs on the CPU only; use --device cpu.")
            self.quantised_layers = [name for name, module in network.named_modules()
                                     if isinstance(module, DYNAMIC_LAYERS)]
            if not self.quantised_layers:
                raise UserError("int8 dynamic quantisation converts Linear/LSTM/GRU layers and this model "
                                "has none, so it would stay float32.")
            network = torch.ao.quantization.quantize_dynamic(network, set(DYNAMIC_LAYERS), dtype=torch.qint8)
        else:
            network = network.to(DTYPES[self.precision])
        mean = classifier.mean.flatten().tolist()
        std = (1.0 / classifier.inv_std.flatten()).tolist()
        self.low = Classifier(network, mean, std, classifier.classes, output=classifier.output,
                              output_key=classifier.output_key).to(classifier.device)

    @property
    def device(self) -> torch.device:
        return self.reference.device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.precision == "float32":
            return self.low(images)
        if self.precision in ("int8", "int8-static"):
            with torch.no_grad():
                quantised = self.low(images.detach()).float()
            if not images.requires_grad:
                return quantised
            reference = self.reference(images)  # BPDA: the float32 model's gradient
            return reference + (quantised - reference).detach()
        return self._low_precision(images)

    def _low_precision(self, images: torch.Tensor) -> torch.Tensor:
        dtype = DTYPES[self.precision]
        normalised = images if self.low._identity else (images - self.low.mean) * self.low.inv_std
        logits = extract_logits(self.low.model(normalised.to(dtype)), self.low.output_key, self.low.output).float()
        check_finite_logits(logits, f"at {self.precision}")
        return logits

    def describe(self) -> str:
        if self.precision == "int8-static":
            return (f"int8 static quantisation (torch.ao FX graph mode, {self.engine} engine, calibrated on "
                    f"{self.calibration_images} image(s)) of {len(self.quantised_layers)} layer(s), convolutions "
                    "and linear layers; attacked with BPDA through the quantiser")
        if self.precision == "int8":
            return (f"int8 dynamic quantisation of {len(self.quantised_layers)} layer(s) "
                    f"({', '.join(self.quantised_layers[:4])}{'…' if len(self.quantised_layers) > 4 else ''}); "
                    "convolutions stay float32; attacked with BPDA through the quantiser")
        return f"{self.precision} weights and activations"


@dataclass(frozen=True)
class PrecisionReport:
    precision: str
    how: str
    clean: HeldCount
    robust_direct: HeldCount      # attacked directly (BPDA for int8)
    robust_transfer: HeldCount    # adversarial images made on float32, scored here

    def to_json(self) -> dict:
        return {"precision": self.precision, "how": self.how, "clean_accuracy": self.clean.to_json(),
                "robust_direct": self.robust_direct.to_json(),
                "robust_transfer_from_float32": self.robust_transfer.to_json()}


def transfer(classifier: Classifier, quantised: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             config: AttackConfig, allowed_mask: torch.Tensor | None = None) -> HeldCount:
    """Craft adversarial images on the float32 model; count how many the quantised one still
    classifies correctly."""
    result = run_attack(classifier, images, allowed_mask, labels, config)
    with torch.no_grad():
        predictions = quantised(result.adversarial.detach()).argmax(1)
    return HeldCount(int((predictions == labels).sum()), len(labels))


def compare_precisions(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor,
                       config: AttackConfig, precisions=("float32", "float16", "bfloat16", "int8"),
                       allowed_mask: torch.Tensor | None = None,
                       calibration: torch.Tensor | None = None) -> list[PrecisionReport]:
    """Clean accuracy, direct robust accuracy and transfer robust accuracy per precision
    (``int8-static`` is calibrated on ``calibration``, by default on ``images``)."""
    reports = []
    for precision in precisions:
        model = QuantisedClassifier(classifier, precision, images if calibration is None else calibration)
        with torch.no_grad():
            clean = HeldCount(int((model(images).argmax(1) == labels).sum()), len(labels))
        reports.append(PrecisionReport(
            precision, model.describe(), clean,
            robust_count(model, images, labels, config, allowed_mask),
            transfer(classifier, model, images, labels, config, allowed_mask)))
    return reports
