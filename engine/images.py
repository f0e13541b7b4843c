"""Turn untrusted image files into the engine's pixel convention, and back.

Everything here returns ``(H, W, 3)`` **RGB uint8** arrays (see :mod:`engine`)
and raises :class:`~engine.errors.ImageError`, with a message a non-expert can
act on, for anything it cannot turn into one. Nothing is written to disk.

Conversion rules (the same for files and for numpy arrays)
----------------------------------------------------------
* **Grey** (Pillow ``1``, ``L``; arrays ``(H, W)`` or ``(H, W, 1)``): the grey
  value is copied into R, G and B.
* **Alpha** (``LA``, ``RGBA``, ``PA``, palette images with a transparent
  colour; arrays with 2 or 4 channels): composited over **black**, i.e. each
  colour value becomes ``round(value * alpha / 255)``. Fully transparent pixels
  become black, opaque pixels are unchanged. (Black, because the medical images
  this project shows have black backgrounds.)
* **Palette** (``P``): expanded to its colours (then the alpha rule if it has a
  transparent colour).
* **CMYK**, **YCbCr**, **LAB**, **HSV**: Pillow's own conversion to RGB. Embedded
  ICC colour profiles are ignored (no colour management).
* **16-bit** (``I;16``, ``I;16B``, ``I;16L``; ``uint16`` arrays): the full
  0-65535 range is mapped to 0-255 by ``round(value / 257)``, so 0 -> 0,
  257 -> 1, 65535 -> 255. Pillow's 32-bit integer mode ``I`` is treated the
  same way after clipping to 0-65535. (16-bit *colour* PNGs are reduced to
  8 bits by Pillow itself when it opens them.)
* **32-bit float** (``F``; float arrays): values are taken to be on the
  0-255 scale (the project's convention, never guessed), clipped to 0-255 and
  rounded. NaN or infinite values are an error.
* **Orientation**: the EXIF orientation tag is applied (a photo taken with a
  rotated camera comes out upright).
* **Animated / multi-page** files (multi-page TIFF, MPO): the first frame.

Accepted file formats: PNG, JPEG (including MPO, the multi-picture JPEG some
cameras write), WebP, BMP and TIFF.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import threading
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import ImageError, ParamError

__all__ = [
    "ALLOWED_FORMATS",
    "MAX_BYTES",
    "MAX_PIXELS",
    "as_rgb_uint8",
    "decode_image",
    "encode_png",
    "load_image",
    "resize_image",
    "wipe",
]

logger = logging.getLogger(__name__)

MAX_PIXELS = 40_000_000
"""Default ceiling on ``width * height`` (40 megapixels), checked before decoding."""

MAX_BYTES = 50_000_000
"""Default ceiling on the encoded file size (50 MB), checked before reading it all."""

ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
"""Pillow format names :func:`decode_image` accepts (Pillow's JPEG reader also
opens MPO, the multi-picture JPEG some cameras write)."""

_FORMAT_HINT = "use PNG, JPEG, WebP, BMP or TIFF"

# ``warnings.catch_warnings`` is not thread-safe; our own callers (the dataset
# loaders decode in a thread pool) take this lock around the cheap header parse.
_OPEN_LOCK = threading.Lock()

ImageSource = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.4g}"


def _megabytes(nbytes: int) -> str:
    return f"{nbytes / 1e6:.4g} MB"


def _too_big(width: int, height: int, max_pixels: int) -> ImageError:
    return ImageError(
        f"image is {width}×{height} pixels ({_megapixels(width * height)} megapixels); "
        f"the limit is {_megapixels(max_pixels)} megapixels"
    )


def _read_source(source: ImageSource, max_bytes: int) -> bytes:
    """Return the encoded bytes of ``source``, refusing more than ``max_bytes``."""
    too_large = ImageError(f"the file is larger than the limit of {_megabytes(max_bytes)}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > max_bytes:
            raise ImageError(
                f"the file is {_megabytes(len(data))}; the limit is {_megabytes(max_bytes)}"
            )
        return data
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise ImageError(f"no such file: {path}") from None
        except OSError as exc:
            raise ImageError(f"cannot read {path}: {exc.strerror or exc}") from None
        if os.path.isdir(path):
            raise ImageError(f"{path} is a folder, not an image file")
        if size > max_bytes:
            raise ImageError(
                f"the file is {_megabytes(size)}; the limit is {_megabytes(max_bytes)}"
            )
        try:
            with open(path, "rb") as fh:
                data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise ImageError(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(data) > max_bytes:  # the file grew while we looked
            raise too_large
        return data
    read = getattr(source, "read", None)
    if callable(read):
        try:
            data = read(max_bytes + 1)
        except OSError as exc:
            raise ImageError(f"cannot read the upload: {exc}") from None
        if isinstance(data, str):
            raise ImageError("the file was opened as text; open it in binary mode ('rb')")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ImageError("the file-like object did not return bytes")
        if len(data) > max_bytes:
            raise too_large
        return bytes(data)
    raise ImageError(
        f"cannot read an image from a {type(source).__name__}; "
        "give bytes, a file path or a binary file object"
    )


def _bomb_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the header alone, bypassing Pillow's bomb check.

    Only used to word the message after Pillow refused an enormous image.
    """
    Image.preinit()
    prefix = data[:16]
    for fmt in ALLOWED_FORMATS:
        entry = Image.OPEN.get(fmt)
        if entry is None:
            continue
        factory, accept = entry
        if accept is not None and accept(prefix) is not True:
            continue
        try:
            return factory(io.BytesIO(data), "").size
        except (SyntaxError, OSError, ValueError, IndexError, TypeError, struct.error):
            continue
    return None


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and vet format and size; pixel data is not decoded yet."""
    with _OPEN_LOCK, warnings.catch_warnings():
        # Our own size check below replaces Pillow's DecompressionBombWarning.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
        except Image.DecompressionBombError as exc:
            size = _bomb_size(data)
            if size is not None:
                raise _too_big(size[0], size[1], max_pixels) from None
            raise ImageError(
                f"the image is too large to open safely; the limit is "
                f"{_megapixels(max_pixels)} megapixels ({exc})"
            ) from None
        except UnidentifiedImageError:
            other = _sniff_other_format(data)
            if other is not None:
                raise ImageError(f"unsupported image format {other}; {_FORMAT_HINT}") from None
            raise ImageError("this file is not an image (or it is damaged)") from None
        except (OSError, SyntaxError, ValueError, struct.error):
            raise ImageError("this file is not an image (or it is damaged)") from None
    width, height = im.size
    if width * height > max_pixels:
        raise _too_big(width, height, max_pixels)
    if width < 1 or height < 1:
        raise ImageError("this file is not an image (or it is damaged)")
    return im


def _sniff_other_format(data: bytes) -> str | None:
    """Name of the format Pillow recognises in ``data`` if it is not an allowed one."""
    try:
        with Image.open(io.BytesIO(data)) as other:
            return str(other.format or "unknown")
    except Image.DecompressionBombError:
        return "unknown (and enormous)"
    except Exception:  # any failure here just means "not an image"
        return None


def _pil_to_array(im: Image.Image) -> np.ndarray:
    """Pillow image (already loaded) -> array handled by :func:`as_rgb_uint8`."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(im)
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        return np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    if mode in ("La", "RGBa"):  # premultiplied alpha: un-premultiply, then our rule
        return np.asarray(im.convert("RGBA"))
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I":
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
    if mode == "F":
        return np.asarray(im, dtype=np.float32)
    try:
        return np.asarray(im.convert("RGB"))
    except (ValueError, OSError) as exc:
        raise ImageError(f"unsupported pixel format {mode}; {_FORMAT_HINT}") from exc


def decode_image(
    source: ImageSource,
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
) -> np.ndarray:
    """Decode an image file into an ``(H, W, 3)`` RGB uint8 array.

    The format is decided by the file's content, never its name. The image's
    width and height are checked against ``max_pixels`` from the header,
    before any pixel data is decoded, so a small file claiming a huge size
    ("decompression bomb") costs nothing. See the module docstring for how
    grey, alpha, palette, CMYK, 16-bit and float images become RGB uint8.

    Parameters
    ----------
    source : bytes, str, os.PathLike or binary file object
        The encoded file: its bytes, its path, or an open binary file
        (for example a Streamlit upload), read from its current position.
    max_pixels : int, default=MAX_PIXELS
        Largest accepted ``width * height`` (40 megapixels).
    max_bytes : int, default=MAX_BYTES
        Largest accepted encoded size in bytes (50 MB).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8 RGB, C-contiguous, EXIF orientation applied.

    Raises
    ------
    ImageError
        For every input that cannot be decoded: empty, not an image,
        truncated, an unsupported format, or too large.

    Examples
    --------
    >>> img = decode_image(encode_png(np.zeros((2, 3, 3), np.uint8)))
    >>> img.shape, img.dtype
    ((2, 3, 3), dtype('uint8'))
    """
    data = _read_source(source, max_bytes)
    if not data:
        raise ImageError("the file is empty")
    im = _open(data, max_pixels)
    try:
        im.seek(0)
        im.load()
    except Image.DecompressionBombError:
        raise _too_big(im.size[0], im.size[1], max_pixels) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error):
        raise ImageError("the image file is truncated or damaged") from None
    try:
        im = ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, struct.error) as exc:
        logger.warning("ignoring unreadable EXIF orientation: %s", exc)
    return as_rgb_uint8(_pil_to_array(im))


def load_image(
    source: ImageSource,
    size: int | tuple[int, int] | None = None,
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
) -> np.ndarray:
    """Decode an image and optionally resize it.

    Parameters
    ----------
    source : bytes, str, os.PathLike or binary file object
        As for :func:`decode_image`.
    size : int or (int, int), optional
        Target ``(height, width)`` (an int means square). ``None`` keeps the
        decoded size.
    max_pixels, max_bytes : int
        As for :func:`decode_image`.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8 RGB.
    """
    image = decode_image(source, max_pixels=max_pixels, max_bytes=max_bytes)
    return image if size is None else resize_image(image, size)


def check_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """Validate a target size and return ``(height, width)``."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        pair: tuple[object, object] = (size, size)
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        pair = (size[0], size[1])
    else:
        raise ParamError(
            f"image size must be a positive integer or a (height, width) pair; got {size!r}"
        )
    out = []
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= 16384:
            raise ParamError(
                f"image size must be a positive integer (at most 16384) or a "
                f"(height, width) pair of them; got {size!r}"
            )
        out.append(int(v))
    return out[0], out[1]


def _check_resizable(image: object) -> np.ndarray:
    """``image`` as a 2-D grey or (H, W, 3) uint8 array, or raise :class:`ImageError`."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ImageError(
            f"expected an image of shape (H, W), (H, W, 1) or (H, W, 3); got {image.shape}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"the image is empty (shape {image.shape})")
    return image


def resize_image(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Stretch an image to ``size`` (the aspect ratio is not kept).

    ``cv2.INTER_AREA`` is used when neither side grows (best for shrinking),
    ``cv2.INTER_LINEAR`` otherwise.

    Parameters
    ----------
    image : numpy.ndarray
        uint8, shape ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` (RGB).
    size : int or (int, int)
        Target ``(height, width)``; an int means a square.

    Returns
    -------
    numpy.ndarray
        ``(height, width, 3)`` uint8 RGB; a new array (the input is untouched).

    Raises
    ------
    ImageError
        If ``image`` is not a uint8 array of one of the accepted shapes.
    ParamError
        If ``size`` is not a positive int or pair of positive ints.
    """
    image = _check_resizable(image)
    height, width = check_size(size)
    src_h, src_w = image.shape[:2]
    if (height, width) == (src_h, src_w):
        out = image.copy()
    else:
        import cv2  # lazily: the dashboard's process decodes and shows images without OpenCV

        shrink = height <= src_h and width <= src_w
        out = cv2.resize(
            np.ascontiguousarray(image),
            (width, height),
            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
        )
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out)


def thumbnail(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """A small copy of an image, for display only, stretched to ``size``.

    Pillow's box filter when shrinking, bilinear otherwise. It is not the
    models' input path (that is :func:`resize_image`, OpenCV's ``INTER_AREA``,
    which the shipped results were computed with), so the dashboard's process
    can show thumbnails without loading OpenCV.

    Same arguments, checks and result as :func:`resize_image`.
    """
    image = _check_resizable(image)
    height, width = check_size(size)
    if image.shape[:2] != (height, width):
        shrink = height <= image.shape[0] and width <= image.shape[1]
        method = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
        image = np.asarray(Image.fromarray(image).resize((width, height), method))
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.array(image, dtype=np.uint8, order="C")


def encode_png(image: np.ndarray) -> bytes:
    """Encode an image as lossless PNG bytes (for downloads).

    Parameters
    ----------
    image : numpy.ndarray
        Anything :func:`as_rgb_uint8` accepts; normally ``(H, W, 3)`` uint8.

    Returns
    -------
    bytes
        An 8-bit RGB PNG; ``decode_image(encode_png(x))`` equals
        ``as_rgb_uint8(x)`` exactly.
    """
    rgb = as_rgb_uint8(image)
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _to_uint8_channels(array: np.ndarray) -> np.ndarray:
    """Scale any accepted dtype to uint8, keeping the channel layout."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return ((array.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ImageError("the image contains NaN or infinite values")
        return np.rint(np.clip(array, 0.0, 255.0)).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ImageError(
                f"integer image values must be in 0-255 (or use uint16 for 16-bit); "
                f"got {array.min()}..{array.max()} in dtype {array.dtype}"
            )
        return array.astype(np.uint8)
    raise ImageError(f"cannot make an image from an array of dtype {array.dtype}")


def _composite_black(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``round(color * alpha / 255)`` in exact integer arithmetic."""
    a = alpha.astype(np.uint32)[:, :, None]
    return ((color.astype(np.uint32) * a * 2 + 255) // 510).astype(np.uint8)


def as_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Convert a numpy image to ``(H, W, 3)`` RGB uint8 with the module's rules.

    Accepted shapes: ``(H, W)`` grey, ``(H, W, 1)`` grey, ``(H, W, 2)`` grey +
    alpha, ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA. Accepted dtypes: uint8 (as
    is), bool (True -> 255), uint16 (``round(v / 257)``), float (the 0-255
    scale: clipped, rounded), other integers holding values in 0-255. Alpha is
    composited over black.

    Parameters
    ----------
    array : numpy.ndarray
        The image.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8, C-contiguous. When ``array`` already is exactly
        that, it is returned itself (not copied); it is never modified.

    Raises
    ------
    ImageError
        Wrong type, number of dimensions or channels, empty, NaN/inf, or
        integers outside 0-255.
    """
    if not isinstance(array, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(array).__name__}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ImageError(
            f"expected an image of shape (H, W) or (H, W, C) with C in 1-4; got shape {array.shape}"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(f"the image is empty (shape {array.shape})")
    if array.dtype == np.uint8 and array.shape[2] == 3:
        return np.ascontiguousarray(array)
    arr = _to_uint8_channels(array)
    channels = arr.shape[2]
    if channels == 1:
        rgb = np.repeat(arr, 3, axis=2)
    elif channels == 2:
        rgb = np.repeat(_composite_black(arr[:, :, :1], arr[:, :, 1]), 3, axis=2)
    elif channels == 3:
        rgb = arr
    else:
        rgb = _composite_black(arr[:, :, :3], arr[:, :, 3])
    return np.ascontiguousarray(rgb)


def wipe(before: np.ndarray, after: np.ndarray, position: float) -> np.ndarray:
    """A before/after comparison: ``before`` left of ``position``, ``after`` right of it.

    Parameters
    ----------
    before, after : numpy.ndarray
        Two ``(H, W, 3)`` uint8 images of the same shape.
    position : float
        Where the split falls, as a share of the width in [0, 1]; a one-pixel
        white line marks it.

    Returns
    -------
    numpy.ndarray
        A new ``(H, W, 3)`` uint8 image.
    """
    a, b = as_rgb_uint8(before), as_rgb_uint8(after)
    if a.shape != b.shape:
        raise ImageError(f"wipe: images differ in shape ({a.shape} vs {b.shape}).")
    if not 0.0 <= float(position) <= 1.0:
        raise ParamError(f"wipe: position must be in [0, 1]; got {position}.")
    w = a.shape[1]
    cut = round(float(position) * w)
    out = b.copy()
    out[:, :cut] = a[:, :cut]
    if 0 < cut < w:
        out[:, cut - 1] = 255
    return out
