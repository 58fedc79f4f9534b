"""The PDF report, drawn by Qt's own PDF writer (``QTextDocument`` + ``QPdfWriter``).

Same content as the HTML report (both come from :mod:`advexplorer.report.content`), laid
out with the HTML subset ``QTextDocument`` understands: tables instead of CSS grids,
pictures as document resources instead of ``data:`` URIs, and the SVG plots rasterised by
Qt's SVG renderer. Text stays text in the PDF (searchable, copyable).

PySide6 is imported only here and only when a PDF is asked for; without a display a
``QGuiApplication`` is started on the ``offscreen`` platform so this works in a terminal,
over SSH and on CI.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import advexplorer
from advexplorer.errors import UserError
from advexplorer.report.content import ColourScale, Picture, Prediction, RunContent, Section
from advexplorer.report.figures import reveal_bidi_controls
from advexplorer.report.html import esc
from advexplorer.report.overview import comparison, report_header
from advexplorer.report.run import RunView
from advexplorer.report.text import Rows, percent

ACCENT = "#1f5f8b"
MUTED = "#5b6673"
BAD = "#b3261e"
GOOD = "#1e6b3a"
_APP = None  # keeps the QGuiApplication we created alive for the process


def qt_modules():
    try:
        from PySide6 import QtCore, QtGui, QtSvg
    except ImportError:
        raise UserError("Writing a PDF needs PySide6 (pip install 'advexplorer[gui]'); "
                        "write an .html report instead, which any browser can print to PDF.") from None
    return QtCore, QtGui, QtSvg


def ensure_application():
    """A Qt application must exist for fonts; start an offscreen one if there is none."""
    global _APP
    QtCore, QtGui, _ = qt_modules()
    application = QtGui.QGuiApplication.instance()
    if application is not None:
        return application
    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) \
        and sys.platform.startswith("linux")
    if headless and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    # A full QApplication (not just QGuiApplication): a later QWidget in the same process,
    # e.g. the GUI or a pytest-qt test after a PDF export, needs one and cannot replace ours.
    try:
        from PySide6.QtWidgets import QApplication
    except ImportError:  # pragma: no cover - QtWidgets ships with every PySide6 wheel
        QApplication = QtGui.QGuiApplication
    _APP = QApplication(["advexplorer-report"])
    return _APP


class PdfResources:
    """Registers pictures with the document and hands back the names to put in <img src>."""

    def __init__(self, document, QtCore, QtGui, QtSvg):
        self.document, self.QtCore, self.QtGui, self.QtSvg = document, QtCore, QtGui, QtSvg
        self.count = 0

    def _add(self, image) -> str:
        self.count += 1
        name = f"advexplorer-figure-{self.count}.png"
        self.document.addResource(self.QtGui.QTextDocument.ResourceType.ImageResource,
                                  self.QtCore.QUrl(name), image)
        return name

    def png(self, data: bytes) -> str:
        image = self.QtGui.QImage()
        image.loadFromData(data, "PNG")
        return self._add(image)

    def svg(self, text: str, scale: float = 3.0) -> tuple[str, int, int]:
        """Rasterise an SVG at ``scale``× so it prints sharply; returns (name, width, height)."""
        renderer = self.QtSvg.QSvgRenderer(self.QtCore.QByteArray(text.encode("utf-8")))
        size = renderer.defaultSize()
        image = self.QtGui.QImage(int(size.width() * scale), int(size.height() * scale),
                                  self.QtGui.QImage.Format.Format_ARGB32)
        image.fill(self.QtGui.QColor("white"))
        painter = self.QtGui.QPainter(image)
        painter.setRenderHint(self.QtGui.QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        return self._add(image), size.width(), size.height()


def _kv(rows: Rows, *, mono: bool = False, label_width: str = "36%") -> str:
    value_style = "font-family:'DejaVu Sans Mono',monospace;font-size:7pt;" if mono else ""
    body = "".join(
        f'<tr><td width="{label_width}" style="color:{MUTED};">{esc(k)}</td>'
        f'<td style="{value_style}">{esc(v)}</td></tr>' for k, v in rows)
    return f'<table width="100%" cellspacing="0" cellpadding="2" border="0">{body}</table>'


def _heading(text: str) -> str:
    # A real heading (<h3>), so the page-breaking pass can keep it with what follows.
    return (f'<h3 style="color:{ACCENT};font-size:9pt;font-weight:bold;margin-top:10px;'
            f'margin-bottom:3px;">{esc(text.upper())}</h3>')


#: Characters a header line may hold before the next word starts a new line.
HEADER_LINE = 12


def header_lines(text: str, width: int = HEADER_LINE) -> list[str]:
    """Words of a table header gathered greedily into lines of about ``width`` characters
    (a longer word gets a line of its own, whole). Non-breaking spaces stay inside a word."""
    lines: list[str] = []
    for word in (w for w in str(text).split(" ") if w):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def header_cell(text: str, style: str = "") -> str:
    """A table header that breaks only between words, never inside one.

    Qt's rich text wraps anywhere when a column is narrow ("Explanatio" / "n"); a cell that
    may not wrap, with its line breaks chosen here, gives each column at least its longest
    word.
    """
    lines = "<br>".join(esc(line) for line in header_lines(text)) or "&nbsp;"
    return f'<th align="left" style="white-space:nowrap;{style}">{lines}</th>'


def _prediction(title: str, prediction: Prediction) -> str:
    rows = "".join(f"<tr><td>{esc(name)}</td><td align=\"right\">{esc(percent(p))}</td></tr>"
                   for name, p in prediction.top)
    return (f'<p style="color:{MUTED};margin:0;">{esc(title)}</p>'
            f'<p style="font-size:12pt;font-weight:bold;margin:0;">{esc(prediction.name)}</p>'
            f'<p style="color:{MUTED};margin:0 0 3px 0;">{esc(percent(prediction.probability))} confidence</p>'
            f'<table width="100%" cellspacing="0" cellpadding="1" border="0">{rows}</table>')


def _scale(scale: ColourScale, resources: PdfResources, width: int) -> str:
    """The colour bar with its three ticks under its left end, middle and right end.

    One table of cells with fixed pixel widths, so the ticks line up with the bar (a table
    given width="N" is stretched by Qt to its cell, which put the right tick of one bar
    next to the left tick of the next).
    """
    name = resources.png(scale.png)
    third = width // 3
    tick = "font-size:7pt;white-space:nowrap;"
    return (f'<table cellspacing="0" cellpadding="0" border="0">'
            f'<tr><td colspan="3"><img src="{name}" width="{width}" height="9"></td></tr><tr>'
            f'<td width="{third}" align="left" style="{tick}">{esc(scale.low)}</td>'
            f'<td width="{width - 2 * third}" align="center" style="{tick}">{esc(scale.middle)}</td>'
            f'<td width="{third}" align="right" style="{tick}">{esc(scale.high)}</td></tr>'
            f'<tr><td colspan="3" align="center" style="font-size:7pt;color:{MUTED};">{esc(scale.caption)}</td>'
            '</tr></table>')


def _pictures(pictures: Sequence[Picture], resources: PdfResources, per_row: int = 4) -> str:
    width = 150 if per_row >= 4 else 190
    rows = []
    cell = f'<td width="{100 // per_row}%" valign="top">'
    for start in range(0, len(pictures), per_row):
        group = pictures[start:start + per_row]
        blank = "<td></td>" * (per_row - len(group))
        # Titles, pictures and captions in separate rows so the pictures line up.
        rows.append("<tr>" + "".join(f'{cell}<b>{esc(p.title)}</b></td>' for p in group) + blank + "</tr>")
        pictures_row = []
        for picture in group:
            height = round(width * picture.height / picture.width) if picture.width else width
            scale = _scale(picture.scale, resources, width) if picture.scale else ""
            pictures_row.append(f'{cell}<img src="{resources.png(picture.png)}" width="{width}" '
                                f'height="{height}">{scale}</td>')
        rows.append("<tr>" + "".join(pictures_row) + blank + "</tr>")
        rows.append("<tr>" + "".join(f'{cell}<span style="font-size:7pt;color:{MUTED};">'
                                     f'{esc(p.caption)}</span></td>' for p in group) + blank + "</tr>")
    return f'<table width="100%" cellspacing="0" cellpadding="3" border="0">{"".join(rows)}</table>'


def _section(section: Section, extra: str = "") -> str:
    verdict = ""
    if section.verdict:
        colour = MUTED if section.verdict_good is None else (GOOD if section.verdict_good else BAD)
        verdict = f'<p style="color:{colour};font-weight:bold;margin:2px 0 4px 0;">{esc(section.verdict)}</p>'
    note = f'<p style="color:{MUTED};font-size:7.5pt;">{esc(section.note)}</p>' if section.note else ""
    return _heading(section.title) + verdict + extra + _kv(section.rows) + note


def _run(content: RunContent, number: int | None, resources: PdfResources, first: bool) -> str:
    parts = []
    title = content.title if number is not None else None
    if title:
        brk = "" if first else "page-break-before:always;"
        parts.append(f'<h2 style="{brk}font-size:13pt;margin-top:6px;">{esc(title)}</h2>')
    tone = BAD if content.flipped else (GOOD if content.flipped is False else MUTED)
    parts.append(f'<table width="100%" cellspacing="0" cellpadding="6" border="0"><tr>'
                 f'<td bgcolor="{tone}" width="4"></td><td bgcolor="#f6f8fa" style="font-size:10pt;">'
                 f'{esc(content.headline)}</td></tr></table>')
    if content.warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in content.warnings)
        parts.append(f'<p style="color:{BAD};font-weight:bold;">Check before relying on this run:</p><ul>{items}</ul>')
    parts.append('<table width="100%" cellspacing="0" cellpadding="4" border="0"><tr>'
                 f'<td width="50%" valign="top">{_heading("Question asked")}{_kv(content.question)}</td>'
                 f'<td width="50%" valign="top">{_heading("Answer")}'
                 '<table width="100%" cellspacing="0" cellpadding="2" border="0"><tr>'
                 f'<td width="50%" valign="top">{_prediction("Before the attack", content.before)}</td>'
                 f'<td width="50%" valign="top">{_prediction("After the attack", content.after)}</td>'
                 f'</tr></table>{_kv(content.answer)}{_heading("Perturbation size")}{_kv(content.norms)}'
                 '</td></tr></table>')
    parts.append(_heading("Pictures") + _pictures(content.pictures, resources))
    if content.trajectory_svg:
        name, width, height = resources.svg(content.trajectory_svg)
        plot = f'<img src="{name}" width="{int(width * 0.8)}" height="{int(height * 0.8)}">'
        if content.loss_svg:
            name, width, height = resources.svg(content.loss_svg)
            plot += f'<br><img src="{name}" width="{int(width * 0.8)}" height="{int(height * 0.8)}">'
        # No separate heading: the plot carries its own title. Plot and note share one table
        # cell, which the page-breaking pass moves whole, so the note never leaves its plot.
        parts.append('<table width="100%" cellspacing="0" cellpadding="0" border="0"><tr><td>' + plot +
                     f'<p style="color:{MUTED};font-size:7.5pt;">{esc(content.trajectory_note)}</p>'
                     '</td></tr></table>')
    for section in content.sections:
        extra = ""
        if section.title.startswith("Explanation") and content.saliency_pictures:
            extra = _pictures(content.saliency_pictures, resources, per_row=3)
        parts.append(_section(section, extra))
    if content.saliency_pictures and not any(s.title.startswith("Explanation") for s in content.sections):
        parts.append(_heading("Saliency") + _pictures(content.saliency_pictures, resources, per_row=3))
    mono = "font-family:'DejaVu Sans Mono',monospace;font-size:7.5pt;"
    parts.append(_heading("Reproducibility"))
    if content.command_line:
        parts.append(f'<p style="margin:0;">Command that produced this run (paths relative to where it ran):</p>'
                     f'<p style="{mono}background-color:#f3f5f7;">{esc(content.command_line)}</p>')
    else:
        parts.append(f'<p style="color:{MUTED};">This run was not started from the command line.</p>')
    if content.equivalent_command:
        parts.append('<p style="margin:0;">The same attack with absolute paths, into a new folder:</p>'
                     f'<p style="{mono}background-color:#f3f5f7;">{esc(content.equivalent_command)}</p>')
    elif content.no_command_note:
        parts.append(f'<p>{esc(content.no_command_note)}</p>')
    parts.append(f'<p style="margin:0;">Re-run and compare with the recorded result:</p>'
                 f'<p style="{mono}background-color:#f3f5f7;">{esc(content.reproduce_command)}</p>')
    parts.append(_heading("SHA-256 of the inputs") + _kv(content.hashes, mono=True, label_width="30%"))
    parts.append('<table width="100%" cellspacing="0" cellpadding="4" border="0"><tr>'
                 f'<td width="55%" valign="top">{_heading("Every parameter")}{_kv(content.parameters)}</td>'
                 f'<td width="45%" valign="top">{_heading("Environment")}{_kv(content.environment)}</td>'
                 '</tr></table>')
    if content.card:
        parts.append(_heading("Model card") + _kv(content.card))
    return "\n".join(parts)


def _comparison(views: Sequence[RunView]) -> str:
    table = comparison(list(views))
    head = "".join(header_cell(c, "font-size:7pt;background-color:#eef1f4;") for c in table.columns)
    body = []
    for flipped, row in zip(table.flipped, table.rows):
        colour = BAD if flipped else "#1d232b"
        body.append("<tr>" + "".join(f'<td style="font-size:7pt;color:{colour};">{esc(c)}</td>'
                                     for c in row) + "</tr>")
    shared = ""
    if table.shared:
        shared = (f'<p style="color:{MUTED};font-size:7.5pt;">Same for every run: '
                  + "; ".join(f"<b>{esc(k)}</b> {esc(v)}" for k, v in table.shared) + ".</p>")
    return (_heading("Comparison") + shared +
            '<table width="100%" cellspacing="0" cellpadding="3" border="1" '
            'style="border-color:#d9dee4;border-style:solid;">'
            f"<tr>{head}</tr>{''.join(body)}</table>"
            f'<p style="color:{MUTED};font-size:7.5pt;">One row per run (flipped predictions in red); '
            "details of each run follow.</p>")


def render_pdf_html(views: Sequence[RunView], resources, *, title: str | None = None) -> str:
    """The QTextDocument flavour of the report (tables, resource images, no CSS layout)."""
    header = report_header(views, title)
    contents, title, count, generated = header.contents, header.title, header.count, header.generated
    parts = [f'<p style="color:{ACCENT};font-size:8pt;font-weight:bold;margin:0;">'
             "ADVEXPLORER · ADVERSARIAL ROBUSTNESS REPORT</p>",
             f'<h1 style="font-size:16pt;margin:2px 0 2px 0;">{esc(title)}</h1>',
             f'<p style="color:{MUTED};margin:0 0 6px 0;">{esc(count)} · generated {esc(generated)} · '
             f"advexplorer {esc(header.version)}</p><hr>"]
    if len(views) > 1:
        parts.append(_comparison(views))
    for number, content in enumerate(contents, start=1):
        # Each run of several starts on a new page, except the first (it follows the table).
        parts.append(_run(content, number if len(views) > 1 else None, resources, first=number == 1))
    parts.append(f'<hr><p style="color:{MUTED};font-size:7pt;">Perturbation pictures are amplified '
                 "as stated; saliency maps before and after share one colour scale. Numbers come from "
                 "the run record (record.json) in each run folder.</p>")
    return ('<html><head><meta charset="utf-8"></head>'
            f'<body style="font-size:8.5pt;color:#1d232b;">{"".join(parts)}</body></html>')


#: How much of what follows a heading must fit on its page (about three lines), and the
#: most a group kept together may take of a page (taller ones split where they must).
KEEP_UNDER_HEADING = 48.0
KEEP_AT_MOST = 0.85
_PICTURE = "\ufffc"  # the character an image occupies in a QTextDocument


def _top_level_items(document) -> list:
    """The blocks and tables directly in the document, in reading order."""
    items = []
    iterator = document.rootFrame().begin()
    while not iterator.atEnd():
        frame = iterator.currentFrame()
        items.append(frame if frame is not None else iterator.currentBlock())
        iterator += 1
    return items


def _extent(layout, item, QtGui) -> tuple[float, float]:
    rect = layout.frameBoundingRect(item) if isinstance(item, QtGui.QTextFrame) else layout.blockBoundingRect(item)
    return rect.top(), rect.bottom()


def _has_picture(document, item, QtGui) -> bool:
    if isinstance(item, QtGui.QTextFrame):
        return any(document.characterAt(p) == _PICTURE for p in range(item.firstPosition(), item.lastPosition()))
    return _PICTURE in item.text()


def _is_heading(item, QtGui) -> bool:
    return not isinstance(item, QtGui.QTextFrame) and item.blockFormat().headingLevel() > 0


def _break_before(item, QtGui) -> None:
    always = QtGui.QTextFormat.PageBreakFlag.PageBreak_AlwaysBefore
    if isinstance(item, QtGui.QTextFrame):
        table_format = item.format()
        table_format.setPageBreakPolicy(always)
        item.setFormat(table_format)
    else:
        block_format = item.blockFormat()
        block_format.setPageBreakPolicy(always)
        QtGui.QTextCursor(item).setBlockFormat(block_format)


def keep_together(document, page_height: float, QtGui) -> int:
    """Start a new page before a heading that would be left alone at a page's foot, and
    before a table of pictures (figures with their titles, colour bars and captions) that
    would be split across two pages. Returns how many page breaks were added.

    Qt's rich text knows no "keep with next" or "avoid break inside", so the laid-out
    document is measured and a page break set where one is needed; each break moves what
    follows, so positions are measured again after every change.
    """
    layout = document.documentLayout()
    items = _top_level_items(document)

    def is_figure(item) -> bool:
        return isinstance(item, QtGui.QTextFrame) and _has_picture(document, item, QtGui)

    def heading_group_bottom(index: int) -> float:
        """Where what must stay with the heading at ``index`` ends: the first lines of what
        follows, all of a table of pictures that starts among them, or the next heading's
        own group. Measured on the laid-out page, so content Qt already pushed to the next
        page counts as far away."""
        needed = KEEP_UNDER_HEADING
        for following in range(index + 1, len(items)):
            item = items[following]
            if _is_heading(item, QtGui):
                return heading_group_bottom(following)
            top, bottom = _extent(layout, item, QtGui)
            if is_figure(item):
                return bottom
            if bottom - top >= needed:
                return top + needed
            needed -= bottom - top
        return _extent(layout, items[-1], QtGui)[1]

    breaks = 0
    for index, item in enumerate(items):
        if _is_heading(item, QtGui):
            bottom = heading_group_bottom(index)
        elif is_figure(item):
            bottom = _extent(layout, item, QtGui)[1]
        else:
            continue
        top = _extent(layout, item, QtGui)[0]
        first_page, last_page = int(top // page_height), int((bottom - 1) // page_height)
        at_page_top = top - first_page * page_height < KEEP_UNDER_HEADING / 2
        if first_page != last_page and not at_page_top and bottom - top <= KEEP_AT_MOST * page_height:
            _break_before(item, QtGui)
            breaks += 1
    return breaks


def paint_pages(document, writer, QtCore, QtGui, footer: str) -> None:
    """Lay the document out on A4 pages and paint each with a 'page n of N' footer.

    Done by hand rather than with ``QTextDocument.print_`` so the margins are ours (print_
    adds 2 cm to an unpaginated document) and every page carries the footer.
    """
    screen = QtGui.QGuiApplication.primaryScreen()
    dpi = screen.logicalDotsPerInchY() if screen is not None else 96.0
    paint = writer.pageLayout().paintRect(QtGui.QPageLayout.Unit.Point)
    footer_height = 16.0  # points kept free at the bottom of the paint area
    page_width = paint.width() * dpi / 72.0
    page_height = (paint.height() - footer_height) * dpi / 72.0
    document.setPageSize(QtCore.QSizeF(page_width, page_height))
    keep_together(document, page_height, QtGui)
    scale = writer.resolution() / dpi  # document pixels → PDF device pixels
    pages = document.pageCount()
    painter = QtGui.QPainter(writer)
    try:
        small = QtGui.QFont(document.defaultFont())
        small.setPointSizeF(7.0)
        for page in range(pages):
            if page:
                writer.newPage()
            painter.save()
            painter.scale(scale, scale)
            painter.translate(0, -page * page_height)
            document.drawContents(painter, QtCore.QRectF(0, page * page_height, page_width, page_height))
            painter.restore()
            painter.save()
            painter.setFont(small)
            painter.setPen(QtGui.QColor(MUTED))
            box = QtCore.QRectF(0, page_height * scale, page_width * scale, footer_height / 72.0 * writer.resolution())
            painter.drawText(box, int(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignBottom),
                             footer)
            painter.drawText(box, int(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignBottom),
                             f"page {page + 1} of {pages}")
            painter.restore()
    finally:
        painter.end()


def write_pdf(path: str | os.PathLike, views: Sequence[RunView] | RunView, *,
              title: str | None = None) -> Path:
    """Write the report of ``views`` as an A4 PDF at ``path`` (not atomic by itself:
    :func:`advexplorer.report.write_report` hands it a temporary name)."""
    QtCore, QtGui, QtSvg = qt_modules()
    ensure_application()
    views = [views] if isinstance(views, RunView) else list(views)
    document = QtGui.QTextDocument()
    font = QtGui.QFont()
    font.setFamilies(["DejaVu Sans", "Helvetica", "Arial", "sans-serif"])
    font.setPointSizeF(8.5)
    document.setDefaultFont(font)
    resources = PdfResources(document, QtCore, QtGui, QtSvg)
    document.setHtml(render_pdf_html(views, resources, title=title))
    shown_title = reveal_bidi_controls(title or "AdvExplorer report")
    document.setMetaInformation(QtGui.QTextDocument.MetaInformation.DocumentTitle, shown_title)

    writer = QtGui.QPdfWriter(str(path))
    writer.setPageSize(QtGui.QPageSize(QtGui.QPageSize.PageSizeId.A4))
    writer.setPageMargins(QtCore.QMarginsF(14, 12, 14, 10), QtGui.QPageLayout.Unit.Millimeter)
    writer.setResolution(300)
    writer.setTitle(shown_title)
    writer.setCreator(f"AdvExplorer {advexplorer.__version__}")
    paint_pages(document, writer, QtCore, QtGui, shown_title)
    del writer  # finishes and closes the file
    if not Path(path).is_file() or Path(path).stat().st_size == 0:
        raise UserError(f"Qt could not write the PDF {path}; check the folder is writable.")
    return Path(path)
