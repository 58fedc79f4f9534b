"""Report figures drawn with numpy + Pillow (pictures) and plain SVG text (plots).

No plotting library: a report must render the same on a machine with only the app's own
dependencies. Pictures are PNG bytes (embedded as ``data:`` URIs by the HTML writer and as
document resources by the PDF writer); the confidence trajectory is an SVG string that the
HTML embeds inline and the PDF writer rasterises with Qt's SVG renderer.

Colour maps are piecewise-linear interpolations of published anchor colours:

* diverging ``RdBu`` (reversed: blue = negative, white = 0, red = positive) from
  ColorBrewer (Brewer, Harrower, https://colorbrewer2.org) for signed perturbations, so
  that zero is white and the sign is visible;
* sequential ``inferno`` (van der Walt, Smith, https://bids.github.io/colormap/) for
  saliency, perceptually uniform so equal steps of attribution look equally different.
"""

from __future__ import annotations

import base64
import io
import html
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

DIVERGING_ANCHORS = ("#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
                     "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f")
SEQUENTIAL_ANCHORS = ("#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446",
                      "#ed6925", "#fb9b06", "#f7d13d", "#fcffa4")
#: Line colours of the trajectory plot (Tableau 10, distinguishable and print-safe).
LINE_COLOURS = ("#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2",
                "#edc948", "#ff9da7", "#9c755f", "#bab0ac")
#: Smallest longest side a picture is shown at; small model inputs are enlarged by an
#: integer factor with nearest neighbour so single pixels stay visible and honest.
DISPLAY_MIN = 224
DISPLAY_MAX = 448
#: Unicode bidirectional controls: embeddings and overrides (U+202A–U+202E), isolates
#: (U+2066–U+2069) and the invisible direction marks (U+200E, U+200F, U+061C).
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def reveal_bidi_controls(text: str) -> str:
    """Show each bidirectional control as a visible '‹U+202E›' instead of applying it.

    A card or file name such as 'benign\u202Engissim' would otherwise be displayed
    reversed ('benign' followed by 'missing'): a report must show what the file says.
    """
    if not any(character in BIDI_CONTROLS for character in text):
        return text
    return "".join(f"‹U+{ord(c):04X}›" if c in BIDI_CONTROLS else c for c in text)


def escape(text: object) -> str:
    """Text for HTML or SVG markup: bidirectional controls made visible, then escaped."""
    return html.escape(reveal_bidi_controls(str(text)), quote=True)


def _hex_to_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return tuple(int(colour[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


def _lookup_table(anchors: Sequence[str], size: int = 256) -> np.ndarray:
    stops = np.array([_hex_to_rgb(c) for c in anchors], dtype=np.float64)
    positions = np.linspace(0.0, 1.0, len(anchors))
    samples = np.linspace(0.0, 1.0, size)
    table = np.stack([np.interp(samples, positions, stops[:, k]) for k in range(3)], axis=1)
    return np.round(table).astype(np.uint8)


_TABLES = {"diverging": _lookup_table(DIVERGING_ANCHORS),
           "sequential": _lookup_table(SEQUENTIAL_ANCHORS)}


def apply_colormap(values: np.ndarray, vmin: float, vmax: float, name: str = "sequential") -> np.ndarray:
    """Map an H×W array to H×W×3 uint8 colours; values outside [vmin, vmax] are clipped."""
    table = _TABLES[name]
    span = float(vmax) - float(vmin)
    scaled = (np.asarray(values, dtype=np.float64) - vmin) / (span if span > 0 else 1.0)
    scaled = np.nan_to_num(scaled, nan=0.0)
    index = np.clip(np.round(scaled * (len(table) - 1)), 0, len(table) - 1).astype(np.intp)
    return table[index]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image in [0,1] (H×W, H×W×1 or H×W×3) as uint8 H×W×3 (grey repeated)."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    # Round exactly as the 8-bit PNG export does, so "what you see" is what was saved.
    return np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)


def display_factor(height: int, width: int) -> int:
    """Integer enlargement that brings a small picture to at least DISPLAY_MIN pixels."""
    longest = max(height, width, 1)
    return max(1, min(DISPLAY_MIN // longest + (DISPLAY_MIN % longest > 0), 16))


def enlarge(rgb: np.ndarray, factor: int | None = None) -> np.ndarray:
    """Nearest-neighbour enlargement (no smoothing: a reader sees the real pixels)."""
    rgb = np.asarray(rgb)
    factor = display_factor(*rgb.shape[:2]) if factor is None else factor
    if factor > 1:
        rgb = np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)
    return rgb


def png_bytes(rgb: np.ndarray, *, factor: int | None = None) -> bytes:
    """Encode an H×W×3 (or ×4) uint8 array as PNG, enlarged for display, shrunk if huge."""
    rgb = np.ascontiguousarray(enlarge(np.asarray(rgb, dtype=np.uint8), factor))
    image = Image.fromarray(rgb)
    if max(image.size) > 2 * DISPLAY_MAX:  # keep a report of a large image small
        scale = 2 * DISPLAY_MAX / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """Embed bytes as a ``data:`` URI (the report never links to another file)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def channel_mean(perturbation: np.ndarray) -> np.ndarray:
    """Signed mean over channels of an H×W×C perturbation (H×W); keeps L∞ units."""
    array = np.asarray(perturbation, dtype=np.float64)
    return array.mean(axis=2) if array.ndim == 3 else array


def symmetric_scale(values: np.ndarray, floor: float = 1.0 / 255.0) -> float:
    """Half-range of a diverging colour scale: the largest |value|, at least ``floor``.

    The floor stops a tiny or zero perturbation from being blown up into full colour.
    """
    largest = float(np.max(np.abs(values))) if np.size(values) else 0.0
    return max(largest, floor)


def perturbation_rgb(perturbation: np.ndarray, scale: float) -> np.ndarray:
    """Signed channel-mean perturbation on the diverging map, ±scale at the ends."""
    return apply_colormap(channel_mean(perturbation), -scale, scale, "diverging")


def saliency_rgb(saliency: np.ndarray, vmax: float) -> np.ndarray:
    """A saliency map on the sequential map over [0, vmax] (the shared before/after scale)."""
    return apply_colormap(np.asarray(saliency, dtype=np.float64), 0.0, vmax, "sequential")


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """Pixels on the inner border of a boolean region (4-neighbourhood)."""
    region = np.asarray(mask, dtype=bool)
    padded = np.pad(region, 1, mode="edge")
    interior = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return region & ~interior


def mask_overlay(image_rgb: np.ndarray, allowed: np.ndarray | None,
                 diagnostic: np.ndarray | None = None, *, factor: int | None = None) -> np.ndarray:
    """The image with the protected area dimmed and the allowed area outlined in cyan.

    The diagnostic region (if any) is outlined in amber. Outlines are drawn after
    enlargement so they stay one display pixel wide and never hide image pixels' colour.
    """
    base = np.asarray(image_rgb, dtype=np.float64)
    factor = display_factor(*base.shape[:2]) if factor is None else factor
    if allowed is not None:
        keep = np.asarray(allowed, dtype=bool)
        # Protected (not allowed) pixels are greyed: the eye goes to where the attack acted.
        grey = base.mean(axis=2, keepdims=True)
        dimmed = 0.35 * grey + 0.65 * 235.0
        base = np.where(keep[:, :, None], base, dimmed)
    out = enlarge(np.clip(np.round(base), 0, 255).astype(np.uint8), factor).copy()
    for region, colour in ((allowed, (0, 170, 200)), (diagnostic, (255, 176, 0))):
        if region is None:
            continue
        big = enlarge(np.asarray(region, dtype=bool), factor)
        edge = mask_outline(big)
        # Two display pixels thick so the outline survives printing.
        edge = edge | mask_outline(big & ~edge)
        out[edge] = colour
    return out


def colorbar_png(name: str, *, width: int = 256, height: int = 14) -> bytes:
    """A horizontal colour bar strip (left = low end of the scale)."""
    ramp = np.linspace(0.0, 1.0, width)[None, :].repeat(height, axis=0)
    return png_bytes(apply_colormap(ramp, 0.0, 1.0, name), factor=1)


def format_tick(value: float) -> str:
    """A short tick label: 0.5, 0.031, 1e-05."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000 or magnitude < 1e-3:
        return f"{value:.1e}"
    return f"{value:.4g}"  # 1.025 must not be labelled 1.02


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9)), default=raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * step:
        ticks.append(round(value, 12))
        value += step
    return ticks


def trajectory_svg(series: dict[str, Sequence[float]], *, restarts: Sequence[int] | None = None,
                   steps: Sequence[int] | None = None, y_label: str = "probability",
                   y_range: tuple[float, float] | None = (0.0, 1.0), width: int = 640,
                   height: int = 260, highlight: dict[str, str] | None = None,
                   title: str | None = None) -> str:
    """A line plot of one value per step for several named series, as standalone SVG.

    ``series`` maps a legend label (escaped here) to one value per evaluation (the rows of
    the record's trajectory). ``restarts`` (same length) marks where a new restart begins
    with a dashed line; ``steps`` are the step numbers shown under the axis (defaults to
    0..T-1). ``highlight`` maps a label to a short role shown in the legend ("label",
    "target"). The SVG has no script, no external reference and a white background so it
    prints and rasterises identically.
    """
    names = list(series)
    length = max((len(v) for v in series.values()), default=0)
    left, right, top, bottom = 56, 16, 28 if title else 12, 40
    # Three legend entries a row, or two when labels are long (so they never overlap).
    per_row = 3 if all(len(n) <= 22 for n in names) else 2
    legend_rows = max(1, math.ceil(len(names) / per_row))
    legend_height = 18 * legend_rows + 6
    plot_w = width - left - right
    plot_h = height - top - bottom
    total_h = height + legend_height
    values = [np.asarray(series[n], dtype=np.float64) for n in names]
    if y_range is None:
        finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if high - low < 1e-12:
            low, high = low - 0.5, high + 0.5
        pad = 0.05 * (high - low)
        low, high = low - pad, high + pad
    else:
        low, high = y_range

    def x_of(i: float) -> float:
        return left + (plot_w * i / (length - 1) if length > 1 else plot_w / 2)

    def y_of(v: float) -> float:
        v = min(max(v, low), high)
        return top + plot_h * (1.0 - (v - low) / (high - low))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" '
           f'viewBox="0 0 {width} {total_h}" font-family="Helvetica, Arial, sans-serif" '
           f'font-size="11" role="img">',
           f'<rect x="0" y="0" width="{width}" height="{total_h}" fill="#ffffff"/>']
    if title:
        out.append(f'<text x="{left}" y="16" font-size="12" font-weight="bold" '
                   f'fill="#222">{escape(title)}</text>')
    # Horizontal grid and y ticks.
    for tick in _nice_ticks(low, high):
        y = y_of(tick)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                   f'stroke="#e3e6ea" stroke-width="1"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">'
                   f'{escape(format_tick(tick))}</text>')
    # X ticks: step numbers, at most ~10 labels.
    step_numbers = list(steps) if steps is not None else list(range(length))
    if length:
        stride = max(1, math.ceil(length / 10))
        for i in range(0, length, stride):
            x = x_of(i)
            out.append(f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" '
                       f'stroke="#888"/>')
            out.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
                       f'fill="#555">{escape(str(step_numbers[i]))}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 32}" text-anchor="middle" '
               f'fill="#333">attack step</text>')
    out.append(f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle" fill="#333">{escape(y_label)}</text>')
    # Restart boundaries.
    if restarts is not None and len(restarts) == length:
        for i in range(1, length):
            if restarts[i] != restarts[i - 1]:
                x = (x_of(i - 1) + x_of(i)) / 2
                out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" '
                           f'stroke="#999" stroke-dasharray="4 3"/>')
                out.append(f'<text x="{x + 3:.1f}" y="{top + 10}" fill="#777" font-size="10">'
                           f'restart {escape(str(restarts[i]))}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
               f'stroke="#9aa3ad" stroke-width="1"/>')
    # The lines (a single point gets a dot so one-step attacks are visible).
    for k, (name, vals) in enumerate(zip(names, values)):
        colour = LINE_COLOURS[k % len(LINE_COLOURS)]
        points = [(x_of(i), y_of(v)) for i, v in enumerate(vals) if math.isfinite(v)]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                       f'stroke-width="2" stroke-linejoin="round"/>')
        for x, y in points if len(points) <= 25 else points[-1:]:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>')
    # Legend under the plot.
    limit = int(plot_w / per_row / 6.2) - 5  # ~6 px a character at 11 px
    for k, name in enumerate(names):
        colour = LINE_COLOURS[k % len(LINE_COLOURS)]
        column, row = k % per_row, k // per_row
        x = left + column * (plot_w / per_row)
        y = height + 6 + row * 18
        label = name if not (highlight and name in highlight) else f"{name} ({highlight[name]})"
        if len(label) > limit:
            label = label[:limit - 1] + "…"
        out.append(f'<line x1="{x:.1f}" y1="{y + 6}" x2="{x + 18:.1f}" y2="{y + 6}" '
                   f'stroke="{colour}" stroke-width="3"/>')
        out.append(f'<text x="{x + 24:.1f}" y="{y + 10}" fill="#222">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)
