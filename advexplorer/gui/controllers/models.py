"""Loading a model: after the engine, off the GUI thread, with the model panel kept truthful."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from advexplorer.errors import UserError
from advexplorer.gui.attack_panel import AttackPanel
from advexplorer.gui.controllers.settings import Preferences
from advexplorer.gui.panels import ModelPanel
from advexplorer.gui.worker import JobFailed, TaskRunner, call_task
from advexplorer.session.state import Session

MODEL_FILTER = "Models (*.pt *.pth *.ts *.pt2 *.safetensors *.ckpt *.bin *.onnx);;All files (*)"


def describe_model(loaded) -> tuple[str, str]:
    """The model panel's text (file, device, classes, input, accuracy) and its tooltip."""
    from advexplorer.config import format_budget

    card = loaded.card
    accuracy = f"\nclean accuracy {card.clean_accuracy:.1%}" if card.clean_accuracy is not None else ""
    robust = card.extra.get("robust_accuracy")
    if isinstance(robust, dict) and isinstance(robust.get("value"), (int, float)):
        eps = robust.get("eps")
        eps_text = format_budget(eps, robust.get("norm", "linf")) if isinstance(eps, (int, float)) \
            else robust.get("eps_text", "?")
        accuracy += f", robust {robust['value']:.1%} at ε={eps_text}"
    classes = ", ".join(card.classes[:6]) + (" …" if len(card.classes) > 6 else "")
    text = (f"{Path(loaded.path).name} ({loaded.format}) on {loaded.device}\n"
            f"{card.num_classes} classes: {classes}\n"
            f"input {card.input_size[1]}×{card.input_size[0]}×{card.channels}, {card.resize}{accuracy}")
    tooltip = "\n\n".join(t for t in (str(loaded.path), ", ".join(card.classes), card.description,
                                      card.training_data, f"sha256 {loaded.sha256}") if t)
    return text, tooltip


class ModelController(QObject):
    """Owns the loaded model and its loading lifecycle.

    Signals: ``loading_changed()`` (a load started or ended), ``loaded(LoadedModel)``,
    ``failed(JobFailed, show)`` (``show``: worth a dialog), ``message(text, ms)`` for the
    status bar. It keeps the attack form's classes and devices in step with the model.
    """

    loading_changed = Signal()
    loaded = Signal(object)
    failed = Signal(object, bool)
    message = Signal(str, int)

    def __init__(self, engine, panel: ModelPanel, form: AttackPanel, session: Session,
                 preferences: Preferences, options, parent=None):
        super().__init__(parent)
        self.engine, self.panel, self.form, self.session = engine, panel, form, session
        self.preferences = preferences
        self.trust_pickle = options.trust_pickle
        self.start_device = options.device
        self.model = None              # advexplorer.io.models.LoadedModel
        self.card = None               # known (from the JSON card) before the model loads
        self.classes: tuple[str, ...] = ()   # what the images' true classes refer to
        self.pending: tuple | None = None
        self.tasks = TaskRunner(self)
        self._loading_path: Path | None = None
        self._user_initiated = True
        self.tasks.finished_run.connect(self.set_model)
        self.tasks.failed.connect(self._failed)
        self.tasks.stopped.connect(self._stopped)
        form.device_changed.connect(self._device_changed)

    @property
    def loading(self) -> bool:
        return self.tasks.running

    def read_card(self, model_path: Path, card_path: Path | None = None):
        """The model card (plain JSON, no torch), so samples and classes show before the engine."""
        from advexplorer.io.cards import card_path_for, load_card

        try:
            card = load_card(card_path or card_path_for(model_path))
        except UserError:
            return None
        self.card = card
        self.classes = tuple(card.classes)
        self.panel.name.set_full_text(f"{card.name} (loading…)")
        self.form.set_classes(card.classes)
        return card

    def open_dialog(self, parent) -> None:
        """File → Open model…: starts in the folder the last model came from."""
        from PySide6.QtWidgets import QFileDialog

        from advexplorer import paths

        start = self.preferences.folder("model", paths.MODELS_DIR)
        path, _ = QFileDialog.getOpenFileName(parent, "Open model", start, MODEL_FILTER)
        if path:
            self.preferences.set_folder("model", path)
            from advexplorer.io.cards import card_path_for

            if not card_path_for(path).is_file():  # no card yet: make one (issue 11)
                from advexplorer.gui.import_model_dialog import ImportModelDialog

                dialog = ImportModelDialog(path, parent)
                dialog.card_saved.connect(lambda _card: self.open(Path(path)))
                dialog.open()
                return
            self.open(Path(path))

    def open(self, path, card=None, user_initiated: bool = True) -> None:
        """Load ``path`` (on the form's device) in the background once the engine is ready;
        errors come as ``failed``."""
        path = Path(path)
        if not self.engine.is_ready:
            self.pending = (path, card, user_initiated)
            self.panel.info.set_full_text(f"{path.name} — waiting for the engine…")
            return
        if self.tasks.running:
            return  # one load at a time; the user can open it again when this one ends
        from advexplorer.io.models import load_model

        device = self.form.device.currentText() or "auto"
        self._loading_path = path
        self._user_initiated = user_initiated
        self.panel.info.set_full_text(f"Loading {path.name} on {device}…")
        self.tasks.start(call_task, load_model, path, card=card, device=device,
                         trust_pickle=self.trust_pickle)
        self.loading_changed.emit()

    def engine_ready(self) -> None:
        """Offer the devices torch sees, then start the load that was waiting for the engine."""
        import torch

        devices = ["auto", "cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            devices.append("mps")
        self.form.set_devices(devices)
        if self.start_device in devices:
            self.form.device.blockSignals(True)
            self.form.device.setCurrentText(self.start_device)
            self.form.device.blockSignals(False)
        self.form.set_engine_ready(True)
        if self.pending is not None:
            path, card, user_initiated = self.pending
            self.pending = None
            self.open(path, card=card, user_initiated=user_initiated)
        else:
            self.engine.warm_up()  # no model to wait for

    def _device_changed(self, device: str) -> None:
        """Another device in the form: load the model again onto it."""
        model = self.model
        if model is not None and self.engine.is_ready and not self.loading:
            if str(model.device) != device or device == "auto":
                self.open(model.path, card=model.card_path or None)

    def set_model(self, loaded) -> None:
        """Use a loaded model (from the worker, or given directly by tests and embedders)."""
        self.model = loaded
        self.card = loaded.card
        self.panel.name.set_full_text(loaded.card.name)
        self.show_model()
        new = tuple(loaded.card.classes)
        old, self.classes = self.classes, new
        self.form.set_classes(new)
        if old and old != new:
            self._reset_true_classes(old, new)
        current = self.session.current
        if current is not None and current.label is not None:
            self.form.set_values(label=current.label)
        self.preferences.remember("recent_models", str(loaded.path))
        self.loaded.emit(loaded)
        self.engine.warm_up()  # saliency's modules, now that Run is possible
        from advexplorer.gui import attack_process

        attack_process.prepare(loaded, bool(self.trust_pickle))  # runs go there once it has the model

    def _reset_true_classes(self, old: tuple, new: tuple) -> None:
        """True classes are indices into the old class list: they mean nothing for the new one."""
        had_labels = any(entry.label is not None for entry in self.session.images)
        for entry in self.session.images:
            entry.label = None
        self.form.set_values(label=None)
        if had_labels:
            self.message.emit(f"True class reset: the new model's classes ({', '.join(new[:4])}) differ "
                              f"from the previous ones ({', '.join(old[:4])}). Set it again if you know it.",
                              15000)

    def show_model(self) -> None:
        """Describe the loaded model (or say there is none) in the panel."""
        if self.model is None:
            self.panel.name.set_full_text("No model loaded")
            self.panel.open_button.setText("Open model…")
            return
        text, tooltip = describe_model(self.model)
        self.panel.info.set_full_text(text, tooltip)
        self.panel.open_button.setText("Open another model…")

    def _failed(self, failure: JobFailed) -> None:
        path = self._loading_path
        name = path.name if path is not None else "the model"
        if self.model is None:
            self.show_model()
            self.panel.info.set_full_text(f"{name} could not be loaded: {failure.message} "
                                          "File → Open model…")
        else:
            self.show_model()  # the previous model stays; say so rather than "Loading …"
        self.failed.emit(failure, self._user_initiated or failure.is_user_error)

    def _stopped(self) -> None:
        self._loading_path = None
        self.loading_changed.emit()
