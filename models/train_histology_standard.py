"""Train the standard histology DAB classifier: ``python models/train_histology_standard.py``.

Writes ``models/histology_standard.pt`` (a torchvision mobilenet_v3_small state_dict), its
card ``models/histology_standard.json`` (numbers measured here, never typed by hand) and
the sample tiles with their masks in ``resources/samples/histology/``. CPU, 2 threads.
"""

import sys

from histology import Recipe, main

RECIPE = Recipe(variant="standard", seed=0, epochs=30, tiles_per_epoch=2048, lr=3e-3)

if __name__ == "__main__":
    sys.exit(main(RECIPE, sys.argv[1:]))
