"""The sequence probe: BLOSUM62, the exhaustive scan, the HotFlip search, saliency tracks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advexplorer.core.attacks import drive
from advexplorer.core.sequences import (AMINO_ACIDS, BLOSUM62, SequenceClassifier, blosum62, encode,
                                        find_motifs, format_positions, motif_changes, parse_motifs,
                                        parse_positions, probe_steps, saliency_track, scan_steps,
                                        search_steps, substitution_table)
from advexplorer.errors import UserError


def test_blosum62_known_entries():
    assert BLOSUM62["W", "W"] == 11 and BLOSUM62["C", "C"] == 9 and BLOSUM62["A", "A"] == 4
    assert blosum62("I", "V") == 3 and blosum62("D", "E") == 2 and blosum62("Y", "H") == 2
    assert blosum62("L", "H") == -3 and blosum62("W", "D") == -4 and blosum62("X", "A") is None
    assert all(BLOSUM62[a, b] == BLOSUM62[b, a] for a in AMINO_ACIDS for b in AMINO_ACIDS)
    assert all(BLOSUM62[a, a] > 0 for a in AMINO_ACIDS)


def test_substitution_tables():
    table = substitution_table("blosum62")
    index = AMINO_ACIDS.index
    assert table[index("Y"), index("H")] and not table[index("L"), index("H")]
    assert not table.diagonal().any()
    assert substitution_table("any").sum() == 20 * 19
    custom = substitution_table({"A": "GS", "l": "iv"})
    assert custom.sum() == 4 and custom[index("L"), index("I")]
    with pytest.raises(UserError, match="'B'"):
        substitution_table({"A": "B"})
    with pytest.raises(UserError, match="Unknown substitution rule"):
        substitution_table("pam250")


def _independent_probabilities(model: SequenceClassifier, sequence: str) -> torch.Tensor:
    """One forward pass the plain way: one-hot built by hand, padded, channels first."""
    onehot = torch.zeros(1, 20, model.max_length)
    for position, letter in enumerate(sequence):
        onehot[0, AMINO_ACIDS.index(letter), position] = 1.0
    with torch.no_grad():
        return torch.softmax(model.network(onehot), dim=1)[0]


def test_scan_agrees_with_a_plain_loop(random_model):
    sequence = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEV"
    tokens = encode(sequence)
    allowed = parse_positions("3-7,20", len(sequence))
    table = substitution_table("blosum62")
    scan = drive(scan_steps(random_model, tokens, allowed, table, batch_size=7))
    clean = _independent_probabilities(random_model, sequence)
    checked = 0
    for position in range(len(sequence)):
        for replacement in AMINO_ACIDS:
            allowed_here = bool(allowed[position]) and replacement != sequence[position] and \
                blosum62(sequence[position], replacement) >= 0
            row = scan.probabilities[position, AMINO_ACIDS.index(replacement)]
            if not allowed_here:
                assert replacement == sequence[position] or torch.isnan(row).all()
                continue
            mutant = sequence[:position] + replacement + sequence[position + 1:]
            expected = _independent_probabilities(random_model, mutant)
            torch.testing.assert_close(row, expected, atol=1e-6, rtol=1e-5)
            assert scan.delta[position, AMINO_ACIDS.index(replacement)] == pytest.approx(
                float(expected[scan.reference] - clean[scan.reference]), abs=1e-6)
            checked += 1
    assert checked == scan.candidates == scan.forward_passes - 1 > 0


def test_greedy_search_finds_the_planted_motif_flip(demo_model, showcase, loop):
    """Dehydrogenase → metalloprotease by one conservative loop substitution, Y49H, which
    completes the near-miss HEDKY into an HExxH — what the demo model was built to teach."""
    model = demo_model.classifier
    classes = demo_model.card.classes
    tokens = encode(showcase.sequence)
    allowed = parse_positions(loop, len(tokens))
    for target in (None, classes.index("metalloprotease")):
        outcome = drive(probe_steps(model, tokens, allowed, substitution_table("blosum62"), target=target))
        search = outcome.search
        assert classes[search.prediction_before] == "dehydrogenase"
        assert search.success and search.minimal
        assert [s.label() for s in search.substitutions] == ["Y49H"]
        assert classes[search.prediction_after] == "metalloprotease"
        assert [(h.motif, h.start + 1, h.text) for h in outcome.motifs_created] == [("HExxH", 45, "HEDKH")]
        assert search.probability_path.shape == (2, 3)


def test_search_respects_region_and_table(random_model):
    sequence = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEV"
    tokens = encode(sequence)
    allowed = parse_positions("5-12", len(sequence))
    table = substitution_table("blosum62", blosum_min=1)
    result = drive(search_steps(random_model, tokens, allowed, table, max_substitutions=4))
    assert 1 <= len(result.substitutions) <= 4
    for s in result.substitutions:
        assert 5 <= s.position + 1 <= 12 and blosum62(s.original, s.replacement) >= 1
    assert len({s.position for s in result.substitutions}) == len(result.substitutions)
    changed = [i for i, (a, b) in enumerate(zip(sequence, result.probed)) if a != b]
    assert changed == sorted(s.position for s in result.substitutions)


def test_nothing_to_change_is_a_clear_error(random_model):
    tokens = encode("ACDEFGHIK")
    nothing = torch.zeros(9, dtype=torch.bool)
    with pytest.raises(UserError, match="allowed region is empty"):
        drive(search_steps(random_model, tokens, nothing, substitution_table("any")))
    with pytest.raises(UserError, match="allows no change"):
        drive(scan_steps(random_model, tokens, torch.ones(9, dtype=torch.bool),
                         substitution_table({"W": "F"})))
    with pytest.raises(UserError, match="at most 40"):
        random_model.logits_for(encode("A" * 41))


def test_saliency_tracks_match_a_direct_gradient(demo_model, showcase):
    model = demo_model.classifier
    tokens = encode(showcase.sequence)
    target = 1
    track = saliency_track(model, tokens, target, "input-x-gradient")
    onehot = F.one_hot(tokens, 20).float()[None].requires_grad_(True)
    logits = model.network(F.pad(onehot, (0, 0, 0, 96 - len(tokens))).transpose(1, 2))
    gradient = torch.autograd.grad(logits[0, target], onehot)[0][0]
    direct = gradient.gather(1, tokens[:, None])[:, 0]   # gradient × input at the present residue
    torch.testing.assert_close(track, direct, atol=1e-6, rtol=1e-5)
    # Integrated gradients from the empty sequence add up to f(x) − f(0) (completeness).
    ig = saliency_track(model, tokens, target, "integrated-gradients", steps=64)
    with torch.no_grad():
        empty = model(torch.zeros_like(onehot))[0, target]
    assert float(ig.sum()) == pytest.approx(float(logits.detach()[0, target] - empty), rel=0.02, abs=0.05)


class _TokenNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(21, 6, padding_idx=20)
        self.head = nn.Linear(6, 2)

    def forward(self, tokens):
        return self.head(torch.tanh(self.embed(tokens)).mean(dim=1))


def test_token_models_are_differentiable_through_their_embedding():
    torch.manual_seed(0)
    model = SequenceClassifier(_TokenNet(), classes=["x", "y"], input_kind="tokens",
                               max_length=12, padding="right")
    tokens = encode("MKTAYIAK")
    exact = model.logits_for(tokens)
    via_onehot = model(F.one_hot(tokens, 20).float()[None])
    torch.testing.assert_close(via_onehot, exact)
    result = drive(search_steps(model, tokens, torch.ones(8, dtype=torch.bool),
                                substitution_table("any"), max_substitutions=8))
    assert result.backward_passes >= 1
    assert saliency_track(model, tokens, 0).shape == (8,)


def test_motifs_overlap_and_changes():
    assert [h.start for h in find_motifs("AHEAAHEAAHA")] == [1, 5]
    created, destroyed = motif_changes("GAGAAGHEDKY", "GAGAAAHEDKH")
    assert [h.motif for h in created] == ["HExxH"] and [h.motif for h in destroyed] == ["GxGxxG"]
    motifs = parse_motifs("# mine\nPKC = [ST].[RK]  # phosphorylation\n")
    assert motifs[0].name == "PKC" and motifs[0].meaning == "phosphorylation"
    with pytest.raises(UserError, match="NAME = REGEX"):
        parse_motifs("just a regex")
    with pytest.raises(UserError, match="not a regular expression"):
        parse_motifs("bad = [A")


def test_positions_round_trip():
    allowed = parse_positions("2-4, 7", 10)
    assert allowed.nonzero().squeeze(1).tolist() == [1, 2, 3, 6]
    assert format_positions(allowed) == "2-4,7"
    assert bool(parse_positions("all", 5).all())
    for bad, message in (("0-3", "starts before 1"), ("5-11", "past the end"), ("a-b", "not a position")):
        with pytest.raises(UserError, match=message):
            parse_positions(bad, 10)


def test_a_target_already_predicted_needs_no_substitution(demo_model, showcase, loop):
    model = demo_model.classifier
    tokens = encode(showcase.sequence)
    allowed = parse_positions(loop, len(tokens))
    dehydrogenase = demo_model.card.classes.index("dehydrogenase")
    outcome = drive(probe_steps(model, tokens, allowed, substitution_table("any"),
                                target=dehydrogenase, scan=True))
    assert outcome.search.success and outcome.search.substitutions == ()
    assert outcome.scan.flips == [] and outcome.search.probed == showcase.sequence
