"""engine.images: decoding untrusted files, conversions, resizing, PNG round trips."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import ImageError, ParamError
from engine.images import (
    MAX_PIXELS,
    as_rgb_uint8,
    decode_image,
    encode_png,
    load_image,
    resize_image,
)
from tests.conftest import png_header_only

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(12, 17, 3), dtype=np.uint8)


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


# --------------------------------------------------------------------------- bad inputs


def test_empty_input():
    with pytest.raises(ImageError, match="the file is empty"):
        decode_image(b"")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="the file is empty"):
        decode_image(path)


def test_random_bytes_are_not_an_image():
    with pytest.raises(ImageError, match=r"this file is not an image \(or it is damaged\)"):
        decode_image(RNG.integers(0, 256, 2000, dtype=np.uint8).tobytes())


def test_text_is_not_an_image():
    with pytest.raises(ImageError, match="not an image"):
        decode_image(b"hello, world\n" * 10)


def test_truncated_jpeg():
    noisy = Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = _save(noisy, "JPEG", quality=90)
    with pytest.raises(ImageError, match="the image file is truncated or damaged"):
        decode_image(data[: len(data) // 2])


def test_gif_is_unsupported():
    data = _save(Image.fromarray(RGB).convert("P"), "GIF")
    with pytest.raises(
        ImageError, match="unsupported image format GIF; use PNG, JPEG, WebP, BMP or TIFF"
    ):
        decode_image(data)


def test_decompression_bomb_header_is_refused_without_decoding():
    data = png_header_only(30000, 30000)
    assert len(data) < 100
    with pytest.raises(
        ImageError,
        match="image is 30000×30000 pixels \\(900 megapixels\\); the limit is 40 megapixels",
    ):
        decode_image(data)


def test_size_limit_below_pillows_own():
    # 48 MP: under Pillow's bomb threshold, over ours; refused from the header.
    with pytest.raises(ImageError, match="image is 8000×6000 pixels \\(48 megapixels\\)"):
        decode_image(png_header_only(8000, 6000))


def test_custom_pixel_limit():
    data = _save(Image.fromarray(RGB), "PNG")
    with pytest.raises(
        ImageError, match=r"image is 17×12 pixels .* the limit is 0\.0001 megapixels"
    ):
        decode_image(data, max_pixels=100)
    assert decode_image(data, max_pixels=17 * 12).shape == (12, 17, 3)


def test_byte_ceiling_bytes_path_and_file(tmp_path):
    data = _save(Image.fromarray(RGB), "PNG")
    limit = len(data) - 1
    path = tmp_path / "a.png"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="the limit is"):
        decode_image(data, max_bytes=limit)
    with pytest.raises(ImageError, match="the limit is"):
        decode_image(path, max_bytes=limit)
    with pytest.raises(ImageError, match="larger than the limit"):
        decode_image(io.BytesIO(data), max_bytes=limit)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        decode_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder"):
        decode_image(tmp_path)


def test_bad_source_types(tmp_path):
    with pytest.raises(ImageError, match="cannot read an image from a int"):
        decode_image(42)  # type: ignore[arg-type]
    path = tmp_path / "a.png"
    path.write_bytes(_save(Image.fromarray(RGB), "PNG"))
    with open(path, encoding="latin-1") as text, pytest.raises(ImageError, match="binary mode"):
        decode_image(text)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- good inputs


@pytest.mark.parametrize(
    ("fmt", "kw"),
    [("PNG", {}), ("WEBP", {"lossless": True}), ("BMP", {}), ("TIFF", {})],
)
def test_lossless_formats_from_bytes_path_and_file(tmp_path, fmt, kw):
    data = _save(Image.fromarray(RGB), fmt, **kw)
    path = tmp_path / f"img.{fmt.lower()}"
    path.write_bytes(data)
    for source in (data, bytearray(data), path, str(path), io.BytesIO(data)):
        out = decode_image(source)
        assert out.dtype == np.uint8 and out.shape == (12, 17, 3)
        np.testing.assert_array_equal(out, RGB)
        assert out.flags.c_contiguous


def test_format_is_decided_by_content_not_name(tmp_path):
    path = tmp_path / "actually_png.jpg"
    path.write_bytes(_save(Image.fromarray(RGB), "PNG"))
    np.testing.assert_array_equal(decode_image(path), RGB)


def test_jpeg():
    flat = np.full((16, 16, 3), (200, 40, 90), np.uint8)
    out = decode_image(_save(Image.fromarray(flat), "JPEG", quality=95))
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - flat).max() <= 4


def test_grey():
    grey = RNG.integers(0, 256, (9, 7), dtype=np.uint8)
    out = decode_image(_save(Image.fromarray(grey, "L"), "PNG"))
    np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))


def test_one_bit():
    bits = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1")
    np.testing.assert_array_equal(decode_image(_save(bits, "PNG"))[0, :, 0], [0, 255])


def test_la_is_composited_over_black():
    la = np.array([[[200, 255], [200, 128], [200, 0]]], np.uint8)
    out = decode_image(_save(Image.fromarray(la, "LA"), "PNG"))
    # round(200 * a / 255): 200, 100.39 -> 100, 0
    np.testing.assert_array_equal(out[0, :, 0], [200, 100, 0])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_rgba_is_composited_over_black():
    rgba = np.array([[[10, 20, 255, 255], [255, 255, 255, 51], [90, 90, 90, 0]]], np.uint8)
    out = decode_image(_save(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(out[0], [[10, 20, 255], [51, 51, 51], [0, 0, 0]])


def test_palette_with_and_without_transparency():
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putdata([0, 1])
    np.testing.assert_array_equal(decode_image(_save(pal, "PNG"))[0], [[255, 0, 0], [0, 255, 0]])
    out = decode_image(_save(pal, "PNG", transparency=1))
    np.testing.assert_array_equal(out[0], [[255, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_maps_full_range(fmt):
    values = np.array([[0, 128, 129, 257, 32896, 65535]], np.uint16)
    im = Image.fromarray(values)
    assert im.mode.startswith("I;16")
    out = decode_image(_save(im, fmt))
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 1, 128, 255])
    np.testing.assert_array_equal(out[..., 0], out[..., 1])


def test_sixteen_bit_big_endian_tiff():
    values = np.array([[0, 257, 65535]], np.uint16)
    im = Image.frombytes("I;16B", (3, 1), values.astype(">u2").tobytes())
    np.testing.assert_array_equal(decode_image(_save(im, "TIFF"))[0, :, 0], [0, 1, 255])


def test_int32_and_float_tiff():
    ints = Image.fromarray(np.array([[-5, 257, 70000]], np.int32), "I")
    np.testing.assert_array_equal(decode_image(_save(ints, "TIFF"))[0, :, 0], [0, 1, 255])
    floats = Image.fromarray(np.array([[0.4, 254.6, 300.0, -3.0]], np.float32), "F")
    np.testing.assert_array_equal(decode_image(_save(floats, "TIFF"))[0, :, 0], [0, 255, 255, 0])


def test_cmyk_jpeg():
    red = Image.new("RGB", (8, 8), (255, 0, 0)).convert("CMYK")
    data = _save(red, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data)
    assert out.shape == (8, 8, 3)
    assert out[..., 0].min() > 230 and out[..., 1:].max() < 25


def test_exif_orientation_is_applied():
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high
    stored[:10] = (255, 0, 0)  # top half red
    stored[10:] = (0, 0, 255)  # bottom half blue
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    out = decode_image(_save(im, "JPEG", quality=95, exif=exif))
    assert out.shape == (40, 20, 3)
    assert out[:, -4:, 0].mean() > 200 and out[:, -4:, 2].mean() < 50  # top -> right
    assert out[:, :4, 2].mean() > 200 and out[:, :4, 0].mean() < 50


def test_multi_frame_tiff_gives_first_frame():
    first = Image.fromarray(np.full((4, 4, 3), 10, np.uint8))
    second = Image.fromarray(np.full((4, 4, 3), 250, np.uint8))
    data = _save(first, "TIFF", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    np.testing.assert_array_equal(decode_image(data), np.full((4, 4, 3), 10))


def test_load_image_resizes():
    data = _save(Image.fromarray(RGB), "PNG")
    assert load_image(data).shape == (12, 17, 3)
    assert load_image(data, 8).shape == (8, 8, 3)
    assert load_image(io.BytesIO(data), (5, 30)).shape == (5, 30, 3)


def test_default_limits_are_sane():
    assert MAX_PIXELS == 40_000_000


# --------------------------------------------------------------------------- arrays


def test_as_rgb_uint8_conversions():
    assert as_rgb_uint8(RGB) is RGB  # already right: returned as is
    grey = np.array([[0, 7]], np.uint8)
    np.testing.assert_array_equal(as_rgb_uint8(grey)[0, 1], [7, 7, 7])
    np.testing.assert_array_equal(as_rgb_uint8(grey[:, :, None])[0, 1], [7, 7, 7])
    f = np.array([[[-1.0, 127.5, 300.0]]])
    np.testing.assert_array_equal(as_rgb_uint8(f)[0, 0], [0, 128, 255])
    u16 = np.array([[0, 128, 129, 65535]], np.uint16)
    np.testing.assert_array_equal(as_rgb_uint8(u16)[0, :, 0], [0, 0, 1, 255])
    rgba = np.array([[[100, 200, 50, 51]]], np.uint8)
    np.testing.assert_array_equal(as_rgb_uint8(rgba)[0, 0], [20, 40, 10])
    np.testing.assert_array_equal(as_rgb_uint8(np.array([[True, False]]))[0, :, 0], [255, 0])
    np.testing.assert_array_equal(as_rgb_uint8(np.array([[3, 250]], np.int64))[0, :, 0], [3, 250])


def test_as_rgb_uint8_does_not_modify_input():
    f = np.array([[[1.4, 2.6, 3.0, 255.0]]], np.float32)
    before = f.copy()
    as_rgb_uint8(f)
    np.testing.assert_array_equal(f, before)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([[np.nan, 1.0]]), "NaN or infinite"),
        (np.array([[np.inf, 1.0]]), "NaN or infinite"),
        (np.zeros((2, 2, 2, 3), np.uint8), "expected an image of shape"),
        (np.zeros((2, 2, 5), np.uint8), "expected an image of shape"),
        (np.zeros(5, np.uint8), "expected an image of shape"),
        (np.zeros((0, 4, 3), np.uint8), "the image is empty"),
        (np.array([[-1, 300]], np.int32), "must be in 0-255"),
        (np.array([["a"]]), "dtype"),
        ([[1, 2]], "expected a numpy array"),
    ],
)
def test_as_rgb_uint8_rejects(array, message):
    with pytest.raises(ImageError, match=message):
        as_rgb_uint8(array)


# --------------------------------------------------------------------------- resize, encode


@pytest.mark.parametrize("shape", [(30, 40), (30, 40, 1), (30, 40, 3)])
@pytest.mark.parametrize(("size", "expected"), [(16, (16, 16)), ((10, 60), (10, 60))])
def test_resize_shapes(shape, size, expected):
    image = RNG.integers(0, 256, shape, dtype=np.uint8)
    before = image.copy()
    out = resize_image(image, size)
    assert out.shape == (*expected, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(image, before)


def test_resize_same_size_is_a_copy_and_grey_is_replicated():
    out = resize_image(RGB, (12, 17))
    np.testing.assert_array_equal(out, RGB)
    assert out is not RGB
    grey = np.full((4, 4), 77, np.uint8)
    np.testing.assert_array_equal(resize_image(grey, 8), np.full((8, 8, 3), 77))


def test_resize_area_average_when_shrinking():
    checker = np.indices((8, 8)).sum(axis=0) % 2 * 255
    out = resize_image(checker.astype(np.uint8), 4)
    assert np.all(np.abs(out.astype(int) - 128) <= 1)  # area mean, not sampling


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), "expected a uint8 image"),
        (np.zeros((4, 4, 4), np.uint8), "expected an image of shape"),
        (np.zeros((4,), np.uint8), "expected an image of shape"),
        ("not an array", "expected a numpy array"),
    ],
)
def test_resize_rejects_bad_images(image, message):
    with pytest.raises(ImageError, match=message):
        resize_image(image, 8)


@pytest.mark.parametrize("size", [0, -3, (4,), (4, 0), 2.5, "8", True, (4, 5.0)])
def test_resize_rejects_bad_sizes(size):
    with pytest.raises(ParamError, match="image size must be"):
        resize_image(RGB, size)


def test_encode_png_round_trips_exactly():
    data = encode_png(RGB)
    assert data.startswith(b"\x89PNG")
    np.testing.assert_array_equal(decode_image(data), RGB)
    grey = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(encode_png(grey)), as_rgb_uint8(grey))


def test_thumbnail_shape_and_checks_match_resize_image():
    from engine.images import thumbnail

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    small = thumbnail(img, (20, 30))
    assert small.shape == (20, 30, 3) and small.dtype == np.uint8
    # Display-only, but close to the model's resize: box filter vs INTER_AREA on a 2x shrink.
    ref = resize_image(img, (20, 30)).astype(int)
    assert np.abs(small.astype(int) - ref).max() <= 1
    grey = thumbnail(img[:, :, 0], 8)
    assert grey.shape == (8, 8, 3) and (grey[..., 0] == grey[..., 2]).all()
    assert thumbnail(img, (40, 60)) is not img and (thumbnail(img, (40, 60)) == img).all()
    with pytest.raises(ImageError, match="expected a uint8 image"):
        thumbnail(img.astype(np.float32), 8)


def test_decoding_and_thumbnails_do_not_load_opencv():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from engine.images import decode_image, encode_png, thumbnail\n"
        "img = decode_image(encode_png(np.zeros((9, 9, 3), np.uint8)))\n"
        "thumbnail(img, 4)\n"
        "assert 'cv2' not in sys.modules, 'cv2 was imported'\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr
