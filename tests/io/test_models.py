"""Loading every model format through the public loader, and refusing what is unsafe or wrong."""

import json
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn

from advexplorer.errors import UserError
from advexplorer.io.cards import load_card, parse_card
from advexplorer.io.models import load_model

ARCH = "torchvision.mobilenet_v3_small"
ARCH_KWARGS = {"num_classes": 3, "width_mult": 0.25}


class TinyNet(nn.Module):
    def __init__(self, channels=3, classes=3):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.head = nn.Linear(4, classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def write_card(path, **overrides):
    card = {"name": "test", "classes": ["a", "b", "c"], "input_size": [32, 32], "channels": 3,
            "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    card.update(overrides)
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def torchvision_net():
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(weights=None, **ARCH_KWARGS).eval()


def test_torchscript_loads_and_matches_the_module(tmp_path):
    net = TinyNet().eval()
    path = write_card(tmp_path / "net.pt")
    torch.jit.script(net).save(str(path))
    loaded = load_model(path, device="cpu")
    assert loaded.format == "torchscript"
    x = torch.rand(2, 3, 32, 32)
    expected = net((x - 0.5) / 0.25)  # normalisation is applied inside the wrapper
    assert torch.allclose(loaded.classifier(x), expected, atol=1e-5)
    assert len(loaded.sha256) == 64 and loaded.card.classes == ("a", "b", "c")


def test_state_dict_with_torchvision_architecture_from_card(tmp_path):
    net = torchvision_net()
    path = write_card(tmp_path / "mnv3.pth", architecture=ARCH, architecture_kwargs=ARCH_KWARGS)
    torch.save(net.state_dict(), path)
    loaded = load_model(path, device="cpu")
    assert loaded.format == "state_dict"
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(loaded.classifier(x), net((x - 0.5) / 0.25), atol=1e-5)


def test_checkpoint_dict_and_dataparallel_prefix_are_unwrapped(tmp_path):
    net = torchvision_net()
    state = OrderedDict(("module." + k, v) for k, v in net.state_dict().items())
    path = write_card(tmp_path / "ckpt.pt", architecture=ARCH, architecture_kwargs=ARCH_KWARGS)
    torch.save({"epoch": 3, "state_dict": state}, path)
    assert load_model(path, device="cpu").format == "state_dict"


def test_safetensors(tmp_path):
    from safetensors.torch import save_file

    net = torchvision_net()
    path = write_card(tmp_path / "w.safetensors", architecture=ARCH, architecture_kwargs=ARCH_KWARGS)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    loaded = load_model(path, device="cpu")
    x = torch.rand(1, 3, 32, 32)
    assert loaded.format == "safetensors"
    assert torch.allclose(loaded.classifier(x), net((x - 0.5) / 0.25), atol=1e-5)


def test_torch_export_program(tmp_path):
    net = TinyNet().eval()
    path = write_card(tmp_path / "prog.pt2")
    # Export with a dynamic batch dimension so one program serves any batch size.
    program = torch.export.export(net, (torch.rand(2, 3, 32, 32),),
                                  dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(program, str(path))
    loaded = load_model(path, device="cpu")
    assert loaded.format == "export"
    x = torch.rand(3, 3, 32, 32)
    assert torch.allclose(loaded.classifier(x), net((x - 0.5) / 0.25), atol=1e-5)


def test_pickled_module_refused_without_opt_in(tmp_path):
    path = write_card(tmp_path / "whole.pt")
    torch.save(TinyNet(), path)
    with pytest.raises(UserError, match="--trust-pickle"):
        load_model(path, device="cpu")
    assert load_model(path, device="cpu", trust_pickle=True).format == "pickle"


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    net = torchvision.models.mobilenet_v3_small(weights=None, num_classes=5, width_mult=0.25)
    path = write_card(tmp_path / "wrong.pt", architecture=ARCH, architecture_kwargs=ARCH_KWARGS)
    torch.save(net.state_dict(), path)
    with pytest.raises(UserError, match=r"classifier\.3\.weight is \[5, .*\] in the file but \[3, "):
        load_model(path, device="cpu")
    state = torchvision_net().state_dict()
    state.pop("features.0.0.weight")
    state["extra.bias"] = torch.zeros(2)
    torch.save(state, path)
    with pytest.raises(UserError, match=r"missing keys: features\.0\.0\.weight.*unexpected keys: extra\.bias"):
        load_model(path, device="cpu")


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"PK\x03\x04truncated zip"])
def test_file_that_is_not_a_model(tmp_path, content):
    path = write_card(tmp_path / "junk.pt", architecture=ARCH, architecture_kwargs=ARCH_KWARGS)
    path.write_bytes(content)
    with pytest.raises(UserError, match="not a PyTorch model file|corrupt|truncated"):
        load_model(path, device="cpu")


def test_truncated_torchscript(tmp_path):
    path = write_card(tmp_path / "cut.pt")
    torch.jit.script(TinyNet()).save(str(path))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(UserError):
        load_model(path, device="cpu")


def test_missing_file_and_missing_card(tmp_path):
    with pytest.raises(UserError, match="No model file"):
        load_model(tmp_path / "absent.pt")
    lonely = tmp_path / "lonely.pt"
    torch.jit.script(TinyNet()).save(str(lonely))
    with pytest.raises(UserError, match="No model card"):
        load_model(lonely)


def test_card_class_count_must_match_outputs(tmp_path):
    path = write_card(tmp_path / "n.pt", classes=["only", "two"])
    torch.jit.script(TinyNet(classes=3)).save(str(path))
    with pytest.raises(UserError, match="outputs 3 classes but its card lists 2"):
        load_model(path, device="cpu")


def test_output_that_is_not_class_logits(tmp_path):
    class Segmenter(nn.Module):
        def forward(self, x):
            return x  # N×C×H×W

    path = write_card(tmp_path / "seg.pt")
    torch.jit.script(Segmenter()).save(str(path))
    with pytest.raises(UserError, match="N×C"):
        load_model(path, device="cpu")


def test_wrong_input_size_in_card(tmp_path):
    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3 * 32 * 32, 3)

        def forward(self, x):
            return self.fc(x.flatten(1))

    path = write_card(tmp_path / "fixed.pt", input_size=[48, 48])
    torch.jit.script(Fixed()).save(str(path))
    with pytest.raises(UserError, match="input_size"):
        load_model(path, device="cpu")


def test_sigmoid_head_counts_as_two_classes(tmp_path):
    class Binary(nn.Module):
        def forward(self, x):
            return x.mean(dim=(1, 2, 3)).unsqueeze(1) * 4 - 2

    path = write_card(tmp_path / "bin.pt", classes=["neg", "pos"], mean=[0, 0, 0], std=[1, 1, 1])
    torch.jit.script(Binary()).save(str(path))
    loaded = load_model(path, device="cpu")
    x = torch.rand(4, 3, 32, 32)
    z = x.mean(dim=(1, 2, 3)) * 4 - 2
    probabilities = torch.softmax(loaded.classifier(x), dim=1)
    assert torch.allclose(probabilities[:, 1], torch.sigmoid(z), atol=1e-6)


def test_unknown_architecture_and_device(tmp_path):
    path = write_card(tmp_path / "u.pt", architecture="torchvision.resnet9000")
    torch.save(torchvision_net().state_dict(), path)
    with pytest.raises(UserError, match="no classification model 'resnet9000'"):
        load_model(path, device="cpu")
    path = write_card(tmp_path / "v.pt", architecture="timm.resnet9000")
    torch.save(torchvision_net().state_dict(), path)
    with pytest.raises(UserError, match="timm has no classification model"):
        load_model(path, device="cpu")
    ts = write_card(tmp_path / "ts.pt")
    torch.jit.script(TinyNet()).save(str(ts))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            load_model(ts, device="cuda")
    with pytest.raises(UserError, match="Unknown device"):
        load_model(ts, device="gpu9")


@pytest.mark.parametrize("bad, message", [
    ({"classes": []}, "classes"),
    ({"input_size": [0, 3]}, "input_size"),
    ({"channels": 2}, "channels"),
    ({"mean": [0.5, 0.5]}, "mean"),
    ({"std": [0, 1, 1]}, "std"),
    ({"resize": "squash"}, "resize"),
    ({"classes": ["a", "a"]}, "duplicate"),
    ({"std": [float("nan")] * 3}, "std"),
    ({"mean": [0.5, float("inf"), 0.5]}, "mean"),
    ({"std": [1e-300] * 3}, "std"),
    ({"input_size": [100000, 100000]}, "16384"),
    ({"output": "scores"}, "'output' must be 'logits' or 'probabilities'"),
    ({"output_key": 3}, "output_key"),
])
def test_card_validation_messages(bad, message):
    card = {"classes": ["a", "b"], "input_size": [8, 8]}
    card.update(bad)
    with pytest.raises(UserError, match=message):
        parse_card(card)


def test_card_that_is_not_json(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_card(path)


def test_card_output_fields_round_trip():
    card = parse_card({"classes": ["a", "b"], "input_size": [8, 8], "output": "probabilities",
                       "output_key": "scores"})
    assert (card.output, card.output_key) == ("probabilities", "scores")
    assert parse_card(card.to_json()) == card
    plain = parse_card({"classes": ["a", "b"], "input_size": [8, 8]})
    assert "output" not in plain.to_json() and plain.output is None
