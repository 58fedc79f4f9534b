"""Options and loading shared by ``attack`` and ``screen`` for images that are not plain files:
a slide region (``--region X,Y,W,H [--level L]``), a DICOM window (``--dicom-window C,W``) and
QuPath annotations as masks (``--annotations F.geojson --protect-classes A,B
--diagnostic-classes C``). ``reproduce`` fills the same options from the record.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_source_arguments(parser: argparse.ArgumentParser, *, annotations: bool = True) -> None:
    """The slide / DICOM / annotation options (parsed lazily: --help loads nothing)."""
    group = parser.add_argument_group("slides, DICOM and annotations")
    group.add_argument("--region", metavar="X,Y,W,H",
                       help="cut this rectangle (pixels of --level) from a whole-slide image or TIFF "
                            "given as --image; the slide, level, rectangle and SHA-256 are recorded")
    group.add_argument("--level", type=int, default=0, metavar="L",
                       help="pyramid level of --region (0 = full resolution, the default)")
    group.add_argument("--dicom-window", metavar="C,W",
                       help="DICOM display window centre,width (default: the file's, else its range)")
    if annotations:
        group.add_argument("--annotations", metavar="F.geojson",
                           help="QuPath GeoJSON, or ImageJ .roi / ROI Manager .zip, annotations "
                                "(level-0 pixels) to use as masks")
        group.add_argument("--protect-classes", metavar="A,B",
                           help="annotation classes the attack must not change (the protect mask)")
        group.add_argument("--diagnostic-classes", metavar="C",
                           help="annotation classes that form the diagnostic region")


def load_source_image(args, image_path: Path, card):
    """The image named by ``--image`` with ``--region``/``--level``/``--dicom-window`` applied."""
    from advexplorer.errors import UserError
    from advexplorer.io.dicom import is_dicom_file, load_dicom_image, parse_window
    from advexplorer.io.images import load_image
    from advexplorer.io.slides import is_slide_file, load_slide_region, parse_region

    region_text = getattr(args, "region", None)
    window_text = getattr(args, "dicom_window", None)
    if region_text:
        image = load_slide_region(image_path, parse_region(region_text), card,
                                  level=int(getattr(args, "level", 0) or 0))
        expected = getattr(args, "region_pixels_sha256", None)
        actual = image.provenance["region"]["pixels_sha256"]
        if expected and actual != expected:
            raise UserError(f"Cannot reproduce: the region {region_text} at level {args.level} of "
                            f"{image_path.name} now reads differently (pixel SHA-256 {actual}, the record "
                            f"says {expected}); re-run the attack with this version of the slide reader.")
        return image
    if int(getattr(args, "level", 0) or 0) != 0:
        raise UserError("--level needs --region X,Y,W,H (the rectangle to cut at that level).")
    if is_dicom_file(image_path):
        return load_dicom_image(image_path, card, parse_window(window_text) if window_text else None)
    if window_text:
        raise UserError(f"--dicom-window applies to DICOM files; {image_path.name} is not one.")
    if is_slide_file(image_path):
        from advexplorer.io.slides import Slide

        with Slide(image_path) as slide:
            width, height = slide.level_dimensions[0]
        raise UserError(f"{image_path.name} is a whole-slide image ({width}×{height}); cut a model-sized "
                        "tile with --region X,Y,W,H [--level L] (or open it in the GUI's slide view).")
    return load_image(image_path, card)


def annotation_masks(args, image, card):
    """(allowed mask, diagnostic mask, record entry) from ``--annotations``, or (None, None, None).

    Masks are at the model's input size, like :func:`advexplorer.io.images.load_mask` gives them.
    """
    path = getattr(args, "annotations", None)
    if not path:
        if getattr(args, "protect_classes", None) or getattr(args, "diagnostic_classes", None):
            from advexplorer.errors import UserError

            raise UserError("--protect-classes/--diagnostic-classes need --annotations F.geojson.")
        return None, None, None
    from advexplorer.io.annotations import masks_from_annotations, parse_classes, tile_geometry
    from advexplorer.io.hashing import sha256_file

    path = Path(path)
    protect_classes, diagnostic_classes = parse_classes(args.protect_classes), parse_classes(args.diagnostic_classes)
    offset, downsample = tile_geometry(image)
    width, height = image.file_size
    protect, diagnostic, notes = masks_from_annotations(
        path, (height, width), protect_classes=protect_classes, diagnostic_classes=diagnostic_classes,
        offset=offset, downsample=downsample)
    image.notes.extend(notes)
    allowed = None if protect is None else mask_tensor(~protect, path.name, card, role="protect")
    diagnostic_tensor = None if diagnostic is None else mask_tensor(diagnostic, path.name, card, role="diagnostic")
    entry = {"path": str(path.resolve()), "sha256": sha256_file(path),
             "protect_classes": protect_classes, "diagnostic_classes": diagnostic_classes}
    return allowed, diagnostic_tensor, entry


def mask_tensor(mask, name: str, card, *, role: str):
    """An H×W bool mask at the image's size → the model's input size, refusing a region that
    vanishes in the resize (the same rule as mask files)."""
    from advexplorer.errors import UserError
    from advexplorer.io.images import mask_to_model, vanished_region

    tensor = mask_to_model(mask, card)
    if mask.any() and not bool(tensor.any()):
        raise UserError(vanished_region(name, card, role=role))
    if role == "protect" and not bool(tensor.any()):
        raise UserError(f"The protect annotations of {name} cover the whole image, so nothing is left for "
                        "the attack to change; choose a region with unprotected tissue.")
    return tensor
