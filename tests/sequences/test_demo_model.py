"""The bundled protein demo is what its card says: synthetic data, the stated accuracy."""

from __future__ import annotations

import sys

import torch

from advexplorer.core.sequences import encode
from advexplorer.paths import MODELS_DIR


def test_card_says_synthetic_and_accuracy_holds(demo_model):
    card = demo_model.card
    assert card.synthetic and "SYNTHETIC" in card.training_data
    assert card.classes == ("other", "dehydrogenase", "metalloprotease")
    assert demo_model.format == "state_dict"
    if str(MODELS_DIR) not in sys.path:
        sys.path.insert(0, str(MODELS_DIR))
    import train_protein_demo

    sequences, labels = train_protein_demo.held_out()
    sequences, labels = sequences[:300], labels[:300]  # 300 keep the test fast
    logits = torch.cat([demo_model.classifier.logits_for(encode(s)) for s in sequences])
    accuracy = float((logits.argmax(dim=1).numpy() == labels).mean())
    assert abs(accuracy - card.raw["clean_accuracy"]) <= 0.02
