"""A tiny text extractor for the PDFs Qt writes, so the tests need no poppler on CI.

Qt's PDF engine (QPdfWriter) writes each glyph as ``<hex glyph id> Tj`` in a Flate-
compressed content stream, with a ``/ToUnicode`` CMap per embedded font subset. This
decodes exactly that: enough to find words and numbers, not a general PDF parser.
Spacing is approximate, so tests compare text with all whitespace removed.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from pathlib import Path

_OBJECT = re.compile(rb"(\d+) 0 obj\s*(.*?)\s*endobj", re.S)


def _objects(data: bytes) -> dict[int, tuple[bytes, bytes | None]]:
    objects = {}
    for match in _OBJECT.finditer(data):
        body = match.group(2)
        stream = None
        if b"stream" in body:
            head, _, rest = body.partition(b"stream")
            raw = rest.lstrip(b"\r\n")
            raw = raw[: raw.rfind(b"endstream")]
            stream = zlib.decompress(raw) if b"/FlateDecode" in head else raw
            body = head
        objects[int(match.group(1))] = (body, stream)
    return objects


def _cmap(text: bytes) -> dict[int, str]:
    mapping: dict[int, str] = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", text, re.S):
        for code, uni in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            mapping[int(code, 16)] = bytes.fromhex(uni.decode()).decode("utf-16-be", "replace")
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", text, re.S):
        for low, high, start in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            first = int(start, 16)
            for offset, code in enumerate(range(int(low, 16), int(high, 16) + 1)):
                mapping[code] = chr(first + offset)
        for low, high, array in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*\[(.*?)\]", block, re.S):
            values = re.findall(rb"<([0-9A-Fa-f]+)>", array)
            for code, uni in zip(range(int(low, 16), int(high, 16) + 1), values):
                mapping[code] = bytes.fromhex(uni.decode()).decode("utf-16-be", "replace")
    return mapping


def _ref(body: bytes, key: bytes) -> int | None:
    match = re.search(rb"/" + key + rb"\s+(\d+) 0 R", body)
    return int(match.group(1)) if match else None


def pdf_text(path: str | Path) -> str:
    """The text of every page, in drawing order (one line per text line, roughly)."""
    objects = _objects(Path(path).read_bytes())
    pages = []
    for number, (body, _) in sorted(objects.items()):
        if not re.search(rb"/Type\s*/Page\b", body):
            continue
        resources = _ref(body, b"Resources")
        resource_body = objects[resources][0] if resources in objects else body
        fonts = {}
        font_dict = re.search(rb"/Font\s*<<(.*?)>>", resource_body, re.S)
        if font_dict:
            for name, ref in re.findall(rb"/(\w+)\s+(\d+) 0 R", font_dict.group(1)):
                font_body = objects.get(int(ref), (b"", None))[0]
                unicode_ref = _ref(font_body, b"ToUnicode")
                fonts[name] = _cmap(objects[unicode_ref][1] or b"") if unicode_ref in objects else {}
        content_refs = re.search(rb"/Contents\s+(\d+) 0 R", body)
        content = objects[int(content_refs.group(1))][1] if content_refs else b""
        out, font = [], {}
        for token in re.finditer(rb"/(\w+)\s+[\d.]+\s+Tf|<([0-9A-Fa-f]*)>\s*Tj|([-\d.]+)\s+([-\d.]+)\s+Td|ET",
                                 content or b""):
            if token.group(1):
                font = fonts.get(token.group(1), {})
            elif token.group(2) is not None:
                hex_codes = token.group(2).decode()
                width = 4 if len(hex_codes) % 4 == 0 else 2
                for i in range(0, len(hex_codes), width):
                    out.append(font.get(int(hex_codes[i:i + width], 16), ""))
            elif token.group(4) is not None:
                if abs(float(token.group(4))) > 1e-3:
                    out.append("\n")
                elif float(token.group(3)) > 40:
                    out.append(" ")
            else:
                out.append(" ")
        pages.append("".join(out))
    return "\n\f".join(pages)


def squeeze(text: str) -> str:
    """Text without whitespace, ligatures unfolded (the extractor's spacing is approximate)."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))
