"""The cohort report: flip rate and robust accuracy vs ε with intervals, table, worst cases.

One self-contained HTML page in the house style (the report package's stylesheet, its
escaping, pictures and colour maps): the curves are inline SVG drawn here, the worst cases
are embedded PNG thumbnails (clean with the allowed region outlined, adversarial, and the
signed perturbation on the diverging map). Every text that comes from files or cards goes
through :func:`advexplorer.report.html.esc`.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import numpy as np

import advexplorer
from advexplorer.config import over_255
from advexplorer.core.screening import ImageRow, WorstCase, eps_label
from advexplorer.io.atomic import atomic_path, atomic_write_text
from advexplorer.report import figures
from advexplorer.report.html import CSP, esc
from advexplorer.report.pdf import header_lines  # Qt itself is imported only to write a PDF
from advexplorer.report.text import percent

#: Series colours: attack (red), robust accuracy (blue), noise baseline (grey); a defence's
#: robust accuracy under the naive attack (orange) beside the adaptive one (blue).
FLIP_COLOUR, ROBUST_COLOUR, NOISE_COLOUR, NAIVE_COLOUR = "#e15759", "#4e79a7", "#8c8c8c", "#f28e2b"
#: Per-image rows listed in the HTML; the CSV has all of them.
MAX_TABLE_ROWS = 300


def _stylesheet() -> str:
    return resources.files("advexplorer.report").joinpath("templates/report.css").read_text(encoding="utf-8")


def curves_svg(per_eps: Sequence[dict], *, width: int = 640, height: int = 300,
               title: str | None = None, series: list[tuple[str, str, str, str, str]] | None = None) -> str:
    """Flip rate (and robust accuracy, noise flip rate when present) vs ε with 95 % bands.

    ``per_eps`` is the ``summary.json`` list. ε is on a linear axis labelled with the grid
    values; each series is a line with dots, and its Wilson interval a shaded band.
    ``series`` draws other curves instead: (legend, value key, interval key, colour, dash).
    """
    left, right, top, bottom = 56, 16, 28 if title else 12, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    eps = [float(e["eps"]) for e in per_eps]
    low, high = (min(eps), max(eps)) if eps else (0.0, 1.0)
    span = high - low if high > low else 1.0

    def x_of(value: float) -> float:
        return left + plot_w * ((value - low) / span if high > low else 0.5)

    def y_of(value: float) -> float:
        return top + plot_h * (1.0 - min(max(value, 0.0), 1.0))

    if series is None:
        series = [("flip rate (attack)", "flip_rate", "flip_rate_ci95", FLIP_COLOUR, "")]
        if per_eps and "robust_accuracy" in per_eps[0]:
            series.append(("robust accuracy", "robust_accuracy", "robust_accuracy_ci95", ROBUST_COLOUR, ""))
        if per_eps and "noise_flip_rate" in per_eps[0]:
            series.append(("flip rate (random noise)", "noise_flip_rate", "noise_flip_rate_ci95",
                           NOISE_COLOUR, ' stroke-dasharray="5 4"'))
    total_h = height + 22
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" '
           f'viewBox="0 0 {width} {total_h}" font-family="Helvetica, Arial, sans-serif" '
           f'font-size="11" role="img">',
           f'<rect x="0" y="0" width="{width}" height="{total_h}" fill="#ffffff"/>']
    if title:
        out.append(f'<text x="{left}" y="16" font-size="12" font-weight="bold" fill="#222">{esc(title)}</text>')
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = y_of(tick)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e3e6ea"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{int(tick * 100)} %</text>')
    last_x = -1e9
    for value in eps:
        x = x_of(value)
        out.append(f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" stroke="#888"/>')
        if x - last_x >= 34:  # keep labels of crowded small budgets from overlapping
            out.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
                       f'fill="#555">{esc(eps_label(value))}</text>')
            last_x = x
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 34}" text-anchor="middle" '
               f'fill="#333">budget ε (pixel units)</text>')
    out.append(f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle" fill="#333">share of images</text>')
    for _, key, ci_key, colour, _dash in series:
        points = [(x_of(float(e["eps"])), e[ci_key]) for e in per_eps if e.get(key) is not None]
        if len(points) > 1:
            upper = " ".join(f"{x:.1f},{y_of(ci[1]):.1f}" for x, ci in points)
            lower = " ".join(f"{x:.1f},{y_of(ci[0]):.1f}" for x, ci in reversed(points))
            out.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.16" stroke="none"/>')
        for x, ci in points:  # the interval as a whisker too, so single points show it
            out.append(f'<line x1="{x:.1f}" y1="{y_of(ci[0]):.1f}" x2="{x:.1f}" y2="{y_of(ci[1]):.1f}" '
                       f'stroke="{colour}" stroke-width="1" stroke-opacity="0.7"/>')
    for _, key, _ci, colour, dash in series:
        points = [(x_of(float(e["eps"])), y_of(e[key])) for e in per_eps if e.get(key) is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for x, y in points:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#9aa3ad"/>')
    for k, (name, _key, _ci, colour, dash) in enumerate(series):
        x = left + k * (plot_w / 3)
        y = height + 4
        out.append(f'<line x1="{x:.1f}" y1="{y + 6}" x2="{x + 18:.1f}" y2="{y + 6}" stroke="{colour}" '
                   f'stroke-width="3"{dash}/>')
        out.append(f'<text x="{x + 24:.1f}" y="{y + 10}" fill="#222">{esc(name)} ± 95 % CI</text>')
    out.append("</svg>")
    return "\n".join(out)


def _kv(rows: Sequence[tuple[str, object]], mono: bool = False) -> str:
    cls = ' class="mono"' if mono else ""
    return '<table class="kv">' + "".join(
        f"<tr><th>{esc(k)}</th><td{cls}>{esc(v)}</td></tr>" for k, v in rows) + "</table>"


def _interval(value, interval) -> str:
    if value is None:
        return "—"
    return f"{percent(value)} [{100 * interval[0]:.1f}–{100 * interval[1]:.1f} %]"


def _eps_table(per_eps: Sequence[dict]) -> str:
    labelled = _labelled(per_eps)
    noise = bool(per_eps) and "noise_flip_rate" in per_eps[0]
    ci = "[95\u00a0%\u00a0CI]"  # kept on one line where headers wrap
    head = ["ε", "images", "flipped (cumulative)", f"flip rate {ci}", "attacked at this ε"]
    if labelled:
        head += [f"robust accuracy {ci}"]
    if noise:
        head += [f"noise flip rate {ci}"]
    body = []
    for e in per_eps:
        cells = [f"{eps_label(e['eps'])} ({e['eps']:.5g})", e["n"], e["flipped"],
                 _interval(e["flip_rate"], e["flip_rate_ci95"]), e.get("attacked", "—")]
        if labelled:
            cells.append(_interval(e.get("robust_accuracy"), e.get("robust_accuracy_ci95", (0, 1))))
        if noise:
            cells.append(_interval(e.get("noise_flip_rate"), e.get("noise_flip_rate_ci95", (0, 1))))
        body.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    return ('<table class="data"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")


def _worst_case_figures(case: WorstCase, classes: Sequence[str], index: int) -> str:
    def name(i: int) -> str:
        return classes[i] if 0 <= i < len(classes) else str(i)

    clean = figures.to_uint8(case.clean.astype(np.float32) / 255.0)
    adversarial = figures.to_uint8(case.adversarial.astype(np.float32) / 255.0)
    factor = max(1, min(figures.display_factor(*clean.shape[:2]), 4))
    clean_picture = figures.mask_overlay(clean, case.allowed_mask, factor=factor) \
        if case.allowed_mask is not None else figures.enlarge(clean, factor)
    scale = figures.symmetric_scale(case.perturbation)
    pictures = [("clean", figures.png_bytes(clean_picture, factor=1),
                 f"{name(case.clean_prediction)}" + (" · allowed region outlined" if case.allowed_mask is not None else "")),
                ("adversarial", figures.png_bytes(adversarial, factor=factor),
                 f"{name(case.adversarial_prediction)} ({percent(case.adversarial_probability)})"),
                ("perturbation", figures.png_bytes(figures.perturbation_rgb(case.perturbation, scale), factor=factor),
                 f"blue −, red +, ±{over_255(scale)} at the ends")]
    # A table row rather than a CSS grid: Qt's rich text (the PDF) lays out tables only.
    cells = "".join(f'<td style="vertical-align:top;width:33%;border:none"><figure><div class="title">'
                    f'{esc(title)}</div><img alt="{esc(title)}" width="180" src="{figures.data_uri(png)}">'
                    f'<figcaption>{esc(caption)}</figcaption></figure></td>'
                    for title, png, caption in pictures)
    return (f'<section class="card block"><h3 style="text-transform:none;letter-spacing:0">{index}. {esc(case.file)} — flipped at ε = '
            f'{esc(eps_label(case.flip_eps))}: {esc(name(case.clean_prediction))} → '
            f'{esc(name(case.adversarial_prediction))}</h3><table><tr>{cells}</tr></table></section>')


def _image_table(rows: Sequence[ImageRow], classes: Sequence[str], with_min_eps: bool) -> str:
    def name(i: int | None) -> str:
        return "—" if i is None else (classes[i] if 0 <= i < len(classes) else str(i))

    ordered = sorted(rows, key=lambda r: (r.flip_eps if r.flip_eps is not None else math.inf, r.file))
    head = ["file", "label", "clean prediction", "confidence", "first flipping ε", "prediction after"]
    if with_min_eps:
        head.append("minimal ε (bisection)")
    body = []
    for row in ordered[:MAX_TABLE_ROWS]:
        cells = [row.file, name(row.label), name(row.clean_prediction), percent(row.clean_probability),
                 eps_label(row.flip_eps) if row.flip_eps is not None else "not flipped",
                 name(row.adversarial_prediction[-1]) if row.flipped[-1] else "—"]
        if with_min_eps:
            cells.append(over_255(row.min_eps) if row.min_eps is not None else "—")
        cls = ' class="flipped"' if row.flip_eps is not None else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    more = (f'<p class="note">Showing {MAX_TABLE_ROWS} of {len(rows)} images (most fragile first); '
            "per_image.csv has all of them.</p>") if len(rows) > MAX_TABLE_ROWS else ""
    return ('<table class="data"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>" + more)


def _share(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "—"
    return _interval(entry["value"], entry["ci95"])


def defence_meaning(defence: dict) -> str:
    """What a defended screen's two numbers mean, in a sentence or two."""
    rows = defence.get("per_eps") or []
    adaptive = defence.get("adaptive", "none")
    if adaptive == "none":
        return ("Only the naive attack was run. A defence that rounds, compresses or randomises the image "
                "can look robust because it hides the gradient from the attack; run the screen with "
                f"--adaptive {'eot' if str(defence.get('defence', '')).startswith('noise') else 'bpda'} "
                "to see what is left of it.")
    hidden = [row for row in rows if row.get("gradient_hidden")]
    measure = rows[0]["naive"]["measure"] if rows else "robust accuracy"
    if hidden:
        row = max(hidden, key=lambda r: r["naive"]["value"] - r["adaptive"]["value"])
        return (f"The naive attack overstates the defence, which hides the gradient: at ε = {row['eps_label']} "
                f"the naive attack leaves {measure} at {_share(row['naive'])}, the {adaptive.upper()} attack "
                f"brings it down to {_share(row['adaptive'])} (95 % intervals apart). Judge the defence by the "
                "adaptive number, and against the undefended model's screen.")
    return (f"The {adaptive.upper()} attack does no better than the naive one at any budget (the 95 % "
            "intervals overlap): no sign here that the defence's robustness comes from a hidden gradient, "
            "for these budgets and this attack.")


def defence_table(defence: dict) -> tuple[list[str], list[tuple[list[str], bool]]]:
    """The defence table's headers, and per ε its cells and whether the gradient was hidden
    there: ε, the naive number; with an adaptive attack also its number, the gap and a
    "gradient hidden" column. One table for the report and the app's Cohort panel."""
    adaptive = defence.get("adaptive", "none")
    rows = defence.get("per_eps") or []
    measure = rows[0]["naive"]["measure"] if rows else "robust accuracy"
    ci = "[95\u00a0%\u00a0CI]"
    head = ["ε", f"naive attack: {measure} {ci}"]
    if adaptive != "none":
        head += [f"{adaptive.upper()} attack: {measure} {ci}", "naive − adaptive", ""]
    body = []
    for row in rows:
        cells = [row["eps_label"], _share(row["naive"])]
        if adaptive != "none":
            gap = (row["naive"]["value"] - row["adaptive"]["value"]
                   if row["naive"]["value"] is not None and row["adaptive"]["value"] is not None else None)
            cells += [_share(row["adaptive"]), "—" if gap is None else f"{100 * gap:+.1f} points",
                      "gradient hidden" if row.get("gradient_hidden") else ""]
        body.append((cells, bool(row.get("gradient_hidden"))))
    return head, body


def _defence_table(defence: dict) -> str:
    head, body = defence_table(defence)
    flipped = ' class="flipped"'
    rows = [f"<tr{flipped if hidden else ''}>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>"
            for cells, hidden in body]
    return ('<table class="data"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def defence_svg(defence: dict) -> str:
    """The naive and the adaptive attack's robust accuracy (or share not flipped) vs ε, with
    their 95 % bands, on one chart."""
    points = []
    for row in defence.get("per_eps") or []:
        point = {"eps": row["eps"], "naive": row["naive"]["value"], "naive_ci95": row["naive"]["ci95"]}
        if "adaptive" in row:
            point.update({"adaptive": row["adaptive"]["value"], "adaptive_ci95": row["adaptive"]["ci95"]})
        points.append(point)
    series = [("naive attack", "naive", "naive_ci95", NAIVE_COLOUR, ' stroke-dasharray="5 4"')]
    if defence.get("adaptive", "none") != "none":
        series.append((f"{defence['adaptive'].upper()} attack", "adaptive", "adaptive_ci95", ROBUST_COLOUR, ""))
    return curves_svg(points, series=series, height=240,
                      title=f"{(defence.get('per_eps') or [{}])[0].get('naive', {}).get('measure', 'robust accuracy')}"
                            " vs ε, naive and adaptive attack")


def defence_section(summary: dict) -> str:
    """The defence (naive vs adaptive robust accuracy per ε) and precision of a screen, or ''."""
    defence, precision = summary.get("defence"), summary.get("precision")
    if not defence and not precision:
        return ""
    rows: list[tuple[str, object]] = []
    if defence:
        rows += [("defence", f"{defence.get('label')} ({defence.get('defence')})"),
                 ("adaptive attack", defence.get("adaptive_label") or defence.get("adaptive")),
                 ("source", defence.get("citation", "—"))]
    if precision:
        rows.append(("model precision", precision.get("how", precision.get("precision"))))
    if not defence:
        return f'<section class="block card"><h2>Model precision</h2>{_kv(rows)}</section>'
    hidden = any(row.get("gradient_hidden") for row in defence.get("per_eps") or [])
    tone = "flipped" if hidden else ("held" if defence.get("adaptive") != "none" else "")
    files = defence.get("files") or {}
    note = ("Naive: gradients go through the defence as implemented. "
            + ("Adaptive: the attack the screen's own numbers above come from. " if defence.get("adaptive") != "none"
               else "")
            + "Intervals are Wilson 95 %. Per-image results: "
            + ", ".join(f"{k} {v}" for k, v in files.items()) + ".")
    return (f'<section class="block card"><h2>Defence: naive vs adaptive attack</h2>'
            f'<p class="headline {tone}">{esc(defence_meaning(defence))}</p>'
            f'<figure class="plot">{defence_svg(defence)}</figure>{_defence_table(defence)}'
            f'<p class="note">{esc(note)}</p>{_kv(rows)}</section>')


def headline(summary: dict) -> str:
    """One sentence: what fraction flipped at the largest ε, with interval and baseline."""
    per_eps = summary["per_eps"]
    last = per_eps[-1]
    mask = summary["images"]["mask"]["mode"]
    where = {"protect": "outside the protected region only", "allowed": "inside the allowed masks only",
             "none": "anywhere in the image"}.get(mask, "")
    text = (f"At ε = {eps_label(last['eps'])}, {summary['attack']['method'].upper()} changing pixels "
            f"{where} flipped {last['flipped']} of {last['n']} images "
            f"({_interval(last['flip_rate'], last['flip_rate_ci95'])}).")
    if "noise_flip_rate" in last:
        text += (f" Random noise of the same budget flipped {last['noise_flipped']} "
                 f"({_interval(last['noise_flip_rate'], last['noise_flip_rate_ci95'])}).")
    if "robust_accuracy" in last:
        text += (f" Robust accuracy {_interval(last['robust_accuracy'], last['robust_accuracy_ci95'])} "
                 f"against clean accuracy {percent(per_eps[0]['robust_accuracy'] if per_eps[0]['eps'] == 0 else None)}.")
    return text


def _labelled(per_eps: Sequence[dict]) -> bool:
    return bool(per_eps) and "robust_accuracy" in per_eps[0]


def curves_title(per_eps: Sequence[dict]) -> str:
    """'Flip rate and robust accuracy vs ε', naming only the curves the plot has."""
    curves = ["Flip rate"]
    if per_eps and "noise_flip_rate" in per_eps[0]:
        curves = ["Flip rate (attack and random noise)"]
    if _labelled(per_eps):
        curves.append("robust accuracy")
    return " and ".join(curves) + " vs ε"


def curves_note(per_eps: Sequence[dict]) -> str:
    """What the curves mean; robust accuracy is explained where it is shown, else how to get it."""
    text = ("Flipped = the prediction differs from the clean prediction at this ε or a smaller one "
            "(cumulative). Bands and whiskers are Wilson 95 % intervals.")
    if _labelled(per_eps):
        return text + " Robust accuracy counts labelled images that are correct when clean and not flipped."
    return text + (" The images have no labels, so there is no robust accuracy: put them in one "
                   "sub-folder per class to measure it.")


def chart_eps_index(per_eps: Sequence[dict]) -> int:
    """The budget the group chart shows: the one whose overall flip rate is nearest 50 %,
    where groups can differ most (at ε = 0 nothing flips, at a large ε everything does)."""
    candidates = [j for j, e in enumerate(per_eps) if e["eps"] > 0 and e.get("flip_rate") is not None]
    if not candidates:
        return len(per_eps) - 1
    return min(candidates, key=lambda j: (abs(per_eps[j]["flip_rate"] - 0.5), j))


def groups_svg(groups: dict, j: int, overall: dict | None = None, *, width: int = 640) -> str:
    """Flip rate by group at the ε of index ``j``: a dot with its Wilson 95 % whisker per group,
    one block per group column, the cohort's rate as a dashed line; a group whose gap to the
    rest is significant after Holm correction is drawn in red with a star."""
    label_w, right, top, row_h = 210, 16, 30, 20
    plot_w = width - label_w - right
    lines = []  # (kind, text, point)
    for column, data in groups["by_column"].items():
        lines.append(("head", column, None))
        lines.extend(("group", entry["name"], entry["per_eps"][j]) for entry in data["groups"])
    plot_h = row_h * max(1, len(lines))
    height = top + plot_h + 60

    def x_of(value: float) -> float:
        return label_w + plot_w * min(max(value, 0.0), 1.0)

    point0 = next((p for kind, _, p in lines if p is not None), None)
    eps_text = point0["eps_label"] if point0 else ""
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="11" role="img">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="8" y="16" font-size="12" font-weight="bold" fill="#222">'
           f'{esc(f"Flip rate by group at ε = {eps_text} (dot, Wilson 95 % CI)")}</text>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = x_of(tick)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#e3e6ea"/>')
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle" fill="#555">{int(tick * 100)} %</text>')
    if overall is not None and overall.get("flip_rate") is not None:
        x = x_of(overall["flip_rate"])
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#333" '
                   f'stroke-dasharray="4 3"/>')
    for k, (kind, text, point) in enumerate(lines):
        y = top + row_h * k + row_h / 2
        if kind == "head":
            out.append(f'<text x="8" y="{y + 4:.1f}" font-weight="bold" fill="#222">{esc(text)}</text>')
            continue
        significant = bool(point.get("significant"))
        colour = FLIP_COLOUR if significant else ROBUST_COLOUR
        name = f"{text} (n = {point['n']}){' *' if significant else ''}"
        out.append(f'<text x="{label_w - 8}" y="{y + 4:.1f}" text-anchor="end" fill="{colour if significant else "#333"}">'
                   f'{esc(name)}</text>')
        low, high = point["flip_rate_ci95"]
        out.append(f'<line x1="{x_of(low):.1f}" y1="{y:.1f}" x2="{x_of(high):.1f}" y2="{y:.1f}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        for edge in (low, high):
            out.append(f'<line x1="{x_of(edge):.1f}" y1="{y - 4:.1f}" x2="{x_of(edge):.1f}" y2="{y + 4:.1f}" '
                       f'stroke="{colour}" stroke-width="1.5"/>')
        out.append(f'<circle cx="{x_of(point["flip_rate"]):.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
    out.append(f'<rect x="{label_w}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#9aa3ad"/>')
    legend_y = top + plot_h + 34
    out.append(f'<text x="{label_w}" y="{legend_y}" fill="#333">flip rate; dashed line: the whole cohort</text>')
    out.append(f'<text x="{label_w}" y="{legend_y + 14}" fill="#333">red *: gap to the rest significant '
               f'after Holm correction (α = {groups.get("alpha", 0.05):g})</text>')
    out.append("</svg>")
    return "\n".join(out)


def _groups_table(groups: dict, j: int) -> str:
    head = ["group", "n", "flip rate [95 % CI]", "robust accuracy [95 % CI]",
            "gap to the rest [95 % CI]", "p (Fisher)", "p (Holm)", ""]
    body = []
    for column, data in groups["by_column"].items():
        body.append(f'<tr><th colspan="{len(head)}" style="text-align:left">{esc(column)}'
                    + (f" ({data['without_value']} image(s) without a value)" if data["without_value"] else "")
                    + "</th></tr>")
        for entry in data["groups"]:
            point = entry["per_eps"][j]
            gap = "—"
            if "gap" in point:
                low, high = point["gap_ci95"]
                gap = f"{100 * point['gap']:+.1f} points [{100 * low:+.1f}, {100 * high:+.1f}]"
            cells = [entry["name"], point["n"], _interval(point["flip_rate"], point["flip_rate_ci95"]),
                     _interval(point.get("robust_accuracy"), point.get("robust_accuracy_ci95", (0, 1))),
                     gap, f"{point['p_value']:.3g}" if "p_value" in point else "—",
                     f"{point['p_holm']:.3g}" if "p_holm" in point else "—",
                     "significant" if point.get("significant") else ""]
            body.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    return ('<table class="data"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")


def how_sure(summary: dict) -> str:
    """The "how sure are we" paragraph: n, seeds and what the intervals say."""
    per_eps = summary["per_eps"]
    j = chart_eps_index(per_eps)
    entry = per_eps[j]
    low, high = entry["flip_rate_ci95"]
    text = (f"{entry['n']} images were screened"
            + (f" ({entry['n_labelled']} with a true label)" if "n_labelled" in entry else "")
            + f". At ε = {eps_label(entry['eps'])} the flip rate is {_interval(entry['flip_rate'], entry['flip_rate_ci95'])}: "
            f"with this many images the true rate could lie anywhere in a band {100 * (high - low):.1f} "
            "percentage points wide (Wilson 95 % interval; it narrows with the square root of n).")
    if entry.get("excluded"):
        text += (f" {entry['excluded']} image(s) were left out because the model's output was not a "
                 "number on them.")
    seeds = summary.get("seeds") or {}
    if seeds.get("per_eps"):
        point = seeds["per_eps"][j]
        key, what = (("robust_accuracy", "robust accuracy") if "robust_accuracy" in point
                     else ("flip_rate", "flip rate"))
        value = point[key]
        interval = value.get("bootstrap_ci95")
        text += (f" The attack was repeated with {len(seeds['seeds'])} seeds ({', '.join(map(str, seeds['seeds']))}): "
                 f"{what} ranged from {percent(value['min'])} to {percent(value['max'])} (median "
                 f"{percent(value['median'])})"
                 + (f", bootstrap 95 % interval {100 * interval[0]:.1f}–{100 * interval[1]:.1f} % over images "
                    "and seeds." if interval else "."))
    else:
        count = len(seeds.get("seeds", [summary.get("attack", {}).get("seed")]))
        attack = summary.get("attack", {})
        text += (f" This is {'one run' if count == 1 else f'{count} runs'} of the attack (seed "
                 f"{attack.get('seed')}); "
                 + ("with a random start, --seeds K repeats it to show how much the number moves between seeds."
                    if attack.get("random_start") else
                    "it draws nothing at random, so another seed would give the same numbers."))
    groups = summary.get("groups")
    if groups and groups.get("by_column"):
        sizes = [e["n"] for data in groups["by_column"].values() for e in data["groups"]]
        flagged = sum(1 for data in groups["by_column"].values() for e in data["groups"]
                      if e["per_eps"][j].get("significant"))
        text += (f" Groups hold {min(sizes)} to {max(sizes)} images; a small group's interval is wide, "
                 "so a gap is only called significant when the Fisher test survives Holm's correction "
                 f"for the number of groups compared ({flagged} group(s) at this ε).")
    return text


def render_cohort_html(summary: dict, rows: Sequence[ImageRow], worst_cases: Sequence[WorstCase],
                       classes: Sequence[str]) -> str:
    """The cohort report as one self-contained HTML page (no script, no external resource)."""
    model = summary["model"]
    images = summary["images"]
    title = f"Cohort screen: {model.get('name') or Path(model['path']).name} on {Path(images['source']).name}"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f'<header class="masthead"><div class="product">AdvExplorer · cohort screen</div>'
             f'<h1>{esc(title)}</h1><div class="meta">{esc(images["screened"])} images · generated '
             f'{esc(generated)} · advexplorer {esc(advexplorer.__version__)}</div></header>',
             f'<p class="headline {"flipped" if summary["per_eps"][-1]["flipped"] else "held"}">'
             f'{esc(headline(summary))}</p>']
    if summary.get("defence") or summary.get("precision"):
        said = []
        if summary.get("defence"):
            said.append(f"defended by {summary['defence']['label']}, attacked "
                        + ("naively" if summary["defence"]["adaptive"] == "none"
                           else f"with {summary['defence']['adaptive'].upper()} (the naive attack is compared below)"))
        if summary.get("precision"):
            said.append(f"at {summary['precision']['precision']}")
        parts.append(f'<p class="note">The screened model is {esc("; ".join(said))}.</p>')
    warnings = []
    if images.get("skipped"):
        warnings.append(f"{len(images['skipped'])} image(s) could not be read and were skipped: "
                        + "; ".join(f"{s['file']} ({s['reason']})" for s in images["skipped"][:10]))
    verification = summary["monotone_shortcut"]["verification"]
    if isinstance(verification, dict) and verification.get("disagreements"):
        warnings.append(f"The monotone shortcut disagreed on {verification['disagreements']} of "
                        f"{verification['pairs_checked']} re-attacked (image, larger ε) pairs: the "
                        "attack did not flip those images again at the larger budget.")
    if images.get("missing"):
        warnings.append(f"{len(images['missing'])} file(s) listed in the manifest do not exist and were "
                        "skipped: " + ", ".join(images["missing"][:10]))
    if images.get("non_finite_logits"):
        warnings.append(f"The model returned non-finite logits on {len(images['non_finite_logits'])} "
                        "image(s); they are flagged in per_image.csv and left out of the rates: "
                        + ", ".join(images["non_finite_logits"][:10]))
    if warnings:
        parts.append('<div class="warnings"><strong>Check before relying on this screen:</strong><ul>'
                     + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul></div>")
    parts.append(f'<section class="block card"><h3 style="text-transform:none;letter-spacing:0">'
                 f'{esc(curves_title(summary["per_eps"]))}</h3><figure class="plot">{curves_svg(summary["per_eps"])}'
                 f'<figcaption class="note">{esc(curves_note(summary["per_eps"]))}</figcaption></figure></section>')
    parts.append(f'<section class="block"><h2>Per budget</h2>{_eps_table(summary["per_eps"])}</section>')
    parts.append(defence_section(summary))
    parts.append(f'<section class="block"><h2>How sure are we?</h2><p>{esc(how_sure(summary))}</p></section>')
    groups = summary.get("groups")
    if groups and groups.get("by_column"):
        j = chart_eps_index(summary["per_eps"])
        parts.append(f'<section class="block card"><h2>By group</h2><figure class="plot">'
                     f'{groups_svg(groups, j, summary["per_eps"][j])}<figcaption class="note">'
                     f'{esc(groups["interval"])}; {esc(groups["test"])}.</figcaption></figure>'
                     f'{_groups_table(groups, j)}</section>')
    if worst_cases:
        parts.append("<h2>Worst cases</h2><p class=\"note\">Images flipped at the smallest budget, most "
                     "confident wrong class first.</p>")
        parts.extend(_worst_case_figures(case, classes, k) for k, case in enumerate(worst_cases, start=1))
    parts.append(f'<section class="block"><h2>Images</h2>'
                 f'{_image_table(rows, classes, summary.get("min_eps") is not None)}</section>')
    attack = summary["attack"]
    shortcut = summary["monotone_shortcut"]
    verification_text = (f"{verification['pairs_checked']} pairs re-attacked on {verification['images_checked']} "
                         f"images, {verification['disagreements']} disagreement(s)"
                         if isinstance(verification, dict) else str(verification))
    parameters = [
        ("attack", f"{attack['method']} {attack['norm']}, {attack['steps']} step(s), step size "
                   f"{attack['step_size'] if attack['step_size'] is not None else '2.5·ε/steps'}, "
                   f"restarts {attack['restarts']}, random start {attack['random_start']}, seed {attack['seed']}"),
        ("budgets ε", ", ".join(eps_label(e) for e in summary["eps"])),
        ("mask", f"{images['mask']['mode']}" + (f" ({images['mask']['source']})" if images["mask"]["source"] else "")),
        ("images", f"{images['source']} ({images['layout']}, {images['count']} files, labels: "
                   f"{'yes' if images['labels'] else 'no'})"),
        ("monotone shortcut", shortcut["how"]),
        ("shortcut check", verification_text),
        *([("defence", f"{summary['defence']['defence']}, attack {summary['defence']['adaptive']}")]
          if summary.get("defence") else []),
        *([("precision", summary["precision"]["precision"])] if summary.get("precision") else []),
        ("device", summary.get("device", "")),
        ("wall time", f"{summary.get('wall_time_s', 0):.1f} s"),
    ]
    hashes = [("model", model["sha256"]), ("model card", model.get("card_sha256") or "—"),
              ("image set", images["fingerprint_sha256"])]
    environment = [(k, v) for k, v in summary.get("versions", {}).items()]
    command = shlex.join(str(word) for word in summary.get("command_line") or [])  # pastes into a shell
    parts.append('<section class="card block"><h3>Reproducibility</h3>'
                 + (f'<pre class="command">{esc(command)}</pre>' if command else "")
                 + f"{_kv(parameters)}<h3 style=\"margin-top:10px\">SHA-256</h3>{_kv(hashes, mono=True)}"
                 f"<h3 style=\"margin-top:10px\">Environment</h3>{_kv(environment)}</section>")
    parts.append("<footer>Self-contained report: pictures are embedded, nothing is loaded from elsewhere, "
                 "no script. Numbers come from summary.json and per_image.csv in the screen folder.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_stylesheet()}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")


def write_cohort_report(out_dir: str | os.PathLike, summary: dict, rows: Sequence[ImageRow],
                        worst_cases: Sequence[WorstCase], card, *, pdf: bool = False) -> dict[str, str]:
    """Write ``report.html`` (and ``report.pdf`` with ``pdf=True``) atomically into ``out_dir``.

    Returns the names written, keyed ``report`` / ``report_pdf``.
    """
    out_dir = Path(out_dir)
    html = render_cohort_html(summary, rows, worst_cases, card.classes)
    atomic_write_text(out_dir / "report.html", html, overwrite=True)
    written = {"report": "report.html"}
    if pdf:
        with atomic_path(out_dir / "report.pdf", overwrite=True) as temporary:
            _html_to_pdf(html, temporary)
        written["report_pdf"] = "report.pdf"
    return written


def _printable_markup(html: str) -> str:
    """The cohort page in the rich-text subset Qt lays out well on paper.

    Qt ignores <figure>: each becomes a one-cell table, which the PDF's page-breaking pass
    keeps whole, so a plot or picture never parts from its caption. Table headers break
    only between words; commands wrap instead of running off the page; the screen
    stylesheet (CSS Qt does not know) gives way to a few plain rules.
    """
    html = re.sub(r"<figure[^>]*>", '<table width="100%" cellspacing="0" cellpadding="0" border="0"><tr><td>', html)
    html = html.replace("</figure>", "</td></tr></table>")
    html = re.sub(r"<figcaption[^>]*>", '<p style="color:#5b6673;font-size:7.5pt;margin-top:2px;">', html)
    html = html.replace("</figcaption>", "</p>")
    html = re.sub(r"<thead>(.*?)</thead>", lambda head: re.sub(
        r"<th>(.*?)</th>", lambda cell: '<th style="white-space:nowrap">'
        + "<br>".join(header_lines(cell.group(1))) + "</th>", head.group(1)), html, flags=re.S)
    html = re.sub(r'<pre class="command">(.*?)</pre>',
                  r'<p style="font-family:\'DejaVu Sans Mono\',monospace;font-size:7.5pt;'
                  r'background-color:#f3f5f7;">\1</p>', html, flags=re.S)
    return re.sub(r"<style>.*?</style>", "<style>table{border-collapse:collapse} "
                  "td,th{padding:2px 6px;border-bottom:1px solid #ccc;text-align:left}"
                  "h1{font-size:16pt} h2{font-size:12pt} h3{font-size:9.5pt;color:#1f5f8b}"
                  "</style>", html, flags=re.S)


def _html_to_pdf(html: str, path: Path) -> None:
    """Print the cohort page to an A4 PDF with the report package's Qt machinery.

    Reuses :mod:`advexplorer.report.pdf` (its Qt import, offscreen application, picture
    resources and hand-laid pages with a footer; PySide6 is imported only there, only now).
    Qt's rich text understands a subset of HTML/CSS, no inline SVG and no ``data:`` URIs,
    so the curves are rasterised and every picture becomes a document resource.
    """
    import base64

    from advexplorer.report import pdf

    QtCore, QtGui, QtSvg = pdf.qt_modules()
    pdf.ensure_application()
    document = QtGui.QTextDocument()
    font = QtGui.QFont()
    font.setFamilies(["DejaVu Sans", "Helvetica", "Arial", "sans-serif"])
    font.setPointSizeF(8.5)
    document.setDefaultFont(font)
    resources = pdf.PdfResources(document, QtCore, QtGui, QtSvg)

    def replace_svg(match: re.Match) -> str:
        name, width, _height = resources.svg(match.group(0))
        return f'<img width="{min(width, 640)}" src="{name}">'

    printable = re.sub(r"<svg.*?</svg>", replace_svg, html, flags=re.S)
    printable = re.sub(r'src="data:image/png;base64,([^"]*)"',
                       lambda m: f'src="{resources.png(base64.b64decode(m.group(1)))}"', printable)
    printable = _printable_markup(printable)
    document.setHtml(printable)
    title = "AdvExplorer cohort screen"
    document.setMetaInformation(QtGui.QTextDocument.MetaInformation.DocumentTitle, title)
    writer = QtGui.QPdfWriter(str(path))
    writer.setPageSize(QtGui.QPageSize(QtGui.QPageSize.PageSizeId.A4))
    writer.setPageMargins(QtCore.QMarginsF(14, 12, 14, 10), QtGui.QPageLayout.Unit.Millimeter)
    writer.setResolution(300)
    writer.setTitle(title)
    writer.setCreator(f"AdvExplorer {advexplorer.__version__}")
    pdf.paint_pages(document, writer, QtCore, QtGui, title)
    del writer  # finishes and closes the file
