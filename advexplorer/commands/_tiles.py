"""``advexplorer screen --image BIG.tif --tiles 224 [--region X,Y,W,H --level L]``: a tiled screen.

A large image (or a slide region) is cut into model-sized tiles, left to right and top to
bottom; the tiles are screened like any cohort (per-tile ``per_image.csv``, flip rates with
Wilson intervals in ``summary.json``), and a flip map says where on the image the model
flips. ``--out`` then holds:

* ``tiles.npz`` — the tiles (``test_images``), the cohort the screen read;
* ``tiles.json`` — the source (file, SHA-256, slide region), the tile size and each tile's
  row, column and pixel box;
* ``screen/`` — the screen's own folder (``per_image.csv``, ``summary.json``, ``report.html``);
* ``flip_map.npy`` — rows × columns of the smallest ε that flipped each tile (NaN: none);
* ``flip_map.png`` — the image with flipped tiles tinted red (darker = flipped at a smaller ε).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from advexplorer.errors import UserError

MAP_SIDE = 1024


def source_pixels(args) -> tuple[np.ndarray, dict]:
    """The image to tile as H×W×C float32 [0, 1], and what it is (for ``tiles.json``)."""
    from advexplorer.io.hashing import sha256_file

    path = Path(args.image)
    if getattr(args, "region", None):
        from advexplorer.io.rasters import to_unit_float
        from advexplorer.io.slides import parse_region, read_region

        region, raw = read_region(path, int(args.level or 0), *parse_region(args.region))
        return to_unit_float(raw, []), {"path": region.slide, "sha256": region.slide_sha256,
                                        "region": region.to_json()}
    from advexplorer.io.slides import is_slide_file

    if is_slide_file(path):
        raise UserError(f"{path.name} is a whole-slide image; screen a part of it with --region X,Y,W,H "
                        "[--level L] (a slide is never read whole).")
    from advexplorer.io.rasters import read_image_array

    pixels, _ = read_image_array(path)
    return pixels, {"path": str(path.resolve()), "sha256": sha256_file(path)}


def cut_tiles(pixels: np.ndarray, size: int) -> tuple[np.ndarray, list[dict]]:
    """N×size×size×C tiles of ``pixels`` (row-major) and each tile's row, column and box.

    Rows and columns that do not fill a whole tile at the right and bottom edge are left out.
    """
    height, width = pixels.shape[:2]
    rows, columns = height // size, width // size
    if rows == 0 or columns == 0:
        raise UserError(f"The image is {width}×{height} pixels, smaller than one {size}×{size} tile; "
                        "use smaller --tiles or a larger image/region.")
    tiles = (pixels[:rows * size, :columns * size]
             .reshape(rows, size, columns, size, pixels.shape[2]).swapaxes(1, 2)
             .reshape(rows * columns, size, size, pixels.shape[2]))
    boxes = [{"index": r * columns + c, "row": r, "column": c, "x": c * size, "y": r * size, "w": size, "h": size}
             for r in range(rows) for c in range(columns)]
    return np.ascontiguousarray(tiles), boxes


def run_tiled(args, run_screen) -> int:
    """Tile ``--image``, screen the tiles with ``run_screen(args)`` and write the flip map."""
    from advexplorer.io.atomic import atomic_write_bytes, atomic_write_text

    if args.images:
        raise UserError("Give either --images (a cohort) or --image with --tiles (one large image), not both.")
    if not args.tiles or args.tiles < 1:
        raise UserError("--image screens one large image tile by tile: give --tiles N (the tile side in "
                        "pixels, e.g. the model's input size 224).")
    if getattr(args, "ranks", None):
        raise UserError("--ranks is not available for a tiled screen of one image; leave it out.")
    out = Path(args.out).expanduser()
    if out.exists() and any(out.iterdir()) and not (args.resume and (out / "tiles.json").is_file()):
        raise UserError(f"Output folder {out} is not empty; choose a new or empty folder "
                        "(or --resume an earlier tiled screen).")
    pixels, source = source_pixels(args)
    tiles, boxes = cut_tiles(pixels, int(args.tiles))
    layout = {"source": source, "tile": int(args.tiles), "rows": boxes[-1]["row"] + 1,
              "columns": boxes[-1]["column"] + 1, "image_size": [pixels.shape[1], pixels.shape[0]],
              "tiles": boxes}
    out.mkdir(parents=True, exist_ok=True)
    tile_file = out / "tiles.npz"
    if args.resume and (out / "tiles.json").is_file():
        earlier = json.loads((out / "tiles.json").read_text(encoding="utf-8"))
        if earlier.get("source", {}).get("sha256") != source["sha256"] or earlier.get("tiles") != boxes:
            raise UserError(f"{out} holds a tiled screen of another image or tiling; choose a new --out folder.")
    else:
        import io

        buffer = io.BytesIO()
        np.savez(buffer, test_images=np.round(tiles * 255).astype(np.uint8) if _is_8bit(pixels) else tiles)
        atomic_write_bytes(tile_file, buffer.getvalue())
        atomic_write_text(out / "tiles.json", json.dumps(layout, indent=1))
    args.images, args.image, args.out = str(tile_file), None, str(out / "screen")
    code = run_screen(args)
    flip_map = read_flip_map(out / "screen" / "per_image.csv", layout)
    buffer = __import__("io").BytesIO()
    np.save(buffer, flip_map)
    atomic_write_bytes(out / "flip_map.npy", buffer.getvalue(), overwrite=True)
    write_flip_map_png(out / "flip_map.png", pixels, flip_map, int(args.tiles))
    if not getattr(args, "quiet", False):
        flipped = int(np.isfinite(flip_map).sum())
        print(f"flip map {flipped} of {flip_map.size} tiles flipped → {out / 'flip_map.png'}")
    return code


def _is_8bit(pixels: np.ndarray) -> bool:
    return bool(np.array_equal(np.round(pixels * 255) / 255, pixels.astype(np.float64)))


def read_flip_map(per_image_csv: Path, layout: dict) -> np.ndarray:
    """rows × columns float: each tile's smallest flipping ε from the screen's CSV (NaN: not flipped)."""
    flip_map = np.full((layout["rows"], layout["columns"]), np.nan)
    with open(per_image_csv, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            index = int(str(row["file"]).rsplit("#", 1)[-1])
            box = layout["tiles"][index]
            value = (row.get("flip_eps") or "").strip()
            if value:
                flip_map[box["row"], box["column"]] = float(value)
    return flip_map


def write_flip_map_png(path: Path, pixels: np.ndarray, flip_map: np.ndarray, tile: int) -> Path:
    """The image (at most :data:`MAP_SIDE` pixels a side) with flipped tiles tinted red."""
    from advexplorer.io.images import save_png, to_uint8

    step = max(1, int(np.ceil(max(pixels.shape[:2]) / MAP_SIDE)))
    shown = pixels[::step, ::step]
    if shown.shape[2] == 1:
        shown = np.repeat(shown, 3, axis=2)
    shown = shown.astype(np.float32).copy()
    finite = flip_map[np.isfinite(flip_map)]
    largest = float(finite.max()) if finite.size else 1.0
    for (row, column), value in np.ndenumerate(flip_map):
        if not np.isfinite(value):
            continue
        strength = 0.35 + 0.5 * (1.0 - value / largest if largest > 0 else 1.0)
        top, left = (row * tile) // step, (column * tile) // step
        bottom, right = ((row + 1) * tile) // step, ((column + 1) * tile) // step
        block = shown[top:bottom, left:right]
        block[:] = (1 - strength) * block + strength * np.array([1.0, 0.0, 0.0], np.float32)
    return save_png(path, to_uint8(shown))
