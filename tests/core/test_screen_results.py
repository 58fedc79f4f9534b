"""The screen's records and statistics (core/screen_results.py) apart from its engine.

Two promises of the split: the old import path ``advexplorer.core.screening`` hands out the
very same objects (so an ``isinstance`` or a monkeypatch through either name agrees), and the
records module does not load torch or the attack engine, so modules that only count rows
(groups, seeds) stay light.
"""

from __future__ import annotations

import subprocess
import sys

import advexplorer.core.screen_results as screen_results
import advexplorer.core.screening as screening

MOVED = ["NONFINITE_NOTE", "Z95", "CohortBatch", "ImageRow", "MonotoneCheck", "ScreenProgress",
         "ScreenResult", "WorstCase", "eps_label", "summarize", "wilson_interval"]


def test_the_old_module_hands_out_the_moved_objects_themselves():
    for name in MOVED:
        assert getattr(screening, name) is getattr(screen_results, name), name
        assert name in screening.__all__, name
    # Every name the engine module advertises is really there.
    for name in screening.__all__:
        assert hasattr(screening, name), name


def test_records_and_row_statistics_load_without_torch_or_the_engine():
    code = ("import sys\n"
            "import advexplorer.core.screen_results, advexplorer.core.groups\n"
            "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')\n"
            "                or m.startswith('advexplorer.core.attacks') or m == 'advexplorer.core.screening')\n"
            "print(loaded)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_a_row_counted_through_the_new_module_matches_the_old_path():
    row = screen_results.ImageRow(
        file="a.png", label=1, clean_prediction=1, clean_probability=0.9,
        adversarial_prediction=[1, 0], adversarial_probability=[0.9, 0.8], flipped=[False, True],
        attacked=[False, True], linf=[0.0, 2 / 255], l2=[0.0, 0.1])
    by_new = screen_results.summarize([row], [0.0, 2 / 255])
    by_old = screening.summarize([row], [0.0, 2 / 255])
    assert by_new == by_old
    assert [e["flipped"] for e in by_new] == [0, 1]
    assert [e["robust"] for e in by_new] == [1, 0]
    assert by_new[1]["eps_label"] == "2/255"
