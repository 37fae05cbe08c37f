from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from ctcid.errors import InputError
from ctcid.io.imread import MAX_SIDE, _fast_tiff, read_image, sniff_format, to_uint16


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_sniff_format_from_content():
    assert sniff_format(b"II*\x00rest") == "tiff"
    assert sniff_format(b"MM\x00*rest") == "tiff"
    assert sniff_format(b"\x89PNG\r\n\x1a\nxxxx") == "png"
    assert sniff_format(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff_format(b"hello world") is None


def test_png_named_jpg_is_read_as_png(tmp_path: Path):
    arr = np.arange(64, dtype=np.uint8).reshape(8, 8)
    p = tmp_path / "cell.jpg"
    p.write_bytes(_png_bytes(arr))
    im = read_image(p)
    assert im.format == "png" and im.axes == "YX"
    np.testing.assert_array_equal(im.data, arr)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "float64", "uint32"])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_fast_tiff_matches_tifffile(tmp_path: Path, dtype: str, byteorder: str):
    rng = np.random.default_rng(1)
    arr = (rng.random((13, 17)) * 200).astype(dtype)
    p = tmp_path / "a.tif"
    tifffile.imwrite(p, arr, byteorder=byteorder, photometric="minisblack", metadata=None, rowsperstrip=4)
    fast = _fast_tiff(p.read_bytes())
    assert fast is not None
    np.testing.assert_array_equal(fast, arr)
    np.testing.assert_array_equal(read_image(p).data, arr)


def test_compressed_and_multipage_tiff_fall_back_to_tifffile(tmp_path: Path):
    arr = np.arange(4 * 9 * 7, dtype=np.uint16).reshape(4, 9, 7)
    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, arr, compression="zlib", photometric="minisblack")
    assert _fast_tiff(p.read_bytes()) is None
    im = read_image(p)
    assert im.axes == "CYX"
    np.testing.assert_array_equal(im.data, arr)


def test_zero_byte_file(tmp_path: Path):
    p = tmp_path / "empty.tif"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="empty file") as info:
        read_image(p)
    assert info.value.path == str(p)


def test_text_file_with_image_extension(tmp_path: Path):
    p = tmp_path / "notes.png"
    p.write_text("this is not an image\n")
    with pytest.raises(InputError, match="unknown image format \\(text"):
        read_image(p)


@pytest.mark.parametrize("kind", ["tiff", "png", "jpeg"])
def test_truncated_files(tmp_path: Path, kind: str):
    arr = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    if kind == "tiff":
        tifffile.imwrite(buf, arr.astype(np.uint16), photometric="minisblack", metadata=None)
    else:
        Image.fromarray(arr).save(buf, format=kind.upper())
    data = buf.getvalue()
    p = tmp_path / f"cut.{kind}"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        read_image(p)


def test_decompression_bomb_refused_before_decoding(tmp_path: Path):
    # a valid PNG header claiming 100000 x 100000 pixels, with almost no data
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + chunk(b"IEND", b"")
    )
    p = tmp_path / "bomb.png"
    p.write_bytes(data)
    with pytest.raises(InputError, match=f"absurd dimensions 100000x100000.*limit {MAX_SIDE}"):
        read_image(p)


def test_unreadable_file(tmp_path: Path):
    import os

    p = tmp_path / "secret.tif"
    tifffile.imwrite(p, np.zeros((4, 4), np.uint16))
    p.chmod(0)
    if os.access(p, os.R_OK):  # running as root: permissions are not enforced
        pytest.skip("permissions are not enforced for this user")
    with pytest.raises(InputError, match="permission denied"):
        read_image(p)


def test_rgb_png_has_sample_axis(tmp_path: Path):
    arr = np.zeros((5, 6, 3), np.uint8)
    arr[..., 1] = 200
    p = tmp_path / "rgb.png"
    p.write_bytes(_png_bytes(arr))
    im = read_image(p)
    assert im.axes == "YXS" and im.data.shape == (5, 6, 3)
    assert im.data[..., 1].max() == 200 and im.data[..., 0].max() == 0


def test_to_uint16_depths():
    assert to_uint16(np.array([[0, 1, 255]], np.uint8))[0].tolist() == [[0, 257, 65535]]
    twelve = np.array([[0, 4095]], np.uint16)  # 12-bit data stored in 16 bits is kept as it is
    assert to_uint16(twelve)[0].tolist() == [[0, 4095]]
    assert to_uint16(np.array([[0.0, 0.25, 1.0]], np.float32))[0].tolist() == [[0, 16384, 65535]]
    assert to_uint16(np.array([[3.0, 1000.4]], np.float64)) == (pytest.approx(np.array([[3, 1000]])), False)
    out, rescaled = to_uint16(np.array([[-10.0, 0.0, 10.0]]))
    assert rescaled and out.tolist() == [[0, 32768, 65535]]
    out, rescaled = to_uint16(np.array([[0, 100000]], np.int32))
    assert rescaled and out.tolist() == [[0, 65535]]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_refused(bad: float):
    with pytest.raises(InputError, match="NaN or infinite"):
        to_uint16(np.array([[0.0, bad]], np.float32), "x.tif")
