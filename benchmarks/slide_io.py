"""How fast does a slide region come up, and does reading a slide ever block the GUI?

Makes a 20,000 × 20,000 RGB pyramidal TIFF locally (JPEG tiles of 256 px, levels down to
< 1024 px; about a minute to write on one core), then measures, in the same process:

* ``overview`` — open the slide and read the overview the slide view shows (≤ 1024 px side);
* ``tile L0`` / ``tile L1`` — open the slide and cut one 224-px tile at level 0 / level 1 at a
  random position, as the slide view's *Cut tile* and ``attack --region`` do (median and max
  of 20 positions; every read opens the file afresh, as each worker task does);
* ``baseline`` — the naive way to the same tile: decode a whole level (level 3, 2,500² px)
  and crop it; the ratio ``baseline / tile`` says how much reading by region saves even
  against a level 64× smaller than full resolution;
* ``GUI`` — a :class:`~advexplorer.gui.slide_view.SlideView` (offscreen) opens the slide,
  zooms in (a detail read at a finer level), and cuts 10 tiles while a 5-ms timer on the GUI
  thread records the longest gap between its ticks: the longest the GUI was blocked.

Targets (issue 12): tile ≤ 0.3 s; GUI never blocked > 50 ms.

Usage::

    python benchmarks/slide_io.py [--slide existing.tif] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIDE = 20_000
TILE = 224


def make_slide(path: Path, side: int = SIDE) -> None:
    """Write a pyramidal JPEG-tiled TIFF of ``side`` × ``side`` px, tile by tile (little memory)."""
    import tifffile

    rng = np.random.default_rng(0)
    # A few textured tiles reused across the slide: writing stays fast, decoding is real JPEG.
    y, x = np.mgrid[0:256, 0:256]
    palette = []
    for k in range(8):
        base = np.stack([0.75 + 0.2 * np.sin((x + 31 * k) / (7 + k)), 0.55 + 0.25 * np.cos((y + 17 * k) / (9 + k)),
                         0.8 + 0.15 * np.sin((x + y) / (11 + k))], axis=2)
        noisy = base + 0.06 * rng.standard_normal(base.shape)
        palette.append((np.clip(noisy, 0, 1) * 255).astype(np.uint8))

    def tiles(level_side: int):
        count = -(-level_side // 256)
        for row in range(count):
            for column in range(count):
                yield palette[(row * 7 + column * 3) % len(palette)]

    options = dict(tile=(256, 256), photometric="rgb", compression="jpeg", dtype=np.uint8)
    with tifffile.TiffWriter(str(path), bigtiff=True) as tiff:
        level_side = side
        tiff.write(tiles(level_side), shape=(level_side, level_side, 3), resolution=(1e4 / 0.25, 1e4 / 0.25),
                   resolutionunit="CENTIMETER", **options)
        while level_side > 1024:
            level_side //= 2
            tiff.write(tiles(level_side), shape=(level_side, level_side, 3), subfiletype=1, **options)


def time_reads(path: Path, repeats: int = 20) -> dict:
    """Seconds for the overview and for 224-px tiles at levels 0 and 1, and the whole-level baseline."""
    import tifffile

    from advexplorer.io.slides import Slide, read_region

    results = {}
    import tiffslide  # noqa: F401  (importing tiffslide and zarr is a one-off, not a read)

    started = time.perf_counter()
    with Slide(path) as slide:
        level, overview = slide.thumbnail(1024)
        dims = slide.level_dimensions
    results["overview"] = [time.perf_counter() - started]
    results["overview_shape"] = overview.shape
    rng = np.random.default_rng(1)
    for level in (0, 1):
        width, height = dims[level]
        times = []
        for _ in range(repeats):
            x, y = int(rng.integers(0, width - TILE)), int(rng.integers(0, height - TILE))
            started = time.perf_counter()
            read_region(path, level, x, y, TILE, TILE, slide_sha256="-")  # hashing is not reading
            times.append(time.perf_counter() - started)
        results[f"tile L{level}"] = times
    started = time.perf_counter()
    with tifffile.TiffFile(str(path)) as tiff:
        baseline_level = min(3, len(tiff.series[0].levels) - 1)
        whole = tiff.series[0].levels[baseline_level].asarray()
    _ = whole[100:100 + TILE, 100:100 + TILE].copy()
    results["baseline"] = [time.perf_counter() - started]
    results["baseline_shape"] = whole.shape
    return results


def gui_blocking(path: Path) -> dict:
    """Longest gap (s) between 5-ms ticks on the GUI thread while the slide view works."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from advexplorer.gui.slide_view import SlideView

    app = QApplication.instance() or QApplication([])
    clock = QElapsedTimer()
    gaps = []
    last = [0]

    def tick():
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    def wait_until(predicate, timeout_s=120.0):
        loop_started = time.perf_counter()
        while not predicate() and time.perf_counter() - loop_started < timeout_s:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
            time.sleep(0.001)

    view = SlideView(tile_size=TILE)
    view.resize(900, 700)
    view.show()
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    clock.start()
    timer.start()
    # Baseline: the same timer with the view idle for 3 s (what the machine alone costs).
    idle_until = time.perf_counter() + 3.0
    wait_until(lambda: time.perf_counter() > idle_until)
    idle = gaps[1:]
    gaps.clear()
    last[0] = clock.elapsed()
    opened = []
    view.opened.connect(opened.append)
    view.open_slide(path)
    wait_until(lambda: bool(opened))
    width, height = view.info["levels"][0]
    view.view.setRange(xRange=(width / 4, width / 4 + 1500), yRange=(height / 4, height / 4 + 1200), padding=0)
    wait_until(lambda: view.detail_item.image is not None and not view.busy)
    picked = []
    view.region_picked.connect(lambda region, pixels: picked.append(region))
    rng = np.random.default_rng(2)
    for _ in range(10):
        level = int(rng.integers(0, 2))
        level_width, level_height = view.info["levels"][level]
        view.set_picked_box(level, int(rng.integers(0, level_width - TILE)), int(rng.integers(0, level_height - TILE)))
        view.cut_tile()
        wait_until(lambda: not view.busy)
    timer.stop()
    view.stop()
    return {"max_gap_s": max(gaps) / 1000, "p99_gap_s": float(np.percentile(gaps, 99)) / 1000,
            "idle_max_gap_s": max(idle) / 1000, "idle_p99_gap_s": float(np.percentile(idle, 99)) / 1000,
            "ticks": len(gaps), "tiles_cut": len(picked)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", help="an existing slide to read instead of making one")
    parser.add_argument("--keep", help="folder to keep the generated slide in")
    parser.add_argument("--side", type=int, default=SIDE, help=f"side of the generated slide (default {SIDE})")
    args = parser.parse_args(argv)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="slide_io_"))
    folder.mkdir(parents=True, exist_ok=True)
    path = Path(args.slide) if args.slide else folder / f"slide_{args.side}.tif"
    if not path.is_file():
        started = time.perf_counter()
        make_slide(path, args.side)
        print(f"made {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f}s")
    reads = time_reads(path)
    print(f"overview  {reads['overview'][0]:.3f} s  ({reads['overview_shape'][1]}×{reads['overview_shape'][0]} px)")
    for key in ("tile L0", "tile L1"):
        times = reads[key]
        print(f"{key:8s}  median {statistics.median(times):.4f} s  max {max(times):.4f} s  "
              f"(target ≤ 0.3 s: {'met' if max(times) <= 0.3 else 'NOT met'})")
    baseline = reads["baseline"][0]
    print(f"baseline  {baseline:.3f} s  (decode a whole level, {reads['baseline_shape'][1]}² px, and crop) → "
          f"region read is {baseline / statistics.median(reads['tile L0']):.0f}× faster")
    gui = gui_blocking(path)
    print(f"GUI       longest block {gui['max_gap_s'] * 1000:.0f} ms (99th percentile "
          f"{gui['p99_gap_s'] * 1000:.0f} ms) over {gui['ticks']} ticks, {gui['tiles_cut']} tiles cut "
          f"(target ≤ 50 ms: {'met' if gui['max_gap_s'] <= 0.05 else 'NOT met'})")
    print(f"GUI idle  longest gap {gui['idle_max_gap_s'] * 1000:.0f} ms (99th percentile "
          f"{gui['idle_p99_gap_s'] * 1000:.0f} ms) with the view idle: the machine's own noise; "
          f"ratio working/idle {gui['max_gap_s'] / max(gui['idle_max_gap_s'], 1e-9):.1f}")
    if not args.keep and not args.slide:  # 20k² JPEG tiles: about 200 MB
        path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
