"""Check that a screenshot is a real picture of the window: a PNG of the expected size that
is not blank (one colour). Standard library only, so it runs beside any bundle.

    python3 packaging/check_screenshot.py shot.png [--width 1600 --height 1000]

Exit 0 and one line "ok: …" when it is; exit 1 and the reason otherwise.
"""

from __future__ import annotations

import argparse
import struct
import sys
import zlib
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_facts(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the decompressed pixel rows) of a PNG."""
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    position, width, height, pixels = len(PNG_SIGNATURE), 0, 0, bytearray()
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            pixels += body
        elif kind == b"IEND":
            break
        position += 12 + length
    raw = zlib.decompress(bytes(pixels))
    return width, height, len(set(raw))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=0, help="expected width (0: at least 640)")
    parser.add_argument("--height", type=int, default=0, help="expected height (0: at least 400)")
    args = parser.parse_args(argv)
    try:
        width, height, distinct = png_facts(args.png)
    except (OSError, ValueError, zlib.error, struct.error) as error:
        print(f"FAIL: {args.png} cannot be read as a PNG ({error})")
        return 1
    size_ok = (width == args.width if args.width else width >= 640) and \
              (height == args.height if args.height else height >= 400)
    if not size_ok:
        print(f"FAIL: {args.png} is {width}×{height}, not the window size asked for")
        return 1
    # A blank window (one colour) leaves a handful of distinct byte values after PNG's
    # row filters; the app with its image, plots and text leaves well over a hundred.
    if distinct < 64:
        print(f"FAIL: {args.png} looks blank ({distinct} distinct byte values)")
        return 1
    print(f"ok: {args.png} is a {width}×{height} PNG, {args.png.stat().st_size // 1024} KiB, "
          f"{distinct} distinct byte values (not blank)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
