"""The user's own models, built locally with random weights (nothing downloaded): each kind is
carded by `advexplorer card`, loaded with logits equal to the original's, and attacked with
Grad-CAM; bad inputs are one line and write nothing."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from advexplorer.cli import main
from advexplorer.errors import UserError
from advexplorer.io.models import load_model

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnx2torch")
pytest.importorskip("onnxruntime")

SIZE = 32
IMAGENET = (torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))


def _torchvision(root):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=3).eval()
    torch.save(net.state_dict(), root / "tv.pt")
    return root / "tv.pt", net, IMAGENET, ["--input-size", str(SIZE)]


def _timm_lightning(root):
    torch.manual_seed(0)
    net = timm.create_model("convnext_atto", pretrained=False, num_classes=2).eval()
    # A Lightning checkpoint: the network under "state_dict" with the attribute name as prefix.
    checkpoint = {"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
                  "epoch": 3, "global_step": 30, "pytorch-lightning_version": "2.4.0"}
    torch.save(checkpoint, root / "lit.ckpt")
    return root / "lit.ckpt", net, IMAGENET, ["--input-size", str(SIZE), "--classes", "benign,malignant"]


def _timm_safetensors_vit(root):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=2, img_size=SIZE,
                            patch_size=8).eval()
    save_file(net.state_dict(), str(root / "vit.safetensors"))
    half = (torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.5))
    arguments = ["--architecture", "timm.vit_tiny_patch16_224", "--architecture-kwargs",
                 json.dumps({"img_size": SIZE, "patch_size": 8}), "--input-size", str(SIZE)]
    return root / "vit.safetensors", net, half, arguments


def _huggingface(root):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(image_size=SIZE, patch_size=8, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, num_labels=3,
                       id2label={0: "tumour", 1: "stroma", 2: "fat"}, label2id={"tumour": 0, "stroma": 1, "fat": 2})
    net = ViTForImageClassification(config).eval()
    folder = root / "hfvit"
    net.save_pretrained(folder)
    ViTImageProcessor(size={"height": SIZE, "width": SIZE}, image_mean=[0.5] * 3,
                      image_std=[0.5] * 3).save_pretrained(folder)
    half = (torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.5))
    return folder, lambda x: net(x).logits, half, []


def _onnx(root):
    import onnxruntime
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=4).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.rand(1, 3, SIZE, SIZE), str(root / "r18.onnx"), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    session = onnxruntime.InferenceSession(str(root / "r18.onnx"), providers=["CPUExecutionProvider"])
    reference = lambda x: torch.from_numpy(session.run(None, {"x": x.numpy()})[0])  # noqa: E731
    return root / "r18.onnx", reference, IMAGENET, ["--normalization", "imagenet"]


KINDS = {"torchvision": _torchvision, "timm-lightning": _timm_lightning, "timm-vit": _timm_safetensors_vit,
         "huggingface": _huggingface, "onnx": _onnx}


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "tile.png"
    Image.fromarray(np.random.default_rng(0).integers(30, 220, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_is_carded_loaded_exactly_and_attacked_with_gradcam(kind, tmp_path, image, capsys):
    model_path, original, (mean, std), arguments = KINDS[kind](tmp_path)
    assert main(["card", str(model_path), *arguments]) == 0
    printed = capsys.readouterr().out
    card_path = model_path.with_name(model_path.stem + ".json") if model_path.suffix else \
        model_path.with_suffix(".json")
    assert card_path.is_file() and f"wrote {card_path}" in printed
    card = json.loads(card_path.read_text())
    if kind == "torchvision":
        assert "torchvision.resnet18" in printed and "key names and shapes" in printed
    if kind == "huggingface":
        assert card["classes"] == ["tumour", "stroma", "fat"] and "id2label" in printed

    loaded = load_model(model_path, device="cpu")
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = loaded.classifier(x)
        theirs = original((x - mean) / std)
    assert torch.allclose(ours, theirs, atol=1e-4), float((ours - theirs).abs().max())
    if kind == "onnx":
        assert loaded.reference_difference is not None and loaded.reference_difference < 1e-4

    out = tmp_path / "run"
    assert main(["attack", "--model", str(model_path), "--image", str(image), "--eps", "8/255",
                 "--steps", "2", "--saliency", "gradcam", "--out", str(out), "--device", "cpu"]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["saliency"]["method"] == "gradcam" and record["saliency"]["layer"]
    if kind in ("timm-vit", "huggingface"):
        assert "norm" in record["saliency"]["layer"]  # a transformer block's input norm, not the patch conv
        assert np.load(out / "saliency_before.npy").max() > 0  # patch tokens carry gradient there
    saliency = np.load(out / "saliency_before.npy")
    assert saliency.shape == (SIZE, SIZE) and np.isfinite(saliency).all() and saliency.min() >= 0


def test_inferred_architecture_is_used_when_the_card_names_none(tmp_path):
    import torchvision

    net = torchvision.models.resnet18(num_classes=2).eval()
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, tmp_path / "dp.pt")  # DataParallel
    (tmp_path / "dp.json").write_text(json.dumps({"classes": ["a", "b"], "input_size": [SIZE, SIZE]}))
    loaded = load_model(tmp_path / "dp.pt", device="cpu")
    assert any("torchvision.resnet18" in note for note in loaded.notes)
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(loaded.classifier(x), net(x), atol=1e-5)


def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, capsys):
    import torchvision
    from onnx import TensorProto, helper

    (tmp_path / "notes.pt").write_text("not a model at all")
    assert "none of the model kinds" in _cli_error(capsys, ["card", str(tmp_path / "notes.pt")])

    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "w.pt")
    assert "no classification model 'resnet9000'" in _cli_error(
        capsys, ["card", str(tmp_path / "w.pt"), "--architecture", "resnet9000"])
    message = _cli_error(capsys, ["card", str(tmp_path / "w.pt"), "--architecture", "torchvision.resnet34"])
    assert "do not fit" in message and "unexpected keys: layer1.2" not in message and "missing keys: layer1.2" in message
    assert "3 outputs but 2 classes" in _cli_error(
        capsys, ["card", str(tmp_path / "w.pt"), "--classes", "a,b", "--input-size", str(SIZE)])

    folder = tmp_path / "hf_no_weights"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vit", "num_labels": 2}))
    assert "no weights" in _cli_error(capsys, ["card", str(folder)])

    node = helper.make_node("FancyWarp", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, str(tmp_path / "custom.onnx"))
    assert "com.example.FancyWarp" in _cli_error(capsys, ["card", str(tmp_path / "custom.onnx")])

    written = sorted(p.name for p in tmp_path.iterdir())
    assert not [name for name in written if name.endswith(".json")], written


def test_a_card_whose_classes_differ_from_the_outputs_is_refused(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "w.pt")
    (tmp_path / "w.json").write_text(json.dumps({"classes": ["a", "b"], "input_size": [SIZE, SIZE],
                                                 "architecture": "torchvision.resnet18",
                                                 "architecture_kwargs": {"num_classes": 3}}))
    with pytest.raises(UserError, match="outputs 3 classes but its card lists 2"):
        load_model(tmp_path / "w.pt", device="cpu")


def test_onnx_external_data_outside_the_folder_is_refused(tmp_path):
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [2, 3], [0.0] * 6)
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    del weight.float_data[:]
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [weight])
    onnx.save(helper.make_model(graph), str(tmp_path / "escape.onnx"))
    from advexplorer.io.onnx_models import read_onnx

    with pytest.raises(UserError, match="outside the model's folder"):
        read_onnx(tmp_path / "escape.onnx")


def test_hugging_face_bin_with_pickled_objects_is_refused(tmp_path):
    from advexplorer.io.hf import read_weights

    (tmp_path / "config.json").write_text("{}")
    torch.save({"w": torch.zeros(1), "extra": nn.ReLU()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(UserError, match="pickles Python objects"):
        read_weights(tmp_path)


def test_head_class_count_does_not_depend_on_key_order():
    from advexplorer.io.architectures import head_classes

    state = timm.create_model("convnext_atto", pretrained=False, num_classes=2).state_dict()
    assert head_classes(state) == 2
    assert head_classes(dict(sorted(state.items()))) == 2  # safetensors stores keys sorted
