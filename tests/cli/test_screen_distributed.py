"""``advexplorer screen --ranks 2``: two gloo ranks on the CPU give the rows of one process,
and a rank that dies mid-screen loses nothing: ``--resume`` finishes the missing images."""

from __future__ import annotations

import csv
import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from advexplorer.cli import main

CLASSES = ["benign", "malignant"]
EPS = "0,1/255,3/255,6/255"

#: A tiny pickled model that ends its own process (os._exit, like a killed worker) on the rank
#: named by ADVX_TEST_DIE_RANK after a few forward calls.
MODEL_SOURCE = textwrap.dedent('''
    import os
    import torch
    from torch import nn

    class DyingNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, padding=1)
            self.head = nn.Linear(6 * 4 * 4, 2)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            dying = os.environ.get("ADVX_TEST_DIE_RANK")
            if dying is not None and dying == os.environ.get("RANK") and self.calls > 12:
                os._exit(17)
            return self.head(nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 4).flatten(1))
''')


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    (root / "dying_net.py").write_text(MODEL_SOURCE)
    sys.path.insert(0, str(root))
    try:
        import dying_net

        torch.manual_seed(0)
        torch.save(dying_net.DyingNet().eval(), root / "tiny.pt")
    finally:
        sys.path.remove(str(root))
    (root / "tiny.json").write_text(json.dumps({
        "name": "tiny", "classes": CLASSES, "input_size": [24, 24], "channels": 3,
        "mean": [0.5] * 3, "std": [0.1] * 3}))
    rng = np.random.default_rng(1)
    for k in range(12):
        folder = root / "cohort" / CLASSES[k % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"tile{k:02d}.png")
    return root


@pytest.fixture
def importable(setup, monkeypatch):
    """The ranks (new processes) import the pickled model's class from the setup folder."""
    monkeypatch.syspath_prepend(str(setup))
    monkeypatch.setenv("PYTHONPATH", str(setup))
    monkeypatch.delenv("ADVX_TEST_DIE_RANK", raising=False)


def screen(setup, out, *extra):
    return main(["screen", "--model", str(setup / "tiny.pt"), "--trust-pickle",
                 "--images", str(setup / "cohort"), "--eps", EPS, "--steps", "3", "--random-start",
                 "--noise-baseline", "--batch-size", "2", "--workers", "0", "--device", "cpu",
                 "--quiet", "--out", str(out), *extra])


def rows_by_file(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


def same_rows(one, other):
    assert sorted(one) == sorted(other)
    for name in one:
        a, b = one[name], other[name]
        for column in a:
            if column.startswith(("probability@", "linf@", "l2@", "clean_probability")):
                assert float(a[column]) == pytest.approx(float(b[column]), rel=1e-4, abs=1e-6), (name, column)
            else:
                assert a[column] == b[column], (name, column)


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_and_survive_a_dead_rank(setup, tmp_path, importable, monkeypatch):
    single, double, broken = tmp_path / "one", tmp_path / "two", tmp_path / "broken"
    assert screen(setup, single) == 0
    assert screen(setup, double, "--ranks", "2") == 0

    one, two = rows_by_file(single / "per_image.csv"), rows_by_file(double / "per_image.csv")
    same_rows(one, two)
    assert list(two) == sorted(two), "the merged per_image.csv is in cohort order"
    assert not list((double / "parts").glob("*.csv")), "part files are merged and removed"
    s1 = json.loads((single / "summary.json").read_text())
    s2 = json.loads((double / "summary.json").read_text())
    assert s2["per_eps"] == s1["per_eps"]
    settings = json.loads((double / "screen_settings.json").read_text())
    assert settings["world_size"] == 2 and settings["devices"] == ["cpu", "cpu"]

    # Rank 1 dies after a few batches: the command fails in one line and keeps rank 0's rows
    # and rank 1's finished ones; --resume screens only what is missing, each image once.
    monkeypatch.setenv("ADVX_TEST_DIE_RANK", "1")
    assert screen(setup, broken, "--ranks", "2") == 2
    kept = [p for p in (broken / "parts").glob("per_image.rank*.csv")]
    assert kept and not (broken / "per_image.csv").exists()
    monkeypatch.delenv("ADVX_TEST_DIE_RANK")
    assert screen(setup, broken, "--ranks", "2", "--resume") == 0
    resumed = rows_by_file(broken / "per_image.csv")
    same_rows(one, resumed)
    with open(broken / "per_image.csv", encoding="utf-8") as handle:
        assert len(handle.read().splitlines()) == 1 + 12, "no duplicated rows"
    s3 = json.loads((broken / "summary.json").read_text())
    assert s3["per_eps"] == s1["per_eps"]
    assert s3["resumed_rows"] > 0
