"""The Import model dialog: make a card for a model that has none, as `advexplorer card` does.

Opened when a model has no card. The fields are pre-filled from what the file says (the
same inference as the CLI, :func:`advexplorer.io.card_inference.infer_card`), each with a tooltip;
every change is checked by a dry run off the GUI thread (the app's :class:`TaskRunner`),
and **Save card** writes ``MODEL.json`` beside the model after a last dry run. torch is
imported only inside the worker, never when this module is imported.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit,
                               QVBoxLayout)

from advexplorer.errors import UserError
from advexplorer.gui.worker import TaskRunner, call_task

TOOLTIPS = {
    "architecture": "torchvision or timm architecture of state_dict weights, e.g. torchvision.resnet18 or "
                    "timm.convnext_tiny. Inferred from the weights' key names and shapes; leave empty for "
                    "TorchScript, ONNX, .pt2 and Hugging Face folders.",
    "classes": "Class names in the order of the model's outputs, separated by commas. Their number must "
               "equal the number of outputs the dry run finds.",
    "input_size": "The size the model was trained on, N or HxW pixels (e.g. 224 or 256x192).",
    "normalization": "The model's input normalisation: imagenet, half (mean 0.5, std 0.5), none, or "
                     "MEAN,STD. Applied inside AdvExplorer, so attacks stay in pixel units.",
    "resize": "stretch: the whole image is resized to the input size; center-crop: the largest centred "
              "region with the input's aspect ratio is cut out first.",
}


def _infer(path: str, choices: dict):
    from advexplorer.io.card_inference import infer_card

    return infer_card(path, **choices)


def _save(path: str, choices: dict):
    from advexplorer.io.card_inference import infer_card, make_card

    inferred = infer_card(path, **choices)
    destination, _ = make_card(path, inferred, overwrite=True)
    return destination


class ImportModelDialog(QDialog):
    """Make and save the card of ``model_path``; ``card_saved(Path)`` when written."""

    card_saved = Signal(object)

    def __init__(self, model_path: str | Path, parent=None):
        super().__init__(parent)
        self.model_path = str(model_path)
        self.setWindowTitle(f"Import model — {Path(model_path).name}")
        self.runner = TaskRunner(self)
        self.runner.finished_run.connect(self._finished)
        self.runner.failed.connect(self._failed)
        self._pending: str | None = None  # "infer", "check" or "save" waiting for the runner
        self._running: str | None = None
        self.architecture = QLineEdit()
        self.classes = QLineEdit()
        self.input_size = QLineEdit()
        self.normalization = QComboBox()
        self.normalization.setEditable(True)
        self.normalization.addItems(["imagenet", "half", "none"])
        self.resize_rule = QComboBox()
        self.resize_rule.addItems(["stretch", "center-crop"])
        form = QFormLayout()
        for label, widget, key in (("Architecture", self.architecture, "architecture"),
                                   ("Classes", self.classes, "classes"),
                                   ("Input size", self.input_size, "input_size"),
                                   ("Normalisation", self.normalization, "normalization"),
                                   ("Resize", self.resize_rule, "resize")):
            widget.setToolTip(TOOLTIPS[key])
            form.addRow(label, widget)
        self.status = QLabel("Reading the model…")
        self.status.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Save).setText("Save card")
        self.buttons.accepted.connect(lambda: self._request("save"))
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"<b>{Path(model_path).name}</b> has no model card. Check what was "
                                "inferred, then save the card beside the model."))
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        # A dry run after the user stops typing, not on every key.
        self._debounce = QTimer(self, singleShot=True, interval=600)
        self._debounce.timeout.connect(lambda: self._request("check"))
        for edit in (self.architecture, self.classes, self.input_size):
            edit.textEdited.connect(lambda _text: self._debounce.start())
        self.normalization.currentTextChanged.connect(lambda _text: self._debounce.start())
        self.resize_rule.currentTextChanged.connect(lambda _text: self._debounce.start())
        self._request("infer")

    # ------------------------------------------------------------------ choices

    def choices(self, *, inferred_only: bool = False) -> dict:
        """The form as keyword arguments of ``infer_card`` (torch-free parsing)."""
        if inferred_only:
            return {}
        from advexplorer.io.cards import parse_input_size, parse_normalization

        choices: dict = {}
        if self.architecture.text().strip():
            choices["architecture"] = self.architecture.text().strip()
        names = [name.strip() for name in self.classes.text().split(",") if name.strip()]
        if names:
            choices["classes"] = names
        if self.input_size.text().strip():
            choices["input_size"] = parse_input_size(self.input_size.text())
        if self.normalization.currentText().strip():
            choices["normalization"] = parse_normalization(self.normalization.currentText())
        choices["resize"] = self.resize_rule.currentText()
        return choices

    def _request(self, what: str) -> None:
        if self.runner.running:
            self._pending = what if what == "save" or self._pending != "save" else self._pending
            return
        try:
            choices = self.choices(inferred_only=(what == "infer"))
        except UserError as error:
            self.status.setText(f"✗ {error}")
            return
        self._running = what
        self.status.setText("Saving the card…" if what == "save" else "Checking with a dry run…")
        self.runner.start(call_task, _save if what == "save" else _infer, self.model_path, choices)

    # ------------------------------------------------------------------ results

    def _finished(self, result) -> None:
        what, self._running = self._running, None
        if what == "save":
            self.status.setText(f"✓ Saved {result}")
            self.card_saved.emit(Path(result))
            self.accept()
            return
        card, sources = result.card, result.sources
        if what == "infer":
            self._fill(card, sources)
        self.status.setText(f"✓ Dry run ok: {card.num_classes} outputs on a "
                            f"{card.input_size[0]}×{card.input_size[1]} image.")
        self._next()

    def _failed(self, failure) -> None:
        self._running = None
        self.status.setText(f"✗ {failure.message}")
        self._next()

    def _next(self) -> None:
        pending, self._pending = self._pending, None
        if pending:
            QTimer.singleShot(0, lambda: self._request(pending))

    def _fill(self, card, sources: dict) -> None:
        """Pre-fill the form from the inferred card; each tooltip says where a value came from."""
        self.architecture.setText(card.architecture or "")
        self.classes.setText(", ".join(card.classes))
        height, width = card.input_size
        self.input_size.setText(str(height) if height == width else f"{height}x{width}")
        named = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                 "half": ((0.5,) * 3, (0.5,) * 3), "none": ((0.0,) * 3, (1.0,) * 3)}
        text = next((name for name, (mean, std) in named.items()
                     if tuple(card.mean) == mean and tuple(card.std) == std),
                    ",".join(f"{v:g}" for v in (*card.mean, *card.std)))
        self.normalization.setCurrentText(text)
        self.resize_rule.setCurrentText(card.resize)
        for key, widget in (("architecture", self.architecture), ("classes", self.classes),
                            ("input_size", self.input_size), ("normalization", self.normalization),
                            ("resize", self.resize_rule)):
            if key in sources:
                widget.setToolTip(f"{TOOLTIPS[key]}\n\nInferred from: {sources[key]}.")
