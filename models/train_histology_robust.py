"""Train the adversarially trained histology twin: ``python models/train_histology_robust.py``.

Same data, architecture and evaluation as ``train_histology_standard.py``; every training
batch is replaced by its PGD adversarial version (Madry et al. 2018,
https://arxiv.org/abs/1706.06083) made by AdvExplorer's own attack engine. Writes
``models/histology_robust.pt`` and ``models/histology_robust.json``. CPU, 2 threads.
"""

import sys

from histology import Recipe, main

RECIPE = Recipe(variant="robust", seed=1, epochs=20, tiles_per_epoch=2048, lr=3e-3,
                train_eps=4 / 255, train_eps_text="4/255", train_steps=3,
                warmup_epochs=1, ramp_epochs=4)

if __name__ == "__main__":
    sys.exit(main(RECIPE, sys.argv[1:]))
