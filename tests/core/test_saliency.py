"""Attribution maps, map comparison and the verdict (core/saliency.py, core/compare.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from advexplorer.core.compare import compare_maps, ssim
from advexplorer.core.model import Classifier
from advexplorer.core.saliency import (
    SALIENCY_METHODS,
    VERDICT_FOLLOWED,
    VERDICT_NO_FLIP,
    VERDICT_STAYED,
    attribution_map,
    explain_attack,
    find_gradcam_layer,
)
from advexplorer.errors import UserError


def linear_classifier(channels=3, size=8, classes=2, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, classes))
    return Classifier(net, [0.0] * channels, [1.0] * channels)


def small_cnn(classes=3):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU(),   # the last spatial conv: 8×8
        nn.AdaptiveAvgPool2d(1),
        nn.Conv2d(8, 8, 1), nn.ReLU(),                        # 1×1 output: not spatial
        nn.Flatten(), nn.Linear(8, classes))
    return Classifier(net, [0.5] * 3, [0.25] * 3)


@pytest.fixture
def image():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, 16, 16, generator=generator)


# --------------------------------------------------------------------------- comparison

def test_a_map_compared_with_itself_scores_one_on_every_similarity():
    rng = np.random.default_rng(0)
    heat = rng.random((32, 24)).astype(np.float32)
    region = np.zeros((32, 24), bool)
    region[5:15, 3:10] = True
    same = compare_maps(heat, heat.copy(), diagnostic_mask=region)
    assert same.spearman == 1.0
    assert same.topk_intersection == 1.0
    assert same.ssim == pytest.approx(1.0)
    assert same.center_of_mass_shift_px == 0.0
    assert same.relevance_mass_before == same.relevance_mass_after
    # ...and a different map scores below one on each (the measures can fail).
    other = compare_maps(heat, rng.random((32, 24)), diagnostic_mask=region)
    assert other.spearman < 0.5 and other.topk_intersection < 0.5 and other.ssim < 0.5
    assert other.center_of_mass_shift_px > 0


def test_comparison_does_not_depend_on_the_shared_scale():
    # Both maps are divided by one shared maximum for display; the numbers must not change.
    rng = np.random.default_rng(1)
    a, b = rng.random((24, 24)), rng.random((24, 24)) ** 2
    plain, scaled = compare_maps(a, b), compare_maps(a / 7.0, b / 7.0)
    assert scaled.spearman == pytest.approx(plain.spearman)
    assert scaled.topk_intersection == plain.topk_intersection
    assert scaled.ssim == pytest.approx(plain.ssim)
    assert scaled.center_of_mass_shift_px == pytest.approx(plain.center_of_mass_shift_px)
    assert compare_maps(a, 3.0 * a).spearman == 1.0
    assert compare_maps(a, 3.0 * a).topk_intersection == 1.0
    assert compare_maps(a, 3.0 * a).ssim == pytest.approx(1.0)


def test_constant_maps_compare_as_equal_and_flat_vs_structured_as_unrelated():
    flat = np.zeros((16, 16))
    assert compare_maps(flat, flat).spearman == 1.0
    structured = np.arange(256.0).reshape(16, 16)
    assert compare_maps(flat, structured).spearman == 0.0
    assert compare_maps(flat, structured).center_of_mass_shift_px is None
    # An all-zero map (Grad-CAM with no evidence left) shares no top pixels with anything,
    # and has no relevance mass to share out.
    assert compare_maps(structured, flat).topk_intersection == 0.0
    region = np.ones((16, 16))
    empty = compare_maps(structured, flat, diagnostic_mask=region)
    assert empty.relevance_mass_before == 1.0 and empty.relevance_mass_after is None
    assert "relevance_mass_after" in empty.to_json()


def test_ssim_agrees_with_scikit_image_on_the_paper_settings():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(3)
    a = rng.random((40, 40))
    b = np.clip(a + 0.3 * rng.standard_normal((40, 40)), 0, None)
    scaled = [(m - m.min()) / (m.max() - m.min()) for m in (a, b)]
    expected = metrics.structural_similarity(*scaled, data_range=1.0, gaussian_weights=True,
                                             sigma=1.5, use_sample_covariance=False)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)


def test_shift_of_the_centre_of_mass_is_in_pixels():
    a = np.zeros((20, 20)); a[2, 3] = 1
    b = np.zeros((20, 20)); b[5, 7] = 1
    assert compare_maps(a, b).center_of_mass_shift_px == pytest.approx(5.0)


def test_relevance_mass_is_the_share_inside_the_diagnostic_region():
    a = np.zeros((10, 10)); a[0, 0] = 3; a[9, 9] = 1
    region = np.zeros((10, 10)); region[:5, :5] = 1
    result = compare_maps(a, np.flipud(a).copy(), diagnostic_mask=region)
    assert result.relevance_mass_before == pytest.approx(0.75)
    assert result.relevance_mass_after == pytest.approx(0.0)


def test_diagnostic_mask_of_the_wrong_size_is_refused_with_both_sizes(image):
    model = small_cnn()
    with pytest.raises(UserError, match=r"diagnostic mask is 10×12 pixels.*input is 16×16"):
        explain_attack(model, image, image, method="gradient", class_index=0, flipped=False,
                       diagnostic_mask=torch.ones(12, 10))
    with pytest.raises(UserError, match="empty"):
        explain_attack(model, image, image, method="gradient", class_index=0, flipped=False,
                       diagnostic_mask=torch.zeros(16, 16))


# --------------------------------------------------------------------------- maps

def test_gradient_map_of_a_linear_model_is_abs_weight_summed_over_channels():
    model = linear_classifier(classes=3)
    weights = model.model[1].weight.detach()
    x = torch.rand(1, 3, 8, 8)
    for target in range(3):
        heat = attribution_map(model, x, target, "gradient")
        expected = weights[target].reshape(3, 8, 8).abs().sum(dim=0).numpy()
        assert heat.dtype == np.float32 and heat.shape == (8, 8)
        np.testing.assert_allclose(heat, expected, rtol=1e-6)


def test_integrated_gradients_of_a_linear_model_is_input_times_weight():
    # IG from the black baseline of z = w·x is exactly x ⊙ w (completeness, Sundararajan et al.).
    model = linear_classifier()
    weights = model.model[1].weight.detach()
    x = torch.rand(1, 3, 8, 8)
    heat = attribution_map(model, x, 1, "integrated-gradients", internal_batch_size=7)
    expected = (x[0] * weights[1].reshape(3, 8, 8)).abs().sum(dim=0).numpy()
    np.testing.assert_allclose(heat, expected, rtol=1e-4, atol=1e-6)


def test_smoothgrad_is_reproducible_with_its_seed_and_leaves_the_global_rng_alone(image):
    model = small_cnn()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = attribution_map(model, image, 0, "smoothgrad", seed=5, samples=6, internal_batch_size=4)
    after = torch.rand(1)
    b = attribution_map(model, image, 0, "smoothgrad", seed=5, samples=6)
    c = attribution_map(model, image, 0, "smoothgrad", seed=6, samples=6)
    assert torch.equal(before, after)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("method", SALIENCY_METHODS)
def test_every_method_returns_a_non_negative_map_at_input_size(method, image):
    heat = attribution_map(small_cnn(), image, 2, method, samples=3) if method == "smoothgrad" \
        else attribution_map(small_cnn(), image, 2, method)
    assert heat.shape == (16, 16) and heat.dtype == np.float32
    assert np.all(np.isfinite(heat)) and heat.min() >= 0


def test_bad_method_class_and_option_are_user_errors(image):
    model = small_cnn()
    with pytest.raises(UserError, match="Unknown saliency method"):
        attribution_map(model, image, 0, "lime")
    with pytest.raises(UserError, match="out of range"):
        attribution_map(model, image, 3, "gradient")
    with pytest.raises(UserError, match="accepted: samples, noise"):
        attribution_map(model, image, 0, "smoothgrad", steps=3)


# --------------------------------------------------------------------------- Grad-CAM layers

FAMILIES = [
    ("resnet18", "layer4"),
    ("densenet121", "features"),
    ("vgg11", "features.19"),
    ("mobilenet_v2", "features"),
    ("mobilenet_v3_small", "features"),
    ("efficientnet_b0", "features"),
]


@pytest.mark.parametrize("architecture,layer", FAMILIES)
def test_gradcam_finds_a_layer_on_each_torchvision_family(architecture, layer):
    torch.manual_seed(0)
    if architecture == "vgg11":
        # VGG's 120M-parameter head only slows the test down; the features are what Grad-CAM sees.
        network = torchvision.models.VGG(torchvision.models.vgg.make_layers(
            torchvision.models.vgg.cfgs["A"]), num_classes=3, init_weights=False)
        network.classifier = nn.Linear(512 * 7 * 7, 3)
    else:
        network = getattr(torchvision.models, architecture)(weights=None, num_classes=3)
    model = Classifier(network, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    x = torch.rand(1, 3, 64, 64)
    name, _ = find_gradcam_layer(model, x)
    assert name == layer
    heat = attribution_map(model, x, 1, "gradcam")
    assert heat.shape == (64, 64) and np.all(np.isfinite(heat)) and heat.min() >= 0


def test_gradcam_layer_in_a_wrapped_family_and_the_dotted_override():
    torch.manual_seed(0)
    wrapped = nn.Sequential(nn.Identity(), torchvision.models.resnet18(num_classes=2))
    model = Classifier(wrapped, [0.5] * 3, [0.25] * 3)
    x = torch.rand(1, 3, 32, 32)
    assert find_gradcam_layer(model, x)[0] == "1.layer4"
    assert find_gradcam_layer(model, x, "1.layer3")[0] == "1.layer3"
    assert attribution_map(model, x, 0, "gradcam", layer="1.layer3").shape == (32, 32)
    with pytest.raises(UserError, match="no layer named 'layer9'"):
        attribution_map(model, x, 0, "gradcam", layer="layer9")


def test_gradcam_fallback_is_the_last_conv_with_a_spatial_output(image):
    assert find_gradcam_layer(small_cnn(), image)[0] == "2"


def test_gradcam_on_a_model_without_convolution_says_to_use_a_gradient_map():
    with pytest.raises(UserError, match="needs a convolutional layer.*gradient or smoothgrad"):
        attribution_map(linear_classifier(), torch.rand(1, 3, 8, 8), 0, "gradcam")


def test_gradcam_on_torchscript_says_why_and_what_to_use_instead(image):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(small_cnn().model)
    model = Classifier(scripted, [0.5] * 3, [0.25] * 3)
    with pytest.raises(UserError, match="TorchScript.*gradient"):
        attribution_map(model, image, 0, "gradcam")
    # Captum's other methods only need a callable, so they work on TorchScript.
    assert attribution_map(model, image, 0, "gradient").shape == (16, 16)


def test_gradcam_on_an_exported_model_says_why_and_what_to_use_instead(image):
    network = small_cnn().model
    exported = torch.export.export(network, ((image - 0.5) / 0.25,)).module()
    model = Classifier(exported, [0.5] * 3, [0.25] * 3)
    with pytest.raises(UserError, match="exported.*gradient"):
        attribution_map(model, image, 0, "gradcam")
    assert attribution_map(model, image, 0, "gradient").shape == (16, 16)


# --------------------------------------------------------------------------- explanation

def test_explain_attack_puts_both_maps_on_one_scale_and_gives_the_verdict():
    model = linear_classifier(classes=2)
    x = 0.5 + 0.1 * torch.rand(1, 3, 8, 8)
    adversarial = x + 0.01
    # A linear model's gradient is the same everywhere: its explanation cannot follow a flip.
    stayed = explain_attack(model, x, adversarial, method="gradient", class_index=0, flipped=True)
    assert stayed.verdict == VERDICT_STAYED
    assert max(stayed.before.max(), stayed.after.max()) == pytest.approx(1.0)
    raw = attribution_map(model, x, 0, "gradient")
    np.testing.assert_allclose(stayed.before * stayed.scale, raw, rtol=1e-6)
    record = stayed.to_json()
    for key in ("method", "class_index", "spearman", "topk_intersection", "ssim",
                "center_of_mass_shift_px", "verdict", "thresholds"):
        assert key in record
    assert "relevance_mass_before" not in record

    unflipped = explain_attack(model, x, adversarial, method="gradient", class_index=0, flipped=False)
    assert unflipped.verdict == VERDICT_NO_FLIP
    # Explaining the new class after the flip: |w_1| is unrelated to |w_0| → it followed.
    followed = explain_attack(model, x, adversarial, method="gradient", class_index=0,
                              class_index_after=1, flipped=True,
                              diagnostic_mask=torch.ones(8, 8))
    assert followed.verdict == VERDICT_FOLLOWED
    assert followed.to_json()["relevance_mass_before"] == pytest.approx(1.0)
