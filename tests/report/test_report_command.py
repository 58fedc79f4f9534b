"""The command line a report shows is the run folder's own equivalent command.

Runs are made by the real CLI (or, for a run no command can repeat, the way the desktop app
makes one) on the tiny seeded model of ``make_run.py``, in a folder whose name has a space.
The command is read back out of the HTML as a reader would copy it: the text of its
``<pre>``, parsed by bash itself, must be the words of
:func:`advexplorer.io.runfolder.equivalent_command`, and running it repeats the run.
"""

from __future__ import annotations

import html
import json
import re
import shlex
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from advexplorer.cli import main
from advexplorer.io.runfolder import equivalent_command
from advexplorer.report import load_run, write_report
from advexplorer.report.content import run_content
from make_run import InMemoryRun, _TinyNet, attack, make_inputs

SAME_ATTACK = "The same attack with absolute paths, into a new folder"


def cli(*argv) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main([str(a) for a in argv])


def record_of(folder: Path) -> dict:
    return json.loads((folder / "record.json").read_text(encoding="utf-8"))


def commands_under(page: str, label: str) -> list[str]:
    """The text of each ``<pre class="command">`` right after a label, as a browser shows it."""
    pattern = rf'<div class="label">{re.escape(label)}</div><pre class="command">(.*?)</pre>'
    return [html.unescape(text) for text in re.findall(pattern, page, flags=re.S)]


def bash_words(command: str) -> list[str]:
    """The words bash makes of ``command`` pasted at its prompt (with ``advexplorer`` a
    function that prints its arguments): an independent check of the shell quoting."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    script = 'advexplorer() { printf "%s\\0" advexplorer "$@"; }\n' + command + "\n"
    done = subprocess.run([bash, "--norc", "--noprofile", "-c", script], capture_output=True, check=True)
    return done.stdout.decode("utf-8").split("\0")[:-1]


@pytest.fixture(scope="module")
def spaced_inputs(tmp_path_factory):
    """The tiny model, card and image in a folder with a space, and a surrogate with its card."""
    inputs = make_inputs(tmp_path_factory.mktemp("report inputs"))
    assert " " in str(inputs["model"].parent)
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(_TinyNet().eval(), torch.rand(1, 3, 32, 32)),
                       inputs["model"].parent / "surrogate.pt")
    card = json.loads(inputs["card"].read_text(encoding="utf-8"))
    card.update(name="surrogate", mean=[0.4, 0.5, 0.6])
    (inputs["model"].parent / "surrogate.json").write_text(json.dumps(card), encoding="utf-8")
    inputs["surrogate"] = inputs["model"].parent / "surrogate.pt"
    return inputs


@pytest.fixture(scope="module")
def transfer_run(spaced_inputs, tmp_path_factory):
    """Square with a query budget, crafted on a surrogate: options the report's old copy lost."""
    return attack(spaced_inputs, tmp_path_factory.mktemp("runs") / "square run",
                  "--surrogate", str(spaced_inputs["surrogate"]), "--attack", "square", "--eps", "16/255",
                  "--queries", "20", "--label", "0")


@pytest.fixture(scope="module")
def transfer_page(transfer_run, tmp_path_factory):
    return write_report(tmp_path_factory.mktemp("reports") / "report.html", [transfer_run]).read_text(encoding="utf-8")


def test_the_report_shows_the_options_that_made_the_run(transfer_run, transfer_page, spaced_inputs):
    shown = commands_under(transfer_page, SAME_ATTACK)
    assert len(shown) == 1
    words = bash_words(shown[0])
    assert words == equivalent_command(record_of(transfer_run))
    value = {option: words[words.index(option) + 1] for option in ("--queries", "--surrogate", "--attack", "--label")}
    assert value == {"--queries": "20", "--surrogate": str(spaced_inputs["surrogate"]), "--attack": "square",
                     "--label": "0"}
    assert words[-2:] == ["--out", "NEW_FOLDER"]
    assert "cannot be repeated from a command line" not in transfer_page


def test_paths_with_spaces_are_quoted_for_the_shell(transfer_page, spaced_inputs):
    command = commands_under(transfer_page, SAME_ATTACK)[0]
    for key in ("model", "card", "image", "surrogate"):
        path = str(spaced_inputs[key])
        assert " " in path
        assert shlex.quote(path) in command and f" {path} " not in command
    words = bash_words(command)
    assert words == shlex.split(command)
    assert words[words.index("--image") + 1] == str(spaced_inputs["image"])  # 'tissue <1>.png', unescaped


def test_the_command_in_the_report_repeats_the_run(transfer_run, transfer_page, tmp_path):
    words = shlex.split(commands_under(transfer_page, SAME_ATTACK)[0])
    again_dir = tmp_path / "again run"
    assert words[:2] == ["advexplorer", "attack"] and words[-1] == "NEW_FOLDER"
    assert cli(*words[1:-1], str(again_dir)) == 0
    first, again = record_of(transfer_run), record_of(again_dir)
    assert again["attack"] == first["attack"] and first["attack"]["queries"] == 20
    assert again["transfer"] == first["transfer"]
    assert first["transfer"]["surrogate"]["path"].endswith("surrogate.pt")
    for key in ("label", "prediction_after", "norms"):
        assert again.get(key) == first.get(key), key
    assert np.array_equal(np.load(again_dir / "perturbation.npy"), np.load(transfer_run / "perturbation.npy"))


# --------------------------------------------------------------------------- no command repeats it


@pytest.fixture(scope="module")
def momentum_report(spaced_inputs, tmp_path_factory):
    """An MI-FGSM run with momentum decay 0.5 (no option sets it), made as the app makes runs and
    saved beside its report; returns (report path, run folder)."""
    from advexplorer.config import AttackConfig
    from advexplorer.io.images import load_image
    from advexplorer.io.models import load_model
    from advexplorer.report.run import runs_folder_for, write_report_with_runs
    from advexplorer.session.runs import RunRequest, build_record, run

    model = load_model(spaced_inputs["model"], device="cpu")
    request = RunRequest(model=model, image=load_image(spaced_inputs["image"], model.card),
                         config=AttackConfig(method="mifgsm", norm="linf", eps=16 / 255, steps=3, decay=0.5,
                                             seed=4).validate(),
                         command_line=["advexplorer", "gui"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = run(request)
    report = tmp_path_factory.mktemp("app reports") / "momentum.html"
    write_report_with_runs(report, [InMemoryRun(1, request, outcome, build_record(request, outcome))])
    return report, runs_folder_for(report) / "run-1"


def test_a_run_no_command_repeats_sends_the_reader_to_reproduce(momentum_report):
    report, run_dir = momentum_report
    record = record_of(run_dir)
    assert record["attack"]["decay"] == 0.5 and equivalent_command(record) is None
    page = report.read_text(encoding="utf-8")
    assert commands_under(page, SAME_ATTACK) == []
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    reproduce = shlex.join(["advexplorer", "reproduce", str(run_dir)])
    assert " " in str(run_dir) and reproduce.endswith(shlex.quote(str(run_dir)))
    sentence = ("This run cannot be repeated from a command line (no advexplorer attack command gives all of "
                f"its settings). {reproduce} repeats it from its run folder")
    assert sentence in text
    # And it does: the reproduce command of the sentence re-runs it to the same result.
    words = shlex.split(reproduce)
    assert cli(*words[1:], "--quiet") == 0


def test_the_pdf_says_it_too(momentum_report, tmp_path):
    pytest.importorskip("PySide6", reason="PDF reports are drawn by Qt (the gui extra)")
    from pdftext import pdf_text, squeeze

    _, run_dir = momentum_report
    text = squeeze(pdf_text(write_report(tmp_path / "report.pdf", [run_dir])))
    assert squeeze("This run cannot be repeated from a command line") in text
    assert squeeze(f"advexplorer reproduce {shlex.quote(str(run_dir))} repeats it") in text


def test_a_run_whose_image_was_not_a_file_is_not_sent_to_reproduce(transfer_run):
    view = load_run(transfer_run)
    view.record["image"] = dict(view.record["image"], path=None)
    content = run_content(view)
    assert content.equivalent_command is None
    assert content.no_command_note == ("This run cannot be repeated from a command line, nor by advexplorer "
                                       "reproduce: its image was not read from a file.")
