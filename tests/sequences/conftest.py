"""Fixtures for the sequence probe: the bundled demo model and small random models."""

from __future__ import annotations

import pytest
import torch

from advexplorer.core.sequences import MotifCNN, SequenceClassifier
from advexplorer.io.sequences import DEMO_SEQUENCE_MODEL, SAMPLE_FASTA, load_sequence_model, read_fasta

#: The showcase record of the sample FASTA and its flexible loop (see its header).
SHOWCASE = "demo_dehydrogenase_loop"
LOOP = "40-55"


@pytest.fixture(scope="session")
def demo_model():
    return load_sequence_model(DEMO_SEQUENCE_MODEL, device="cpu")


@pytest.fixture(scope="session")
def demo_records(demo_model):
    return read_fasta(SAMPLE_FASTA, demo_model.card.alphabet, demo_model.card.max_length)


@pytest.fixture(scope="session")
def showcase(demo_records):
    return next(r for r in demo_records if r.name == SHOWCASE)


@pytest.fixture(scope="session")
def loop() -> str:
    """The showcase's flexible loop, where any residue should do."""
    return LOOP


@pytest.fixture
def random_model():
    """An untrained MotifCNN (3 classes), padded to 40 like a real card would say."""
    torch.manual_seed(0)
    return SequenceClassifier(MotifCNN(filters=8, width=5), classes=["a", "b", "c"],
                              max_length=40, padding="right")


@pytest.fixture(scope="session", autouse=True)
def _collect_qt_garbage_while_qt_lives():
    """Collect Python wrappers of Qt objects before interpreter shutdown (as tests/gui does):
    a window collected after QApplication is gone can abort the process at exit."""
    yield
    import gc
    import sys

    if "PySide6" in sys.modules:
        from PySide6.QtCore import QCoreApplication, QEvent

        if QCoreApplication.instance() is not None:
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
