"""FASTA files, sequence cards and sequence models: what a user sees when one is wrong."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from advexplorer.core.sequences import MotifCNN
from advexplorer.errors import UserError
from advexplorer.io.sequences import (is_sequence_card, load_sequence_card, load_sequence_model,
                                      parse_fasta, read_fasta, read_substitution_rule)


def test_fasta_records_wrapped_lowercase_and_stop(tmp_path):
    path = tmp_path / "two.fasta"
    path.write_text(">sp|P1 first protein\nmkta\nYIAK*\n\n; a comment\n>second\nGSGAAG\n")
    records = read_fasta(path, "ACDEFGHIKLMNPQRSTVWY", 20)
    assert [(r.name, r.description, r.sequence, r.line) for r in records] == [
        ("sp|P1", "first protein", "MKTAYIAK", 1), ("second", "", "GSGAAG", 6)]


def test_fasta_unknown_letters_are_named_with_positions(tmp_path):
    path = tmp_path / "bad.fasta"
    path.write_text(">ok\nACDE\n>odd one\nACXDEBX\n")
    with pytest.raises(UserError) as error:
        read_fasta(path, "ACDEFGHIKLMNPQRSTVWY")
    message = str(error.value)
    assert "odd" in message and "bad.fasta" in message
    assert "'X' at 3, 7" in message and "'B' at 6" in message
    assert "\n" not in message


@pytest.mark.parametrize("text, message", [
    ("ACDE\n>x\nAC\n", "does not start with a '>' header"),
    (">empty\n>x\nAC\n", "has no sequence"),
    ("", "holds no FASTA record"),
])
def test_malformed_fasta(text, message):
    with pytest.raises(UserError, match=message):
        parse_fasta(text)


def test_too_long_for_the_model(tmp_path):
    path = tmp_path / "long.fasta"
    path.write_text(">long\n" + "A" * 97 + "\n")
    with pytest.raises(UserError, match="97 residues but the model accepts at most 96"):
        read_fasta(path, "ACDEFGHIKLMNPQRSTVWY", 96)


def test_cards_say_which_field_is_wrong(tmp_path):
    card = tmp_path / "m.json"
    good = {"classes": ["a", "b"], "alphabet": "ACDEFGHIKLMNPQRSTVWY", "max_length": 30,
            "padding": "right", "input": "onehot", "kind": "sequence"}
    card.write_text(json.dumps(good))
    assert load_sequence_card(card).max_length == 30 and is_sequence_card(tmp_path / "m.pt")
    for change, message in (({"input": "bytes"}, "'input'"), ({"padding": "left"}, "'padding'"),
                            ({"classes": ["a"]}, "'classes'"), ({"alphabet": "AAC"}, "'alphabet'"),
                            ({"max_length": None}, "needs 'max_length'")):
        card.write_text(json.dumps(good | change))
        with pytest.raises(UserError, match=message):
            load_sequence_card(card)


def _card(tmp_path, name, **fields):
    data = {"classes": ["a", "b", "c"], "max_length": 30, "padding": "right", "input": "onehot"} | fields
    (tmp_path / f"{name}.json").write_text(json.dumps(data))


def test_state_dict_and_torchscript_models_load(tmp_path):
    torch.manual_seed(0)
    network = MotifCNN(filters=4, width=3)
    torch.save(network.state_dict(), tmp_path / "weights.pt")
    _card(tmp_path, "weights", architecture="advexplorer.MotifCNN",
          architecture_kwargs={"filters": 4, "width": 3})
    loaded = load_sequence_model(tmp_path / "weights.pt")
    assert loaded.format == "state_dict" and loaded.classes == ("a", "b", "c")
    torch.jit.script(network).save(str(tmp_path / "scripted.pt"))
    _card(tmp_path, "scripted")
    scripted = load_sequence_model(tmp_path / "scripted.pt")
    tokens = torch.arange(20)[None]
    torch.testing.assert_close(scripted.classifier.logits_for(tokens), loaded.classifier.logits_for(tokens))


def test_pickled_models_and_wrong_cards_are_refused(tmp_path):
    torch.save(MotifCNN(filters=4, width=3), tmp_path / "whole.pt")
    _card(tmp_path, "whole", architecture="advexplorer.MotifCNN")
    with pytest.raises(UserError, match="pickled Python objects"):
        load_sequence_model(tmp_path / "whole.pt")
    torch.save(MotifCNN(filters=4, width=3, classes=2).state_dict(), tmp_path / "two.pt")
    _card(tmp_path, "two", architecture="advexplorer.MotifCNN", architecture_kwargs={"filters": 4, "width": 3})
    with pytest.raises(UserError, match="do not fit"):
        load_sequence_model(tmp_path / "two.pt")
    torch.jit.script(nn.Linear(3, 3)).save(str(tmp_path / "linear.pt"))
    _card(tmp_path, "linear")
    with pytest.raises(UserError, match="fails on a 16-residue sequence"):
        load_sequence_model(tmp_path / "linear.pt")


def test_substitution_rules_from_files(tmp_path):
    assert read_substitution_rule("BLOSUM62") == "blosum62"
    table = tmp_path / "table.json"
    table.write_text('{"y": "hf"}')
    assert read_substitution_rule(str(table)) == {"Y": "HF"}
    table.write_text('["A"]')
    with pytest.raises(UserError, match="must map each original residue"):
        read_substitution_rule(str(table))
    with pytest.raises(UserError, match="neither 'any', 'blosum62' nor a JSON file"):
        read_substitution_rule("grantham")
