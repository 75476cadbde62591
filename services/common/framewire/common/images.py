"""Reading image headers without decoding: sizes, completeness, decompression bombs.

A 40 kB JPEG can declare 65535x65535 pixels and make a decoder allocate
12 GiB. Reading the frame header first lets every service reject such an
image (and one whose declared size is a lie) before any pixel is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

# Start-of-frame markers carry the image size. C4 (DHT), C8 (JPG) and CC (DAC)
# share the range but are not frame headers.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length field.
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
_SOS = 0xDA


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


def read_jpeg_header(data: bytes) -> ImageHeader:
    """Reads a JPEG's size from its start-of-frame segment.

    Raises :class:`ImageFormatError` with a reason a person can act on when the
    bytes are empty, not a JPEG, or cut short before the frame header.
    """
    if not data:
        raise ImageFormatError("the image is empty")
    if not data.startswith(_SOI):
        raise ImageFormatError("not a JPEG: the data does not start with the JPEG SOI marker")
    size = len(data)
    position = 2
    header: tuple[int, int, int] | None = None
    while position < size:
        if data[position] != 0xFF:
            raise ImageFormatError(f"corrupt JPEG: expected a marker at byte {position}")
        # Any number of 0xFF fill bytes may precede a marker code.
        while position < size and data[position] == 0xFF:
            position += 1
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
