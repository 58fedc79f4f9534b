"""Make docs/flag_in_gui.png: a reliability flag as a GUI user sees it.

The bundled histology model behind a non-differentiable input layer that rounds every pixel
to 8 bits (a "quantisation defence"): its input gradients are exactly zero, so PGD cannot
move and looks like robustness. The run's flags say so in the Results panel, with what to
do. Run from the repository root, under Xvfb (or offscreen)::

    xvfb-run -a .venv/bin/python docs/flag_in_gui.py [OUT.png]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from advexplorer import paths

SAMPLE = paths.REPO_DIR / "resources" / "samples" / "histology" / "ihc_pos_y320_x304.png"


class RoundedInput(torch.nn.Module):
    """Rounds the image to 8-bit levels before the classifier: zero input gradients."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x):
        return self.classifier(torch.round(x * 255) / 255)


def rounded_model(folder: Path) -> Path:
    """The bundled model with a rounding input layer, saved as TorchScript with its card."""
    from advexplorer.io.models import load_model

    loaded = load_model(paths.DEFAULT_MODEL, device="cpu")
    size = loaded.card.input_size
    traced = torch.jit.trace(RoundedInput(loaded.classifier).eval(), torch.rand(1, 3, *size))
    path = folder / "histology_rounded_input.pt"
    traced.save(str(path))
    card = json.loads(paths.DEFAULT_MODEL.with_suffix(".json").read_text())
    for key in ("architecture", "architecture_kwargs", "samples", "robust_accuracy", "training"):
        card.pop(key, None)
    card.update(name="Histology DAB classifier, 8-bit rounding input layer",
                mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0],  # the traced model normalises itself
                description="histology_standard.pt behind torch.round(x·255)/255: a gradient-masking 'defence'.")
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def wait(app, condition, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not get there in time")
        app.processEvents()
        time.sleep(0.01)


def main(out: Path) -> int:
    from advexplorer.gui.app import application
    from advexplorer.gui.main_window import MainWindow, StartOptions

    with tempfile.TemporaryDirectory() as folder:
        model = rounded_model(Path(folder))
        app = application()
        protect = SAMPLE.with_name(SAMPLE.stem + "_protect.png")
        window = MainWindow(StartOptions(model=model, images=[SAMPLE],
                                         protect=protect if protect.is_file() else None, remember=False))
        window.resize(1600, 1000)
        window.show()
        window.start()
        wait(app, lambda: window.engine.is_ready and window.model is not None and window.can_run())
        window.attack_panel.set_values(method="pgd", eps="8/255", steps=20, seed=0)
        window.run_action.trigger()
        wait(app, lambda: window.runs.running)
        wait(app, lambda: not window.runs.running)
        for _ in range(20):  # let the last redraws land
            app.processEvents()
            time.sleep(0.02)
        flags = window.runs.shown_run.record.get("flags") or []
        print(f"{len(flags)} flag(s): " + "; ".join(flag["code"] for flag in flags))
        window.grab().save(str(out))
        print(f"wrote {out}")
        window.runs.closing = True
        window.close()
    return 0 if flags else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else paths.REPO_DIR / "docs" / "flag_in_gui.png"))
