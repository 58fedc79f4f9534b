"""Reading images for display and thumbnails without the engine (no torch).

The canvas shows the file at its own resolution, exactly the pixels the engine reads: both
go through :mod:`advexplorer.io.rasters` (one reader, one pixel limit, no EXIF rotation),
so a mask painted here lines up with the image the engine loads.
"""

from __future__ import annotations

from advexplorer.io.rasters import image_size, read_display_image, thumbnail

__all__ = ["image_size", "read_display_image", "thumbnail"]
