"""Reading image headers without decoding: sizes, completeness, decompression bombs.

A 40 kB JPEG can declare 65535x65535 pixels and make a decoder allocate
12 GiB. Reading the frame header first lets every service reject such an
image (and one whose declared size is a lie) before any pixel is decoded.

The reader runs on ingest's event loop, so what it costs must not depend on
what a client chooses to send: it steps over at most
:data:`MAX_HEADER_MARKERS` markers (a 4 MiB file of a million empty APP0
segments once held the loop for half a second), skips fill bytes and finds
the end of the image with C-speed searches, and never looks at scan data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Start-of-frame markers carry the image size. C4 (DHT), C8 (JPG) and CC (DAC)
# share the range but are not frame headers.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length field.
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
_SOS = 0xDA
_FILL = re.compile(rb"\xff+")

#: Most markers read before the first scan. Encoders write a few dozen at most
#: (APPn for JFIF, EXIF, XMP and ICC chunks, DQT, SOF, DHT, DRI, COM); even a
#: multi-megabyte ICC profile or extended XMP block is well under a hundred
#: 64 KiB segments. A format bound rather than a deployment setting: raising
#: it would only let one frame cost the event loop more.
MAX_HEADER_MARKERS = 1024


class ImageFormatError(ValueError):
    """The bytes are not an image this module can read."""


@dataclass(frozen=True)
class ImageHeader:
    """What a JPEG's header says about the image."""

    width: int
    height: int
    channels: int
    # True when an end-of-image marker follows the first scan: the entropy
    # coded data was not cut short. A truncated JPEG still decodes (grey at
    # the bottom), so decoders alone cannot be trusted to notice.
    complete: bool

    @property
    def pixels(self) -> int:
        """Width times height."""
        return self.width * self.height


def read_jpeg_header(data: bytes, *, max_markers: int = MAX_HEADER_MARKERS) -> ImageHeader:
    """Reads a JPEG's size from its start-of-frame segment.

    Raises :class:`ImageFormatError` with a reason a person can act on when the
    bytes are empty, not a JPEG, cut short before the frame header, or carry
    more than ``max_markers`` markers before their first scan. The work done
    is bounded by ``max_markers`` steps plus C-speed scans of the bytes.
    """
    if not data:
        raise ImageFormatError("the image is empty")
    if not data.startswith(_SOI):
        raise ImageFormatError("not a JPEG: the data does not start with the JPEG SOI marker")
    size = len(data)
    position = 2
    header: tuple[int, int, int] | None = None
    markers = 0
    while position < size:
        if data[position] != 0xFF:
            raise ImageFormatError(f"corrupt JPEG: expected a marker at byte {position}")
        markers += 1
        if markers > max_markers:
            raise ImageFormatError(
                f"unsupported JPEG: more than {max_markers} markers before the first scan "
                "(encoders write a few dozen); the file is refused unread"
            )
        # Any number of 0xFF fill bytes may precede a marker code (encoders rarely write any).
        if position + 1 < size and data[position + 1] != 0xFF:
            position += 1
        else:
            fill = _FILL.match(data, position)
            assert fill is not None  # data[position] is 0xFF
            position = fill.end()
        if position >= size:
            break
        marker = data[position]
        position += 1
        if marker in _STANDALONE_MARKERS:
            continue
        if marker == _EOI[1]:
            raise ImageFormatError("corrupt JPEG: end of image before any scan")
        if position + 2 > size:
            break
        length = data[position] << 8 | data[position + 1]
        if length < 2:
            raise ImageFormatError(f"corrupt JPEG: segment length {length} at byte {position}")
        if marker in _SOF_MARKERS and header is None:
            if position + 8 > size:
                break
            height = data[position + 3] << 8 | data[position + 4]
            width = data[position + 5] << 8 | data[position + 6]
            channels = data[position + 7]
            if width == 0 or height == 0:
                raise ImageFormatError(
                    f"unsupported JPEG: frame header declares {width}x{height} pixels"
                )
            header = (width, height, channels)
        if marker == _SOS:
            if header is None:
                raise ImageFormatError("corrupt JPEG: scan data before any frame header")
            # Searching from the end finds the EOI of a whole image at once; only
            # truncated data is scanned in full.
            complete = data.rfind(_EOI, position + length) != -1
            return ImageHeader(*header, complete=complete)
        position += length
    raise ImageFormatError("truncated JPEG: the data ends inside the header")
