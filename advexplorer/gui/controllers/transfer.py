"""The transfer surrogate: the second model an attack is crafted on, then judged on the loaded one.

The attack form offers the bundled models that fit the loaded model (same classes in the same
order, same input size and channels — the robust twin of the histology demo, say) and any
model opened from a file. A surrogate that does not fit is refused when it is picked, in one
line saying how the two differ (:func:`advexplorer.core.transfer.check_compatible`, which
needs only the two cards), and again when Run is pressed. The run itself is the CLI's
``--surrogate`` path (:class:`advexplorer.session.runs.RunRequest`): the worker loads the
surrogate beside the target, and a loaded surrogate is kept for the next runs.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from advexplorer.errors import UserError
from advexplorer.gui.attack_panel import AttackPanel


def _card_of(path: Path):
    """The card beside ``path`` (UserError saying where it should be if there is none)."""
    from advexplorer.io.cards import card_path_for, load_card

    return load_card(card_path_for(path))


class SurrogateController(QObject):
    """Fills the form's surrogate list, checks a pick against the loaded model, and hands a
    run either a loaded surrogate or the path the worker should load.

    Signals: ``error(title, message, details)`` (shown in a dialog, as a run's errors).
    """

    error = Signal(str, str, object)

    def __init__(self, form: AttackPanel, models, parent=None):
        super().__init__(parent)
        self.form, self.models = form, models
        self.opened: list[Path] = []   # surrogates opened from a file in this session
        self._loaded: dict[tuple[str, str], object] = {}  # (path, device) → LoadedModel
        form.surrogate_open_requested.connect(self.open_dialog)
        form.surrogate_changed.connect(self._picked)
        models.loaded.connect(self.refresh)

    # -- which models fit ---------------------------------------------------------------
    def check(self, path: Path) -> None:
        """Raise :class:`UserError` (one line: how they differ) unless ``path`` can be a
        surrogate for the loaded model."""
        from advexplorer.core.transfer import check_compatible

        target = self.models.card
        if target is None:
            raise UserError("Load the model to attack first (File → Open model…); the surrogate "
                            "is checked against it.")
        path = Path(path)
        target_name = Path(self.models.model.path).name if self.models.model is not None else target.name
        if self.models.model is not None and path.resolve() == Path(self.models.model.path).resolve():
            raise UserError(f"{path.name} is the model being attacked; a transfer attack crafts on "
                            "another model. Pick 'none' for a white-box attack.")
        card = _card_of(path)
        check_compatible(path.name, card.classes, card.input_size, card.channels,
                         target_name, target.classes, target.input_size, target.channels)

    def choices(self) -> list[tuple[str, Path]]:
        """(label, path) of the bundled and opened models that fit the loaded model."""
        from advexplorer import paths

        candidates = sorted(Path(paths.MODELS_DIR).glob("*.pt")) if Path(paths.MODELS_DIR).is_dir() else []
        found = []
        for path in [*candidates, *self.opened]:
            try:
                self.check(path)
                card = _card_of(path)
            except UserError:
                continue
            found.append((f"{card.name} — {path.name}", path))
        return found

    def refresh(self, *_loaded) -> None:
        """Offer the surrogates that fit the (new) loaded model."""
        self.form.set_surrogates(self.choices())

    # -- picking ------------------------------------------------------------------------
    def _picked(self, path: Path | None) -> None:
        if path is None:
            return
        try:
            self.check(path)
        except UserError as error:
            self.form.pick_surrogate(None)
            self.error.emit("Cannot use this surrogate", str(error), None)

    def open_dialog(self) -> None:
        """'Open model file…' in the surrogate list: pick a model file to craft the attack on."""
        from PySide6.QtWidgets import QFileDialog

        from advexplorer import paths
        from advexplorer.gui.controllers.models import MODEL_FILTER

        start = self.models.preferences.folder("model", paths.MODELS_DIR)
        path, _ = QFileDialog.getOpenFileName(self.form.window(), "Open a surrogate model", start, MODEL_FILTER)
        if path:
            self.use(Path(path))

    def use(self, path: Path) -> bool:
        """Make ``path`` the surrogate if it fits the loaded model; else say why (False)."""
        path = Path(path)
        try:
            self.check(path)
            label = f"{_card_of(path).name} — {path.name}"
        except UserError as error:
            self.error.emit("Cannot use this surrogate", str(error), None)
            return False
        if path not in self.opened:
            self.opened.append(path)
        self.form.pick_surrogate(path, label)
        return True

    # -- running ------------------------------------------------------------------------
    def for_run(self):
        """What a run's job carries: None (white box), the loaded surrogate on the target's
        device, or its path for the worker to load. UserError if it does not fit."""
        path = self.form.surrogate_path
        if path is None:
            return None
        self.check(path)
        return self._loaded.get(self._key(path, self.models.model.device), path)

    def keep(self, loaded) -> None:
        """Keep a surrogate the worker loaded, so the next run does not load it again."""
        if loaded is not None:
            self._loaded[self._key(loaded.path, loaded.device)] = loaded

    @staticmethod
    def _key(path, device) -> tuple[str, str]:
        return str(Path(path).resolve()), str(device)
