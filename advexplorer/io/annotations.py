"""QuPath annotations (GeoJSON) as masks, and painted masks back to GeoJSON.

QuPath exports annotations as GeoJSON: a FeatureCollection (or one Feature, or a plain list
of Features) whose geometries are Polygons and MultiPolygons in **level-0 pixel**
coordinates, each with ``properties.classification.name`` ("Tumor", "Stroma", ...). The
user chooses which classes become the protect mask (pixels the attack must not change) and
which the diagnostic region (where the explanation should look).

Rasterising
-----------
A pixel belongs to a polygon when its **centre** is inside by the even-odd rule: holes
(the interior rings) are left out, as QuPath draws them. The fill is a scanline over pixel
centres (half-open edge rule, so a shared edge belongs to exactly one side), at the tile's
level and offset: a level-``L`` region at ``(x, y)`` with downsample ``d`` maps the level-0
point ``(X, Y)`` to the pixel ``((X − x·d)/d − ½, (Y − y·d)/d − ½)``. Separate polygons of
the chosen classes are united (overlapping annotations do not cancel).

Exporting
---------
:func:`mask_to_geojson` turns a painted mask into polygons with holes made of the painted
pixels' own squares (so rasterising the export gives back exactly the mask), in level-0
coordinates, as QuPath annotations of a chosen class.

ImageJ / Fiji ROIs
------------------
A ``.roi`` file or a ROI Manager ``.zip`` (read with Christoph Gohlke's ``roifile``) gives the
same annotations: polygon, freehand, traced and rectangle ROIs as their outlines, ovals as
their ellipse (a polygon of 720 vertices, so the pixel-centre rule decides as for the exact
ellipse), composite ROIs as all their rings (holes by the even-odd rule); lines and points
are skipped. The class of a ROI is its name ("Tumor"; "Tumor-1", "Tumor-2" — the ROI
Manager's names for repeats — are Tumors too when the set has a "Tumor"); an unnamed ROI, or
one with ImageJ's automatic position name ("0012-0034"), is in the class of its group
("group 2") when it has one, else "Unclassified". Coordinates are the image's pixels, as QuPath's level-0 ones.

Torch-free; shapely (the ``slides`` extra) reads and validates the geometry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from advexplorer.errors import UserError

#: The name a feature without a classification is listed under.
UNCLASSIFIED = "Unclassified"


@dataclass
class Annotation:
    """One annotated area: its class name and its polygons (each a list of rings, exterior first)."""

    name: str
    polygons: list[list[np.ndarray]]          # rings as N×2 float arrays of level-0 (x, y)
    properties: dict[str, Any] = field(default_factory=dict)

    def bounds(self) -> tuple[float, float, float, float]:
        """(min x, min y, max x, max y) in level-0 pixels."""
        points = np.concatenate([ring for polygon in self.polygons for ring in polygon])
        return (float(points[:, 0].min()), float(points[:, 1].min()),
                float(points[:, 0].max()), float(points[:, 1].max()))


def parse_classes(text: str | None) -> list[str]:
    """``A,B`` → ``["A", "B"]`` (blanks dropped); None or empty → []."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def read_annotations(path: str | Path) -> list[Annotation]:
    """Read a QuPath GeoJSON file's polygon annotations (points and lines are skipped), or
    an ImageJ ``.roi`` / ROI Manager ``.zip`` (see :func:`read_imagej_rois`).

    Raises UserError (one line naming the file) for a file that is not GeoJSON or holds no
    polygon.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No annotation file at {path}. Check the path.")
    if path.suffix.lower() in IMAGEJ_SUFFIXES:
        return read_imagej_rois(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path.name} is not GeoJSON (it is not JSON text: {error}); export the annotations "
                        "from QuPath with File → Export objects as GeoJSON.") from None
    features = _features(document, path)
    annotations = []
    for feature in features:
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict):
            continue
        polygons = _polygons(geometry, path)
        if polygons:
            properties = feature.get("properties") or {}
            annotations.append(Annotation(_class_name(properties), polygons, dict(properties)))
    if not annotations:
        raise UserError(f"{path.name} holds no Polygon or MultiPolygon annotation; draw areas (not points "
                        "or lines) in QuPath and export them as GeoJSON.")
    return annotations


#: ImageJ ROI files: one ROI, or a ROI Manager set.
IMAGEJ_SUFFIXES = (".roi", ".zip")
#: Vertices of the polygon an oval ROI becomes (the chord's gap to the ellipse stays below
#: 10⁻⁵ of its radius, so pixel centres fall on the same side as for the true ellipse).
OVAL_VERTICES = 720


def read_imagej_rois(path: str | Path) -> list[Annotation]:
    """The area ROIs of an ImageJ ``.roi`` file or ROI Manager ``.zip`` as annotations.

    Raises UserError (one line naming the file) for a file roifile cannot read or one that
    holds no area (only lines or points).
    """
    path = Path(path)
    try:
        import roifile
    except ImportError:
        raise UserError("Reading ImageJ ROIs needs the 'slides' extra: pip install 'advexplorer[slides]'.") from None
    try:
        rois = roifile.roiread(str(path))
    except Exception as error:
        raise UserError(f"{path.name} is not an ImageJ ROI file or ROI Manager zip ({_reason(error)}); save "
                        "the ROIs in Fiji with ROI Manager → More → Save….") from None
    rois = rois if isinstance(rois, list) else [rois]
    names = {(roi.name or "").strip() for roi in rois}
    annotations = []
    for roi in rois:
        rings = _roi_rings(roi)
        if rings:
            name = _roi_class(roi, names)
            annotations.append(Annotation(name, [rings], {"name": roi.name or "", "roi_type": int(roi.roitype),
                                                          "group": int(roi.group or 0)}))
    if not annotations:
        raise UserError(f"{path.name} holds no area ROI (rectangle, oval, polygon, freehand or composite); lines "
                        "and points cannot become masks.")
    return annotations


def _roi_rings(roi) -> list[np.ndarray]:
    """A ROI's rings as N×2 float (x, y) arrays in image pixels; [] for lines and points."""
    from roifile import ROI_TYPE

    kind = roi.roitype
    if roi.multi_coordinates is not None and len(roi.multi_coordinates):  # composite (shape) ROI
        return [np.asarray(ring, dtype=np.float64)[:, :2] for ring in roi.path2coords(roi.multi_coordinates)
                if len(ring) >= 3]
    if kind == ROI_TYPE.OVAL:
        if roi.subpixelrect and roi.widthd:
            left, top, width, height = float(roi.xd), float(roi.yd), float(roi.widthd), float(roi.heightd)
        else:
            left, top = float(roi.left), float(roi.top)
            width, height = float(roi.right - roi.left), float(roi.bottom - roi.top)
        angle = np.linspace(0.0, 2 * np.pi, OVAL_VERTICES, endpoint=False)
        return [np.column_stack((left + width / 2 * (1 + np.cos(angle)), top + height / 2 * (1 + np.sin(angle))))]
    if kind == ROI_TYPE.RECT:
        if roi.subpixelrect and roi.widthd:
            left, top, right, bottom = roi.xd, roi.yd, roi.xd + roi.widthd, roi.yd + roi.heightd
        else:
            left, top, right, bottom = roi.left, roi.top, roi.right, roi.bottom
        return [np.array([[left, top], [right, top], [right, bottom], [left, bottom]], dtype=np.float64)]
    if kind in (ROI_TYPE.POLYGON, ROI_TYPE.FREEHAND, ROI_TYPE.TRACED):
        ring = np.asarray(roi.coordinates(), dtype=np.float64)
        return [ring[:, :2]] if len(ring) >= 3 else []
    return []


def _roi_class(roi, names: set[str]) -> str:
    """The class of a ROI: its name without the ``-1``, ``-2`` … ImageJ's ROI Manager appends to
    repeated names ("Tumor-2" is a Tumor when the set also has a "Tumor"), else its group."""
    import re

    name = (roi.name or "").strip()
    if not name or re.fullmatch(r"\d+(-\d+)+", name):  # unnamed, or ImageJ's automatic position name
        return f"group {roi.group}" if roi.group else UNCLASSIFIED
    repeated = re.fullmatch(r"(.+)-\d+", name)
    return repeated.group(1) if repeated and repeated.group(1) in names else name


def _reason(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:160] + "…" if len(text) > 160 else text


def _features(document, path: Path) -> list:
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        kind = document.get("type")
        if kind == "FeatureCollection" and isinstance(document.get("features"), list):
            return document["features"]
        if kind == "Feature":
            return [document]
        if kind in ("Polygon", "MultiPolygon"):
            return [{"type": "Feature", "geometry": document, "properties": {}}]
    raise UserError(f"{path.name} is JSON but not GeoJSON (no FeatureCollection, Feature or Polygon); export "
                    "the annotations from QuPath with File → Export objects as GeoJSON.")


def _polygons(geometry: dict, path: Path) -> list[list[np.ndarray]]:
    kind, coordinates = geometry.get("type"), geometry.get("coordinates")
    if kind == "GeometryCollection":
        return [p for g in geometry.get("geometries") or [] if isinstance(g, dict) for p in _polygons(g, path)]
    if kind not in ("Polygon", "MultiPolygon"):
        return []
    try:
        from shapely.geometry import shape
    except ImportError:
        raise UserError("Reading annotations needs the 'slides' extra: pip install 'advexplorer[slides]'.") from None
    try:
        shaped = shape(geometry)
    except Exception as error:
        raise UserError(f"{path.name} has a {kind} whose coordinates are not a polygon ({error}).") from None
    parts = list(shaped.geoms) if kind == "MultiPolygon" else [shaped]
    polygons = []
    for part in parts:
        if part.is_empty:
            continue
        rings = [np.asarray(part.exterior.coords, dtype=np.float64)[:, :2]]
        rings += [np.asarray(hole.coords, dtype=np.float64)[:, :2] for hole in part.interiors]
        polygons.append(rings)
    return polygons


def _class_name(properties: dict) -> str:
    classification = properties.get("classification")
    if isinstance(classification, dict) and classification.get("name"):
        return str(classification["name"])
    if isinstance(classification, str) and classification:
        return classification
    return UNCLASSIFIED


def class_names(annotations: Iterable[Annotation]) -> list[str]:
    """The class names present, in first-seen order."""
    return list(dict.fromkeys(a.name for a in annotations))


def select(annotations: list[Annotation], classes: list[str], path: str | Path = "annotations") -> list[Annotation]:
    """The annotations of the chosen classes; an unknown class name is refused with the known ones."""
    present = class_names(annotations)
    unknown = [name for name in classes if name not in present]
    if unknown:
        raise UserError(f"{Path(path).name} has no annotation of class {', '.join(unknown)}; its classes are "
                        f"{', '.join(present)}.")
    return [a for a in annotations if a.name in classes]


# --------------------------------------------------------------------------------------
# Rasterising


def fill_rings(rings: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Even-odd scanline fill of rings given in pixel coordinates (pixel centres at integers).

    A pixel ``(row, col)`` is set when a ray from its centre to the left crosses the rings an
    odd number of times; an edge counts for the rows ``y0 ≤ row < y1`` (half-open), so shared
    edges and vertices are not counted twice.
    """
    height, width = shape
    toggles = np.zeros((height, width + 1), dtype=np.uint8)
    for ring in rings:
        x0, y0 = ring[:, 0], ring[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        for ax, ay, bx, by in zip(x0, y0, x1, y1):
            if ay == by:
                continue
            low, high = (ay, by) if ay < by else (by, ay)
            rows = np.arange(max(0, int(np.ceil(low))), min(height, int(np.ceil(high))))
            if rows.size == 0:
                continue
            crossing = ax + (rows - ay) * (bx - ax) / (by - ay)
            # Pixel centres strictly right of the crossing are toggled: the first is floor(x) + 1.
            first = np.clip(np.floor(crossing).astype(np.int64) + 1, 0, width)
            np.bitwise_xor.at(toggles, (rows, first), 1)
    inside = np.bitwise_xor.accumulate(toggles, axis=1)[:, :width]
    return inside.astype(bool)


def rasterise(annotations: Iterable[Annotation], shape: tuple[int, int], *,
              offset: tuple[float, float] = (0.0, 0.0), downsample: float = 1.0) -> np.ndarray:
    """An H×W bool mask of the annotations at a tile's level and offset.

    ``offset`` is the tile's top-left corner in level-0 pixels and ``downsample`` the level-0
    pixels per tile pixel (1 for an ordinary image).
    """
    mask = np.zeros(shape, dtype=bool)
    ox, oy = offset
    for annotation in annotations:
        for polygon in annotation.polygons:
            rings = [np.column_stack(((ring[:, 0] - ox) / downsample - 0.5,
                                      (ring[:, 1] - oy) / downsample - 0.5)) for ring in polygon]
            mask |= fill_rings(rings, shape)
    return mask


def tile_geometry(image) -> tuple[tuple[float, float], float]:
    """(level-0 offset, downsample) of a loaded image: a slide region's, or (0, 0) and 1."""
    region = (getattr(image, "provenance", None) or {}).get("region")
    if not region:
        return (0.0, 0.0), 1.0
    downsample = float(region.get("downsample") or 1.0)
    return (region["x"] * downsample, region["y"] * downsample), downsample


def masks_from_annotations(path: str | Path, shape: tuple[int, int], *, protect_classes: list[str],
                           diagnostic_classes: list[str], offset=(0.0, 0.0), downsample: float = 1.0
                           ) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
    """(protect mask, diagnostic mask, notes) for a tile from a GeoJSON file and chosen classes.

    A chosen class whose polygons all lie outside the tile is refused: an empty mask would
    silently protect nothing.
    """
    if not protect_classes and not diagnostic_classes:
        raise UserError("--annotations needs --protect-classes and/or --diagnostic-classes (class names "
                        "from the file, comma-separated).")
    annotations = read_annotations(path)
    notes = []
    masks = []
    for role, classes in (("protect", protect_classes), ("diagnostic", diagnostic_classes)):
        if not classes:
            masks.append(None)
            continue
        chosen = select(annotations, classes, path)
        mask = rasterise(chosen, shape, offset=offset, downsample=downsample)
        if not mask.any():
            raise UserError(f"The {', '.join(classes)} annotations in {Path(path).name} lie entirely outside "
                            f"the image (tile at level-0 {offset[0]:g},{offset[1]:g}, {shape[1]}×{shape[0]} "
                            f"pixels at downsample {downsample:g}); choose a region that contains them.")
        notes.append(f"{role} mask from {len(chosen)} {', '.join(classes)} annotation(s) in "
                     f"{Path(path).name}: {100 * mask.mean():.1f}% of pixels")
        masks.append(mask)
    return masks[0], masks[1], notes


# --------------------------------------------------------------------------------------
# Exporting


def mask_polygons(mask: np.ndarray, *, offset=(0.0, 0.0), downsample: float = 1.0):
    """The painted pixels of ``mask`` as a shapely (Multi)Polygon with holes, in level-0 pixels.

    Each painted run of a row is a rectangle of whole pixels; their union is the outline, so
    the polygons cover exactly the painted pixels' squares.
    """
    from shapely.affinity import affine_transform
    from shapely.geometry import box
    from shapely.ops import unary_union

    mask = np.asarray(mask, dtype=bool)
    boxes = []
    padded = np.pad(mask, ((0, 0), (1, 1))).astype(np.int8)
    for row in np.flatnonzero(mask.any(axis=1)):
        changes = np.flatnonzero(np.diff(padded[row]))
        for start, stop in zip(changes[::2], changes[1::2]):
            boxes.append(box(start, row, stop, row + 1))
    union = unary_union(boxes)
    ox, oy = offset
    return affine_transform(union, [downsample, 0, 0, downsample, ox, oy])


def mask_to_geojson(mask: np.ndarray, class_name: str = "Protect", *, offset=(0.0, 0.0),
                    downsample: float = 1.0, color: tuple[int, int, int] = (255, 0, 0)) -> dict:
    """A QuPath-readable FeatureCollection with the painted area as one annotation per polygon."""
    from shapely.geometry import mapping

    geometry = mask_polygons(mask, offset=offset, downsample=downsample)
    parts = [] if geometry.is_empty else (list(geometry.geoms) if hasattr(geometry, "geoms") else [geometry])
    features = [{"type": "Feature", "geometry": mapping(part),
                 "properties": {"objectType": "annotation",
                                "classification": {"name": class_name, "color": list(color)}}}
                for part in parts]
    return {"type": "FeatureCollection", "features": json.loads(json.dumps(features))}


def save_mask_geojson(path: str | Path, mask: np.ndarray, class_name: str = "Protect", *,
                      offset=(0.0, 0.0), downsample: float = 1.0, overwrite: bool = False) -> Path:
    """Write :func:`mask_to_geojson` to ``path`` atomically (refused if it exists, unless ``overwrite``)."""
    from advexplorer.io.atomic import atomic_write_text

    document = mask_to_geojson(mask, class_name, offset=offset, downsample=downsample)
    return atomic_write_text(path, json.dumps(document, indent=1), overwrite=overwrite)
