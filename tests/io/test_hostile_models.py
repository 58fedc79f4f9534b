"""Hostile and faulty model files: nothing runs without --trust-pickle, nothing silently wrong.

Every hostile file is built here, in the test, from a harmless model: a ``.pt2`` whose
weights, sample inputs or constants are pickles that would create a marker file, a shape
expression that would run Python, a TorchScript archive with such a pickle inside; then
faulty models: NaN outputs, probabilities instead of logits, a dict with no ``logits``,
a forward that raises on real images, a card with an impossible input size.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from advexplorer.core.attacks import AttackConfig, run_attack
from advexplorer.core.model import Classifier
from advexplorer.errors import UserError
from advexplorer.io.cards import load_card, parse_card
from advexplorer.io.models import load_model


class TinyNet(nn.Module):
    def __init__(self, classes: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class CreatesMarker:
    """Unpickling this object creates ``path`` — a stand-in for any code an attacker likes."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_card(path: Path, **overrides) -> Path:
    card = {"name": "test", "classes": ["a", "b", "c"], "input_size": [16, 16], "channels": 3,
            "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    card.update(overrides)
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


# --------------------------------------------------------------------------- .pt2 archives

def export_program(path: Path, dynamic: bool = True) -> Path:
    shapes = ({0: torch.export.Dim.AUTO},) if dynamic else None
    batch = 2 if dynamic else 1  # a static program serves only its example's batch size
    program = torch.export.export(TinyNet().eval(), (torch.rand(batch, 3, 16, 16),), dynamic_shapes=shapes)
    torch.export.save(program, str(path))
    return write_card(path)


def rewrite_archive(path: Path, change) -> None:
    """Rewrite a zip archive entry by entry: ``change(name_without_root, data) -> data``."""
    with zipfile.ZipFile(path) as archive:
        entries = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries:
            archive.writestr(name, change(name.split("/", 1)[1], data))


def poison_weight(path: Path, marker: Path) -> str:
    """Mark the first weight as pickled and make its payload a hostile pickle."""
    import pickle

    config_name = "data/weights/model_weights_config.json"
    victim = {}

    def change(name, data):
        if name == config_name:
            config = json.loads(data)
            fqn, payload = next(iter(config["config"].items()))
            payload["use_pickle"] = True
            victim["file"] = "data/weights/" + payload["path_name"]
            return json.dumps(config).encode()
        return data

    rewrite_archive(path, change)
    rewrite_archive(path, lambda name, data: pickle.dumps(CreatesMarker(marker))
                    if name == victim["file"] else data)
    return victim["file"]


def poison_sample_inputs(path: Path, marker: Path) -> str:
    import pickle

    entry = "data/sample_inputs/model.pt"
    rewrite_archive(path, lambda name, data: pickle.dumps(CreatesMarker(marker)) if name == entry else data)
    return entry


def poison_opaque_constant(path: Path, marker: Path) -> str:
    """Add a constant stored as an opaque object (torch reads those with ``pickle.loads``)."""
    import pickle

    config_name = "data/constants/model_constants_config.json"
    entry = "data/constants/opaque_obj_0"

    def change(name, data):
        if name == config_name:
            config = json.loads(data)
            config["config"]["evil"] = {"path_name": "opaque_obj_0", "is_param": False,
                                        "use_pickle": True, "tensor_meta": None}
            return json.dumps(config).encode()
        return data

    rewrite_archive(path, change)
    with zipfile.ZipFile(path, "a") as archive:
        root = archive.namelist()[0].split("/", 1)[0]
        archive.writestr(f"{root}/{entry}", pickle.dumps(CreatesMarker(marker)))
    return entry


def poison_shape_expression(path: Path, marker: Path) -> str:
    """Put Python into a symbolic-shape expression (torch parses those with sympy, via eval)."""
    entry = "models/model.json"

    def change(name, data):
        if name != entry:
            return data
        text = data.decode()
        symbol = re.search(r'"expr_str": "([^"]*)"', text).group(1)
        payload = f"__import__('builtins').open('{marker}', 'w') and {symbol}"
        return text.replace(f'"expr_str": "{symbol}"', f'"expr_str": "{payload}"', 1).encode()

    rewrite_archive(path, change)
    return entry


def poison_call_target(path: Path, marker: Path) -> str:
    """Make a graph node call a Python function reachable from ``torch`` (here ``os.system``).

    torch's verifier refuses this particular graph after deserialising it; the target check
    is a second line that does not depend on the verifier seeing every way to reach Python."""
    entry = "models/model.json"

    def change(name, data):
        if name != entry:
            return data
        graph = json.loads(data)
        node = graph["graph_module"]["graph"]["nodes"][0]
        node["target"] = "torch.os.system"
        node["inputs"] = [{"name": "command", "arg": {"as_string": f"touch {marker}"}, "kind": 1}]
        return json.dumps(graph).encode()

    rewrite_archive(path, change)
    return entry


@pytest.mark.parametrize("poison", [poison_weight, poison_sample_inputs, poison_opaque_constant,
                                    poison_shape_expression, poison_call_target])
def test_crafted_pt2_runs_no_code_and_names_the_entry(tmp_path, poison):
    path = export_program(tmp_path / "prog.pt2")
    marker = tmp_path / "code-ran"
    entry = poison(path, marker)
    with pytest.raises(UserError) as refused:
        load_model(path, device="cpu")
    assert not marker.exists(), "loading the .pt2 ran code from the file"
    message = str(refused.value)
    assert entry in message and "--trust-pickle" in message
    assert "\n" not in message


def test_clean_pt2_still_loads_with_and_without_a_dynamic_batch(tmp_path):
    for dynamic in (True, False):
        path = export_program(tmp_path / f"clean{int(dynamic)}.pt2", dynamic=dynamic)
        loaded = load_model(path, device="cpu")
        assert loaded.format == "export"
        x = torch.rand(1, 3, 16, 16)
        assert torch.allclose(loaded.classifier(x), TinyNet().eval()((x - 0.5) / 0.25), atol=1e-5)


def test_pt2_pickled_weight_loads_only_with_trust_pickle(tmp_path):
    """A tensor that torch.export itself pickled (a tensor subclass) is a pickle all the same."""
    path = export_program(tmp_path / "prog.pt2")
    marker = tmp_path / "code-ran"
    poison_weight(path, marker)
    with pytest.raises(UserError, match="--trust-pickle"):
        load_model(path, device="cpu")
    assert not marker.exists()
    # With the opt-in the user has said the file may run code; it does.
    with pytest.raises(UserError):
        load_model(path, device="cpu", trust_pickle=True)
    assert marker.exists()


# --------------------------------------------------------------------------- other formats

def test_torchscript_with_a_hostile_pickle_runs_no_code(tmp_path):
    """torch.jit.load reads its pickles with TorchScript's own unpickler: no Python globals."""
    import pickle

    path = write_card(tmp_path / "ts.pt")
    torch.jit.script(TinyNet()).save(str(path))
    marker = tmp_path / "code-ran"
    rewrite_archive(path, lambda name, data: pickle.dumps(CreatesMarker(marker), protocol=2)
                    if name in ("data.pkl", "constants.pkl") else data)
    with pytest.raises(UserError):
        load_model(path, device="cpu")
    assert not marker.exists()


def test_hostile_pickle_in_a_pth_runs_no_code(tmp_path):
    path = write_card(tmp_path / "weights.pth", architecture="torchvision.resnet18")
    marker = tmp_path / "code-ran"
    torch.save({"state_dict": CreatesMarker(marker)}, path)
    with pytest.raises(UserError, match="--trust-pickle"):
        load_model(path, device="cpu")
    assert not marker.exists()


# --------------------------------------------------------------------------- NaN and non-logits

def scripted(tmp_path: Path, module: nn.Module, name: str = "m.pt", **card) -> Path:
    path = write_card(tmp_path / name, **card)
    torch.jit.script(module).save(str(path))
    return path


class NaNOutput(nn.Module):
    def forward(self, x):
        return torch.full((x.shape[0], 3), float("nan"))


def test_model_that_outputs_nan_is_refused_at_the_dry_run(tmp_path):
    path = scripted(tmp_path, NaNOutput())
    with pytest.raises(UserError, match="NaN") as refused:
        load_model(path, device="cpu")
    assert "m.pt" in str(refused.value)


@pytest.mark.parametrize("std", ["NaN", "Infinity", "1e-300", "[0.25, NaN, 0.25]"])
def test_card_with_a_std_that_is_not_a_positive_number_is_refused(tmp_path, std):
    path = tmp_path / "m.json"
    path.write_text('{"classes": ["a", "b"], "input_size": [8, 8], "std": %s}' % std)
    with pytest.raises(UserError, match="std|NaN|Infinity"):
        load_card(path)


def test_card_with_nan_anywhere_is_refused(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"classes": ["a", "b"], "input_size": [8, 8], "clean_accuracy": NaN}')
    with pytest.raises(UserError, match="NaN"):
        load_card(path)


class NaNAbove(nn.Module):
    """Finite on ordinary images; NaN once any pixel goes above 0.95 (as an attack may push it)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x):
        logits = self.linear(x.flatten(1))
        poison = torch.where(x.flatten(1).amax(dim=1, keepdim=True) > 0.95,
                             torch.tensor(float("nan")), torch.tensor(0.0))
        return logits + poison


def test_nan_that_appears_mid_attack_is_a_flagged_failure():
    classifier = Classifier(NaNAbove(), [0.0] * 3, [1.0] * 3)
    images = 0.3 + 0.4 * torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(classifier(images)).all()
    with pytest.raises(UserError, match="NaN"):
        run_attack(classifier, images, None, None, AttackConfig(eps=0.5, steps=5))


class Softmaxed(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = TinyNet()

    def forward(self, x):
        return torch.softmax(self.net(x) * 5, dim=1)


def test_probability_outputs_are_turned_into_log_probabilities(tmp_path):
    path = scripted(tmp_path, Softmaxed(), mean=[0, 0, 0], std=[1, 1, 1])
    loaded = load_model(path, device="cpu")
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        expected = Softmaxed()(x)
    assert torch.allclose(torch.softmax(loaded.classifier(x), dim=1), expected, atol=1e-5)
    assert any("probabilit" in note for note in loaded.notes)


class SigmoidProbability(nn.Module):
    def forward(self, x):
        return torch.sigmoid(x.mean(dim=(1, 2, 3)).unsqueeze(1) * 0.5 - 0.1)


def test_single_sigmoid_probability_is_not_read_as_a_logit(tmp_path):
    path = scripted(tmp_path, SigmoidProbability(), classes=["neg", "pos"], mean=[0, 0, 0], std=[1, 1, 1])
    with pytest.raises(UserError, match='"output"'):
        load_model(path, device="cpu")
    # The card settles it: a probability p becomes the two classes [1 - p, p].
    write_card(path, classes=["neg", "pos"], mean=[0, 0, 0], std=[1, 1, 1], output="probabilities")
    loaded = load_model(path, device="cpu")
    x = torch.rand(3, 3, 16, 16)
    p = SigmoidProbability()(x)[:, 0]
    probabilities = torch.softmax(loaded.classifier(x), dim=1)
    assert torch.allclose(probabilities[:, 1], p, atol=1e-5)


class DictOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = TinyNet()

    def forward(self, x) -> dict[str, torch.Tensor]:
        scores = self.net(x)
        return {"embedding": torch.cat([scores, scores], dim=1), "scores": scores}


def test_dict_output_without_logits_names_its_keys(tmp_path):
    path = scripted(tmp_path, DictOutput())
    with pytest.raises(UserError, match=r"'embedding'.*'scores'.*output_key"):
        load_model(path, device="cpu")
    write_card(path, output_key="scores")
    loaded = load_model(path, device="cpu")
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(loaded.classifier(x), TinyNet()((x - 0.5) / 0.25), atol=1e-5)


# --------------------------------------------------------------------------- errors that are not bugs

class RaisesOnRealImages(nn.Module):
    def forward(self, x):
        if bool((x.std(dim=(1, 2, 3)) > 0.2).any()):
            raise ValueError("unexpected contrast")
        return x.flatten(1)[:, :3]


def test_forward_that_raises_on_real_images_is_one_line():
    classifier = Classifier(RaisesOnRealImages(), [0.0] * 3, [1.0] * 3)
    images = torch.rand(1, 3, 16, 16)
    with pytest.raises(UserError, match=r"forward raised ValueError on a 1×3×16×16 image.*"
                                        r"unexpected contrast.*input_size") as refused:
        run_attack(classifier, images, None, None, AttackConfig(eps=0.1, steps=2))
    assert "\n" not in str(refused.value)


def test_impossible_input_size_is_refused_before_allocating(tmp_path):
    with pytest.raises(UserError, match="input_size.*16384"):
        parse_card({"classes": ["a", "b"], "input_size": [100000, 100000]})


def test_out_of_memory_in_the_dry_run_is_one_line(tmp_path):
    class Hungry(nn.Module):
        def forward(self, x):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                               "not enough memory: you tried to allocate 120000000000 bytes.")

    path = scripted(tmp_path, Hungry())
    with pytest.raises(UserError, match="memory") as refused:
        load_model(path, device="cpu")
    assert "\n" not in str(refused.value)


def test_guard_code_in_a_pt2_is_never_executed(tmp_path):
    """``ExportedProgram.module()`` compiles the archive's ``guards_code`` strings with
    ``exec`` and runs them on every call; AdvExplorer does not generate that function."""
    path = export_program(tmp_path / "prog.pt2")
    marker = tmp_path / "code-ran"

    def change(name, data):
        if name != "models/model.json":
            return data
        graph = json.loads(data)
        graph["guards_code"] = [f"__import__('builtins').open('{marker}', 'w') is not None"]
        return json.dumps(graph).encode()

    rewrite_archive(path, change)
    loaded = load_model(path, device="cpu")  # the dry run calls the program four times
    loaded.classifier(torch.rand(2, 3, 16, 16))
    assert not marker.exists(), "the archive's guard code ran"
