"""Decode one image file, with its format taken from the file's content.

Real exports contain PNGs named ``.jpg`` and TIFFs without an extension, so the decoder is
chosen from the first bytes of the file, never from its name. Dimensions are checked from
the header before any pixel is decoded, so a decompression bomb is refused without
allocating it. Every failure is an :class:`~ctcid.errors.InputError` naming the file.
"""

from __future__ import annotations

import os
import struct
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, arg

__all__ = ["MAX_PIXELS", "MAX_SIDE", "Image", "as_planes", "read_image", "sniff_format", "to_uint16"]

#: Largest accepted side, in pixels, of a single-cell image.
MAX_SIDE = 4096
#: Largest accepted pixel count of one plane (guards against decompression bombs).
MAX_PIXELS = 4096 * 4096
#: Most planes accepted in one file (channels or pages).
MAX_PLANES = 64

_SIGNATURES = (
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),
    (b"MM\x00+", "tiff"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"BM", "bmp"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)


@dataclass(frozen=True)
class Image:
    """A decoded image.

    Attributes
    ----------
    data
        The pixels, as stored in the file (not yet converted).
    axes
        ``"YX"`` for one plane, ``"YXS"`` for colour samples (RGB), ``"CYX"`` for a stack of planes.
    format
        The format found in the file's content (``"tiff"``, ``"png"``, ``"jpeg"``, ...).
    """

    data: np.ndarray
    axes: str
    format: str


def sniff_format(head: bytes) -> str | None:
    """Name the image format from the first bytes of a file, or ``None`` if unknown.

    Examples
    --------
    >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n....")
    'png'
    >>> sniff_format(b"hello") is None
    True
    """
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    return None


def _check_dims(path: str, height: int, width: int, planes: int = 1) -> None:
    if height < 1 or width < 1:
        raise InputError(f"absurd dimensions {height}x{width}: the image is empty", path)
    if height > MAX_SIDE or width > MAX_SIDE or height * width > MAX_PIXELS:
        raise InputError(
            f"absurd dimensions {height}x{width} for a single-cell image (limit {MAX_SIDE} px a side); "
            "refused before decoding",
            path,
        )
    if planes > MAX_PLANES:
        raise InputError(f"absurd number of planes ({planes}, limit {MAX_PLANES})", path)


_TIFF_DTYPES = {
    (1, 8): "u1",
    (1, 16): "u2",
    (1, 32): "u4",
    (2, 8): "i1",
    (2, 16): "i2",
    (2, 32): "i4",
    (3, 32): "f4",
    (3, 64): "f8",
}


def _fast_tiff(buf: bytes) -> np.ndarray | None:
    """Decode an uncompressed, single-page, single-sample, strip-contiguous baseline TIFF.

    This is the layout instruments write for one cell and one channel; anything else returns
    ``None`` and goes to :mod:`tifffile`.
    """
    if len(buf) < 8 or buf[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    end = "<" if buf[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(end + "I", buf, 4)
    if ifd + 2 > len(buf):
        return None
    (n,) = struct.unpack_from(end + "H", buf, ifd)
    if ifd + 2 + 12 * n + 4 > len(buf):
        return None
    tags: dict[int, tuple[int, int, int, int]] = {}
    for i in range(n):
        tag, typ, count, value = struct.unpack_from(end + "HHII", buf, ifd + 2 + 12 * i)
        tags[tag] = (typ, count, value, ifd + 2 + 12 * i + 8)
    (next_ifd,) = struct.unpack_from(end + "I", buf, ifd + 2 + 12 * n)
    if next_ifd != 0 or 322 in tags:  # more pages, or tiled
        return None

    def scalar(tag: int, default: int) -> int:
        if tag not in tags:
            return default
        typ, count, value, pos = tags[tag]
        if count != 1:
            return -1
        return struct.unpack_from(end + "H", buf, pos)[0] if typ == 3 else value

    def array(tag: int) -> list[int] | None:
        if tag not in tags:
            return None
        typ, count, value, pos = tags[tag]
        size = {3: 2, 4: 4}.get(typ)
        if size is None:
            return None
        start = pos if count * size <= 4 else value
        if start + count * size > len(buf):
            return None
        return list(struct.unpack_from(end + ("H" if size == 2 else "I") * count, buf, start))

    width, height = scalar(256, -1), scalar(257, -1)
    bits, fmt = scalar(258, 1), scalar(339, 1)
    if scalar(259, 1) != 1 or scalar(277, 1) != 1 or scalar(262, 1) not in (1, -1) or width < 1 or height < 1:
        return None
    dtype = _TIFF_DTYPES.get((fmt, bits))
    offsets, counts = array(273), array(279)
    if dtype is None or not offsets or not counts or len(offsets) != len(counts):
        return None
    if any(offsets[i] + counts[i] != offsets[i + 1] for i in range(len(offsets) - 1)):
        return None
    nbytes = width * height * np.dtype(dtype).itemsize
    if sum(counts) != nbytes or offsets[0] + nbytes > len(buf) or height * width > MAX_PIXELS:
        return None
    return np.frombuffer(buf, dtype=end + dtype, count=width * height, offset=offsets[0]).reshape(height, width)


def _read_tiff(path: str, buf: bytes) -> Image:
    fast = _fast_tiff(buf)
    if fast is not None:
        _check_dims(path, *fast.shape)
        return Image(fast, "YX", "tiff")
    import io

    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(buf)) as tif:
            series = tif.series[0]
            shape, axes = tuple(series.shape), series.axes
            ydim = axes.find("Y")
            xdim = axes.find("X")
            if ydim < 0 or xdim < 0:
                raise InputError(f"TIFF has no Y/X axes (axes {axes!r})", path)
            planes = int(np.prod([s for i, s in enumerate(shape) if i not in (ydim, xdim)], dtype=np.int64))
            _check_dims(path, shape[ydim], shape[xdim], planes)
            data = series.asarray()
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged files
        raise InputError(f"corrupt or truncated TIFF ({type(exc).__name__}: {exc})", path) from None
    data = np.squeeze(data)
    if data.ndim == 2:
        return Image(data, "YX", "tiff")
    if data.ndim != 3:
        raise InputError(f"expected a 2-D or 3-D image, found shape {data.shape}", path)
    kept = "".join(a for a, s in zip(axes, shape, strict=True) if s != 1) if len(axes) == len(shape) else ""
    if kept.endswith("S") or (kept == "" and data.shape[-1] in (3, 4) and data.shape[0] > 4):
        return Image(data, "YXS", "tiff")
    if kept[-2:] == "YX" or kept == "":
        return Image(data, "CYX", "tiff")
    return Image(np.moveaxis(data, [kept.index("Y"), kept.index("X")], [-2, -1]), "CYX", "tiff")


def _read_pillow(path: str, buf: bytes, fmt: str) -> Image:
    import io

    from PIL import Image as PILImage

    if fmt == "png" and len(buf) >= 24 and buf[12:16] == b"IHDR":
        width, height = struct.unpack(">II", buf[16:24])
        _check_dims(path, height, width)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(buf)) as im:
                width, height = im.size
                _check_dims(path, height, width, getattr(im, "n_frames", 1))
                if getattr(im, "n_frames", 1) > 1:
                    frames = []
                    for i in range(im.n_frames):
                        im.seek(i)
                        frames.append(np.asarray(im.convert("L") if im.mode in ("P", "1") else im))
                    return Image(np.stack(frames), "CYX", fmt)
                if im.mode in ("P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV"):
                    im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
                if im.mode in ("LA",):
                    im = im.convert("L")
                data = np.asarray(im)
    except InputError:
        raise
    except PILImage.DecompressionBombError as exc:
        raise InputError(f"absurd dimensions, refused before decoding ({exc})", path) from None
    except Exception as exc:
        raise InputError(f"corrupt or truncated {fmt.upper()} ({type(exc).__name__}: {exc})", path) from None
    if data.ndim == 3:
        if data.shape[-1] == 4:  # drop alpha
            data = data[..., :3]
        return Image(data, "YXS", fmt)
    return Image(data, "YX", fmt)


def read_image(path: str | os.PathLike[str]) -> Image:
    """Read one image file, deciding its format from its content.

    Parameters
    ----------
    path
        The file. Its extension is ignored.

    Returns
    -------
    Image
        The decoded pixels with their axes.

    Raises
    ------
    InputError
        Empty, unreadable, of an unknown format, with absurd dimensions, corrupt or truncated.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            buf = fh.read()
    except IsADirectoryError:
        raise InputError("is a folder, expected an image file", path) from None
    except PermissionError:
        raise InputError("permission denied: the file cannot be read", path) from None
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror or exc})", path) from None
    if not buf:
        raise InputError("empty file (0 bytes)", path)
    fmt = sniff_format(buf[:16])
    if fmt is None:
        head = buf[:8]
        kind = "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "binary"
        raise InputError(
            f"unknown image format ({kind} content starting {head!r}); expected TIFF, PNG or JPEG", path
        )
    if fmt == "tiff":
        return _read_tiff(path, buf)
    return _read_pillow(path, buf, fmt)


def as_planes(image: Image, path: str, channel_axis: str = "auto") -> np.ndarray:
    """Return the planes of a decoded image as ``[C, H, W]`` (colour samples become planes)."""
    data = image.data
    if data.ndim == 2:
        return data[None]
    if image.axes == "YXS" or channel_axis == "last":
        return np.moveaxis(data, -1, 0)
    if channel_axis == "first":
        return data
    first, last = data.shape[0], data.shape[-1]
    if last <= 16 < first:
        return np.moveaxis(data, -1, 0)
    if first > 16 and last > 16:
        raise InputError(
            f"cannot tell the channel axis of shape {data.shape}; pass {arg('channel_axis', ...)}", path
        )
    return data


def to_uint16(data: np.ndarray, path: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, bool]:
    """Convert pixels of any depth to uint16, keeping the full dynamic range.

    8-bit values are multiplied by 257 (so 255 becomes 65535), 16-bit (and 12-bit stored in
    16 bits) are kept as they are, floats in [0, 1] are scaled by 65535, other non-negative
    values up to 65535 are rounded, and anything else is rescaled from its own min-max.

    Returns
    -------
    pixels, rescaled
        The uint16 array, and whether a min-max rescale was needed (recorded as a QC flag).

    Examples
    --------
    >>> to_uint16(np.array([[0, 255]], dtype=np.uint8))[0].tolist()
    [[0, 65535]]
    >>> to_uint16(np.array([[0.0, 0.5, 1.0]]))[0].tolist()
    [[0, 32768, 65535]]
    """
    if data.dtype == np.uint16:
        return data.astype(np.uint16, copy=False), False
    if data.dtype == np.uint8:
        return data.astype(np.uint16) * np.uint16(257), False
    if data.dtype == np.bool_:
        return data.astype(np.uint16) * np.uint16(65535), False
    if data.dtype.kind not in "iuf":
        raise InputError(f"unsupported pixel type {data.dtype}", path)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise InputError("NaN or infinite pixel values", path)
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if data.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        return np.rint(data * 65535.0).astype(np.uint16), False
    if lo >= 0 and hi <= 65535:
        return np.rint(data).astype(np.uint16) if data.dtype.kind == "f" else data.astype(np.uint16), False
    scaled = (data.astype(np.float64) - lo) * (65535.0 / (hi - lo)) if hi > lo else np.zeros(data.shape)
    return np.rint(scaled).astype(np.uint16), True
