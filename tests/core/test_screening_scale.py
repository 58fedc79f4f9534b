"""Screening at scale: out-of-memory halves the batch instead of ending the screen; mixed
precision keeps float32 logits; a shard of the cohort gives the same rows as the whole."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advexplorer.core.attacks import AttackConfig
from advexplorer.core.model import Classifier
from advexplorer.core.screening import CohortBatch, MixedPrecisionForward, run_screen

EPS = (0.0, 2 / 255, 6 / 255)


class SmallMemory(nn.Module):
    """A model on a device that holds at most ``limit`` images at once (raises CUDA's OOM type)."""

    def __init__(self, network: nn.Module, limit: int):
        super().__init__()
        self.network, self.limit, self.refused = network, limit, 0

    def forward(self, x):
        if x.shape[0] > self.limit:
            self.refused += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.network(x)


def cohort(n=12):
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(n, 3, 24, 24, generator=generator)
    ids = [f"i{k:02d}" for k in range(n)]
    return images, ids


def batches(images, ids, size):
    return [CohortBatch(ids=ids[b:b + size], images=images[b:b + size]) for b in range(0, len(ids), size)]


def rows_of(result):
    return {r.file: (r.flipped, r.adversarial_prediction) for r in result.rows}


def test_out_of_memory_halves_the_batch_and_gives_the_same_rows(make_tiny_cnn):
    reference_model = make_tiny_cnn(channels=3, classes=3, seed=1, mean=[0.5] * 3, std=[0.1] * 3)
    images, ids = cohort()
    config = AttackConfig(method="pgd", steps=3)
    reference = run_screen(reference_model, batches(images, ids, 12), EPS, config, batch_size=12)
    limited_net = SmallMemory(reference_model.model, limit=3)
    limited = Classifier(limited_net, [0.5] * 3, [0.1] * 3)
    # The clean forward of a loaded batch is the loader's batch size: keep it within the limit.
    result = run_screen(limited, batches(images, ids, 3), EPS, config, batch_size=12)
    assert limited_net.refused > 0 and result.batch_halvings and min(result.batch_halvings) <= 3
    assert rows_of(result) == rows_of(reference)


def test_out_of_memory_on_a_single_image_is_reported(make_tiny_cnn):
    net = make_tiny_cnn(channels=3, classes=3, seed=1).model
    model = Classifier(SmallMemory(net, limit=0), [0.0] * 3, [1.0] * 3)
    images, ids = cohort(2)
    with pytest.raises(Exception, match="out of memory"):
        run_screen(model, batches(images, ids, 2), EPS, AttackConfig(method="pgd", steps=2), batch_size=2)


def test_mixed_precision_forward_returns_float32_logits(make_tiny_cnn):
    model = make_tiny_cnn(channels=3, classes=3, seed=1, mean=[0.5] * 3, std=[0.1] * 3)
    wrapped = MixedPrecisionForward(model, "bfloat16")
    images, ids = cohort(4)
    logits = wrapped(images)
    assert logits.dtype == torch.float32
    assert torch.allclose(logits, model(images), atol=0.3)  # bfloat16 has 8 bits of mantissa
    result = run_screen(wrapped, batches(images, ids, 4), EPS, AttackConfig(method="pgd", steps=2))
    assert len(result.rows) == 4
