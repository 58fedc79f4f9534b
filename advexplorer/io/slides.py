"""Whole-slide images (SVS, NDPI, pyramidal TIFF): read by level and region, never whole.

A slide is opened with tiffslide (pure Python, on tifffile + zarr); pixels come from the
chosen pyramid level through zarr, which decodes only the tiles a region touches, so cutting
a 224-pixel tile from a 20,000 × 20,000 slide reads a few tiles, not the slide.

Coordinates
-----------
A :class:`Region` is ``x, y, w, h`` in the pixels **of its level** (level 0 is full
resolution). QuPath's annotations are in level-0 pixels; :meth:`Region.level0_box` and
:meth:`Region.downsample` convert between the two.

Provenance
----------
A region is reproducible from ``(slide path, level, x, y, w, h)`` plus the slide's SHA-256
(the file did not change) and the SHA-256 of the region's pixels (the reader still decodes
them the same way); both go into ``record.json`` and ``advexplorer reproduce`` checks them.

Plain images (PNG, JPEG, …) open as one-level slides (decoded whole), so a region of a large
image — the frame the user moves on the canvas, or ``--image BIG.png --region …`` — is cut,
recorded and reproduced the same way.

Torch-free: the GUI's slide view uses this module before the engine is loaded.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advexplorer.errors import UserError

#: Suffixes that are always whole-slide images (a .tif/.tiff is one when it has levels).
SLIDE_SUFFIXES = (".svs", ".ndpi", ".scn", ".bif", ".svslide", ".qptiff")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")


def is_slide_file(path: str | Path) -> bool:
    """Whether ``path`` should be opened as a slide: a slide format, or a TIFF with a pyramid."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SLIDE_SUFFIXES:
        return True
    if suffix not in TIFF_SUFFIXES or not path.is_file():
        return False
    try:
        import tifffile

        with tifffile.TiffFile(str(path)) as tiff:
            return len(tiff.series) > 0 and len(tiff.series[0].levels) > 1
    except Exception:  # not a TIFF tifffile reads: the ordinary image reader will say why
        return False


@dataclass(frozen=True)
class Region:
    """A rectangle of a slide at one pyramid level, with what makes it reproducible."""

    slide: str            # absolute path of the slide file
    level: int
    x: int                # left, in the level's pixels
    y: int                # top, in the level's pixels
    w: int
    h: int
    slide_sha256: str | None = None
    pixels_sha256: str | None = None
    downsample: float = 1.0           # level-0 pixels per level pixel
    mpp: float | None = None          # µm per pixel at this level, when the slide says it

    def level0_box(self) -> tuple[float, float, float, float]:
        """(x, y, w, h) of the region in level-0 (full-resolution) pixels."""
        d = self.downsample
        return self.x * d, self.y * d, self.w * d, self.h * d

    def to_json(self) -> dict[str, Any]:
        """The record's ``image.region`` entry."""
        return asdict(self)

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> "Region":
        """The region a record describes (unknown keys ignored)."""
        known = {k: entry[k] for k in cls.__dataclass_fields__ if k in entry}
        return cls(**known)

    def text(self) -> str:
        """``level L: X,Y W×H`` (what the CLI and the GUI show)."""
        where = f"level {self.level}: {self.x},{self.y} {self.w}×{self.h}"
        return where + (f" ({self.mpp:.3g} µm/px)" if self.mpp else "")


def parse_region(text: str) -> tuple[int, int, int, int]:
    """``X,Y,W,H`` (integers, W and H > 0) → a tuple; a one-line UserError otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or values[0] < 0 or values[1] < 0 or values[2] < 1 or values[3] < 1:
        raise UserError(f"--region {text}: give X,Y,W,H as four whole numbers (X, Y ≥ 0; W, H ≥ 1), "
                        "e.g. --region 1024,2048,224,224.")
    return values  # type: ignore[return-value]


class Slide:
    """An open slide: level sizes, downsamples, µm per pixel, and region reading.

    Use as a context manager or call :meth:`close`. Every problem opening it is a
    :class:`UserError` naming the file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise UserError(f"No slide file at {path}. Check the path.")
        self._flat: np.ndarray | None = None
        if self.path.suffix.lower() not in SLIDE_SUFFIXES + TIFF_SUFFIXES:
            self._open_flat()
            return
        try:
            import tiffslide
        except ImportError:
            raise UserError("Reading slides needs the 'slides' extra: pip install 'advexplorer[slides]'.") from None
        try:
            self._slide = tiffslide.TiffSlide(str(self.path))
            self._levels = self._slide.zarr_group
            self.level_dimensions: tuple[tuple[int, int], ...] = tuple(
                (int(w), int(h)) for w, h in self._slide.level_dimensions)
            self.level_downsamples: tuple[float, ...] = tuple(float(d) for d in self._slide.level_downsamples)
            properties = dict(self._slide.properties)
        except UserError:
            raise
        except Exception as error:
            raise UserError(f"{self.path.name} could not be opened as a slide (SVS, NDPI, pyramidal "
                            f"TIFF); it may be truncated or in a format tiffslide cannot read ({_reason(error)}).") from None
        self.mpp_x = _positive(properties.get("tiffslide.mpp-x"))
        self.mpp_y = _positive(properties.get("tiffslide.mpp-y"))
        self.vendor = properties.get("tiffslide.vendor")

    def _open_flat(self) -> None:
        """A plain image (PNG, JPEG, …) as a one-level slide, so a region of a large image is cut,
        recorded and re-read (``reproduce``) exactly like a slide's. Such files cannot be read in
        parts: the whole image is decoded (within the app's pixel limit)."""
        from advexplorer.io.rasters import read_raw

        raw, _ = read_raw(self.path)
        if raw.shape[2] in (2, 4):  # grey + alpha, RGBA: alpha is not part of the image
            raw = raw[:, :, :-1]
        self._flat = raw
        height, width = raw.shape[:2]
        self.level_dimensions = ((int(width), int(height)),)
        self.level_downsamples = (1.0,)
        self.mpp_x = self.mpp_y = self.vendor = None

    # -- context manager ------------------------------------------------------------
    def __enter__(self) -> "Slide":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the file."""
        try:
            if self._flat is None:
                self._slide.close()
        except Exception:  # closing twice, or a half-opened slide: nothing left to release
            pass

    # -- what the slide is -----------------------------------------------------------
    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @property
    def pyramidal(self) -> bool:
        """Whether the slide has reduced levels (an overview can be read without the full image)."""
        return self.level_count > 1

    def mpp(self, level: int = 0) -> float | None:
        """µm per pixel at ``level`` (the mean of x and y), or None when the slide does not say."""
        if self.mpp_x is None:
            return None
        base = (self.mpp_x + (self.mpp_y or self.mpp_x)) / 2
        return base * self.level_downsamples[level]

    def check_level(self, level: int) -> None:
        """Refuse a level the slide does not have, naming the levels it has."""
        if not 0 <= int(level) < self.level_count:
            sizes = ", ".join(f"{i}: {w}×{h}" for i, (w, h) in enumerate(self.level_dimensions))
            raise UserError(f"{self.path.name} has no level {level}; its levels are {sizes}"
                            + ("" if self.pyramidal else " (it is not pyramidal: use level 0)") + ".")

    def overview_level(self, max_side: int = 2048) -> int:
        """The finest level whose longer side is at most ``max_side`` (for an overview).

        A slide without such a level (not pyramidal, or its smallest level is large) is refused
        when its smallest level is above the image pixel limit: showing it would read gigapixels.
        """
        for level in range(self.level_count):
            if max(self.level_dimensions[level]) <= max_side:
                return level
        from advexplorer.io.rasters import check_pixel_count

        last = self.level_count - 1
        width, height = self.level_dimensions[last]
        try:
            check_pixel_count(self.path.name, width, height)
        except UserError:
            raise UserError(f"{self.path.name} is not pyramidal enough for an overview: its smallest "
                            f"level is {width}×{height}; save it as a pyramidal TIFF (QuPath, "
                            "'vips tiffsave --tile --pyramid') or cut a region with --region.") from None
        return last

    # -- reading -------------------------------------------------------------------
    def read_level_region(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """H×W×C (C = 1 or 3) pixels of a rectangle at ``level``, in the file's value type.

        Only the tiles the rectangle touches are decoded. A rectangle that is not wholly
        inside the level is refused (nothing is padded silently).
        """
        self.check_level(level)
        width, height = self.level_dimensions[level]
        if x < 0 or y < 0 or w < 1 or h < 1 or x + w > width or y + h > height:
            raise UserError(f"The region {x},{y},{w},{h} is outside {self.path.name} at level {level}, "
                            f"which is {width}×{height} pixels; choose X+W ≤ {width} and Y+H ≤ {height}.")
        from advexplorer.io.rasters import check_pixel_count

        check_pixel_count(f"The region of {self.path.name}", w, h)
        try:
            array = self._level_array(level)
            pixels = np.asarray(array[y:y + h, x:x + w])
        except UserError:
            raise
        except Exception as error:
            raise UserError(f"{self.path.name} could not be read at level {level}, region {x},{y},{w},{h}; "
                            f"the file may be truncated or corrupt ({_reason(error)}).") from None
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if pixels.shape[2] == 4:  # RGBA slides: alpha is not part of the tissue
            pixels = pixels[:, :, :3]
        elif pixels.shape[2] not in (1, 3):
            raise UserError(f"{self.path.name} has {pixels.shape[2]} channels per pixel; AdvExplorer reads "
                            "grey, RGB or RGBA slides (export a fluorescence slide's channels as RGB).")
        return np.ascontiguousarray(pixels)

    def _level_array(self, level: int):
        if self._flat is not None:
            return self._flat
        group = self._levels
        try:
            return group[str(level)]
        except (KeyError, TypeError):
            if level == 0 and hasattr(group, "shape"):
                return group
            raise

    def region(self, level: int, x: int, y: int, w: int, h: int, *, slide_sha256: str | None = None
               ) -> tuple["Region", np.ndarray]:
        """Read a region and describe it: (:class:`Region` with both hashes, H×W×C raw pixels).

        ``slide_sha256`` may be passed when already known (hashing a multi-GB slide takes seconds).
        """
        pixels = self.read_level_region(level, x, y, w, h)
        if slide_sha256 is None:
            from advexplorer.io.hashing import sha256_file

            slide_sha256 = sha256_file(self.path)
        region = Region(slide=str(self.path), level=int(level), x=int(x), y=int(y), w=int(w), h=int(h),
                        slide_sha256=slide_sha256, pixels_sha256=pixels_sha256(pixels),
                        downsample=self.level_downsamples[level], mpp=self.mpp(level))
        return region, pixels

    def thumbnail(self, max_side: int = 1024) -> tuple[int, np.ndarray]:
        """(level, H×W×C uint8 image) of the whole slide at the finest level that fits ``max_side``."""
        level = self.overview_level(max_side)
        width, height = self.level_dimensions[level]
        pixels = self.read_level_region(level, 0, 0, width, height)
        return level, _to_uint8(pixels)


def pixels_sha256(pixels: np.ndarray) -> str:
    """SHA-256 of a region's pixels together with their shape and value type."""
    pixels = np.ascontiguousarray(pixels)
    digest = hashlib.sha256(f"{pixels.shape}|{pixels.dtype.str}|".encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()


def read_region(path: str | Path, level: int, x: int, y: int, w: int, h: int, *,
                slide_sha256: str | None = None) -> tuple[Region, np.ndarray]:
    """Open ``path``, cut one region (see :meth:`Slide.region`) and close the slide."""
    with Slide(path) as slide:
        return slide.region(level, x, y, w, h, slide_sha256=slide_sha256)


def reread_region(region: Region) -> np.ndarray:
    """The pixels of a recorded region, refused (UserError) unless they hash as recorded."""
    _, pixels = read_region(region.slide, region.level, region.x, region.y, region.w, region.h,
                            slide_sha256=region.slide_sha256)
    actual = pixels_sha256(pixels)
    if region.pixels_sha256 and actual != region.pixels_sha256:
        raise UserError(f"The region {region.text()} of {Path(region.slide).name} now reads differently: "
                        f"the record says pixel SHA-256 {region.pixels_sha256}, the reader now gives "
                        f"{actual}; re-run the attack with this version of the slide reader.")
    return pixels


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    from advexplorer.io.rasters import to_unit_float

    return np.round(to_unit_float(pixels, []) * 255).astype(np.uint8)


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _reason(error: Exception) -> str:
    text = " ".join(str(error).split())
    return (text[:160] + "…") if len(text) > 160 else (text or type(error).__name__)


def load_slide_region(path: str | Path, box: tuple[int, int, int, int], card, level: int = 0, *,
                      slide_sha256: str | None = None):
    """A slide region as a :class:`~advexplorer.io.images.LoadedImage` for the model of ``card``.

    The region is the image: ``original`` is its pixels (the card's channels, [0, 1]),
    ``file_size`` its size, ``sha256`` the slide's, and ``provenance["region"]`` the
    :class:`Region` that ``advexplorer reproduce`` re-reads. Masks for it have the region's size.
    """
    from advexplorer.io.images import LoadedImage, image_to_model, to_channels
    from advexplorer.io.rasters import to_unit_float

    x, y, w, h = box
    region, pixels = read_region(path, level, x, y, w, h, slide_sha256=slide_sha256)
    notes = [f"region {region.text()} of {Path(region.slide).name}"]
    original = to_channels(to_unit_float(pixels, notes), card.channels)
    return LoadedImage(path=Path(region.slide), sha256=region.slide_sha256,
                       tensor=image_to_model(original, card), original=original,
                       file_size=(region.w, region.h), notes=notes,
                       provenance={"region": region.to_json()})


def save_region_png(region: Region, pixels: np.ndarray, folder: str | Path) -> Path:
    """Save a cut tile as a lossless PNG (8-bit slides: the same pixels) with its provenance beside
    it (``NAME.region.json``), so the app's image list can hold it like any image file.

    The name says where it came from: ``SLIDE_L1_x2048_y1024_224x224.png``. Written atomically;
    an existing file of that name is replaced (the same region gives the same pixels).
    """
    import json

    from PIL import Image

    from advexplorer.io.atomic import atomic_path, atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{Path(region.slide).stem}_L{region.level}_x{region.x}_y{region.y}_{region.w}x{region.h}"
    path = folder / f"{stem}.png"
    shown = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
    with atomic_path(path, overwrite=True) as temporary:
        Image.fromarray(np.ascontiguousarray(shown)).save(temporary, format="PNG")
    atomic_write_text(folder / f"{stem}.region.json", json.dumps(region.to_json(), indent=1), overwrite=True)
    return path


def region_file(tile_path: str | Path) -> Path:
    """Where :func:`save_region_png` put a tile's provenance: ``NAME.region.json`` beside ``NAME.png``."""
    tile_path = Path(tile_path)
    return tile_path.with_name(f"{tile_path.stem}.region.json")


def tile_region(tile_path: str | Path) -> dict | None:
    """The region JSON saved beside a tile cut in the slide view, or None (an ordinary image,
    or a file that is not a region description)."""
    import json

    path = region_file(tile_path)
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        Region.from_json(entry)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(entry, dict) or not entry.get("slide") or not entry.get("pixels_sha256"):
        return None
    return entry


def load_tile(tile_path: str | Path, region_entry: dict, card):
    """A tile PNG cut from a slide, loaded for ``card`` *as its slide region* (or a crop of
    an image file, ``region_entry["slide"]`` being that file: the crop is cut from it).

    When the PNG's pixels still hash as the region recorded beside it, the image is the region:
    ``path`` and ``sha256`` are the slide's and ``provenance["region"]`` is the region, exactly
    as ``--image SLIDE --region X,Y,W,H --level L`` gives — so the run's record names the slide
    and ``advexplorer reproduce`` re-reads it (the slide need not be present to run). A PNG
    edited since it was cut is loaded as the plain file it now is, with a note saying so.
    """
    from dataclasses import replace

    from advexplorer.io.images import load_image
    from advexplorer.io.rasters import read_raw

    tile_path = Path(tile_path)
    region = Region.from_json(region_entry)
    if not region.pixels_sha256 and Path(region.slide).resolve() == tile_path.resolve():
        # A crop of this very file (the model frame the user moved on the canvas): cut it now.
        image = load_slide_region(tile_path, (region.x, region.y, region.w, region.h), card, level=region.level)
        image.notes.append(f"the model's crop {region.w}×{region.h} at {region.x},{region.y}, chosen on the canvas")
        return image
    image = load_image(tile_path, card)
    raw, _ = read_raw(tile_path)
    if pixels_sha256(raw) != region.pixels_sha256:
        return replace(image, notes=[*image.notes, f"{tile_path.name} no longer holds the pixels of "
                                     f"{region_file(tile_path).name} (edited since it was cut?): "
                                     "recorded as the PNG, not as the slide region"])
    notes = [f"region {region.text()} of {Path(region.slide).name}", f"cut in the slide view as {tile_path.name}",
             *image.notes]
    return replace(image, path=Path(region.slide), sha256=region.slide_sha256, notes=notes,
                   provenance={**(image.provenance or {}), "region": region.to_json()})
