"""The attack form: method, norm, ε, step size, steps, classes, randomness, transfer, device,
saliency.

Every field has a tooltip (what it does, the usual values). Values are checked as the
user types with the engine's own rules (:func:`advexplorer.config.parse_number` and the
torch-free :class:`advexplorer.config.AttackConfig`, so also before torch has loaded):
text that is not a number, or a configuration the engine would refuse, shows an inline
message in red and disables Run — a bad value never reaches the worker. Method, norm and
saliency names and labels come from :mod:`advexplorer.config`.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
    QSpinBox, QVBoxLayout, QWidget,
)

from advexplorer.config import (DIVERSITY_METHODS, METHOD_INFO, METHODS, NORM_DESCRIPTIONS, NORMS, SALIENCY_LABELS,
                                AttackConfig, format_budget, parse_number)
from advexplorer.errors import UserError

TIPS = {
    "method": "How the perturbation is searched. PGD (Madry et al. 2018) iterates signed "
              "gradient steps and is the standard test; FGSM takes one step of size ε; "
              "MI-FGSM adds momentum; random noise of the same budget is the baseline an "
              "attack must beat.",
    "norm": "How the budget ε is measured: L∞ bounds every pixel change (usual 2/255 to "
            "16/255); L2 bounds the total Euclidean size (usual 0.25 to 3 for small images).",
    "eps": "The perturbation budget in pixel units (image values are 0 to 1). Fractions are "
           "fine: 8/255 is the usual L∞ budget; for L2 try 0.5.",
    "step_size": "How far each iteration moves. Empty = automatic: 2.5·ε/steps (Madry et al.), "
                 "or ε for FGSM. Typical L∞ value: 2/255.",
    "queries": "Square's budget: model evaluations per image (the ensemble's Square stage too). "
               "Each status-bar step is one batch of queries; a few hundred to thousands are usual.",
    "steps": "Number of gradient iterations (PGD, MI-FGSM, or noise draws). 10 is usual; 50–100 "
             "for a stronger test. FGSM always takes one.",
    "decay": "Momentum decay μ of MI-FGSM (Dong et al. 2018); the paper uses 1.0.",
    "diversity": "Input diversity (DI-FGSM, Xie et al. 2019): the probability that each gradient "
                 "is taken through a random resize-and-pad of the image, so the perturbation "
                 "overfits the model less and transfers better. 0 = off; the paper uses 0.5.",
    "surrogate": "Transfer attack: craft the perturbation on this model (a copy the attacker owns, "
                 "or a differently trained one such as the robust twin) and judge it on the loaded "
                 "model. Both need the same classes and input size. 'none' attacks the loaded model "
                 "itself (white box).",
    "label": "The true class of the image. Untargeted attacks push the prediction away from "
             "it; by default the model's own clean prediction is used.",
    "target": "Targeted attack: push the prediction towards this class. 'Untargeted' just "
              "tries to change the prediction.",
    "random_start": "Start from a random point inside the ε-ball instead of the clean image "
                    "(Madry et al.); helps escape flat gradients. Usual with restarts.",
    "seed": "Random seed for the random start and the noise baseline; 'random' draws one (it "
            "is recorded, so the run can be reproduced).",
    "restarts": "Run the attack this many times from different random starts and keep the "
                "strongest result per image. 1 is usual; 5–10 for a careful evaluation.",
    "early_stop": "Stop as soon as the prediction flips (or reaches the target) instead of "
                  "running all steps; faster, and the perturbation stays smaller.",
    "device": "Where the model runs: auto picks a CUDA GPU, then Apple MPS, then the CPU. "
              "Changing it reloads the model.",
    "saliency": "Explain the prediction before and after the attack with this attribution "
                "method and compare the two maps (does the explanation follow the new "
                "prediction?). 'none' skips it.",
}


class AttackPanel(QWidget):
    """The attack form. ``changed()`` fires on any edit; ``device_changed(str)`` on a new device."""

    changed = Signal()
    device_changed = Signal(str)
    #: The user picked "Open model file…" in the surrogate list (the controller opens the dialog).
    surrogate_open_requested = Signal()
    #: Another surrogate was picked: its path, or None for a white-box attack.
    surrogate_changed = Signal(object)

    NO_SURROGATE = "none — attack this model (white box)"
    OPEN_SURROGATE = "Open model file…"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.engine_ready = False
        self.classes: tuple[str, ...] = ()
        self._error = ""

        self.method = QComboBox()
        for name in METHODS:
            self.method.addItem(METHOD_INFO[name].description, name)
        self.norm = QComboBox()
        for name in NORMS:
            self.norm.addItem(NORM_DESCRIPTIONS[name], name)
        self.eps = QLineEdit("8/255")
        self.eps_scale = QLabel()
        self.eps_scale.setObjectName("hint")
        self.step_size = QLineEdit()
        self.step_size.setPlaceholderText("auto")
        self.steps = QSpinBox()
        self.steps.setRange(1, 100000)
        self.steps.setValue(10)
        self.queries = QSpinBox()
        self.queries.setRange(1, 100000)
        self.queries.setValue(AttackConfig.queries)
        self.decay = QDoubleSpinBox()
        self.decay.setRange(0.0, 10.0)
        self.decay.setSingleStep(0.1)
        self.decay.setValue(1.0)
        self.diversity = QDoubleSpinBox()
        self.diversity.setRange(0.0, 1.0)
        self.diversity.setSingleStep(0.1)
        self.diversity.setDecimals(2)
        self.diversity.setSpecialValueText("off")
        self.surrogate = QComboBox()
        # Model names are long: the list shows them whole, the closed box must not widen the form.
        self.surrogate.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.surrogate.setMinimumContentsLength(14)
        self.surrogate.addItem(self.NO_SURROGATE, None)
        self.surrogate.addItem(self.OPEN_SURROGATE, self.OPEN_SURROGATE)
        self._surrogate_index = 0
        self.label = QComboBox()
        self.target = QComboBox()
        self.random_start = QCheckBox("random start")
        self.seed = QSpinBox()
        self.seed.setRange(-1, 2**31 - 1)
        self.seed.setSpecialValueText("random")
        self.seed.setValue(0)
        self.restarts = QSpinBox()
        self.restarts.setRange(1, 1000)
        self.early_stop = QCheckBox("stop when it succeeds")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu"])
        self.saliency = QComboBox()
        self.saliency.addItem("none", None)
        self.error_label = QLabel()
        self.error_label.setObjectName("error")
        self.error_label.setWordWrap(True)
        self.error_label.setVisible(False)
        self.set_classes(())

        def row(*widgets):
            layout = QHBoxLayout()
            layout.setContentsMargins(0, 0, 0, 0)
            layout.setSpacing(10)  # keep "random start" and "seed" apart as two labels
            for widget, stretch in widgets:
                layout.addWidget(widget, stretch)
            return layout

        step_size_label = QLabel("step size")
        step_size_label.setToolTip(TIPS["step_size"])
        seed_label = QLabel("seed")
        seed_label.setToolTip(TIPS["seed"])
        self.form = form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setVerticalSpacing(5)
        rows = [
            ("Method", self.method, "method"), ("Norm", self.norm, "norm"),
            ("ε", row((self.eps, 1), (self.eps_scale, 1)), "eps"),
            ("Steps", row((self.steps, 1), (step_size_label, 0), (self.step_size, 1)), "steps"),
            ("Queries", self.queries, "queries"),
            ("Momentum μ", self.decay, "decay"),
            ("Input diversity", self.diversity, "diversity"),
            ("Transfer from", self.surrogate, "surrogate"),
            ("True class", self.label, "label"), ("Target", self.target, "target"),
            ("Start", row((self.random_start, 0), (seed_label, 0), (self.seed, 1)), "random_start"),
            ("Restarts", row((self.restarts, 1), (self.early_stop, 0)), "restarts"),
            ("Device", self.device, "device"), ("Saliency", self.saliency, "saliency"),
        ]
        self._row_labels = {}
        for text, field, tip in rows:
            label = QLabel(text)
            label.setToolTip(TIPS[tip])
            self._row_labels[tip] = label
            form.addRow(label, field)
        for widget, tip in ((self.method, "method"), (self.norm, "norm"), (self.eps, "eps"),
                            (self.eps_scale, "eps"), (self.step_size, "step_size"),
                            (self.steps, "steps"), (self.queries, "queries"),
                            (self.decay, "decay"), (self.diversity, "diversity"),
                            (self.surrogate, "surrogate"), (self.label, "label"),
                            (self.target, "target"), (self.random_start, "random_start"),
                            (self.seed, "seed"), (self.restarts, "restarts"),
                            (self.early_stop, "early_stop"), (self.device, "device"),
                            (self.saliency, "saliency")):
            widget.setToolTip(TIPS[tip])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addStretch(1)

        for combo in (self.method, self.norm, self.label, self.target, self.saliency):
            combo.currentIndexChanged.connect(self._on_edit)
        for line in (self.eps, self.step_size):
            line.textChanged.connect(self._on_edit)
        for spin in (self.steps, self.queries, self.seed, self.restarts):
            spin.valueChanged.connect(self._on_edit)
        self.decay.valueChanged.connect(self._on_edit)
        self.diversity.valueChanged.connect(self._on_edit)
        self.surrogate.currentIndexChanged.connect(self._on_surrogate_picked)
        for box in (self.random_start, self.early_stop):
            box.toggled.connect(self._on_edit)
        self.device.currentTextChanged.connect(self.device_changed)
        self._on_edit()

    # -- content that depends on the model / engine --------------------------------------
    def set_classes(self, classes) -> None:
        """Fill the class pickers with the model card's class names."""
        self.classes = tuple(classes)
        for combo, first in ((self.label, "(the model's prediction)"), (self.target, "untargeted")):
            previous = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            combo.addItem(first, None)
            for index, name in enumerate(self.classes):
                combo.addItem(f"{name}", index)
            position = combo.findData(previous) if previous is not None else 0
            combo.setCurrentIndex(max(position, 0))
            combo.blockSignals(False)
        self._on_edit()

    def set_devices(self, devices) -> None:
        current = self.device.currentText()
        self.device.blockSignals(True)
        self.device.clear()
        self.device.addItems(list(devices))
        self.device.setCurrentText(current if current in devices else "auto")
        self.device.blockSignals(False)

    def set_saliency_methods(self, methods) -> None:
        self.saliency.blockSignals(True)
        self.saliency.clear()
        self.saliency.addItem("none", None)
        for name in methods:
            self.saliency.addItem(SALIENCY_LABELS.get(name, name), name)
        self.saliency.blockSignals(False)

    # -- the transfer surrogate -----------------------------------------------------------
    @property
    def surrogate_path(self) -> Path | None:
        """The model the attack is crafted on (transfer), or None to attack the model itself."""
        data = self.surrogate.currentData()
        return None if data in (None, self.OPEN_SURROGATE) else Path(data)

    def set_surrogates(self, choices) -> None:
        """Offer ``choices`` ((label, path) pairs) as surrogates; keep the pick if still offered."""
        current = self.surrogate_path
        self.surrogate.blockSignals(True)
        while self.surrogate.count() > 2:  # keep 'none' and 'Open model file…'
            self.surrogate.removeItem(1)
        for offset, (label, path) in enumerate(choices):
            self.surrogate.insertItem(1 + offset, label, str(path))
            self.surrogate.setItemData(1 + offset, str(path), Qt.ItemDataRole.ToolTipRole)
        position = self.surrogate.findData(str(current)) if current is not None else 0
        self._surrogate_index = max(position, 0)
        self.surrogate.setCurrentIndex(self._surrogate_index)
        self.surrogate.blockSignals(False)
        if current is not None and position < 0:
            self.surrogate_changed.emit(None)

    def pick_surrogate(self, path: Path | None, label: str | None = None) -> None:
        """Select ``path`` as the surrogate (added to the list if new); None: white box."""
        if path is None:
            self.surrogate.setCurrentIndex(0)
            return
        position = self.surrogate.findData(str(path))
        if position < 0:
            position = self.surrogate.count() - 1  # just above 'Open model file…'
            self.surrogate.insertItem(position, label or Path(path).name, str(path))
            self.surrogate.setItemData(position, str(path), Qt.ItemDataRole.ToolTipRole)
        self.surrogate.setCurrentIndex(position)

    def _on_surrogate_picked(self, index: int) -> None:
        if self.surrogate.itemData(index) == self.OPEN_SURROGATE:
            # Not a model: go back to the previous pick and let the controller open a dialog.
            self.surrogate.blockSignals(True)
            self.surrogate.setCurrentIndex(self._surrogate_index)
            self.surrogate.blockSignals(False)
            self.surrogate_open_requested.emit()
            return
        self._surrogate_index = index
        self.surrogate_changed.emit(self.surrogate_path)
        self._on_edit()

    def set_engine_ready(self, ready: bool = True) -> None:
        self.engine_ready = ready
        self._on_edit()

    # -- reading the form ----------------------------------------------------------------
    def config_kwargs(self) -> dict:
        """The :class:`AttackConfig` keyword arguments the form describes (UserError if invalid)."""
        method = self.method.currentData()
        norm = self.norm.currentData()
        eps = parse_number(self.eps.text(), "ε")
        step_text = self.step_size.text().strip()
        step_size = None if not step_text or step_text.lower() == "auto" else \
            parse_number(step_text, "Step size")
        return {
            "method": method, "norm": norm, "eps": eps, "step_size": step_size,
            "steps": int(self.steps.value()), "targeted": self.target.currentData(),
            "random_start": bool(self.random_start.isChecked()),
            "seed": None if self.seed.value() < 0 else int(self.seed.value()),
            "restarts": int(self.restarts.value()), "early_stop": bool(self.early_stop.isChecked()),
            "decay": float(self.decay.value()), "queries": int(self.queries.value()),
            # Input diversity belongs to the gradient attacks; hidden for the others, it is off.
            "diversity": float(self.diversity.value()) if method in DIVERSITY_METHODS else 0.0,
        }

    def make_config(self) -> AttackConfig:
        """A validated :class:`AttackConfig` (UserError if the form is invalid)."""
        return AttackConfig(**self.config_kwargs()).validate()

    @property
    def true_label(self) -> int | None:
        return self.label.currentData()

    @property
    def saliency_method(self) -> str | None:
        return self.saliency.currentData()

    @property
    def error(self) -> str:
        """The current inline error ('' when the form is valid)."""
        return self._error

    def is_valid(self) -> bool:
        return not self._error

    def set_values(self, **values) -> None:
        """Set fields by name (used by the command line, the demo and the tests)."""
        for key, value in values.items():
            if key == "method":
                self.method.setCurrentIndex(self.method.findData(value))
            elif key == "norm":
                self.norm.setCurrentIndex(self.norm.findData(value))
            elif key in ("eps", "step_size"):
                getattr(self, key).setText("" if value is None else str(value))
            elif key in ("steps", "queries", "restarts", "seed"):
                getattr(self, key).setValue(-1 if value is None else int(value))
            elif key in ("random_start", "early_stop"):
                getattr(self, key).setChecked(bool(value))
            elif key in ("decay", "diversity"):
                getattr(self, key).setValue(float(value))
            elif key == "surrogate":
                self.pick_surrogate(None if value is None else Path(value))
            elif key in ("targeted", "label"):
                combo = self.target if key == "targeted" else self.label
                combo.setCurrentIndex(max(combo.findData(value), 0))
            elif key == "saliency":
                self.saliency.setCurrentIndex(max(self.saliency.findData(value), 0))
            else:
                raise KeyError(key)

    # -- validation ----------------------------------------------------------------------
    def _on_edit(self, *_args) -> None:
        info = METHOD_INFO[self.method.currentData()]
        self.steps.setEnabled(info.iterative)
        self.step_size.setEnabled(info.iterative)
        self.decay.setEnabled(info.momentum)
        if hasattr(self, "form"):  # not yet during construction
            self.form.setRowVisible(self._row_labels["decay"], info.momentum)
            self.form.setRowVisible(self._row_labels["diversity"], self.method.currentData() in DIVERSITY_METHODS)
            black_box = self.method.currentData() in ("square", "ensemble")
            self.form.setRowVisible(self._row_labels["queries"], black_box)
        self.random_start.setEnabled(info.random_start)
        self._update_eps_scale()
        error = ""
        try:
            self.make_config()
        except UserError as exc:
            error = str(exc)
        self._error = error
        self.error_label.setText(error)
        self.error_label.setVisible(bool(error))
        for line in (self.eps, self.step_size):
            line.setProperty("invalid", False)
        if error:
            culprit = self.step_size if error.lower().startswith("step size") else \
                self.eps if error.startswith("ε") else None
            if culprit is not None:
                culprit.setProperty("invalid", True)
        for line in (self.eps, self.step_size):
            line.style().unpolish(line)
            line.style().polish(line)
        self.changed.emit()

    def _update_eps_scale(self) -> None:
        try:
            eps = parse_number(self.eps.text(), "ε")
        except UserError:
            self.eps_scale.setText("")
            return
        norm = self.norm.currentData()
        suffix = "" if norm == "linf" else " (L2, pixel units)"
        self.eps_scale.setText(f"= {format_budget(eps, norm, raw=True)}{suffix}")
