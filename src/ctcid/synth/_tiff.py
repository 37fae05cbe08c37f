"""A minimal writer of baseline TIFF files for single-page uint16 grey images.

It writes what ``tifffile.imwrite(path, image, photometric="minisblack", metadata=None)`` writes (one
uncompressed strip, little-endian), without a Software tag, and with the pixel size as the resolution
(pixels per centimetre), so the bytes depend only on the pixels and the pixel size. Thousands of small
files are written an order of magnitude faster than through a general TIFF library.
"""

from __future__ import annotations

import os
import struct
from fractions import Fraction

import numpy as np

__all__ = ["tiff_header", "write_tiff"]

_SHORT, _LONG, _RATIONAL = 3, 4, 5


def tiff_header(height: int, width: int, pixel_size_um: float) -> bytes:
    """Header and image file directory of a ``height x width`` uint16 image; the pixels follow it."""
    n_tags = 12
    ifd_offset = 8
    ifd_size = 2 + 12 * n_tags + 4
    res_offset = ifd_offset + ifd_size
    data_offset = res_offset + 16
    per_cm = Fraction(1e4 / pixel_size_um).limit_denominator(1000)
    tags = [
        (256, _LONG, 1, width),  # ImageWidth
        (257, _LONG, 1, height),  # ImageLength
        (258, _SHORT, 1, 16),  # BitsPerSample
        (259, _SHORT, 1, 1),  # Compression: none
        (262, _SHORT, 1, 1),  # PhotometricInterpretation: min-is-black
        (273, _LONG, 1, data_offset),  # StripOffsets
        (277, _SHORT, 1, 1),  # SamplesPerPixel
        (278, _LONG, 1, height),  # RowsPerStrip
        (279, _LONG, 1, 2 * height * width),  # StripByteCounts
        (282, _RATIONAL, 1, res_offset),  # XResolution
        (283, _RATIONAL, 1, res_offset + 8),  # YResolution
        (296, _SHORT, 1, 3),  # ResolutionUnit: centimetre
    ]
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset))
    out += struct.pack("<H", n_tags)
    for code, kind, count, value in tags:
        if kind == _SHORT:
            out += struct.pack("<HHIHH", code, kind, count, value, 0)
        else:
            out += struct.pack("<HHII", code, kind, count, value)
    out += struct.pack("<I", 0)  # no next IFD
    out += struct.pack("<IIII", per_cm.numerator, per_cm.denominator, per_cm.numerator, per_cm.denominator)
    assert len(out) == data_offset
    return bytes(out)


def write_tiff(path: str | os.PathLike[str], image: np.ndarray, header: bytes) -> None:
    """Write one uint16 image (C-contiguous, 2-D) with a header from :func:`tiff_header`."""
    data = header + image.astype("<u2", copy=False).tobytes()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
