"""The HTML report of a sequence probe: one file, no script, no external resource.

Built from ``record.json`` alone (no torch), so a run folder can be re-rendered anywhere.
Per sequence: the verdict, the residues with the allowed region tinted and the
substitutions marked, the substitution table (probability before/after, BLOSUM62,
motifs created or destroyed), the saliency tracks before/after and the single-substitution
heat map as inline SVG. A screen adds the flippable fraction by ≤ k substitutions with its
Wilson interval.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from advexplorer.io.atomic import atomic_directory
from advexplorer.io.runfolder import record_text

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body{margin:0;background:#eef1f4;color:#1d232b;font:14px/1.45 -apple-system,"Segoe UI",Roboto,Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:24px 28px 40px;background:#fff}
h1{font-size:23px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d9dee4}
.meta,.note{color:#5b6673;font-size:12.5px}
.headline{padding:9px 13px;border-left:5px solid #5b6673;background:#f6f8fa;border-radius:6px;margin:8px 0 12px}
.headline.flipped{border-color:#b3261e;background:#fdecea}.headline.held{border-color:#1e6b3a;background:#e8f4ec}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}th{background:#f6f8fa;text-align:left;padding:5px 8px}
td{padding:4px 8px;border-bottom:1px solid #d9dee4}
.seq{font-family:Menlo,Consolas,"Liberation Mono",monospace;font-size:12.5px;line-height:1.9;word-break:break-all}
.seq span{padding:1px 0}.seq .a{background:#dbeaf6}.seq .s{background:#b3261e;color:#fff;font-weight:700}
.seq .n{color:#5b6673;font-size:10.5px;margin-right:4px}
.mono{font-family:Menlo,Consolas,monospace;font-size:11.5px;overflow-wrap:anywhere}
svg{display:block;max-width:100%;height:auto}
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _sequence_html(result: dict[str, Any]) -> str:
    allowed = set()
    for part in filter(None, result["allowed_positions"].split(",")):
        first, _, last = part.partition("-")
        allowed.update(range(int(first), int(last or first) + 1))
    changed = {s["position"]: s for s in result["substitutions"]}
    pieces = []
    for position, residue in enumerate(result["sequence"], start=1):
        if position % 60 == 1:
            pieces.append(("<br>" if position > 1 else "") + f'<span class="n">{position:>4}</span>')
        if position in changed:
            s = changed[position]
            pieces.append(f'<span class="s" title="{esc(s["label"])}">{esc(s["to"])}</span>')
        else:
            pieces.append(f'<span class="a">{esc(residue)}</span>' if position in allowed else esc(residue))
        if position % 10 == 0:
            pieces.append(" ")
    return f'<div class="seq">{"".join(pieces)}</div>'


def _track_svg(before: list[float], after: list[float], labels: tuple[str, str]) -> str:
    """Two bar tracks (before above, after below) on one shared scale."""
    length = len(before)
    width, row = max(300, 8 * length), 60
    scale = max(max(map(abs, before)), max(map(abs, after)), 1e-12)
    parts = [f'<svg viewBox="0 0 {width + 150} {2 * row + 22}" width="{width + 150}">']
    for r, (values, label) in enumerate(zip((before, after), labels)):
        middle = r * row + row / 2 + 4
        parts.append(f'<text x="0" y="{middle + 4:.1f}" font-size="11">{esc(label)}</text>')
        parts.append(f'<line x1="150" x2="{width + 150}" y1="{middle:.1f}" y2="{middle:.1f}" stroke="#bbb"/>')
        for i, v in enumerate(values):
            h = abs(v) / scale * (row / 2 - 4)
            y = middle - h if v >= 0 else middle
            colour = "#1f5f8b" if v >= 0 else "#b3261e"
            parts.append(f'<rect x="{150 + 8 * i}" y="{y:.1f}" width="7" height="{max(h, 0.3):.1f}" fill="{colour}"/>')
    for position in range(10, length + 1, 10):
        parts.append(f'<text x="{150 + 8 * (position - 1) + 3.5:.1f}" y="{2 * row + 18}" font-size="9" '
                     f'text-anchor="middle">{position}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _heatmap_svg(delta: list[list[float | None]], alphabet: str, sequence: str) -> str:
    """Position × residue → Δ probability (blue = falls, red = rises; grey = not allowed)."""
    length, cell = len(delta), 8
    scale = max((abs(v) for row in delta for v in row if v is not None), default=0.0) or 1.0
    height = cell * len(alphabet) + 14
    parts = [f'<svg viewBox="0 0 {20 + cell * length} {height}" width="{20 + cell * length}">']
    for j, letter in enumerate(alphabet):
        parts.append(f'<text x="2" y="{cell * j + cell - 1}" font-size="8" font-family="monospace">{esc(letter)}</text>')
    for i, row in enumerate(delta):
        for j, value in enumerate(row):
            if value is None:
                colour = "#c4c9cf"
            else:
                t = min(1.0, abs(value) / scale)
                shade = int(255 * (1 - t))
                colour = f"rgb(255,{shade},{shade})" if value > 0 else f"rgb({shade},{shade},255)"
            if alphabet[j] == sequence[i]:
                colour = "#222222"
            parts.append(f'<rect x="{20 + cell * i}" y="{cell * j}" width="{cell}" height="{cell}" fill="{colour}"/>')
    for position in range(10, length + 1, 10):  # 1-based position ticks under the columns
        x = 20 + cell * (position - 1) + cell / 2
        parts.append(f'<text x="{x:.0f}" y="{height - 2}" font-size="9" text-anchor="middle">{position}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _result_html(result: dict[str, Any]) -> str:
    before, after = result["prediction_before"], result["prediction_after"]
    watched = result["watched_class"]["name"]
    subs = result["substitutions"]
    if result["success"] and subs:
        verdict = (f'{len(subs)} substitution{"s" if len(subs) > 1 else ""} in the allowed region '
                   f'({", ".join(s["label"] for s in subs)}) {"change" if len(subs) > 1 else "changes"} the prediction from '
                   f'{before["class"]} to {after["class"]}'
                   + (" — the fewest possible." if result["minimal"] else
                      " (the fewest the search found; fewer may exist)."))
        kind = "flipped"
    elif result["success"]:
        verdict, kind = f"The model already predicts {after['class']}.", ""
    else:
        verdict = (f"No flip within {result.get('max_substitutions_text', 'the budget')}: the "
                   f"prediction stays {before['class']} ({_percent(after['probabilities'][before['class']])} "
                   f"after the best attempt, {', '.join(s['label'] for s in subs) or 'no change'}).")
        kind = "held"
    rows = "".join(
        f"<tr><td class=mono>{esc(s['label'])}</td><td>{s['position']}</td><td>{esc(s['from'])} → "
        f"{esc(s['to'])}</td><td>{'—' if s['blosum62'] is None else s['blosum62']}</td>"
        f"<td>{_percent(s['probability_before'])} → {_percent(s['probability_after'])}</td></tr>"
        for s in subs)
    motif_lines = [f"created {esc(m['motif'])} {esc(m['text'])} at {m['start'] + 1}–{m['end']}"
                   for m in result["motifs_created"]]
    motif_lines += [f"destroyed {esc(m['motif'])} {esc(m['text'])} at {m['start'] + 1}–{m['end']}"
                    for m in result["motifs_destroyed"]]
    out = [f"<h2>{esc(result['name'])} <span class=meta>{esc(result['description'])}</span></h2>",
           f'<div class="headline {kind}">{esc(verdict)}</div>',
           f"<p class=meta>{result['length']} residues; allowed positions "
           f"{esc(result['allowed_positions'] or 'none')} ({result['allowed_count']}); "
           f"before: {esc(before['class'])} {_percent(before['probabilities'][before['class']])}; "
           f"after: {esc(after['class'])} {_percent(after['probabilities'][after['class']])}; "
           f"{result['forward_passes']} forward and {result['backward_passes']} backward passes.</p>",
           _sequence_html(result)]
    if subs:
        out.append(f"<table><tr><th>substitution</th><th>position</th><th>change</th><th>BLOSUM62</th>"
                   f"<th>p({esc(watched)}) before → after</th></tr>{rows}</table>")
    out.append("<p>Motifs: " + ("; ".join(motif_lines) if motif_lines else "none created or destroyed")
               + "</p>")
    if "saliency" in result:
        s = result["saliency"]
        out.append(f"<h3>Saliency ({esc(s['method'])}, one scale; blue supports the class)</h3>")
        out.append(_track_svg(s["before"], s["after"], (f"before: {s['class_before']}",
                                                         f"after: {s['class_after']}")))
    if "scan" in result:
        scan = result["scan"]
        out.append(f"<h3>Every single substitution: Δ p({esc(scan['watched_class']['name'])})</h3>")
        out.append(f"<p class=note>{scan['candidates']} allowed single substitutions scored exactly; "
                   f"{scan['flips']} of them {'succeeds' if scan['flips'] == 1 else 'succeed'} alone"
                   + (f" (strongest: {esc(', '.join(scan['strongest_flips'][:8]))})" if scan["flips"] else "")
                   + ". Rows are residues, columns positions; black = the residue present, grey = not allowed.</p>")
        out.append(_heatmap_svg(scan["delta"], scan["alphabet"], result["sequence"]))
    return "\n".join(out)


def _screen_html(screen: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>≤ {r['k']}</td><td>{r['flippable']} / {r['n']}</td><td>{_percent(r['fraction'])}</td>"
                   f"<td>{_percent(r['ci95'][0])} – {_percent(r['ci95'][1])}</td></tr>" for r in screen["per_k"])
    return (f"<h2>Screen: {screen['n']} sequences</h2><table><tr><th>substitutions</th><th>flippable</th>"
            f"<th>fraction</th><th>Wilson 95 %</th></tr>{rows}</table><p class=note>{esc(screen['definition'])}.</p>")


def probe_report_html(record: dict[str, Any]) -> str:
    """The whole report page of a probe ``record.json``."""
    card = record["model"]["card"]
    settings = record["settings"]
    max_text = f"{settings['max_substitutions']} substitutions"
    target = settings.get("target")
    header = [
        f"<h1>Sequence probe — {esc(card.get('name', 'sequence model'))}</h1>",
        f"<p class=meta>{esc(record['created'])} · {record['fasta']['records']} sequence(s) · "
        f"substitutions: {esc(settings['substitutions']['rule'])} · at most {max_text} · "
        f"{'target ' + esc(target['name']) if target else 'any change of class'} · "
        f"advexplorer {esc(record['versions']['advexplorer'])}</p>",
    ]
    if card.get("synthetic"):
        header.append("<p class=note>This model was trained on synthetic sequences (see its card): "
                      "a known answer for the probe, not biology.</p>")
    body = []
    if "screen" in record:
        body.append(_screen_html(record["screen"]))
        rows = "".join(
            f"<tr><td>{esc(r['name'])}</td><td>{esc(r['prediction_before']['class'])}</td>"
            f"<td>{'yes' if r['success'] and r['substitutions'] else 'no'}</td>"
            f"<td class=mono>{esc(', '.join(s['label'] for s in r['substitutions']))}</td>"
            f"<td>{esc(r['prediction_after']['class'])}</td></tr>" for r in record["results"])
        body.append(f"<table><tr><th>sequence</th><th>before</th><th>flipped</th><th>substitutions</th>"
                    f"<th>after</th></tr>{rows}</table>")
    else:
        for result in record["results"]:
            body.append(_result_html(dict(result, max_substitutions_text=max_text)))
    footer = (f"<p class=note>Model {esc(record['model']['path'])} (SHA-256 <span class=mono>"
              f"{esc(record['model']['sha256'])}</span>); FASTA {esc(record['fasta']['path'])} "
              f"(SHA-256 <span class=mono>{esc(record['fasta']['sha256'])}</span>). "
              f"{esc(settings['method'])}.</p>")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f"<title>Sequence probe — {esc(card.get('name', ''))}</title><style>{STYLE}</style></head>"
            f"<body><main>{''.join(header)}{''.join(body)}{footer}</main></body></html>\n")


def write_probe_folder(out: str | os.PathLike, record: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``record.json`` and ``report.html`` into ``out``, all or nothing."""
    page = probe_report_html(record)
    with atomic_directory(out, overwrite=overwrite) as folder:
        (folder / "record.json").write_text(record_text(record), encoding="utf-8")
        (folder / "report.html").write_text(page, encoding="utf-8")
    return Path(out)
