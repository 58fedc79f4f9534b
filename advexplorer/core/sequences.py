"""Single-residue probes of protein sequence classifiers.

A model predicts a protein's class from its amino-acid sequence. The user marks the
positions that may change (a flexible, solvent-exposed loop, say) and which substitutions
are allowed; the probe looks for the fewest substitutions that flip the prediction (or
reach a target class). If one substitution in a region that cannot matter biochemically
flips it — because it created an HExxH motif, for instance — the model learned a text
pattern, not biochemistry. This is the sequence twin of the masked image attack.

The search is HotFlip (Ebrahimi, Rao, Lowd, Dou, *HotFlip: White-Box Adversarial Examples
for Text Classification*, ACL 2018, https://arxiv.org/abs/1712.06751): the gradient of the
loss with respect to the one-hot input ranks every substitution (i, a→b) by its
first-order gain ``g[i, b] − g[i, a]``; the best-ranked candidates are then scored by
*exact* forward passes in one batch and the best one is kept. Greedy steps repeat until the
prediction flips or the budget of substitutions is spent; a final pruning pass drops any
substitution the flip does not need. An exhaustive single-substitution scan (every allowed
position × every allowed residue, batched) gives the heat map and, when it finds a flip,
proves that one substitution suffices.

Conventions:

* A sequence is a 1-D ``LongTensor`` of indices into the model's alphabet (default the 20
  standard amino acids, :data:`AMINO_ACIDS`); positions are 0-based in code and 1-based in
  everything a user reads (``A45H`` = position 45, A → H, the usual mutation notation).
* The one-hot input is N×L×A float (position-major, as the tracks and the heat map).
* Allowed substitutions are an A×A boolean table ``allowed[original, replacement]``,
  always relative to the residue in the *original* sequence; each position changes at
  most once.
* Every step function is a generator that yields :class:`ProbeProgress` (so the GUI can
  show progress and stop between batches) and returns its result, like
  :func:`advexplorer.core.attacks.attack_steps`; :func:`advexplorer.core.attacks.drive`
  runs one to completion.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from advexplorer.core.model import extract_logits
# The torch-free half (alphabet, BLOSUM62, motifs, position ranges) lives in core.residues so
# the GUI can use it before torch loads; it is re-exported here.
from advexplorer.core.residues import (AMINO_ACIDS, BLOSUM62, DEFAULT_MOTIFS,  # noqa: F401
                                       NATURAL_FREQUENCIES, Motif, MotifHit, blosum62, find_motifs,
                                       format_positions, motif_changes, parse_motifs, position_flags)
from advexplorer.errors import UserError

#: The substitution rules a user names; a custom table is a mapping instead.
SUBSTITUTION_RULES = ("any", "blosum62")
#: Attribution methods for the saliency tracks (Captum).
SEQUENCE_SALIENCY_METHODS = ("input-x-gradient", "integrated-gradients")


def substitution_table(rule: str | Mapping[str, str], alphabet: str = AMINO_ACIDS, *,
                       blosum_min: int = 0) -> torch.Tensor:
    """The A×A table ``allowed[original, replacement]`` of a rule (the diagonal is False).

    ``"any"``: every change. ``"blosum62"``: changes whose BLOSUM62 score is ≥ ``blosum_min``
    (0 by default: substitutions observed at least as often as chance in conserved blocks).
    A mapping ``{"A": "GSTV", ...}`` lists the replacements allowed for each original
    residue; residues it does not name may not change.
    """
    size = len(alphabet)
    if isinstance(rule, str):
        name = rule.strip().lower()
        if name == "any":
            allowed = torch.ones(size, size, dtype=torch.bool)
        elif name == "blosum62":
            allowed = torch.zeros(size, size, dtype=torch.bool)
            for i, a in enumerate(alphabet):
                for j, b in enumerate(alphabet):
                    score = blosum62(a, b)
                    allowed[i, j] = score is not None and score >= blosum_min
        else:
            raise UserError(f"Unknown substitution rule {rule!r}: use any, blosum62, or a "
                            "JSON table such as {\"A\": \"GSTV\", \"L\": \"IVM\"}.")
    else:
        allowed = torch.zeros(size, size, dtype=torch.bool)
        for original, replacements in rule.items():
            letters = [original, *replacements]
            unknown = sorted({c for c in letters if c.upper() not in alphabet})
            if unknown:
                raise UserError(f"The substitution table uses {', '.join(map(repr, unknown))}, "
                                f"not in the model's alphabet {alphabet}; fix the table.")
            for replacement in replacements:
                allowed[alphabet.index(original.upper()), alphabet.index(replacement.upper())] = True
    allowed.fill_diagonal_(False)
    return allowed


def encode(sequence: str, alphabet: str = AMINO_ACIDS) -> torch.Tensor:
    """Indices of a (validated, upper-case) sequence in ``alphabet`` as a LongTensor."""
    lookup = {letter: index for index, letter in enumerate(alphabet)}
    try:
        return torch.tensor([lookup[c] for c in sequence], dtype=torch.long)
    except KeyError as missing:
        raise UserError(f"Letter {missing.args[0]!r} is not in the model's alphabet {alphabet}.") from None


def decode(tokens: torch.Tensor, alphabet: str = AMINO_ACIDS) -> str:
    """The letters of a 1-D index tensor."""
    return "".join(alphabet[int(i)] for i in tokens.tolist())


def one_hot(tokens: torch.Tensor, alphabet_size: int) -> torch.Tensor:
    """N×L (or L) indices → N×L×A float32 one-hot (a batch dimension is added if missing)."""
    if tokens.dim() == 1:
        tokens = tokens[None]
    return F.one_hot(tokens, alphabet_size).float()


# ----------------------------------------------------------------------------- models

class MotifCNN(nn.Module):
    """The demo architecture: one-hot N×A×L → Conv1d → ReLU → max over positions → linear.

    A width-7 filter can match a whole HExxH or GxGxxG; the max over positions makes the
    prediction depend on whether a pattern occurs anywhere, not where — by design, what a
    motif-spotting model does.
    """

    def __init__(self, alphabet_size: int = 20, filters: int = 32, width: int = 7, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(alphabet_size, filters, width, padding=width // 2)
        self.head = nn.Linear(filters, classes)

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(onehot)).amax(dim=2))


#: Architectures a sequence card may name for state_dict weights.
SEQUENCE_ARCHITECTURES: dict[str, type[nn.Module]] = {"advexplorer.MotifCNN": MotifCNN}


class SequenceClassifier(nn.Module):
    """Wrap a sequence network so every probe sees one interface.

    ``forward(onehot)`` takes N×L×A float one-hot rows (differentiable: HotFlip and the
    saliency tracks need it) and :meth:`logits_for` takes N×L indices (the exact forward
    passes). ``input_kind`` says what the network itself eats: ``"onehot"`` (N×A×L, the
    Conv1d layout) or ``"tokens"`` (N×L int64). A token network is differentiable only if
    it exposes an ``nn.Embedding`` (then one-hot · embedding weight replaces the lookup,
    which gives the same numbers); a TorchScript token model is not, and gets exact
    scoring only. ``padding="right"`` pads every batch to ``max_length`` (zero one-hot
    columns, or ``pad_index`` for tokens) as the model was trained.
    """

    def __init__(self, network: nn.Module, alphabet: str = AMINO_ACIDS,
                 classes: Sequence[str] | None = None, *, input_kind: str = "onehot",
                 max_length: int | None = None, padding: str = "none", pad_index: int | None = None):
        super().__init__()
        if input_kind not in ("onehot", "tokens"):
            raise UserError(f"Unknown input kind {input_kind!r}: a sequence card says 'onehot' or 'tokens'.")
        if padding not in ("none", "right"):
            raise UserError(f"Unknown padding {padding!r}: a sequence card says 'none' or 'right'.")
        if padding == "right" and not max_length:
            raise UserError("Padding 'right' needs the card's max_length.")
        self.network = network
        self.alphabet = alphabet
        self.classes = tuple(classes) if classes is not None else None
        self.input_kind = input_kind
        self.max_length = max_length
        self.padding = padding
        self.pad_index = len(alphabet) if pad_index is None else int(pad_index)
        try:
            network.eval()
        except (NotImplementedError, RuntimeError):
            pass
        for parameter in network.parameters():
            parameter.requires_grad_(False)
        self.embedding = next((m for m in network.modules() if isinstance(m, nn.Embedding)), None) \
            if input_kind == "tokens" and not isinstance(network, torch.jit.ScriptModule) else None

    @property
    def device(self) -> torch.device:
        parameter = next(iter(self.network.parameters()), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    @property
    def differentiable(self) -> bool:
        """Whether input gradients exist (HotFlip ranking and saliency need them)."""
        return self.input_kind == "onehot" or self.embedding is not None

    def train(self, mode: bool = True):  # the wrapped network always stays in eval mode
        self.training = False
        return self

    def check_length(self, length: int) -> None:
        if self.max_length and length > self.max_length:
            raise UserError(f"The sequence has {length} residues but the model accepts at most "
                            f"{self.max_length}; probe a shorter fragment.")

    def _pad_width(self, length: int) -> int:
        self.check_length(length)
        return self.max_length - length if self.padding == "right" else 0

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        pad = self._pad_width(onehot.shape[1])
        if self.input_kind == "onehot":
            x = F.pad(onehot, (0, 0, 0, pad)).transpose(1, 2)
            return extract_logits(self.network(x))
        if self.embedding is None:
            raise UserError("This token model hides its embedding (TorchScript), so it has no input "
                            "gradients: use the exhaustive scan, or a one-hot or state_dict model.")
        vocabulary = self.embedding.num_embeddings
        full = F.pad(onehot, (0, vocabulary - onehot.shape[2], 0, pad))
        if pad:
            full[:, onehot.shape[1]:, self.pad_index] = 1.0
        tokens = full.detach().argmax(dim=2)
        # The embedding lookup becomes one-hot · weight: the same numbers, and differentiable.
        handle = self.embedding.register_forward_hook(
            lambda module, inputs, output: (full @ module.weight).to(output.dtype))
        try:
            return extract_logits(self.network(tokens))
        finally:
            handle.remove()

    def logits_for(self, tokens: torch.Tensor) -> torch.Tensor:
        """Exact logits of N×L index rows (no gradient)."""
        with torch.no_grad():
            if tokens.dim() == 1:
                tokens = tokens[None]
            if self.input_kind == "onehot":
                return self.forward(one_hot(tokens, len(self.alphabet)))
            pad = self._pad_width(tokens.shape[1])
            return extract_logits(self.network(F.pad(tokens, (0, pad), value=self.pad_index)))


# ----------------------------------------------------------------------------- results

@dataclass(frozen=True)
class Substitution:
    """One residue change; ``position`` is 0-based, :meth:`label` is the usual ``A45H``."""

    position: int
    original: str
    replacement: str

    def label(self) -> str:
        return f"{self.original}{self.position + 1}{self.replacement}"

    @property
    def blosum62(self) -> int | None:
        return blosum62(self.original, self.replacement)


@dataclass
class ProbeProgress:
    """What a probe generator yields: where it is, for a progress bar and live views.

    ``phase`` is ``"scan"``, ``"search"``, ``"prune"`` or ``"saliency"``; ``done``/``total``
    count forward passes (scan) or substitutions (search); ``substitutions`` and
    ``probabilities`` are the current best sequence's (CPU tensors).
    """

    phase: str
    done: int
    total: int
    message: str
    substitutions: tuple[Substitution, ...] = ()
    probabilities: torch.Tensor | None = None


@dataclass
class ScanResult:
    """The exhaustive single-substitution scan of one sequence (all CPU tensors).

    ``probabilities`` is L×A×K (NaN where the substitution is not allowed; the clean
    probabilities on the diagonal, i.e. where the replacement is the residue itself);
    ``delta`` is L×A, the change in probability of ``watched_class`` (the target, else the
    clean prediction); ``predictions`` L×A (−1 where not allowed).
    """

    probabilities: torch.Tensor
    delta: torch.Tensor
    predictions: torch.Tensor
    watched_class: int
    reference: int
    target: int | None
    flips: list[Substitution]
    forward_passes: int

    @property
    def candidates(self) -> int:
        return int((self.predictions >= 0).sum()) - int(self.probabilities.shape[0])


@dataclass
class SearchResult:
    """The fewest substitutions the search found, and what each did.

    ``probability_path`` has one row per prefix of ``substitutions`` (row 0 = the clean
    sequence); ``minimal`` is True when no smaller set can work (one substitution, or a
    scan proved no single substitution succeeds and two were found).
    """

    original: str
    probed: str
    substitutions: tuple[Substitution, ...]
    success: bool
    reference: int
    target: int | None
    probabilities_before: torch.Tensor
    probabilities_after: torch.Tensor
    probability_path: torch.Tensor
    minimal: bool
    forward_passes: int
    backward_passes: int

    @property
    def prediction_before(self) -> int:
        return int(self.probabilities_before.argmax())

    @property
    def prediction_after(self) -> int:
        return int(self.probabilities_after.argmax())


@dataclass
class ProbeOutcome:
    """Everything one probe found for one sequence."""

    search: SearchResult
    scan: ScanResult | None = None
    saliency_method: str | None = None
    saliency_before: torch.Tensor | None = None   # L, for the clean prediction
    saliency_after: torch.Tensor | None = None    # L, for the prediction after the substitutions
    motifs_created: list[MotifHit] = field(default_factory=list)
    motifs_destroyed: list[MotifHit] = field(default_factory=list)


# ----------------------------------------------------------------------------- the probe

def allowed_candidates(tokens: torch.Tensor, allowed_positions: torch.Tensor,
                       allowed_substitutions: torch.Tensor) -> torch.Tensor:
    """The L×A boolean table of substitutions the user allows on this sequence.

    Raises a :class:`UserError` if the allowed region is empty or the table allows nothing
    inside it: a probe that may change nothing is a mistake.
    """
    allowed_positions = torch.as_tensor(allowed_positions, dtype=torch.bool).cpu()
    tokens = tokens.cpu()
    if allowed_positions.shape != tokens.shape:
        raise UserError(f"The allowed region covers {allowed_positions.numel()} positions but the "
                        f"sequence has {tokens.numel()}.")
    if not bool(allowed_positions.any()):
        raise UserError("The allowed region is empty, so the probe could change nothing. Mark the "
                        "positions that may change (e.g. --positions 40-55).")
    candidates = allowed_substitutions[tokens] & allowed_positions[:, None]
    if not bool(candidates.any()):
        raise UserError("The substitution table allows no change at any allowed position; allow "
                        "more substitutions (e.g. --substitutions any) or a larger region.")
    return candidates


def _objective(logits: torch.Tensor, reference: int, target: int | None) -> torch.Tensor:
    """What the search maximises: CE of the reference class, or −CE of the target."""
    if target is None:
        return F.cross_entropy(logits, torch.full((logits.shape[0],), reference, device=logits.device),
                               reduction="none")
    return -F.cross_entropy(logits, torch.full((logits.shape[0],), target, device=logits.device),
                            reduction="none")


def _succeeded(logits: torch.Tensor, reference: int, target: int | None) -> torch.Tensor:
    prediction = logits.argmax(dim=1)
    return prediction != reference if target is None else prediction == target


def _check_class(model: SequenceClassifier, index: int | None, num_classes: int, what: str) -> None:
    if index is not None and not 0 <= index < num_classes:
        raise UserError(f"{what} class {index} is out of range: the model has {num_classes} "
                        f"classes (0 to {num_classes - 1}).")


def _apply(tokens: torch.Tensor, substitutions: Iterable[tuple[int, int]]) -> torch.Tensor:
    changed = tokens.clone()
    for position, replacement in substitutions:
        changed[position] = replacement
    return changed


def scan_steps(model: SequenceClassifier, tokens: torch.Tensor, allowed_positions: torch.Tensor,
               allowed_substitutions: torch.Tensor, *, target: int | None = None,
               batch_size: int = 256) -> Generator[ProbeProgress, None, ScanResult]:
    """Score every allowed single substitution by an exact forward pass, in batches.

    L_allowed × (A−1) forward passes at most; yields after each batch. The returned
    :class:`ScanResult` holds the heat map (Δ probability of the watched class).
    """
    device = model.device
    tokens = tokens.to(device)
    candidates = allowed_candidates(tokens, allowed_positions, allowed_substitutions)
    length, size = candidates.shape
    clean_logits = model.logits_for(tokens)
    reference = int(clean_logits.argmax(dim=1))
    num_classes = clean_logits.shape[1]
    _check_class(model, target, num_classes, "Target")
    clean = torch.softmax(clean_logits.float(), dim=1)[0].cpu()
    probabilities = torch.full((length, size, num_classes), float("nan"))
    probabilities[torch.arange(length), tokens.cpu()] = clean
    pairs = candidates.nonzero().tolist()
    total = len(pairs)
    for start in range(0, total, batch_size):
        chunk = pairs[start:start + batch_size]
        batch = tokens.repeat(len(chunk), 1)
        rows = torch.arange(len(chunk), device=device)
        where = torch.tensor(chunk, device=device)
        batch[rows, where[:, 0]] = where[:, 1]
        probabilities[where[:, 0].cpu(), where[:, 1].cpu()] = \
            torch.softmax(model.logits_for(batch).float(), dim=1).cpu()
        done = min(start + batch_size, total)
        yield ProbeProgress("scan", done, total, f"scanned {done} of {total} single substitutions",
                            probabilities=clean)
    watched = reference if target is None else target
    delta = probabilities[:, :, watched] - clean[watched]
    scored = ~torch.isnan(probabilities[:, :, 0])
    predictions = torch.where(scored, probabilities.nan_to_num(-1.0).argmax(dim=2), torch.tensor(-1))
    if target is None:
        flipping = candidates & (predictions != reference)
    elif target == reference:  # the target is already predicted: nothing to reach
        flipping = torch.zeros_like(candidates)
    else:
        flipping = candidates & (predictions == target)
    flips = [Substitution(p, model.alphabet[int(tokens[p])], model.alphabet[b])
             for p, b in flipping.nonzero().tolist()]
    # Strongest first: the largest fall of the reference, or rise of the target.
    flips.sort(key=lambda s: float(delta[s.position, model.alphabet.index(s.replacement)])
               * (1 if target is not None else -1), reverse=True)
    return ScanResult(probabilities=probabilities, delta=delta, predictions=predictions,
                      watched_class=watched, reference=reference, target=target, flips=flips,
                      forward_passes=total + 1)


def search_steps(model: SequenceClassifier, tokens: torch.Tensor, allowed_positions: torch.Tensor,
                 allowed_substitutions: torch.Tensor, *, max_substitutions: int = 3,
                 target: int | None = None, candidates: int = 32, prune: bool = True,
                 no_single_flip: bool = False) -> Generator[ProbeProgress, None, SearchResult]:
    """Greedy HotFlip search for the fewest substitutions that flip (or reach ``target``).

    Each step ranks every allowed substitution by its first-order gain from one gradient,
    scores the ``candidates`` best by exact forward passes (all of them for a model without
    input gradients) and keeps the best: a success beats a failure, then the higher loss.
    After a success, substitutions the flip does not need are dropped (exact checks).
    ``no_single_flip=True`` (an exhaustive scan found none) lets a two-substitution
    result be reported as minimal.
    """
    if max_substitutions < 1:
        raise UserError("The probe needs at least one substitution (--max-subs ≥ 1).")
    device = model.device
    tokens = tokens.to(device)
    allowed = allowed_candidates(tokens, allowed_positions, allowed_substitutions).to(device)
    clean_logits = model.logits_for(tokens)
    reference = int(clean_logits.argmax(dim=1))
    _check_class(model, target, clean_logits.shape[1], "Target")
    forward_passes, backward_passes = 1, 0
    chosen: list[tuple[int, int]] = []
    current, current_logits = tokens, clean_logits
    success = bool(_succeeded(clean_logits, reference, target))  # a target already predicted

    def progress(phase, done, total, message):
        return ProbeProgress(phase, done, total, message, _as_substitutions(model, tokens, chosen),
                             torch.softmax(current_logits.float(), dim=1)[0].cpu())

    while not success and len(chosen) < max_substitutions:
        open_candidates = allowed.clone()
        for position, _ in chosen:
            open_candidates[position] = False
        if not bool(open_candidates.any()):
            break
        if model.differentiable:
            gain = _first_order_gain(model, current, reference, target)
            backward_passes += 1
            forward_passes += 1
            gain = gain.masked_fill(~open_candidates, float("-inf"))
            count = min(candidates, int(open_candidates.sum()))
            flat = gain.flatten().topk(count).indices
        else:
            flat = open_candidates.flatten().nonzero().squeeze(1)
        positions, replacements = flat // allowed.shape[1], flat % allowed.shape[1]
        batch = current.repeat(len(flat), 1)
        batch[torch.arange(len(flat), device=device), positions] = replacements
        logits = model.logits_for(batch)
        forward_passes += len(flat)
        wins = _succeeded(logits, reference, target)
        score = _objective(logits.float(), reference, target) + wins.float() * 1e6
        best = int(score.argmax())
        chosen.append((int(positions[best]), int(replacements[best])))
        current, current_logits = batch[best], logits[best:best + 1]
        success = bool(wins[best])
        yield progress("search", len(chosen), max_substitutions,
                       f"{len(chosen)} substitution{'s' if len(chosen) > 1 else ''}: "
                       + ", ".join(s.label() for s in _as_substitutions(model, tokens, chosen)))

    if success and prune and len(chosen) > 1:
        chosen, passes = _prune(model, tokens, chosen, reference, target)
        forward_passes += passes
        current = _apply(tokens, chosen)
        current_logits = model.logits_for(current)
        forward_passes += 1
        yield progress("prune", len(chosen), len(chosen), f"kept {len(chosen)} after pruning")

    path_rows = [_apply(tokens, chosen[:k]) for k in range(len(chosen) + 1)]
    path = torch.softmax(model.logits_for(torch.stack(path_rows)).float(), dim=1).cpu()
    forward_passes += len(path_rows)
    minimal = success and (len(chosen) <= 1 or (len(chosen) == 2 and no_single_flip))
    return SearchResult(
        original=decode(tokens, model.alphabet), probed=decode(current, model.alphabet),
        substitutions=_as_substitutions(model, tokens, chosen), success=success,
        reference=reference, target=target, probabilities_before=path[0],
        probabilities_after=path[-1], probability_path=path, minimal=minimal,
        forward_passes=forward_passes, backward_passes=backward_passes)


def _as_substitutions(model: SequenceClassifier, tokens: torch.Tensor,
                      chosen: Iterable[tuple[int, int]]) -> tuple[Substitution, ...]:
    return tuple(Substitution(p, model.alphabet[int(tokens[p])], model.alphabet[b]) for p, b in chosen)


def _first_order_gain(model: SequenceClassifier, tokens: torch.Tensor, reference: int,
                      target: int | None) -> torch.Tensor:
    """HotFlip's L×A table ``g[i, b] − g[i, current_i]``: the first-order change of the
    objective when position i becomes residue b. Grad mode is switched on here, inside the
    step (it is thread-local)."""
    with torch.enable_grad():
        onehot = one_hot(tokens, len(model.alphabet)).requires_grad_(True)
        objective = _objective(model(onehot).float(), reference, target).sum()
        gradient = torch.autograd.grad(objective, onehot)[0][0]
    return gradient - gradient.gather(1, tokens[:, None])


def _prune(model: SequenceClassifier, tokens: torch.Tensor, chosen: list[tuple[int, int]],
           reference: int, target: int | None) -> tuple[list[tuple[int, int]], int]:
    """Drop substitutions the flip does not need, one at a time, keeping the strongest
    remaining success (greedy steps can pick a change a later one made redundant)."""
    passes = 0
    while len(chosen) > 1:
        variants = [chosen[:i] + chosen[i + 1:] for i in range(len(chosen))]
        logits = model.logits_for(torch.stack([_apply(tokens, v) for v in variants]))
        passes += len(variants)
        wins = _succeeded(logits, reference, target)
        if not bool(wins.any()):
            break
        score = _objective(logits.float(), reference, target).masked_fill(~wins, float("-inf"))
        chosen = variants[int(score.argmax())]
    return chosen, passes


def saliency_track(model: SequenceClassifier, tokens: torch.Tensor, class_index: int,
                   method: str = "input-x-gradient", *, steps: int = 50) -> torch.Tensor:
    """Per-position attribution (length L, CPU) of ``class_index``, computed by Captum on
    the one-hot input and summed over the alphabet.

    ``input-x-gradient`` (Shrikumar et al. 2016, https://arxiv.org/abs/1605.01713): on a
    one-hot input this is the gradient at the residue present, the first-order effect of
    deleting it. ``integrated-gradients`` (Sundararajan et al. 2017,
    https://arxiv.org/abs/1703.01365) from the all-zero baseline (no residue anywhere), with
    ``steps`` Gauss–Legendre points: the tracks sum to f(x) − f(0). Signed: positive
    residues support the class.
    """
    from captum.attr import InputXGradient, IntegratedGradients

    if not model.differentiable:
        raise UserError("This model has no input gradients (a TorchScript token model), so it has "
                        "no saliency track; use the exhaustive scan instead.")
    # Captum warns when the input does not require gradients; it needs them, so ask.
    onehot = one_hot(tokens.to(model.device), len(model.alphabet)).requires_grad_(True)
    with torch.enable_grad():
        if method == "input-x-gradient":
            attribution = InputXGradient(model).attribute(onehot, target=int(class_index))
        elif method == "integrated-gradients":
            attribution = IntegratedGradients(model).attribute(
                onehot, baselines=torch.zeros_like(onehot), target=int(class_index), n_steps=steps)
        else:
            raise UserError(f"Unknown saliency method {method!r}: use "
                            f"{' or '.join(SEQUENCE_SALIENCY_METHODS)}.")
    return attribution[0].sum(dim=1).detach().float().cpu()


def probe_steps(model: SequenceClassifier, tokens: torch.Tensor, allowed_positions: torch.Tensor,
                allowed_substitutions: torch.Tensor, *, max_substitutions: int = 3,
                target: int | None = None, scan: bool = False, saliency: str | None = None,
                motifs: Sequence[Motif] = DEFAULT_MOTIFS, candidates: int = 32,
                batch_size: int = 256) -> Generator[ProbeProgress, None, ProbeOutcome]:
    """The whole probe of one sequence: optional exhaustive scan, the greedy search, the
    motifs created or destroyed, and optional saliency tracks before and after.

    When the scan finds single substitutions that succeed, the strongest one is the answer
    (one substitution is minimal) and the search is not needed.
    """
    if saliency and not model.differentiable:  # say so before any work, not after it
        raise UserError("This model has no input gradients (a TorchScript token model), so it has "
                        "no saliency track; probe without saliency.")
    tokens = tokens.to(model.device)
    scan_result = None
    if scan:
        scan_result = yield from scan_steps(model, tokens, allowed_positions, allowed_substitutions,
                                            target=target, batch_size=batch_size)
    if scan_result is not None and scan_result.flips:
        best = scan_result.flips[0]
        single = torch.zeros_like(torch.as_tensor(allowed_positions, dtype=torch.bool).cpu())
        single[best.position] = True
        table = torch.zeros_like(allowed_substitutions)
        table[model.alphabet.index(best.original), model.alphabet.index(best.replacement)] = True
        search = yield from search_steps(model, tokens, single, table, max_substitutions=1,
                                         target=target, candidates=1)
    else:
        search = yield from search_steps(
            model, tokens, allowed_positions, allowed_substitutions,
            max_substitutions=max_substitutions, target=target, candidates=candidates,
            no_single_flip=scan_result is not None)
    created, destroyed = motif_changes(search.original, search.probed, motifs)
    outcome = ProbeOutcome(search=search, scan=scan_result, motifs_created=created,
                           motifs_destroyed=destroyed)
    if saliency:
        yield ProbeProgress("saliency", 0, 2, f"saliency ({saliency})")
        probed = encode(search.probed, model.alphabet)
        outcome.saliency_method = saliency
        outcome.saliency_before = saliency_track(model, tokens, search.prediction_before, saliency)
        outcome.saliency_after = saliency_track(model, probed, search.prediction_after, saliency)
        yield ProbeProgress("saliency", 2, 2, "saliency done")
    return outcome


def parse_positions(text: str, length: int) -> torch.Tensor:
    """Allowed positions from ``"10-20,35"`` (1-based, inclusive) as a bool tensor of
    length ``length`` (see :func:`advexplorer.core.residues.position_flags`)."""
    return torch.tensor(position_flags(text, length), dtype=torch.bool)
