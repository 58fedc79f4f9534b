"""The HTML report of real runs: self-contained, complete, and safe with hostile names."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from advexplorer.errors import UserError
from advexplorer.report import load_run, render_html, write_report
from make_run import CLASSES, HOSTILE_CLASS, HOSTILE_DESCRIPTION

URL_ATTRIBUTES = {"src", "href", "xlink:href", "srcset", "action", "formaction", "data", "poster",
                  "background", "cite", "longdesc", "manifest", "ping"}


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    parser.close()
    return parser


def record_of(run_dir) -> dict:
    return json.loads((run_dir / "record.json").read_text(encoding="utf-8"))


def test_html_is_self_contained(protect_run_dir):
    page = render_html(load_run(protect_run_dir))
    parsed = parse(page)
    tags = {tag for tag, _ in parsed.elements}
    assert "script" not in tags and "iframe" not in tags and "link" not in tags and "object" not in tags
    images = 0
    for tag, attributes in parsed.elements:
        for name, value in attributes.items():
            assert not name.startswith("on"), f"event handler {name} on <{tag}>"
            if name in URL_ATTRIBUTES:
                assert (tag, name) == ("img", "src") and value.startswith("data:image/png;base64,"), \
                    f"<{tag} {name}={value[:40]!r}> points outside the file"
                Image.open(io.BytesIO(base64.b64decode(value.split(",", 1)[1]))).verify()
                images += 1
    assert images >= 6  # original, adversarial, perturbation, mask, 2 saliency maps (+ colour bars)
    assert not re.search(r"https?:|ftp:|file:|//[a-z0-9.-]+\.[a-z]{2,}/", page, re.I)
    assert "url(" not in page and "@import" not in page
    assert "<svg" in page  # the trajectory plot is inline, no script needed


def test_html_states_the_numbers_of_the_record(protect_run_dir):
    record = record_of(protect_run_dir)
    page = render_html(load_run(protect_run_dir))
    text = html.unescape(" ".join(parse(page).text))

    def pct(p):
        return f"{100 * p:.1f} %"

    before, after = record["prediction_before"], record["prediction_after"]
    for prediction in (before, after):
        assert prediction["class"] in text
        assert pct(prediction["probability"]) in text
        for entry in prediction["top5"]:
            assert pct(entry["probability"]) in text
    assert "16/255" in text and f"{record['attack']['eps']:.6g}" in text
    norms = record["norms"]
    assert f"{norms['l2']:.4g}" in text
    assert f"{norms['l0_pixels']}" in text
    for sha in (record["model"]["sha256"], record["model"]["card_sha256"], record["image"]["sha256"],
                record["mask"]["sha256"], record["diagnostic"]["sha256"]):
        assert sha in text
    assert str(record["attack"]["seed"]) in text
    for version in record["versions"].values():
        assert version in text
    saliency, robustness = record["saliency"], record["robustness"]
    assert saliency["verdict"] in text
    for key in ("spearman", "topk_intersection", "ssim"):
        assert f"{saliency[key]:.4g}" in text
    for key in ("margin", "gradient_norm", "lipschitz_estimate", "radius_estimate"):
        assert f"{robustness[key]:.4g}" in text
    assert pct(robustness["noise_flip_rate"]) in text
    assert pct(record["mask"]["allowed_fraction"]) in text
    assert "advexplorer reproduce" in text
    assert " ".join(["--eps", "16/255"]) in text  # the exact command line
    expected_8bit = "still flips" if record["exported_png"]["still_flips"] else "no longer flips"
    assert expected_8bit in text.lower() or not record["flipped"]


def test_hostile_names_appear_as_text_only(protect_run_dir):
    page = render_html(load_run(protect_run_dir))
    assert HOSTILE_CLASS not in page
    assert html.escape(HOSTILE_CLASS) in page
    assert "<img src=x" not in page and html.escape(HOSTILE_DESCRIPTION) in page
    assert "<b>demo</b>" not in page  # the card's name is shown, not interpreted
    assert "tissue &lt;1&gt;.png" in page
    text = " ".join(parse(page).text)
    assert HOSTILE_CLASS in text and "Tiny <b>demo</b> CNN" in text
    assert {tag for tag, _ in parse(page).elements}.isdisjoint({"script", "b"})


def test_several_runs_make_one_report_with_a_comparison(protect_run_dir, plain_run_dir):
    views = [load_run(plain_run_dir), load_run(protect_run_dir)]
    page = render_html(views, title="Protect vs whole image")
    text = html.unescape(" ".join(parse(page).text))
    assert "Comparison" in text and "Protect vs whole image" in text
    table = re.search(r"<table class=\"data\">(.*?)</table>", page, re.S).group(1)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    assert len(rows) == 3  # header + one row per run
    assert "2. protect (tissue &lt;1&gt;.png)" in rows[2] and "none" in rows[1]
    assert "Same for every run" in text and "Tiny <b>demo</b> CNN" in text  # shared columns
    for view in views:
        assert view.record["prediction_after"]["class"] in text
    assert page.count('<article class="run"') == 2


def test_pictures_show_what_was_attacked(protect_run_dir):
    view = load_run(protect_run_dir)
    # The protect mask really kept the attack out, and the view knows where it could act.
    assert view.allowed_mask is not None and not view.allowed_mask.all()
    assert np.abs(view.perturbation[~view.allowed_mask]).max() == 0
    assert view.saliency_before is not None and view.saliency_after is not None
    assert view.exported is not None and view.exported.dtype == np.uint8
    text = html.unescape(" ".join(parse(render_html(view)).text))
    scale = np.abs(view.perturbation.mean(axis=2)).max()
    assert f"±{scale:.3g}" in text  # the amplified perturbation states its scale


def test_write_report_html_json_and_no_overwrite(protect_run_dir, tmp_path):
    target = write_report(tmp_path / "report.html", [protect_run_dir])
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    target.write_text("keep me", encoding="utf-8")
    with pytest.raises(UserError, match="already exists"):
        write_report(target, [protect_run_dir])
    assert target.read_text(encoding="utf-8") == "keep me"
    write_report(target, [protect_run_dir], overwrite=True)
    assert "keep me" not in target.read_text(encoding="utf-8")
    saved = write_report(tmp_path / "record.json", [protect_run_dir])
    assert json.loads(saved.read_text(encoding="utf-8")) == record_of(protect_run_dir)
    with pytest.raises(UserError, match=r"\.html, \.pdf or \.json"):
        write_report(tmp_path / "report.docx", [protect_run_dir])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json", "report.html"]


def test_a_report_never_replaces_an_input(protect_run_dir, report_inputs):
    # record.json of the run and the model card are .json files: even with overwrite=True a
    # JSON report must not land on them.
    for path in (protect_run_dir / "record.json", report_inputs["card"]):
        before = path.read_bytes()
        with pytest.raises(UserError, match="input of a run"):
            write_report(path, [protect_run_dir], overwrite=True)
        assert path.read_bytes() == before


@pytest.mark.parametrize("damage", ["no folder", "no record", "bad json", "not a record", "no input",
                                    "outside"])
def test_load_run_refuses_what_is_not_a_run(protect_run_dir, tmp_path, damage):
    import shutil

    folder = tmp_path / "run"
    if damage != "no folder":
        shutil.copytree(protect_run_dir, folder)
    record = record_of(protect_run_dir)
    if damage == "no record":
        (folder / "record.json").unlink()
    elif damage == "bad json":
        (folder / "record.json").write_text("{", encoding="utf-8")
    elif damage == "not a record":
        (folder / "record.json").write_text("[1, 2]", encoding="utf-8")
    elif damage == "no input":
        (folder / "input.npy").unlink()
    elif damage == "outside":
        record["files"]["perturbation"] = "../../secret.npy"
        (folder / "record.json").write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(UserError) as error:
        load_run(folder)
    assert "\n" not in str(error.value)


def test_classes_are_listed(protect_run_dir):
    assert load_run(protect_run_dir).classes == CLASSES
