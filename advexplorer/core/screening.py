"""Cohort screening: one masked attack swept over many images and several budgets ε.

The question a screen answers is "how often": for each ε in a list, the fraction of images
whose prediction a masked attack flips (with a Wilson 95 % interval), the robust accuracy
when true labels are known, and optionally the same flip rate for random noise of the same
budget (the baseline that says whether the attack's direction matters).

What the numbers mean (flipped at ε, cumulative counts and the monotone shortcut, robust
accuracy, empty allowed regions) and the Wilson interval are described beside the records
and statistics in :mod:`advexplorer.core.screen_results`; this module is the engine that
computes them.

Speed: (image, ε) pairs of images that are not yet flipped are packed into one engine call
with a per-image ε (see :func:`advexplorer.core.attacks.attack_steps`); survivors of ε_i come
back at ε_{i+1} in the next call while new images fill the free rows, so the batch stays
full; early stop drops flipped images from the compute batch inside a call.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import time
from collections import deque
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from advexplorer.core.attacks import AttackConfig, drive, perturbation_norms, run_attack
from advexplorer.core.attacks.ball import random_delta
from advexplorer.core.model import ModelForwardError, NonFiniteLogitsError, is_out_of_memory
from advexplorer.core.robustness import EpsBracket
# The records and statistics live in screen_results; they are re-exported here (see __all__)
# so that importers of advexplorer.core.screening keep working.
from advexplorer.core.screen_results import (NONFINITE_NOTE, Z95, CohortBatch, ImageRow, MonotoneCheck,
                                             ScreenProgress, ScreenResult, WorstCase, eps_label,
                                             summarize, wilson_interval)
from advexplorer.errors import UserError

__all__ = ["BISECTION_STEPS", "NONFINITE_NOTE", "Z95", "CohortBatch", "ImageRow", "MixedPrecisionForward",
           "MonotoneCheck", "ScreenProgress", "ScreenResult", "WorstCase", "check_eps_list", "eps_label",
           "image_stream_seed", "run_screen", "screen_steps", "summarize", "wilson_interval"]

#: Bisection steps between two grid values for the minimal ε (``--min-eps``; the search is
#: :class:`advexplorer.core.robustness.EpsBracket` with one ε per round): the bracket shrinks 2^6 = 64×.
BISECTION_STEPS = 6


# --------------------------------------------------------------------------------------
# The engine


class _Item:
    """One image in flight: its tensors on the model's device and its row being filled."""

    __slots__ = ("id", "image", "mask", "row", "tracks", "keep")

    def __init__(self, file_id, image, mask, row):
        self.id = file_id
        self.image = image
        self.mask = mask
        self.row = row
        self.tracks = 0          # attack / noise / bisection work still to come
        self.keep = None         # (adversarial, eps index) of the first flip, for pictures


@dataclass
class _Unit:
    """One (image, ε) pair waiting for an engine call."""

    item: _Item
    kind: str                    # "attack" | "bisect" | "noise" | "verify"
    eps: float
    index: int = 0               # position in the ε list (attack / noise / verify)
    search: EpsBracket | None = None  # the minimal-ε search of this image (bisect)


def _model_device(model: torch.nn.Module) -> torch.device:
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


def _to_hwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().permute(1, 2, 0).numpy().copy()


def _uint8(tensor: torch.Tensor) -> np.ndarray:
    return np.clip(np.round(_to_hwc(tensor) * 255.0), 0, 255).astype(np.uint8)


def check_eps_list(eps_list: Iterable[float], norm: str) -> tuple[float, ...]:
    """Sort and de-duplicate an ε list; refuse negatives and lists without a positive ε."""
    values = sorted({float(e) for e in eps_list})
    if not values:
        raise UserError("Give at least one ε, e.g. --eps 0,1/255,2/255,4/255,8/255.")
    if values[0] < 0:
        raise UserError(f"ε = {values[0]:g} is negative; budgets are ≥ 0 (pixel units, e.g. 2/255).")
    if values[-1] <= 0:
        raise UserError("All ε are 0, so nothing would be attacked; add budgets such as 2/255,8/255.")
    if norm == "linf" and values[-1] > 1:
        raise UserError(f"ε = {values[-1]:g} is out of range for L∞ (pixel units in (0, 1], e.g. 8/255).")
    return tuple(values)


def screen_steps(
    model: torch.nn.Module,
    batches: Iterable[CohortBatch],
    eps_list: Sequence[float],
    config: AttackConfig,
    *,
    noise_baseline: bool = False,
    done: set[str] | frozenset[str] = frozenset(),
    min_eps: bool = False,
    verify_monotone: int = 0,
    batch_size: int | None = None,
    images_total: int | None = None,
    worst_cases: int = 8,
    keep_rows: bool = True,
    early_stop: bool = True,
) -> Generator[ScreenProgress, None, ScreenResult]:
    """Screen a cohort: attack every image at every ε (with the monotone shortcut).

    ``batches`` yields :class:`CohortBatch` (images on any device; they are moved to the
    model's). ``eps_list`` is sorted and de-duplicated; ε = 0 is the clean image.
    ``config`` gives the attack (method, norm, steps, step size, restarts, random start,
    seed); its ε and early stop are ignored: early stop is on (an image counts as flipped if
    any iterate flips it) unless ``early_stop=False``, which judges the last iterate only, as
    torchattacks does (the benchmark uses it to compare flip counts exactly).
    ``done`` holds file ids already screened (read back from ``per_image.csv``); they are
    skipped. ``min_eps`` adds, for every flipped image, a bisection between the largest ε
    that did not flip it and the smallest that did. ``verify_monotone=N`` re-attacks up to
    N flipped images at every larger ε the shortcut skipped and reports disagreements.
    ``batch_size`` is the number of (image, ε) pairs per engine call (default: the size of
    the first incoming batch).

    Yields a :class:`ScreenProgress` after every engine call (stop iterating, or call
    ``close()``, to cancel: rows already yielded are complete) and returns a
    :class:`ScreenResult`. With ``keep_rows=False`` the result's ``rows`` stays empty (a
    caller that consumes ``rows_done`` does not need a second copy).
    """
    eps = check_eps_list(eps_list, config.norm)
    config = replace(config, eps=eps[-1], early_stop=early_stop).validate()
    noise_config = replace(config, method="noise", random_start=False, restarts=1)
    positive = [j for j, e in enumerate(eps) if e > 0]
    first_positive = positive[0]
    device = _model_device(model)
    done = frozenset(done)
    rng = random.Random(0 if config.seed is None else config.seed)
    base_seed = 0 if config.seed is None else int(config.seed)
    # Random starts and noise draws come from one stream per (seed, image, ε), so an
    # image's draws do not depend on its batch or on a resume (see image_stream_seed).
    call_seed = {"grad": base_seed}

    start = time.perf_counter()
    grad_queue: deque[_Unit] = deque()
    noise_queue: deque[_Unit] = deque()
    rows: list[ImageRow] = []
    fresh_rows: list[ImageRow] = []
    skipped: list[tuple[str, str]] = []
    fresh_skipped: list[tuple[str, str]] = []
    worst_heap: list[tuple] = []    # max-heap by "how robust" so the least fragile is dropped
    verify_pool: list[_Item] = []   # reservoir sample of flipped images for the check
    flipped_seen = 0
    counts = {"flipped": [0] * len(eps), "robust": [0] * len(eps), "noise": [0] * len(eps),
              "n": 0, "labelled": 0, "images": 0}
    stats = {"calls": 0, "attacked": 0, "shortcut": 0, "forward": 0, "backward": 0, "halvings": []}
    capacity = [batch_size]
    total = images_total if images_total is not None else getattr(batches, "images_total", None)

    def finish(item: _Item) -> None:
        nonlocal flipped_seen
        row = item.row
        if keep_rows:
            rows.append(row)
        fresh_rows.append(row)
        counts["images"] += 1
        if row.excluded:
            return
        counts["n"] += 1
        for j in range(len(eps)):
            counts["flipped"][j] += row.flipped[j]
            if row.noise_flipped is not None:
                counts["noise"][j] += row.noise_flipped[j]
            if row.label is not None and row.correct and not row.flipped[j]:
                counts["robust"][j] += 1
        if row.label is not None:
            counts["labelled"] += 1
        if item.keep is not None:
            adversarial, j = item.keep
            if worst_cases > 0:
                # Most fragile first: smallest flipping ε, then most confident wrong class.
                key = (-row.flip_eps, row.adversarial_probability[j], row.file)
                case = (key, item, adversarial, j)
                if len(worst_heap) < worst_cases:
                    heapq.heappush(worst_heap, _HeapEntry(case))
                elif _HeapEntry(case) > worst_heap[0]:
                    heapq.heapreplace(worst_heap, _HeapEntry(case))
            if verify_monotone > 0 and j < len(eps) - 1:
                flipped_seen += 1
                if len(verify_pool) < verify_monotone:
                    verify_pool.append(item)
                else:
                    slot = rng.randrange(flipped_seen)
                    if slot < verify_monotone:
                        verify_pool[slot] = item

    def track_done(item: _Item) -> None:
        item.tracks -= 1
        if item.tracks == 0:
            finish(item)

    def engine_call(units: list[_Unit], attack_config: AttackConfig):
        if attack_config.method == "noise":
            outcome, forward = _noise_attack(model, units, attack_config, base_seed)
            stats["calls"] += 1
            stats["attacked"] += len(units)
            stats["forward"] += forward
            return outcome
        images = torch.stack([u.item.image for u in units])
        masks = [u.item.mask for u in units]
        if all(m is None for m in masks):
            allowed = None
        else:
            full = torch.ones_like(images[0, 0])
            allowed = torch.stack([full if m is None else m for m in masks])
        reference = torch.tensor([u.item.row.clean_prediction for u in units], device=device)
        eps_t = torch.tensor([u.eps for u in units], dtype=images.dtype, device=device)
        call_seed["grad"] += 1
        starts = [torch.Generator().manual_seed(image_stream_seed(base_seed, u.item.id, u.eps, "start"))
                  for u in units] if attack_config.random_start else None
        result = run_attack(model, images, allowed, reference,
                            replace(attack_config, seed=call_seed["grad"]), eps=eps_t,
                            start_generators=starts)
        stats["calls"] += 1
        stats["attacked"] += len(units)
        stats["forward"] += result.forward_passes
        stats["backward"] += result.backward_passes
        norms = perturbation_norms(result.perturbation)
        return (result.success.tolist(), result.adversarial_prediction.tolist(),
                result.adversarial_probabilities.max(dim=1).values.tolist(),
                norms["linf"].tolist(), norms["l2"].tolist(), result.adversarial)

    def flag(item: _Item, where: str) -> None:
        if not item.row.excluded:
            item.row.note = f"{NONFINITE_NOTE} {where}"
            item.keep = None

    def guarded_call(units: list[_Unit], attack_config: AttackConfig):
        """``engine_call``, halving the batch on out-of-memory and isolating the images whose
        logits turn non-finite (they come back in ``failed``) instead of ending the screen."""
        try:
            return engine_call(units, attack_config), set()
        except (NonFiniteLogitsError, ModelForwardError, RuntimeError, MemoryError) as error:
            out_of_memory = is_out_of_memory(error) or (error.__cause__ is not None
                                                        and is_out_of_memory(error.__cause__))
            if out_of_memory:
                if len(units) == 1:
                    raise
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                capacity[0] = max(1, len(units) // 2)
                stats["halvings"].append(capacity[0])
            elif not isinstance(error, NonFiniteLogitsError):
                raise
            elif len(units) == 1:
                return None, {0}
        # Run the halves; each image's random stream does not depend on its batch.
        middle = max(1, len(units) // 2)
        parts = [guarded_call(units[:middle], attack_config), guarded_call(units[middle:], attack_config)]
        failed = {i for i in parts[0][1]} | {middle + i for i in parts[1][1]}
        outcome = [[], [], [], [], [], []]
        for offset, (part, part_failed), size in ((0, parts[0], middle), (middle, parts[1], len(units) - middle)):
            for i in range(size):
                if i in part_failed:
                    unit = units[offset + i]
                    values = (False, unit.item.row.clean_prediction, 0.0, 0.0, 0.0, unit.item.image)
                else:
                    values = tuple(part[k][i] for k in range(6))
                for k in range(6):
                    outcome[k].append(values[k])
        return tuple(outcome), failed

    def run_grad() -> None:
        units = [grad_queue.popleft() for _ in range(min(capacity[0], len(grad_queue)))]
        (success, prediction, probability, linf, l2, adversarial), failed = guarded_call(units, config)
        survivors = []
        for i, unit in enumerate(units):
            item, row = unit.item, unit.item.row
            if i in failed or row.excluded:
                flag(item, f"while attacking at ε = {eps_label(unit.eps)}")
                track_done(item)
                continue
            if unit.kind == "attack":
                j = unit.index
                row.attacked[j] = True
                if success[i]:
                    row.flip_eps = eps[j]
                    for jj in range(j, len(eps)):
                        row.flipped[jj] = True
                        row.adversarial_prediction[jj] = prediction[i]
                        row.adversarial_probability[jj] = probability[i]
                        row.linf[jj] = linf[i]
                        row.l2[jj] = l2[i]
                    stats["shortcut"] += len(eps) - 1 - j
                    item.keep = (adversarial[i].detach().clone(), j)
                    if min_eps:
                        below = eps[j - 1] if j > 0 else 0.0
                        search = EpsBracket(low=below, high=eps[j], grid=1, max_rounds=BISECTION_STEPS)
                        survivors.append(_Unit(item, "bisect", search.next_budgets()[0], search=search))
                    else:
                        track_done(item)
                else:
                    row.adversarial_prediction[j] = prediction[i]
                    row.adversarial_probability[j] = probability[i]
                    row.linf[j], row.l2[j] = linf[i], l2[i]
                    if j + 1 < len(eps):
                        survivors.append(replace(unit, index=j + 1, eps=eps[j + 1]))
                    else:
                        track_done(item)
            else:  # minimal-ε search between the last ε that did not flip and the first that did
                unit.search.record([unit.eps], [success[i]])
                budgets = unit.search.next_budgets()
                if budgets:
                    survivors.append(replace(unit, eps=budgets[0]))
                else:
                    row.min_eps = unit.search.high
                    track_done(item)
        # Survivors go first so images finish (and reach the CSV) soon after they start.
        grad_queue.extendleft(reversed(survivors))

    def run_noise() -> None:
        units = [noise_queue.popleft() for _ in range(min(capacity[0], len(noise_queue)))]
        (success, *_), failed = guarded_call(units, noise_config)
        survivors = []
        for i, unit in enumerate(units):
            row, j = unit.item.row, unit.index
            if i in failed or row.excluded:
                flag(unit.item, f"on random noise at ε = {eps_label(unit.eps)}")
                track_done(unit.item)
            elif success[i]:
                for jj in range(j, len(eps)):
                    row.noise_flipped[jj] = True
                track_done(unit.item)
            elif j + 1 < len(eps):
                survivors.append(replace(unit, index=j + 1, eps=eps[j + 1]))
            else:
                track_done(unit.item)
        noise_queue.extendleft(reversed(survivors))

    def progress(phase: str) -> ScreenProgress:
        elapsed = time.perf_counter() - start
        done_images = counts["images"] + len(skipped)
        eta = None
        if total is not None and done_images > 0:
            eta = elapsed / done_images * max(0, total - done_images)
        snapshot = ScreenProgress(
            phase=phase, images_done=done_images, images_total=total, eps=eps, n=counts["n"],
            flipped=tuple(counts["flipped"]), n_labelled=counts["labelled"],
            robust=tuple(counts["robust"]),
            noise_flipped=tuple(counts["noise"]) if noise_baseline else None,
            elapsed_s=elapsed, eta_s=eta, rows_done=tuple(fresh_rows),
            skipped=tuple(fresh_skipped))
        fresh_rows.clear()
        fresh_skipped.clear()
        return snapshot

    def admit(batch: CohortBatch) -> None:
        for entry in batch.skipped:
            skipped.append(entry)
            fresh_skipped.append(entry)
        keep = [i for i, file_id in enumerate(batch.ids) if file_id not in done]
        if not keep:
            return
        if capacity[0] is None:
            capacity[0] = max(1, len(batch.ids))
        images = batch.images[keep].to(device=device, dtype=torch.float32)
        masks = None if batch.allowed_masks is None else \
            batch.allowed_masks[keep].to(device=device, dtype=torch.float32)
        labels = None if batch.labels is None else batch.labels[keep].tolist()
        clean, undefined = _clean_probabilities(model, images)
        stats["forward"] += len(keep)
        clean_probability, clean_prediction = clean.max(dim=1)
        for i, index in enumerate(keep):
            label = None if labels is None or labels[i] < 0 else int(labels[i])
            prediction = int(clean_prediction[i])
            probability = float(clean_probability[i])
            row = ImageRow(
                file=batch.ids[index], label=label, clean_prediction=prediction,
                clean_probability=probability,
                adversarial_prediction=[prediction] * len(eps),
                adversarial_probability=[probability] * len(eps),
                flipped=[False] * len(eps), attacked=[False] * len(eps),
                linf=[0.0] * len(eps), l2=[0.0] * len(eps),
                noise_flipped=[False] * len(eps) if noise_baseline else None)
            mask = None if masks is None else masks[i]
            if mask is not None and bool((mask != 0).all()):
                mask = None  # an all-allowed mask is no mask
            item = _Item(batch.ids[index], images[i], mask, row)
            if i in undefined:
                row.note = f"{NONFINITE_NOTE} on the clean image"
                item.tracks = 1
                track_done(item)
                continue
            if mask is not None and not bool((mask != 0).any()):
                row.note = "empty allowed region: nothing can be changed, counted as not flipped"
                item.tracks = 1
                track_done(item)
                continue
            item.tracks = 2 if noise_baseline else 1
            grad_queue.append(_Unit(item, "attack", eps[first_positive], index=first_positive))
            if noise_baseline:
                noise_queue.append(_Unit(item, "noise", eps[first_positive], index=first_positive))

    for batch in batches:
        admit(batch)
        while capacity[0] is not None and len(grad_queue) >= capacity[0]:
            run_grad()
            yield progress("screen")
        while capacity[0] is not None and len(noise_queue) >= capacity[0]:
            run_noise()
            yield progress("screen")
        if fresh_rows or fresh_skipped:
            yield progress("screen")
    while grad_queue or noise_queue:
        if grad_queue:
            run_grad()
        else:
            run_noise()
        yield progress("screen")
    if fresh_rows or fresh_skipped:
        yield progress("screen")

    check = None
    if verify_monotone > 0:
        check = MonotoneCheck(images_checked=len(verify_pool))
        pairs = []
        for item in sorted(verify_pool, key=lambda it: it.id):
            _, j = item.keep
            for jj in range(j + 1, len(eps)):
                pairs.append(_Unit(item, "verify", eps[jj], index=jj))
        step = capacity[0] or 1
        for begin in range(0, len(pairs), step):
            units = pairs[begin:begin + step]
            success, prediction, *_ = engine_call(units, config)
            for i, unit in enumerate(units):
                check.pairs_checked += 1
                if not success[i]:
                    check.disagreements.append({
                        "file": unit.item.id, "flipped_at": unit.item.row.flip_eps,
                        "not_flipped_at": unit.eps})
            yield progress("verify")

    cases = []
    for entry in sorted(worst_heap, reverse=True):
        _, item, adversarial, j = entry.case
        row = item.row
        cases.append(WorstCase(
            file=row.file, flip_eps=eps[j], clean_prediction=row.clean_prediction,
            adversarial_prediction=row.adversarial_prediction[j],
            adversarial_probability=row.adversarial_probability[j],
            clean=_uint8(item.image), adversarial=_uint8(adversarial),
            perturbation=_to_hwc(adversarial - item.image),
            allowed_mask=None if item.mask is None else item.mask.detach().cpu().numpy() != 0))
    return ScreenResult(
        eps=eps, rows=rows, skipped=skipped, worst_cases=cases, monotone_check=check,
        engine_calls=stats["calls"], attacked_pairs=stats["attacked"],
        shortcut_pairs=stats["shortcut"], forward_passes=stats["forward"],
        backward_passes=stats["backward"], elapsed_s=time.perf_counter() - start,
        batch_halvings=stats["halvings"])


def _clean_probabilities(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, set[int]]:
    """Softmax of the clean images, and the positions whose logits are not finite.

    The model wrapper refuses non-finite logits for a whole batch; the batch is then run
    image by image so only the images concerned are flagged (their probabilities are 0).
    """
    with torch.no_grad():
        try:
            return torch.softmax(model(images).float(), dim=1), set()
        except NonFiniteLogitsError:
            if images.shape[0] == 1:
                raise
    parts, undefined = [], set()
    for i in range(images.shape[0]):
        try:
            with torch.no_grad():
                parts.append(torch.softmax(model(images[i:i + 1]).float(), dim=1))
        except NonFiniteLogitsError:
            undefined.add(i)
            parts.append(None)
    known = next((p for p in parts if p is not None), None)
    classes = known.shape[1] if known is not None else 2
    filler = torch.zeros(1, classes, device=images.device)
    return torch.cat([filler if p is None else p for p in parts]), undefined


class MixedPrecisionForward(torch.nn.Module):
    """Run a classifier's forward under autocast (``float16`` / ``bfloat16``) and return
    float32 logits, so the attack's loss and gradient step stay in float32."""

    def __init__(self, model: torch.nn.Module, dtype: str = "bfloat16"):
        super().__init__()
        if dtype not in ("float16", "bfloat16"):
            raise UserError(f"Mixed precision is float16 or bfloat16, not {dtype!r}.")
        self.model = model
        self.dtype = getattr(torch, dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        device_type = images.device.type if images.device.type in ("cuda", "cpu") else "cpu"
        with torch.autocast(device_type=device_type, dtype=self.dtype):
            logits = self.model(images)
        return logits.float()


def image_stream_seed(seed: int, file_id: str, eps: float, purpose: str = "noise") -> int:
    """The seed of one image's random stream at one budget: a stable hash of (seed, id, ε).

    SHA-256, not Python's ``hash`` (salted per process), so the same image at the same ε
    draws the same noise (``purpose="noise"``) or random start (``"start"``) in every run,
    batch size and resumed screen; the two purposes draw from unrelated streams.
    """
    text = f"{int(seed)}\x00{purpose}\x00{file_id}\x00{float(eps).hex()}"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


def _noise_attack(model: torch.nn.Module, units: Sequence[_Unit], config: AttackConfig,
                  seed: int) -> tuple[tuple, int]:
    """The noise method on (image, ε) pairs, each drawing from its own random stream.

    The same rule as the engine's ``noise`` attack (see :mod:`advexplorer.core.attacks.noise`):
    ``steps × restarts`` independent points on the ε-sphere inside the allowed mask, keeping
    per image the best (a flip first, then the highest loss against the clean prediction),
    starting from the clean image. The engine draws for a whole batch from one generator,
    so an image's draws would depend on its neighbours, the batch size and, in a resumed
    screen, on which images were finished before; here they depend only on
    :func:`image_stream_seed`. An image stops drawing at its first flip, which decides its
    outcome. Returns the engine call's outcome tuple and the forward passes spent.
    """
    images = torch.stack([u.item.image for u in units])
    n = images.shape[0]
    device = images.device
    reference = torch.tensor([u.item.row.clean_prediction for u in units], device=device)
    eps_t = torch.tensor([u.eps for u in units], dtype=images.dtype, device=device).view(-1, 1, 1, 1)
    masks = [None if u.item.mask is None else u.item.mask[None, None] for u in units]
    generators = [torch.Generator().manual_seed(image_stream_seed(seed, u.item.id, u.eps)) for u in units]
    with torch.no_grad():
        best_logits = model(images).float()
    forward = n
    best = images.clone()
    best_loss = F.cross_entropy(best_logits, reference, reduction="none")
    success = best_logits.argmax(dim=1) != reference
    for _ in range(config.effective_steps * config.restarts):
        rows = (~success).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        delta = torch.cat([random_delta((1, *images.shape[1:]), eps_t[i:i + 1], config.norm,
                                        generators[i], masks[i], full_budget=True)
                           for i in rows.tolist()])
        candidate = torch.clamp(images[rows] + delta, 0.0, 1.0)
        with torch.no_grad():
            logits = model(candidate).float()
        forward += len(rows)
        loss = F.cross_entropy(logits, reference[rows], reduction="none")
        flipped = logits.argmax(dim=1) != reference[rows]
        better = flipped | (loss > best_loss[rows])  # these rows have not flipped yet
        keep = rows[better]
        best[keep] = candidate[better]
        best_logits[keep] = logits[better]
        best_loss[keep] = loss[better]
        success[keep] = flipped[better]
    probabilities = torch.softmax(best_logits, dim=1)
    norms = perturbation_norms(best - images)
    outcome = (success.tolist(), best_logits.argmax(dim=1).tolist(),
               probabilities.max(dim=1).values.tolist(), norms["linf"].tolist(),
               norms["l2"].tolist(), best)
    return outcome, forward


class _HeapEntry:
    """Heap order for worst cases: the root is the least fragile kept case."""

    __slots__ = ("case",)

    def __init__(self, case):
        self.case = case

    def __lt__(self, other: "_HeapEntry") -> bool:
        # Fragility key (−flip ε, wrong-class confidence, name); larger = more fragile.
        return self.case[0] < other.case[0]

    def __gt__(self, other: "_HeapEntry") -> bool:
        return other < self


def run_screen(model, batches, eps_list, config, *, on_progress=None, **options) -> ScreenResult:
    """Run :func:`screen_steps` to completion; ``on_progress(progress)`` sees every yield."""
    return drive(screen_steps(model, batches, eps_list, config, **options), on_progress)
