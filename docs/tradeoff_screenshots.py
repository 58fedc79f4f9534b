"""Screenshots of the Train panel's trade-off view (docs/tradeoff_curves.png, docs/defence_comparison.png).

Trains a PGD twin of the bundled digits CNN on part of its training split, then compares a
defence, exactly as a user would in Tools → Train a robust twin…, and grabs the panel.

    xvfb-run -a -s "-screen 0 1400x1000x24" python docs/tradeoff_screenshots.py WORK_DIR

writes WORK_DIR/tradeoff_curves.png and WORK_DIR/defence_comparison.png (about a minute on
one CPU thread). EPS, EPOCHS, N_IMAGES and DEFENCE (default bits:1) change the run.
"""
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "models"))
torch.set_num_threads(1)
from demo_data import digits_split  # noqa: E402

from PySide6.QtWidgets import QApplication  # noqa: E402

work = Path(sys.argv[1])
folder = work / "digits"
if not folder.exists():
    split = digits_split("train")
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(split), size=int(os.environ.get("N_IMAGES", "600")), replace=False)
    for k in chosen:
        label = str(int(split.labels[k]))
        (folder / label).mkdir(parents=True, exist_ok=True)
        pixels = (split.images[k, 0].numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels, "L").save(folder / label / f"{k}.png")

app = QApplication.instance() or QApplication([])
from advexplorer.gui.train_panel import TrainPanel  # noqa: E402
from advexplorer.io.models import load_model  # noqa: E402

panel = TrainPanel()
panel.resize(1180, 820)
panel.show()
panel.set_model(load_model(ROOT / "models" / "digits_cnn.pt", device="cpu"))
panel.set_images(folder)
out = work / f"twin{int(time.time())}"
panel.set_out_dir(out)
panel.eps_edit.setText(os.environ.get("EPS", "16/255"))
panel.steps_spin.setValue(5)
panel.epochs_spin.setValue(int(os.environ.get("EPOCHS", "3")))
panel.held_out_edit.setText("0.25")
panel.batch_spin.setValue(64)


def wait():
    while True:
        app.processEvents()
        time.sleep(0.05)
        if not panel.running:
            for _ in range(20):
                app.processEvents()
                time.sleep(0.02)
            if not panel.running:
                return


started = time.time()
panel.start()
wait()
print("trained in", round(time.time() - started), "s:", panel.status.text(), flush=True)
panel.tabs.setCurrentIndex(2)
app.processEvents()
panel.grab().save(str(work / "tradeoff_curves.png"))
defence = os.environ.get("DEFENCE", "bits:1")
kind, value = defence.split(":")
panel.tradeoff.defence_combo.setCurrentIndex(panel.tradeoff.defence_combo.findData(kind))
panel.tradeoff.value_edit.setText(value)
started = time.time()
panel.tradeoff.compare_button.click()
wait()
print("defence in", round(time.time() - started), "s:", panel.tradeoff.verdict.text(), flush=True)
for _ in range(10):
    app.processEvents()
panel.grab().save(str(work / "defence_comparison.png"))
for c in panel.tradeoff.curves:
    print(c.name, [f"{a.value:.2f}" for a in c.accuracy])
