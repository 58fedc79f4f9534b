"""What a user sees when something is wrong: exactly one line on stderr, exit status 2.

* Mistakes in the arguments are argparse's, but printed as ``advexplorer attack: error:
  …; see 'advexplorer attack --help'`` instead of the usage block (issue 10, defect 9).
* Negative numbers and fractions (``--eps -1/255``) parse, and are then refused with the
  real reason (before: "expected one argument").
* The machine's limits — a full disk, a folder that cannot be written, no memory left —
  are one line saying what to do, not "internal error" (issue 18, item 5).
"""

from __future__ import annotations

import argparse
import errno

import pytest
import torch

from advexplorer import config
from advexplorer.cli import attach_negative_values, build_parser, main


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err and "usage:" not in captured.err
    return lines[0]


@pytest.mark.parametrize("argv, words", [
    (["attack", "--out", "{tmp}/run", "--eps", "-1/255"],
     "argument --eps: ε = -1/255 is out of range: it must be greater than 0"),
    (["attack", "--out", "{tmp}/run", "--eps", "-0.5"], "ε = -0.5 is out of range"),
    (["attack", "--out", "{tmp}/run", "--eps", "eight"], "argument --eps: 'eight' is not a number"),
    (["attack", "--out", "{tmp}/run", "--step-size", "-2/255"], "argument --step-size: -2/255 is not greater than 0"),
    (["attack", "--out", "{tmp}/run", "--attack", "cw"], "argument --attack: invalid choice: 'cw'"),
    (["attack", "--eps", "8/255"], "the following arguments are required: --out"),
    (["min-eps", "--out", "{tmp}/run", "--eps-max", "-8/255"], "ε = -8/255 is out of range"),
    (["min-eps", "--out", "{tmp}/run", "--attack", "noise"], "argument --attack: invalid choice: 'noise'"),
    (["screen", "--images", "{tmp}", "--out", "{tmp}/s", "--eps", "0,1/0"], "argument --eps: '1/0' is not a number"),
])
def test_argument_mistakes_are_one_line_that_points_to_help(argv, words, tmp_path, capsys):
    argv = [part.format(tmp=tmp_path) for part in argv]
    assert main(argv) == 2
    line = one_line_error(capsys)
    command = f"advexplorer {argv[0]}"
    assert line.startswith(f"{command}: error: ")
    assert words in line
    assert line.endswith(f"; see '{command} --help'")
    assert not (tmp_path / "run").exists()


def test_an_unknown_command_is_one_line(capsys):
    assert main(["frobnicate"]) == 2
    line = one_line_error(capsys)
    assert line.startswith("advexplorer: error: unknown command 'frobnicate'")
    assert line.endswith("; see 'advexplorer --help'")


def test_negative_values_reach_the_option_that_refuses_them():
    assert attach_negative_values(["--eps", "-1/255", "--steps", "-3", "--quiet", "x"]) == \
        ["--eps=-1/255", "--steps=-3", "--quiet", "x"]
    assert attach_negative_values(["--eps", "0,-1/255"]) == ["--eps", "0,-1/255"]
    assert attach_negative_values(["--eps", "-.5", "--tolerance", "-2e-3"]) == \
        ["--eps=-.5", "--tolerance=-2e-3"]
    assert attach_negative_values(["--out", "-x"]) == ["--out", "-x"]  # not a number


def test_negative_steps_are_refused_by_the_engine_rule(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("advexplorer.session.runs.check_output_dir", lambda out: tmp_path / "run")
    assert main(["attack", "--out", str(tmp_path / "run"), "--steps", "-3", "--device", "cpu"]) == 2
    assert "at least 1 step" in one_line_error(capsys)


def test_choices_come_from_the_vocabulary():
    def choices(command, option):
        parser = build_parser(command)
        return next(tuple(a.choices) for a in parser._actions if option in a.option_strings)

    assert choices("attack", "--attack") == config.METHODS
    assert choices("attack", "--norm") == config.NORMS
    assert choices("attack", "--saliency") == config.SALIENCY_METHODS
    assert choices("screen", "--attack") == config.METHODS
    assert choices("min-eps", "--attack") == config.GRADIENT_METHODS
    parsed = build_parser("attack").parse_args(["--out", "x", "--eps", "0.5/255"])
    assert parsed.eps == config.parse_number("0.5/255")


# --------------------------------------------------------------------------- the machine's limits

def fail_with(monkeypatch, target: str, error: BaseException) -> None:
    def raise_it(*args, **kwargs):
        raise error
    monkeypatch.setattr(target, raise_it)


@pytest.mark.parametrize("error, words", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/run/perturbation.npy"),
     "the disk is full (writing /data/run/perturbation.npy): free space or choose another --out"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "the disk quota is used up: free space or choose another --out"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/run"),
     "cannot write to /data/run: Permission denied; choose another --out"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/cd/run"),
     "cannot write to /mnt/cd/run: Read-only file system; choose another --out"),
])
def test_disk_errors_are_one_line_saying_what_to_do(error, words, tmp_path, capsys, monkeypatch):
    fail_with(monkeypatch, "advexplorer.session.runs.check_output_dir", error)
    assert main(["attack", "--out", str(tmp_path / "run")]) == 2
    assert one_line_error(capsys) == f"advexplorer attack: error: {words}"


def test_out_of_memory_on_a_gpu_suggests_the_cpu(tmp_path, capsys, monkeypatch):
    fail_with(monkeypatch, "advexplorer.commands.attack.build_request",
              torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 120.00 GiB"))
    monkeypatch.setattr("advexplorer.session.runs.check_output_dir", lambda out: tmp_path / "run")
    assert main(["attack", "--out", str(tmp_path / "run"), "--device", "cuda"]) == 2
    assert one_line_error(capsys) == ("advexplorer attack: error: out of memory while running the "
                                      "attack on cuda; use a smaller input size or --device cpu")


def test_out_of_memory_in_a_screen_suggests_a_smaller_batch(tmp_path, capsys, monkeypatch):
    fail_with(monkeypatch, "advexplorer.commands.screen._prepare_out", MemoryError())
    assert main(["screen", "--images", str(tmp_path), "--out", str(tmp_path / "s")]) == 2
    assert one_line_error(capsys) == (
        "advexplorer screen: error: out of memory while screening the cohort; use a smaller "
        "--batch-size or a smaller input size, or free memory")


def test_the_cpu_allocator_running_out_is_out_of_memory_too(tmp_path, capsys, monkeypatch):
    fail_with(monkeypatch, "advexplorer.session.runs.check_output_dir",
              RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough "
                           "memory: you tried to allocate 128849018880 bytes."))
    assert main(["min-eps", "--out", str(tmp_path / "run")]) == 2
    assert "out of memory while searching the minimal ε" in one_line_error(capsys)


def test_a_bug_is_still_reported_as_one_line_internal_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ADVEXPLORER_DEBUG", raising=False)
    fail_with(monkeypatch, "advexplorer.session.runs.check_output_dir", KeyError("oops"))
    assert main(["attack", "--out", str(tmp_path / "run")]) == 1
    line = one_line_error(capsys)
    assert line.startswith("advexplorer attack: internal error: KeyError")


def test_a_missing_file_is_not_mistaken_for_the_machine(tmp_path):
    from advexplorer.cli import machine_error_message

    assert machine_error_message(FileNotFoundError(errno.ENOENT, "No such file", "x")) is None
    assert machine_error_message(ValueError("bad")) is None
    namespace = argparse.Namespace(out="x", batch_size=4, device="cpu")
    assert "--batch-size" in machine_error_message(MemoryError(), "screening", namespace)
