"""The self-contained HTML report: one file, pictures inside, no script, no external link.

Every piece of text that comes from a record (class names, file names, card fields,
command lines) goes through :func:`esc`; pictures are ``data:`` URIs and the plots are
inline SVG, so the file can be mailed, archived and opened offline. A Content-Security-
Policy meta tag forbids scripts and remote loads even in a browser that is handed a
tampered file.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

from advexplorer.report import figures
from advexplorer.report.content import ColourScale, Picture, Prediction, RunContent, Section
from advexplorer.report.overview import comparison, report_header
from advexplorer.report.run import RunView
from advexplorer.report.text import Rows, percent

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(text: object) -> str:
    """Escape text for HTML element content and attribute values; bidirectional controls
    are shown as '‹U+202E›', never applied (see :func:`figures.reveal_bidi_controls`)."""
    return figures.escape(text)


def _stylesheet() -> str:
    return resources.files("advexplorer.report").joinpath("templates/report.css").read_text(encoding="utf-8")


def _inline_svg(svg: str) -> str:
    """Inline SVG needs no namespace in HTML5; dropping it keeps every URL out of the page."""
    return svg.replace(' xmlns="http://www.w3.org/2000/svg"', "", 1)


def _kv(rows: Rows, *, mono_values: bool = False) -> str:
    cls = ' class="mono"' if mono_values else ""
    body = "".join(f"<tr><th>{esc(k)}</th><td{cls}>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _prediction(title: str, prediction: Prediction) -> str:
    rows = []
    for name, probability in prediction.top:
        width = max(0.0, min(100.0, 100.0 * probability)) if probability == probability else 0.0
        rows.append(f'<div class="row"><span class="name" title="{esc(name)}">{esc(name)}</span>'
                    f'<span class="bar"><span style="width:{width:.1f}%"></span></span>'
                    f'<span class="value">{esc(percent(probability))}</span></div>')
    return (f'<div class="prediction"><div class="label">{esc(title)}</div>'
            f'<div class="class">{esc(prediction.name)}</div>'
            f'<div class="probability">{esc(percent(prediction.probability))} confidence</div>'
            f'<div class="top5">{"".join(rows)}</div></div>')


def _scale(scale: ColourScale) -> str:
    return (f'<div class="colourbar"><img alt="colour bar" src="{figures.data_uri(scale.png)}">'
            f'<div class="ticks"><span>{esc(scale.low)}</span><span>{esc(scale.middle)}</span>'
            f'<span>{esc(scale.high)}</span></div><div class="what">{esc(scale.caption)}</div></div>')


def _figure(picture: Picture) -> str:
    scale = _scale(picture.scale) if picture.scale is not None else ""
    return (f'<figure><div class="title">{esc(picture.title)}</div>'
            f'<img alt="{esc(picture.title)}" src="{figures.data_uri(picture.png)}">{scale}'
            f'<figcaption>{esc(picture.caption)}</figcaption></figure>')


def _section(section: Section, extra: str = "") -> str:
    verdict = ""
    if section.verdict:
        tone = "" if section.verdict_good is None else (" good" if section.verdict_good else " bad")
        verdict = f'<div class="verdict{tone}">{esc(section.verdict)}</div>'
    note = f'<p class="note">{esc(section.note)}</p>' if section.note else ""
    return (f'<section class="card block"><h3>{esc(section.title)}</h3>{verdict}{extra}'
            f'{_kv(section.rows)}{note}</section>')


def _run(content: RunContent, number: int | None) -> str:
    title = content.title
    tone = "flipped" if content.flipped else ("held" if content.flipped is False else "")
    parts = [f'<article class="run" id="run-{number or 1}">']
    if number is not None:  # a single run's title is already the page's title
        parts.append(f"<h2>{esc(title)}</h2>")
    parts.append(f'<p class="headline {tone}">{esc(content.headline)}</p>')
    if content.warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in content.warnings)
        parts.append(f'<div class="warnings"><strong>Check before relying on this run:</strong><ul>{items}</ul></div>')
    parts.append('<div class="grid">')
    parts.append(f'<section class="card"><h3>Question asked</h3>{_kv(content.question)}</section>')
    parts.append('<section class="card"><h3>Answer</h3><div class="predictions">'
                 f'{_prediction("Before the attack", content.before)}'
                 f'{_prediction("After the attack", content.after)}</div>'
                 f'{_kv(content.answer)}<h3 style="margin-top:10px">Perturbation size</h3>'
                 f'{_kv(content.norms)}</section>')
    parts.append("</div>")
    parts.append('<section class="block"><h3>Pictures</h3><div class="figures">'
                 + "".join(_figure(p) for p in content.pictures) + "</div></section>")
    if content.trajectory_svg:
        loss = f'<div class="plot">{_inline_svg(content.loss_svg)}</div>' if content.loss_svg else ""
        parts.append('<section class="block card"><h3>Confidence trajectory</h3>'
                     f'<div class="plot">{_inline_svg(content.trajectory_svg)}</div>{loss}'
                     f'<p class="note">{esc(content.trajectory_note)}</p></section>')
    for section in content.sections:
        extra = ""
        if section.title.startswith("Explanation") and content.saliency_pictures:
            extra = ('<div class="figures" style="margin-bottom:10px">'
                     + "".join(_figure(p) for p in content.saliency_pictures) + "</div>")
        parts.append(_section(section, extra))
    if content.saliency_pictures and not any(s.title.startswith("Explanation") for s in content.sections):
        parts.append('<section class="block"><h3>Saliency</h3><div class="figures">'
                     + "".join(_figure(p) for p in content.saliency_pictures) + "</div></section>")
    command = (f'<div class="label">Command that produced this run (paths relative to where it ran)</div>'
               f'<pre class="command">{esc(content.command_line)}</pre>') if content.command_line else \
        '<p class="note">This run was not started from the command line (e.g. the desktop app).</p>'
    if content.equivalent_command:
        command += ('<div class="label">The same attack with absolute paths, into a new folder</div>'
                    f'<pre class="command">{esc(content.equivalent_command)}</pre>')
    elif content.no_command_note:
        command += f'<p>{esc(content.no_command_note)}</p>'
    parts.append('<section class="card block"><h3>Reproducibility</h3>'
                 f'{command}<div class="label">Re-run and compare with the recorded result</div>'
                 f'<pre class="command">{esc(content.reproduce_command)}</pre>'
                 '<h3 style="margin-top:10px">SHA-256 of the inputs</h3>'
                 f'{_kv(content.hashes, mono_values=True)}'
                 '<div class="grid" style="margin-top:10px;margin-bottom:0">'
                 f'<div><h3>Every parameter</h3>{_kv(content.parameters)}</div>'
                 f'<div><h3>Environment</h3>{_kv(content.environment)}</div></div></section>')
    if content.card:
        parts.append(f'<section class="card block"><h3>Model card</h3>{_kv(content.card)}</section>')
    parts.append("</article>")
    return "\n".join(parts)


def _comparison(views: Sequence[RunView]) -> str:
    table = comparison(list(views))
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    body = []
    for flipped, row in zip(table.flipped, table.rows):
        cls = ' class="flipped"' if flipped else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    shared = ""
    if table.shared:
        shared = ('<p class="note">Same for every run: '
                  + "; ".join(f"<strong>{esc(k)}</strong> {esc(v)}" for k, v in table.shared) + ".</p>")
    return ('<section class="block"><h2>Comparison</h2>' + shared + '<table class="data">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            '<p class="note">One row per run; details of each follow. A red edge marks a flipped '
            "prediction.</p></section>")


def render_html(runs: Sequence[RunView] | RunView, *, title: str | None = None) -> str:
    """Render one run, or several with a comparison table, as one self-contained HTML page."""
    views = [runs] if isinstance(runs, RunView) else list(runs)
    if not views:
        raise ValueError("render_html needs at least one run")
    header = report_header(views, title)
    contents, title, count, generated = header.contents, header.title, header.count, header.generated
    body = [f'<header class="masthead"><div class="product">AdvExplorer · adversarial robustness report</div>'
            f"<h1>{esc(title)}</h1><div class=\"meta\">{esc(count)} · generated {esc(generated)} · "
            f"advexplorer {esc(header.version)}</div></header>"]
    if len(views) > 1:
        body.append(_comparison(views))
    for number, content in enumerate(contents, start=1):
        body.append(_run(content, number if len(views) > 1 else None))
    body.append('<footer>Self-contained report: every picture is embedded, nothing is loaded from '
                "elsewhere, and it contains no script. Perturbation pictures are amplified as stated; "
                "saliency maps before and after share one colour scale. Numbers come from the run "
                "record (record.json) in each run folder.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_stylesheet()}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>\n")
