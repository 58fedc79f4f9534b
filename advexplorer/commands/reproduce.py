"""``advexplorer reproduce RUN_DIR``: re-run a recorded attack and say whether it matches.

The recorded inputs (model, card, image, masks, a transfer run's surrogate model and its
card) are first checked against their SHA-256 in ``record.json``; if any file changed or is
gone, nothing is run and the message names the file and both hashes. Then the attack is
re-run through the same code path as ``advexplorer attack`` (``session.runs``) with every
recorded parameter and the recorded seed, and the new perturbation, 8-bit adversarial PNG,
predictions and (if recorded) saliency maps are compared with the stored ones.

Bit-for-bit equality is required when the re-run is on a CPU like the original and
Python, torch, torchvision, numpy and advexplorer have the recorded versions: the engine
draws random numbers on the CPU from the seed and PyTorch's CPU kernels are deterministic
for a fixed build. Otherwise (GPU, other versions) results may legitimately differ in the
last bits, so they are compared within ``--tolerance`` (default 1e-4 in pixel units) and
the predicted classes must agree.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advexplorer.commands._args import number

DEFAULT_TOLERANCE = 1e-4
VERSION_KEYS = ("python", "torch", "torchvision", "numpy", "advexplorer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by 'advexplorer attack --out DIR'")
    parser.add_argument("--device", default=None,
                        help="device for the re-run (default: the recorded one if present, else cpu)")
    parser.add_argument("--tolerance", type=number, default=None,
                        help="largest allowed difference of any perturbation value, pixel units "
                             "(default: 0, i.e. bit for bit, on CPU with the recorded versions; "
                             f"{DEFAULT_TOLERANCE:g} otherwise)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow loading a fully pickled model (runs code from the file)")
    parser.add_argument("--out", metavar="DIR", help="also write the re-run as a new run folder")
    parser.add_argument("--quiet", action="store_true", help="print only the verdict")


@dataclass
class Check:
    """One comparison line: what was compared, how it came out, whether it passes."""

    what: str
    detail: str
    ok: bool


@dataclass
class Reproduction:
    """The outcome of a reproduction: every check, the mode and the overall verdict."""

    run_dir: Path
    exact: bool
    tolerance: float
    reasons: list[str]
    checks: list[Check] = field(default_factory=list)
    device: str = ""
    wall_time_s: float = 0.0
    request: Any = None
    outcome: Any = None
    note: str = ""

    @property
    def matches(self) -> bool:
        return all(check.ok for check in self.checks)


def _source(record: dict, key: str, folder) -> str | None:
    """The mask or diagnostic file of the record: a painted one stored in the run folder is
    found there even if the folder has moved since."""
    if folder is not None:
        path = folder.source_file(key)
        return None if path is None else str(path)
    entry = record.get(key)
    return entry.get("path") if isinstance(entry, dict) else None


def _input_files(record: dict, folder=None) -> list[tuple[str, str | None, str | None]]:
    """(role, path, recorded sha256) of every input a run was made from."""
    model = record.get("model") or {}
    image = record.get("image") or {}
    mask = record.get("mask") or {}
    files = [("model", model.get("path"), model.get("sha256")),
             ("model card", model.get("card_path"), model.get("card_sha256")),
             ("image", image.get("path"), image.get("sha256"))]
    if mask.get("path"):
        files.append((f"{mask.get('mode', 'allowed')} mask", _source(record, "mask", folder),
                      mask.get("sha256")))
    diagnostic = record.get("diagnostic")
    if isinstance(diagnostic, dict) and diagnostic.get("path"):
        files.append(("diagnostic region", _source(record, "diagnostic", folder), diagnostic.get("sha256")))
    annotations = record.get("annotations")
    if isinstance(annotations, dict) and annotations.get("path"):
        files.append(("annotations", annotations["path"], annotations.get("sha256")))
    # A transfer run was crafted on the surrogate: it decides the result as much as the model.
    surrogate = (record.get("transfer") or {}).get("surrogate")
    if isinstance(surrogate, dict) and surrogate.get("path"):
        files.append(("surrogate model", surrogate["path"], surrogate.get("sha256")))
        # Records from before the surrogate's card was recorded have no card_path: not checked.
        files.append(("surrogate card", surrogate.get("card_path"), surrogate.get("card_sha256")))
    return files


def check_inputs(record: dict, folder=None) -> list[str]:
    """Refuse (UserError) if a recorded input is missing or its SHA-256 changed.

    Checked *before* anything is loaded, so a swapped model file never gets to run. ``folder``
    (a :class:`~advexplorer.io.runfolder.RunFolder`) lets masks stored in the run folder be
    found after the folder moved. Returns the roles that were verified.
    """
    from advexplorer.errors import UserError
    from advexplorer.io.hashing import sha256_file

    problems, verified = [], []
    for role, path, recorded in _input_files(record, folder):
        if not path:
            if role == "image":
                raise UserError("This run's image was not read from a file (no path in the record), "
                                "so it cannot be re-run from the record.")
            continue
        file = Path(str(path))
        # A model may be a folder (Hugging Face save_pretrained), hashed as the loader hashes it.
        folder_model = role in ("model", "surrogate model") and file.is_dir()
        if not file.is_file() and not folder_model:
            problems.append(f"the {role} {file} no longer exists")
            continue
        if recorded is None:
            problems.append(f"the record has no SHA-256 for the {role} {file}")
            continue
        actual = _folder_sha256(file) if folder_model else sha256_file(file)
        if actual != recorded:
            problems.append(f"the {role} {file} has changed: the record says SHA-256 {recorded}, "
                            f"the file now has {actual}")
        else:
            verified.append(role)
    if problems:
        raise UserError("Cannot reproduce: " + "; ".join(problems) + ". Restore the original "
                        "file(s) or re-run the attack on the new ones.")
    return verified


def _folder_sha256(folder: Path) -> str:
    """A model folder's SHA-256 as :func:`advexplorer.io.models.load_model` records it."""
    from advexplorer.io.models import _model_sha256

    return _model_sha256(folder)


def _namespace(record: dict, device: str, trust_pickle: bool, folder=None) -> argparse.Namespace:
    """The arguments ``advexplorer attack`` would have parsed for this record."""
    model, image, mask = record.get("model") or {}, record.get("image") or {}, record.get("mask") or {}
    attack = record.get("attack") or {}
    diagnostic = record.get("diagnostic") or {}
    saliency = record.get("saliency") or {}
    label, target = record.get("label"), record.get("target")
    annotations = record.get("annotations") or {}
    return argparse.Namespace(
        model=model.get("path"), card=model.get("card_path"), device=device, trust_pickle=trust_pickle,
        image=image.get("path"),
        mask=_source(record, "mask", folder) if mask.get("mode") == "allowed" else None,
        # Masks made from QuPath annotations are made again from them (the file's hash is checked).
        protect=_source(record, "mask", folder) if mask.get("mode") == "protect"
        and not annotations.get("protect_classes") else None,
        diagnostic=_source(record, "diagnostic", folder) if not annotations.get("diagnostic_classes") else None,
        attack=attack.get("method", "pgd"), norm=attack.get("norm", "linf"), eps=attack.get("eps"),
        step_size=attack.get("step_size"), steps=attack.get("steps", 10),
        label=None if not label else int(label["index"]),
        targeted=None if not target else int(target["index"]),
        random_start=bool(attack.get("random_start")), seed=attack.get("seed"),
        restarts=int(attack.get("restarts") or 1), early_stop=bool(attack.get("early_stop")),
        queries=_queries(attack),
        surrogate=((record.get("transfer") or {}).get("surrogate") or {}).get("path"),  # transfer runs
        saliency=saliency.get("method") if isinstance(saliency, dict) else None,
        saliency_class=record.get("saliency_class") or "clean",
        robustness="robustness" in record,
        # The model as attacked: behind its defence, at its precision (commands/_defence.py).
        defense=(record.get("defence") or {}).get("defence"),
        adaptive=(record.get("defence") or {}).get("adaptive", "none"),
        precision=(record.get("precision") or {}).get("precision", "float32"),
        command_line=None,
        **_source_options(record),
    )


def _queries(attack: dict) -> int:
    """Square's query budget as recorded (records from before --queries: the default)."""
    from advexplorer.config import DEFAULT_QUERIES

    return int(attack.get("queries") or DEFAULT_QUERIES)


def _source_options(record: dict) -> dict:
    """The slide region, DICOM window and annotation options the record was made with; the
    region's pixel SHA-256 is checked when it is read again."""
    image = record.get("image") or {}
    region, dicom = image.get("region") or {}, image.get("dicom") or {}
    annotations = record.get("annotations") or {}
    window = dicom.get("window") if dicom.get("window_source") == "given" else None
    return {
        "region": ",".join(str(region[k]) for k in ("x", "y", "w", "h")) if region else None,
        "level": int(region.get("level", 0)) if region else 0,
        "region_pixels_sha256": region.get("pixels_sha256"),
        "dicom_window": ",".join(repr(float(v)) for v in window) if window else None,
        "annotations": annotations.get("path"),
        "protect_classes": ",".join(annotations.get("protect_classes") or []) or None,
        "diagnostic_classes": ",".join(annotations.get("diagnostic_classes") or []) or None,
    }


def _config(record: dict):
    """The exact AttackConfig of the record (including options the CLI does not expose)."""
    from advexplorer.core.attacks import AttackConfig

    attack = dict(record.get("attack") or {})
    fields = {k: attack[k] for k in ("method", "norm", "eps", "step_size", "steps", "targeted",
                                     "random_start", "seed", "restarts", "early_stop", "decay",
                                     "queries", "diversity")
              if k in attack}
    if fields.get("seed") is None:
        from advexplorer.errors import UserError

        raise UserError("The record has no seed, so the attack cannot be repeated exactly.")
    return AttackConfig(**fields).validate()


def _compare_arrays(what: str, recorded, new, tolerance: float, exact: bool, unit: str = "") -> Check:
    import numpy as np

    recorded = np.asarray(recorded)
    new = np.asarray(new)
    if recorded.shape != new.shape:
        return Check(what, f"shape {recorded.shape} recorded, {new.shape} now", False)
    if np.array_equal(recorded, new):
        return Check(what, f"identical ({recorded.size:,} values)".replace(",", " "), True)
    difference = np.abs(recorded.astype(np.float64) - new.astype(np.float64))
    differing = int((difference > 0).sum())
    largest = float(difference.max())
    detail = f"{differing} of {recorded.size} values differ, largest by {largest:.3g}{unit}"
    if exact:
        return Check(what, detail + " (bit-for-bit required)", False)
    return Check(what, detail + f" (tolerance {tolerance:g})", largest <= tolerance)


def reproduce_run(run_dir: str | Path, *, device: str | None = None, tolerance: float | None = None,
                  trust_pickle: bool = False) -> Reproduction:
    """Re-run the attack recorded in ``run_dir`` and compare it with the stored result."""
    import numpy as np

    from advexplorer.commands.attack import build_request
    from advexplorer.errors import UserError
    from advexplorer.io.runfolder import RunFolder
    from advexplorer.session.runs import run as run_request, versions

    folder = RunFolder.open(run_dir)
    record = folder.record
    check_inputs(record, folder)
    recorded_device = str(record.get("device") or "cpu")
    if device is None:
        device = recorded_device
        try:
            import torch

            if recorded_device.startswith("cuda") and not torch.cuda.is_available():
                device = "cpu"
            if recorded_device.startswith("mps") and not torch.backends.mps.is_available():
                device = "cpu"
        except Exception:  # pragma: no cover - torch always imports here
            device = "cpu"
    request = build_request(_namespace(record, device, trust_pickle, folder))
    _masks_without_a_file(request, record, folder)
    request.config = _config(record)
    request.command_line = None
    if tolerance is not None and tolerance < 0:
        raise UserError(f"--tolerance {tolerance:g} must be ≥ 0.")

    now_versions = versions()
    reasons = []
    recorded_versions = record.get("versions") or {}
    for key in VERSION_KEYS:
        if str(recorded_versions.get(key)) != str(now_versions.get(key)):
            reasons.append(f"{key} {recorded_versions.get(key)} recorded, {now_versions.get(key)} now")
    device_type = request.model.device.type
    if not recorded_device.startswith("cpu"):
        reasons.append(f"recorded on {recorded_device}")
    if device_type != "cpu":
        reasons.append(f"re-run on {request.model.device}")
    exact = tolerance == 0 or (tolerance is None and not reasons)
    tolerance = 0.0 if exact else (DEFAULT_TOLERANCE if tolerance is None else float(tolerance))

    started = time.perf_counter()
    outcome = run_request(request)
    elapsed = time.perf_counter() - started
    report = Reproduction(run_dir=Path(run_dir), exact=exact, tolerance=tolerance, reasons=reasons,
                          device=str(request.model.device), wall_time_s=elapsed,
                          request=request, outcome=outcome)
    checks = report.checks
    if "min_eps" in record:
        report.note = ("a min-eps record: the attack at the minimal ε it found is re-run; the search "
                       "itself is not repeated (run advexplorer min-eps again for that).")

    # The perturbation in C×H×W, exactly as the run folder stores it.
    checks.append(_compare_arrays("perturbation", folder.perturbation,
                                  np.asarray(outcome.perturbation, dtype=np.float32), tolerance, exact))
    if folder.adversarial_png is not None:
        exported = np.asarray(outcome.exported)
        recorded_png = folder.adversarial_png
        if recorded_png.ndim == 2:
            recorded_png = recorded_png[:, :, None]
        if exported.ndim == 2:
            exported = exported[:, :, None]
        levels = 0 if exact else int(np.ceil(tolerance * 255))
        check = _compare_arrays("adversarial.png (8-bit)", recorded_png, exported, levels, exact, "/255")
        checks.append(check)
    classes = request.model.card.classes
    result = outcome.result
    for what, key, index in (("prediction before", "prediction_before", int(result.clean_prediction[0])),
                             ("prediction after", "prediction_after", int(result.adversarial_prediction[0]))):
        recorded_index = (record.get(key) or {}).get("index")
        checks.append(Check(what, f"{_name(classes, recorded_index)} recorded, {_name(classes, index)} now",
                            recorded_index == index))
    success = bool(result.success[0])
    checks.append(Check("attack success", f"{_yes(record.get('success'))} recorded, {_yes(success)} now",
                        record.get("success") == success))
    recorded_probability = (record.get("prediction_after") or {}).get("probability")
    if isinstance(recorded_probability, (int, float)):
        new_probability = float(result.adversarial_probabilities[0].max())
        difference = abs(new_probability - recorded_probability)
        # The record stores float64 of a float32 value: equal to the last bit when exact.
        ok = difference == 0 if exact else difference <= max(tolerance, 1e-6) * 100
        checks.append(Check("confidence after", f"{recorded_probability:.6g} recorded, "
                                                f"{new_probability:.6g} now", ok))
    recorded_before = folder.array("saliency_before") if "saliency" in record else None
    recorded_after = folder.array("saliency_after") if "saliency" in record else None
    if recorded_before is not None and recorded_after is not None and outcome.explanation is not None:
        checks.append(_compare_arrays("saliency before", recorded_before,
                                      np.asarray(outcome.explanation.before, dtype=np.float32), tolerance, exact))
        checks.append(_compare_arrays("saliency after", recorded_after,
                                      np.asarray(outcome.explanation.after, dtype=np.float32), tolerance, exact))
    return report


def _masks_without_a_file(request, record: dict, folder) -> None:
    """A run whose masks were painted and never saved as files (an older GUI record) is
    repeated with the masks as used, which its run folder holds at the model's input size."""
    import numpy as np
    import torch

    mode = (record.get("mask") or {}).get("mode", "none")
    if mode != "none" and request.allowed_mask is None:
        stored = folder.array("mask", required=True)
        stored = stored.any(axis=2) if stored.ndim == 3 else stored
        request.allowed_mask = torch.from_numpy(np.ascontiguousarray(stored != 0)).float()
        request.mask_mode = mode
    if request.diagnostic_mask is None and folder.names("diagnostic") and folder.has("diagnostic"):
        stored = folder.array("diagnostic")
        stored = stored.any(axis=2) if stored.ndim == 3 else stored
        request.diagnostic_mask = torch.from_numpy(np.ascontiguousarray(stored != 0)).float()
    size = tuple(request.model.card.input_size)
    for mask in (request.allowed_mask, request.diagnostic_mask):
        if mask is not None and tuple(mask.shape) != size:
            from advexplorer.errors import UserError

            raise UserError(f"The masks stored in {folder.path} do not have the model's input size "
                            f"{size[1]}×{size[0]}; the run folder is damaged.")


def _name(classes, index) -> str:
    if isinstance(index, int) and 0 <= index < len(classes):
        return f"{classes[index]} ({index})"
    return str(index)


def _yes(value) -> str:
    return "—" if value is None else ("yes" if value else "no")


def summary_text(report: Reproduction, verified: list[str] | None = None) -> str:
    """What ``advexplorer reproduce`` prints."""
    lines = [f"run        {report.run_dir}"]
    if verified:
        lines.append(f"inputs     SHA-256 of {', '.join(verified)} match the record")
    config = report.request.config if report.request is not None else None
    if config is not None:
        from advexplorer.report.text import budget

        lines.append(f"re-ran     {config.method.upper()} {config.norm} ε={budget(config.eps)}, "
                     f"{config.effective_steps} step(s), seed {config.seed} on {report.device} "
                     f"in {report.wall_time_s:.2f}s")
    if report.request is not None and report.note:
        lines.append(f"note       {report.note}")
    if report.exact:
        lines.append("compare    bit for bit (CPU, recorded versions)")
    else:
        why = "; ".join(report.reasons) if report.reasons else "tolerance asked for"
        lines.append(f"compare    within tolerance {report.tolerance:g} ({why})")
    width = max(len(c.what) for c in report.checks) if report.checks else 0
    for check in report.checks:
        mark = "ok  " if check.ok else "FAIL"
        lines.append(f"  {mark} {check.what:<{width}}  {check.detail}")
    if report.matches:
        how = "bit for bit" if report.exact else f"within tolerance {report.tolerance:g}"
        lines.append(f"verdict    MATCH: the recorded result was reproduced {how}.")
    else:
        failed = ", ".join(c.what for c in report.checks if not c.ok)
        lines.append(f"verdict    MISMATCH: {failed}: not as recorded.")
    return "\n".join(lines)


def run(args) -> int:
    from advexplorer.io.runfolder import RunFolder
    from advexplorer.session.runs import check_output_dir, write_run_dir

    if args.out:
        check_output_dir(args.out)  # refuse before spending time on the attack
    folder = RunFolder.open(args.run_dir)
    verified = check_inputs(folder.record, folder)
    report = reproduce_run(args.run_dir, device=args.device, tolerance=args.tolerance,
                           trust_pickle=args.trust_pickle)
    if args.out:
        report.request.command_line = list(args.command_line or [])
        write_run_dir(args.out, report.request, report.outcome)
    text = summary_text(report, verified)
    print(text if not args.quiet else text.splitlines()[-1])
    return 0 if report.matches else 1
