"""The run folder: the one module that knows its file names, writes it and reads it back.

A run folder is what ``advexplorer attack --out DIR`` (and the GUI's *Save run folder*) leaves
behind — see the README's "What a run folder holds"::

    record.json                       every parameter, hash, prediction and measurement
    input.npy, perturbation.npy       float32 C×H×W at the model's input size
    adversarial.png                   the adversarial image, 8-bit
    mask.png                          the allowed mask as used (model input size)
    diagnostic.png                    the diagnostic region as used (with a diagnostic region)
    saliency_before/after.npy         H×W float32 (with saliency)
    source_mask.png                   a mask painted in the app, at the image's file size, so the
    source_diagnostic.png             run can be repeated with --mask/--protect/--diagnostic

Writing (:func:`write_run_folder`) is all or nothing: the files go into a hidden ``.partial``
folder beside the destination, which is renamed into place when complete. A ``.partial``
folder left behind by a killed process (``kill -9``) is removed by the next write to the same
destination, and refused with a clear message if someone tries to read it.

Reading (:meth:`RunFolder.open`) checks the record at once and reads the arrays only when
asked for. Any problem a user can cause — not a folder, no record, a record that is not JSON,
a damaged array — is one :class:`~advexplorer.errors.UserError` line naming the folder.

``record.json`` never holds bare ``NaN``/``Infinity`` (not JSON; other tools reject it): a
non-finite number is written as ``null`` and the JSON encoder runs with ``allow_nan=False`` so
any value that slips through is caught rather than written. Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advexplorer.config import DEFAULT_QUERIES, eps_argument
from advexplorer.errors import UserError
from advexplorer.io.atomic import atomic_directory
from advexplorer.io.hashing import sha256_file

RECORD_VERSION = 1
RECORD = "record.json"
#: Every file a run folder may hold, by role. A record's ``files`` object names the ones it has.
FILES = {"input": "input.npy", "perturbation": "perturbation.npy",
         "adversarial": "adversarial.png", "mask": "mask.png", "diagnostic": "diagnostic.png",
         "saliency_before": "saliency_before.npy", "saliency_after": "saliency_after.npy",
         "source_mask": "source_mask.png", "source_diagnostic": "source_diagnostic.png"}
#: Subcommands whose command line re-creates a run folder (``advexplorer gui`` does not).
RUN_COMMANDS = ("attack", "min-eps", "reproduce")
#: Methods that spend ``--queries`` (Square, and the ensemble's Square stage).
QUERY_METHODS = ("square", "ensemble")

__all__ = ["RECORD_VERSION", "RECORD", "FILES", "RunArrays", "RunFolder", "write_run_folder",
           "jsonable", "record_text", "equivalent_command", "is_run_command", "leftover_partials"]


# --------------------------------------------------------------------------- the record as JSON


def jsonable(value: Any) -> Any:
    """Plain JSON types only: numpy/torch scalars and arrays become numbers and lists, paths
    become strings, and non-finite floats become None (``null``: "not measured")."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if hasattr(value, "detach") and hasattr(value, "tolist"):  # a torch tensor, without importing torch
        return jsonable(value.detach().cpu().tolist())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def record_text(record: dict[str, Any]) -> str:
    """``record.json``'s text: strict JSON (a NaN that slips past :func:`jsonable` raises)."""
    return json.dumps(jsonable(record), indent=2, allow_nan=False)


def is_run_command(words: Any) -> bool:
    """True when ``words`` is an ``advexplorer`` command line that makes a run folder
    (``attack``, ``min-eps``, ``reproduce``), not e.g. ``advexplorer gui``."""
    return (isinstance(words, (list, tuple)) and len(words) >= 2
            and str(words[1]) in RUN_COMMANDS)


def equivalent_command(record: dict[str, Any], out: str | os.PathLike = "NEW_FOLDER") -> list[str] | None:
    """The ``advexplorer attack`` command line that repeats the recorded run into ``out``.

    Paths are the recorded absolute paths; ε and step sizes are written as ``8/255`` when
    that is exactly the recorded value. Every option of ``advexplorer attack`` that changes
    the result and is stored in the record is written back: the attack and its budget,
    Square's ``--queries``, ``--diversity``, the transfer ``--surrogate``, the label and
    target, ``--defense``/``--adaptive``/``--precision``, a slide ``--region``/``--level``,
    ``--dicom-window``, QuPath ``--annotations`` with their classes, saliency and robustness.
    The options that cannot change the result are left out: ``--report``, ``--overwrite``
    and ``--quiet`` (what is printed or written besides the run folder) and
    ``--trust-pickle`` (a permission, which the reader must give knowingly, as
    ``advexplorer reproduce`` also asks).

    None when no command line can repeat the run: the image or a mask was not read from a
    file, or a setting has no command-line option (MI-FGSM's momentum decay other than
    1.0), or a recorded value cannot be written back as an option (a class name the option
    would read as another class); ``advexplorer reproduce`` still repeats such a run.
    """
    model, image = record.get("model") or {}, record.get("image") or {}
    mask, attack = record.get("mask") or {}, record.get("attack") or {}
    diagnostic = record.get("diagnostic")
    saliency = record.get("saliency") if isinstance(record.get("saliency"), dict) else None
    annotations = record.get("annotations") if isinstance(record.get("annotations"), dict) else {}
    protect_classes = _class_list(annotations.get("protect_classes"))
    diagnostic_classes = _class_list(annotations.get("diagnostic_classes"))
    if not image.get("path") or not model.get("path"):
        return None
    if protect_classes is None or diagnostic_classes is None:
        return None  # a class name --protect-classes/--diagnostic-classes cannot spell
    # Masks made from annotations are made again from them (as reproduce does).
    from_annotations = bool(annotations.get("path"))
    mask_from_annotations = from_annotations and bool(protect_classes) and mask.get("mode") == "protect"
    diagnostic_from_annotations = from_annotations and bool(diagnostic_classes)
    if mask.get("mode", "none") != "none" and not mask.get("path") and not mask_from_annotations:
        return None
    method = str(attack.get("method", "pgd"))
    # Only MI-FGSM reads the momentum decay (core/attacks/mifgsm.py), and no option sets it.
    decay = attack.get("decay")
    if method == "mifgsm" and decay is not None and float(decay) != 1.0:
        return None
    words = ["advexplorer", "attack", "--model", str(model["path"])]
    if model.get("card_path"):
        words += ["--card", str(model["card_path"])]
    words += ["--image", str(image["path"])]
    region = image.get("region")
    if isinstance(region, dict) and region:
        words += ["--region", ",".join(str(int(region[k])) for k in ("x", "y", "w", "h")),
                  "--level", str(int(region.get("level") or 0))]
    dicom = image.get("dicom")
    if isinstance(dicom, dict) and dicom.get("window_source") == "given" and dicom.get("window"):
        # A window from the file (or the pixel range) is found there again: no option then.
        words += ["--dicom-window", ",".join(repr(float(v)) for v in dicom["window"])]
    if mask.get("mode") in ("allowed", "protect") and not mask_from_annotations:  # else: --annotations below
        words += ["--mask" if mask["mode"] == "allowed" else "--protect", str(mask["path"])]
    if from_annotations and (protect_classes or diagnostic_classes):
        words += ["--annotations", str(annotations["path"])]
        if protect_classes:
            words += ["--protect-classes", ",".join(protect_classes)]
        if diagnostic_classes:
            words += ["--diagnostic-classes", ",".join(diagnostic_classes)]
    words += ["--attack", method, "--norm", str(attack.get("norm", "linf"))]
    if _is_number(attack.get("eps")):
        words += ["--eps", eps_argument(attack["eps"])]
    if _is_number(attack.get("step_size")):
        words += ["--step-size", eps_argument(attack["step_size"])]
    # The record's steps are the effective ones; Square's are its queries (--queries below).
    if attack.get("steps") is not None and method != "square":
        words += ["--steps", str(attack["steps"])]
    if attack.get("queries") is not None and (method in QUERY_METHODS
                                              or int(attack["queries"]) != DEFAULT_QUERIES):
        words += ["--queries", str(int(attack["queries"]))]
    if _is_number(attack.get("diversity")) and float(attack["diversity"]) > 0:
        words += ["--diversity", repr(float(attack["diversity"]))]
    classes = ((model.get("card") or {}).get("classes")) or []
    # The configuration's own target (the record's "target" is the result's, the same for a
    # targeted attack); records from before it was stored name the target only there.
    target = attack.get("targeted") if "targeted" in attack else (record.get("target") or {}).get("index")
    for option, index in (("--targeted", target), ("--label", (record.get("label") or {}).get("index"))):
        if index is None:
            continue
        argument = _class_argument(classes, int(index))
        if argument is None:
            return None
        words += [option, argument]
    if attack.get("random_start"):
        words.append("--random-start")
    if attack.get("seed") is not None:
        words += ["--seed", str(attack["seed"])]
    if int(attack.get("restarts") or 1) > 1:
        words += ["--restarts", str(attack["restarts"])]
    if attack.get("early_stop"):
        words.append("--early-stop")
    surrogate = ((record.get("transfer") or {}).get("surrogate") or {}).get("path")
    if surrogate:
        words += ["--surrogate", str(surrogate)]
    if saliency and saliency.get("method"):
        words += ["--saliency", str(saliency["method"])]
        if record.get("saliency_class", "clean") != "clean":
            words += ["--saliency-class", str(record["saliency_class"])]
    if isinstance(diagnostic, dict) and diagnostic.get("path") and not diagnostic_from_annotations:
        words += ["--diagnostic", str(diagnostic["path"])]
    if "robustness" in record and not saliency:
        words.append("--robustness")
    defence = record.get("defence")
    if isinstance(defence, dict) and defence.get("defence"):
        words += ["--defense", str(defence["defence"])]
        if defence.get("adaptive", "none") != "none":
            words += ["--adaptive", str(defence["adaptive"])]
    precision = record.get("precision")
    if isinstance(precision, dict) and precision.get("precision") not in (None, "float32"):
        words += ["--precision", str(precision["precision"])]
    if record.get("device"):
        words += ["--device", str(record["device"])]
    return words + ["--out", str(out)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _class_list(names: Any) -> list[str] | None:
    """Annotation class names as recorded; None when one cannot be given in a comma-separated
    option (it holds a comma, or blanks that the option's parser would strip)."""
    names = [str(name) for name in (names or [])]
    if any("," in name or name != name.strip() or not name for name in names) or \
            (names and names[0].startswith("-")):  # argparse would take it for an option
        return None
    return names


def _class_argument(classes: list[str], index: int) -> str | None:
    """How ``--label``/``--targeted`` name class ``index`` so that the card reads it back as
    that class (:meth:`advexplorer.io.cards.ModelCard.class_index` matches names first, so
    the index "1" means the class *named* "1" if there is one): the index, else the name,
    else None."""
    lowered = [str(name).lower() for name in classes]
    text = str(index)
    if text not in classes and text.lower() not in lowered:
        return text
    name = str(classes[index]) if 0 <= index < len(classes) else None
    if name is not None and name == name.strip() and not name.startswith("-") \
            and classes.index(name) == index:
        return name
    return None


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class RunArrays:
    """The arrays of a run folder, as numpy (the caller converts tensors).

    ``input_image``/``perturbation``: float32 C×H×W at the model's input size;
    ``adversarial_png``: uint8 H×W×C (the 8-bit export); ``allowed_mask``: H×W, non-zero where
    the attack could act (all ones without a mask); ``diagnostic_mask``: H×W at model size;
    ``saliency_before``/``saliency_after``: H×W float32. ``source_mask`` and
    ``source_diagnostic`` are masks painted in the app at the *image's file size*, in the
    convention of the record's mask mode (non-zero = allowed, or = protected), written only
    when the run has no mask file to point to.
    """

    input_image: np.ndarray
    perturbation: np.ndarray
    adversarial_png: np.ndarray
    allowed_mask: np.ndarray
    diagnostic_mask: np.ndarray | None = None
    saliency_before: np.ndarray | None = None
    saliency_after: np.ndarray | None = None
    source_mask: np.ndarray | None = None
    source_diagnostic: np.ndarray | None = None


def leftover_partials(folder: str | os.PathLike) -> list[Path]:
    """Unfinished copies of ``folder`` left beside it by an interrupted write (``kill -9``)."""
    folder = Path(folder).expanduser()
    parent = folder.parent
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.glob(f".{folder.name}.*.partial") if p.is_dir())


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")


def _save_mask(path: Path, mask: np.ndarray) -> None:
    _save_png(path, (np.asarray(mask) != 0).astype(np.uint8) * 255)


def write_run_folder(folder: str | os.PathLike, record: dict[str, Any], arrays: RunArrays, *,
                     overwrite: bool = False, command_as_cli: bool = False) -> Path:
    """Write ``record.json`` and the arrays into ``folder``, all or nothing.

    ``folder`` must be new or empty unless ``overwrite`` (then an old run folder is replaced
    only once the new one is complete). The record's ``files`` object is set to the files
    written. A mask painted in the app (``arrays.source_mask``) becomes ``source_mask.png``
    and the record's ``mask`` names it by absolute path and SHA-256, so ``advexplorer
    reproduce`` and the equivalent ``advexplorer attack`` command can use it; the same for
    ``source_diagnostic``.

    With ``command_as_cli``, a record whose ``command_line`` is not a command that makes a run
    folder (``advexplorer gui``, or none) gets the equivalent ``advexplorer attack ... --out
    FOLDER`` command instead, and ``started_from`` keeps what it said before: a report then
    shows a command a reader can run. Returns ``folder`` as a Path.
    """
    folder = Path(folder).expanduser()
    # One writer per run folder: an unfinished copy beside it can only be a killed earlier write.
    for leftover in leftover_partials(folder):
        shutil.rmtree(leftover, ignore_errors=True)
    record = jsonable(record)
    final = folder.resolve()
    files: dict[str, str] = {}
    with atomic_directory(folder, overwrite=overwrite) as staging:
        def save(role: str, writer, array) -> Path:
            path = staging / FILES[role]
            writer(path, array)
            files[role] = FILES[role]
            return path

        save("input", np.save, np.asarray(arrays.input_image, dtype=np.float32))
        save("perturbation", np.save, np.asarray(arrays.perturbation, dtype=np.float32))
        save("adversarial", _save_png, np.asarray(arrays.adversarial_png, dtype=np.uint8))
        save("mask", _save_mask, arrays.allowed_mask)
        if arrays.diagnostic_mask is not None:
            save("diagnostic", _save_mask, arrays.diagnostic_mask)
        if arrays.saliency_before is not None and arrays.saliency_after is not None:
            save("saliency_before", np.save, np.asarray(arrays.saliency_before, dtype=np.float32))
            save("saliency_after", np.save, np.asarray(arrays.saliency_after, dtype=np.float32))
        for role, key, array in (("source_mask", "mask", arrays.source_mask),
                                 ("source_diagnostic", "diagnostic", arrays.source_diagnostic)):
            if array is None:
                continue
            path = save(role, _save_mask, array)
            entry = dict(record.get(key) or {})
            entry.update(path=str(final / FILES[role]), sha256=sha256_file(path), stored=FILES[role])
            record[key] = entry
        record["files"] = files
        if command_as_cli and not is_run_command(record.get("command_line")):
            command = equivalent_command(record, out=final)
            if command is not None:
                record["started_from"] = record.get("command_line")
                record["command_line"] = command
        (staging / RECORD).write_text(record_text(record), encoding="utf-8")
    return folder


# --------------------------------------------------------------------------- reading


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return np.asarray(image)


def _read_npy(path: Path) -> np.ndarray:
    # allow_pickle=False: a run folder from someone else must not be able to run code.
    return np.load(path, allow_pickle=False)


@dataclass(frozen=True)
class RunFolder:
    """A run folder on disk: its record (read at once) and its arrays (read when asked).

    ``RunFolder.open(path)`` raises :class:`UserError` if ``path`` is not a run folder.
    Arrays come back as stored: :attr:`input_image` and :attr:`perturbation` C×H×W float32,
    PNGs as uint8 arrays, saliency maps H×W float32.
    """

    path: Path
    record: dict[str, Any]
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunFolder":
        """Read ``path/record.json`` and check that it is an AdvExplorer run record."""
        path = Path(path).expanduser()
        if path.name.endswith(".partial"):
            raise UserError(f"{path} is an unfinished run folder left by an interrupted write; "
                            "delete it and run the attack again.")
        if not path.is_dir():
            raise UserError(f"{path} is not a folder. Give the folder written by "
                            "'advexplorer attack --out DIR'.")
        record_path = path / RECORD
        if not record_path.is_file():
            raise UserError(f"{path} is not a run folder: it has no {RECORD}. Give the folder "
                            "written by 'advexplorer attack --out DIR'.")
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise UserError(f"{record_path} is not valid JSON ({reason}); the run folder {path} "
                            "is damaged.") from None
        except OSError as error:
            raise UserError(f"{record_path} could not be read ({error.strerror or error}).") from None
        if not isinstance(record, dict) or "advexplorer_record" not in record:
            raise UserError(f"{record_path} is not an AdvExplorer run record (no 'advexplorer_record' "
                            f"key), so {path} is not a run folder.")
        return cls(path=path.resolve(), record=record)

    # -- files --------------------------------------------------------------------------
    def file_name(self, role: str) -> str:
        """The file name the record gives for ``role`` (a key of :data:`FILES`)."""
        named = (self.record.get("files") or {}).get(role)
        return named if isinstance(named, str) else FILES[role]

    def file(self, role: str) -> Path:
        """The path of ``role``'s file; a record naming a file outside its folder is refused."""
        name = self.file_name(role)
        candidate = (self.path / name).resolve()
        if self.path not in candidate.parents:
            raise UserError(f"{self.path / RECORD} names {name!r} for {role}, which is outside "
                            "the run folder.")
        return candidate

    def has(self, role: str) -> bool:
        """Whether ``role``'s file is present."""
        return self.file(role).is_file()

    def names(self, role: str) -> bool:
        """Whether the record says this run has ``role``'s file."""
        return role in (self.record.get("files") or {})

    def array(self, role: str, *, required: bool = False) -> np.ndarray | None:
        """``role``'s array (read once, then kept); None when absent unless ``required``."""
        if role in self._arrays:
            return self._arrays[role]
        path = self.file(role)
        if not path.is_file():
            if required:
                raise UserError(f"The run folder {self.path} has no {self.file_name(role)}; it is "
                                "incomplete. Re-run the attack with --out to a new folder.")
            return None
        reader = _read_npy if path.suffix == ".npy" else _read_png
        try:
            array = reader(path)
        except (OSError, ValueError, SyntaxError) as error:  # PIL raises SyntaxError for broken PNGs
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise UserError(f"{path} could not be read ({reason}); the run folder {self.path} "
                            "is damaged.") from None
        self._arrays[role] = array
        return array

    @property
    def input_image(self) -> np.ndarray:
        """The exact [0,1] tensor attacked, as stored (C×H×W float32)."""
        return self.array("input", required=True)

    @property
    def perturbation(self) -> np.ndarray:
        """Adversarial − input, as stored (C×H×W float32)."""
        return self.array("perturbation", required=True)

    @property
    def adversarial_png(self) -> np.ndarray | None:
        """The 8-bit adversarial image as saved, or None if absent."""
        return self.array("adversarial")

    def source_file(self, key: str) -> Path | None:
        """Where the run's ``mask`` or ``diagnostic`` file is now: the recorded path, or the
        copy stored in this folder if the folder has moved since it was written."""
        entry = self.record.get(key)
        if not isinstance(entry, dict) or not entry.get("path"):
            return None
        recorded = Path(str(entry["path"]))
        stored = entry.get("stored")
        if not recorded.is_file() and isinstance(stored, str):
            role = "source_mask" if key == "mask" else "source_diagnostic"
            if self.file(role).is_file():
                return self.file(role)
        return recorded
