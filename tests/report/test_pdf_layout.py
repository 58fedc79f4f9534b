"""How the PDFs are laid out on paper: words, headings, figures and captions kept whole."""

from __future__ import annotations

import re
import unicodedata
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("PySide6", reason="PDF reports are drawn by Qt (the gui extra)")

from advexplorer.report import RunView, write_report  # noqa: E402
from advexplorer.report.cohort import curves_title, render_cohort_html, write_cohort_report  # noqa: E402
from advexplorer.report.content import run_content  # noqa: E402
from advexplorer.report.overview import COMPARISON_COLUMNS  # noqa: E402
from pdftext import pdf_text, squeeze  # noqa: E402


def pages_of(path) -> list[str]:
    """The text of each page, ligatures unfolded, runs of spaces and tabs as one space."""
    text = unicodedata.normalize("NFKC", pdf_text(path))
    return [re.sub(r"[ \t]+", " ", page) for page in text.split("\f")]


def intact_words(text: str, words) -> list[str]:
    """The words that do not appear whole in ``text`` (split across lines, e.g. 'Explanatio/n')."""
    return [word for word in words if word not in text]


def view(number: int, *, notes: int = 0, saliency: bool = True) -> RunView:
    """An in-memory run whose every comparison column differs from run ``number``'s neighbours;
    ``notes`` adds rows above the pictures, so figures land at different places on the page."""
    rng = np.random.default_rng(number)
    image = rng.random((24, 24, 3), dtype=np.float32)
    perturbation = (rng.random(image.shape, dtype=np.float32) - 0.5) * (4 + number) / 255
    classes = ["benign tissue", "malignant tumour", "stroma"]
    before, after = classes[number % 3], classes[(number + 1) % 3]
    record = {
        "advexplorer_record": 1,
        "model": {"path": f"/models/model_{number}.pt",
                  "card": {"name": f"Classifier number {number} (experimental)", "classes": classes}},
        "image": {"path": f"/images/slide_{number}_region_{number * 7}.png",
                  "notes": [f"note {k}: the image was resized to the model's input" for k in range(notes)]},
        "mask": {"mode": "protect" if number % 2 else "allowed", "allowed_fraction": 0.3 + 0.1 * number},
        "prediction_before": {"index": 0, "class": before, "probability": 0.9 - 0.01 * number,
                              "top5": [{"index": 0, "class": before, "probability": 0.9}]},
        "prediction_after": {"index": 1, "class": after, "probability": 0.6 + 0.01 * number,
                             "top5": [{"index": 1, "class": after, "probability": 0.6}]},
        "attack": {"method": ["pgd", "fgsm", "mifgsm"][number % 3], "norm": "linf",
                   "eps": (8 + 4 * number) / 255, "steps": 10},
        "flipped": bool(number % 2), "success": bool(number % 2),
        "norms": {"linf": (8 + 4 * number) / 255, "l2": 1.5 + number, "l0_pixels": 100 + number},
        "exported_png": {"still_flips": bool(number % 2)},
        "saliency": {"method": "gradient", "verdict": ["prediction flipped but explanation stayed",
                                                       "explanation followed the flip", "no flip"][number % 3]},
        "robustness": {"radius_estimate": (1 + number) / 255},
        "trajectory": {"step": list(range(6)), "probabilities": {before: [0.9, 0.8, 0.7, 0.5, 0.4, 0.3],
                                                                 after: [0.1, 0.2, 0.3, 0.5, 0.6, 0.7]}},
    }
    maps = {}
    if saliency:
        maps = {"saliency_before": rng.random((24, 24), dtype=np.float32),
                "saliency_after": rng.random((24, 24), dtype=np.float32)}
    return RunView(record=record, input_image=image, perturbation=perturbation, **maps)


def test_comparison_headers_are_not_split_inside_a_word(tmp_path):
    path = write_report(tmp_path / "four.pdf", [view(n) for n in range(4)])
    first = pages_of(path)[0]
    table = first[first.index("COMPARISON"):first.index("One row per run")]
    words = {word for column in COMPARISON_COLUMNS for word in column.replace("\u00a0", " ").split()}
    assert len(words) > 15  # most columns differ, so the table is crowded
    assert intact_words(table, words) == []


@pytest.mark.parametrize("notes", range(8, 36, 4))
def test_figures_keep_their_titles_captions_and_headings_on_one_page(notes, tmp_path):
    """Wherever the pictures fall, no caption, colour bar or heading is left on another page."""
    run = view(1, notes=notes)
    content = run_content(run)
    pages = [squeeze(page) for page in pages_of(write_report(tmp_path / "run.pdf", run))]

    def page_of(text: str) -> int:
        found = [k for k, page in enumerate(pages) if squeeze(text) in page]
        assert found, f"{text!r} is not in the PDF"
        return found[0]

    for group in (content.pictures, content.saliency_pictures):
        title_pages = {page_of(picture.title) for picture in group}
        assert len(title_pages) == 1, "the pictures of one row are on different pages"
        for picture in group:
            assert page_of(picture.caption) == page_of(picture.title), picture.caption
            if picture.scale is not None:
                assert page_of(picture.scale.caption) == page_of(picture.title)
    assert page_of("PICTURES") == page_of(content.pictures[0].title)
    assert page_of("EXPLANATION BEFORE AND AFTER") == page_of(content.saliency_pictures[0].title)


@pytest.mark.parametrize("notes", range(0, 40, 6))
def test_no_table_of_pictures_or_heading_straddles_a_page_break(notes):
    """The page-breaking pass itself, on the laid-out document: every table holding pictures
    (picture rows, the trajectory plots with their note) lies on one page, and every heading
    shares its page with what follows it."""
    from advexplorer.report import pdf

    QtCore, QtGui, QtSvg = pdf.qt_modules()
    pdf.ensure_application()
    document = QtGui.QTextDocument()
    resources = pdf.PdfResources(document, QtCore, QtGui, QtSvg)
    document.setHtml(pdf.render_pdf_html([view(2, notes=notes)], resources))
    page_height = 900.0
    document.setPageSize(QtCore.QSizeF(650.0, page_height))
    pdf.keep_together(document, page_height, QtGui)
    layout = document.documentLayout()
    items = pdf._top_level_items(document)

    def pages(item) -> tuple[int, int]:
        top, bottom = pdf._extent(layout, item, QtGui)
        return int(top // page_height), int((bottom - 1) // page_height)

    figures = [item for item in items if isinstance(item, QtGui.QTextFrame)
               and pdf._has_picture(document, item, QtGui)]
    assert len(figures) >= 3  # pictures, trajectory, saliency
    for figure in figures:
        first, last = pages(figure)
        assert first == last, "a table of pictures is split across pages"
    for index, item in enumerate(items[:-1]):
        if pdf._is_heading(item, QtGui):
            following = next(other for other in items[index + 1:]
                             if isinstance(other, QtGui.QTextFrame) or other.text().strip())
            assert pages(item)[1] == pages(following)[0], f"heading {item.text()!r} left alone"


def cohort_summary(labelled: bool) -> dict:
    per_eps = []
    for eps, flipped in ((0.0, 0), (2 / 255, 2), (8 / 255, 5)):
        entry = {"eps": eps, "n": 6, "flipped": flipped, "flip_rate": flipped / 6,
                 "flip_rate_ci95": [0.0, 0.9], "attacked": 6}
        if labelled:
            entry.update(robust_accuracy=(6 - flipped) / 6, robust_accuracy_ci95=[0.1, 1.0])
        per_eps.append(entry)
    return {
        "command_line": ["advexplorer", "screen", "--images", "tiles", "--out", "screen"],
        "model": {"path": "/models/tiny.pt", "sha256": "0" * 64, "card_sha256": "1" * 64, "name": "Tiny"},
        "images": {"source": "/data/tiles", "layout": "folder", "count": 6, "screened": 6, "skipped": [],
                   "fingerprint_sha256": "2" * 64, "labels": labelled, "mask": {"mode": "none", "source": None}},
        "attack": {"method": "pgd", "norm": "linf", "step_size": None, "steps": 5, "restarts": 1,
                   "random_start": False, "seed": 0},
        "eps": [e["eps"] for e in per_eps], "per_eps": per_eps, "min_eps": None,
        "monotone_shortcut": {"how": "flipped stays flipped", "verification": "not checked"},
        "device": "cpu", "versions": {"python": "3.11"}, "wall_time_s": 1.0,
    }


def curves_heading(html: str) -> str:
    return re.search(r"<h3[^>]*>([^<]*vs ε)</h3>", html).group(1)


def test_unlabelled_cohort_title_does_not_mention_robust_accuracy(tmp_path):
    unlabelled, labelled = cohort_summary(False), cohort_summary(True)
    assert "robust" not in curves_title(unlabelled["per_eps"]).lower()
    assert "robust accuracy" in curves_title(labelled["per_eps"])
    assert curves_heading(render_cohort_html(unlabelled, [], [], ["a", "b"])) == "Flip rate vs ε"
    assert curves_heading(render_cohort_html(labelled, [], [], ["a", "b"])) == \
        "Flip rate and robust accuracy vs ε"
    write_cohort_report(tmp_path, unlabelled, [], [], SimpleNamespace(classes=["a", "b"]), pdf=True)
    text = "\n".join(pages_of(tmp_path / "report.pdf"))
    title = text[text.index("Flip rate"):text.index("Flipped =")]  # the heading, up to the note
    assert "vs" in title and "robust" not in title.lower()
    # The per-budget table's headers break between words only.
    table = text[text.index("Per budget"):text.index("Reproducibility")]
    assert intact_words(table, ["images", "flipped", "(cumulative)", "attacked", "rate"]) == []


def test_colour_bar_ticks_sit_under_their_own_bar():
    """Each bar's ticks lie within the bar (left, middle, right), never beside the next bar's."""
    from advexplorer.report import pdf

    QtCore, QtGui, QtSvg = pdf.qt_modules()
    pdf.ensure_application()
    content = run_content(view(0))
    document = QtGui.QTextDocument()
    resources = pdf.PdfResources(document, QtCore, QtGui, QtSvg)
    document.setHtml(pdf._pictures(content.saliency_pictures + content.pictures[2:3], resources, per_row=3))
    document.setTextWidth(650.0)
    layout = document.documentLayout()

    def span(block) -> tuple[float, float]:
        left = layout.blockBoundingRect(block).left()
        line = block.layout().lineAt(0).naturalTextRect()
        return left + line.left(), left + line.right()

    blocks, block = [], document.begin()
    while block.isValid():
        if block.text().strip():
            blocks.append(block)
        block = block.next()
    def is_picture(block) -> bool:
        return set(block.text()) <= {"\ufffc", "\u2028"}

    # The last picture of each column (the bar, as wide as the picture above it) is
    # followed by the three ticks.
    bars = [k for k, b in enumerate(blocks[:-3]) if is_picture(b) and not is_picture(blocks[k + 1])]
    assert len(bars) == 3
    for k in bars:
        bar_left, bar_right = span(blocks[k])
        low, middle, high = (span(blocks[k + j]) for j in (1, 2, 3))
        assert abs(low[0] - bar_left) < 2 and abs(high[1] - bar_right) < 2
        assert abs((middle[0] + middle[1]) / 2 - (bar_left + bar_right) / 2) < 0.05 * (bar_right - bar_left)
        assert low[1] < middle[0] and middle[1] < high[0]


def test_a_table_of_pictures_without_a_heading_moves_to_the_next_page_whole():
    """Like the trajectory plots with their note: no heading, but never split."""
    from advexplorer.report import pdf

    QtCore, QtGui, QtSvg = pdf.qt_modules()
    pdf.ensure_application()
    page_height = 600.0
    for filler in range(10, 20):
        document = QtGui.QTextDocument()
        resources = pdf.PdfResources(document, QtCore, QtGui, QtSvg)
        picture = resources.png(run_content(view(0)).pictures[0].png)
        lines = "".join(f"<p>line {k}</p>" for k in range(filler))
        document.setHtml(f'{lines}<table><tr><td><img src="{picture}" width="200" height="200">'
                         "<p>the caption of the picture</p></td></tr></table><p>after</p>")
        document.setPageSize(QtCore.QSizeF(500.0, page_height))
        pdf.keep_together(document, page_height, QtGui)
        table = next(item for item in pdf._top_level_items(document) if isinstance(item, QtGui.QTextFrame))
        top, bottom = pdf._extent(document.documentLayout(), table, QtGui)
        assert int(top // page_height) == int((bottom - 1) // page_height), f"split after {filler} lines"


def test_cohort_report_command_pastes_into_a_shell():
    """The screen's command in the cohort report is quoted for a shell: a folder with a space
    is one word, as it was when the user typed it."""
    import html as html_module
    import shlex

    summary = cohort_summary(False)
    summary["command_line"] = ["advexplorer", "screen", "--images", "/data/my tiles", "--out", "screen 1"]
    page = render_cohort_html(summary, [], [], ["a", "b"])
    command = html_module.unescape(re.search(r'<pre class="command">([^<]*)</pre>', page).group(1))
    assert shlex.split(command) == summary["command_line"]
