"""Bit-exact image I/O: 8/16-bit PNG and TIFF, JPEG; gray, RGB, alpha; ICC and EXIF orientation.

Pixels travel as numpy arrays of shape (h, w) or (h, w, c) in RGB(A) order; uint8/uint16 as
stored, float32 on [0, 1] once converted. 16-bit PNG/TIFF are decoded with OpenCV because
Pillow reads 16-bit RGB as 8-bit.

The pixel limit is ours (`max_pixels`, checked from the header before decoding). Pillow's
own decompression-bomb limit, a module global, is left as it is: files are opened through
`_open_pillow`, which skips that check instead of switching it off for everyone.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from deband.errors import BitDepthError, InputError, OutputError, TooManyPixelsError, UnsupportedError
from deband.io.outputs import atomic_output
from deband.io.pixels import from_codes

READ_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp")
WRITE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
DEFAULT_MAX_PIXELS = 300_000_000  # ~17 000 x 17 000


@dataclass
class Picture:
    """Decoded pixels plus what must survive the round trip.

    pixels: (h, w) or (h, w, c), c in 1..4, RGB(A) order, uint8 or uint16 as stored.
    icc: the embedded ICC profile, if any.
    """

    pixels: np.ndarray
    icc: bytes | None = None

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    def rgb(self) -> np.ndarray:
        """(h, w, 3) float32 on [0, 1]: gray replicated, alpha dropped."""
        x = from_codes(self.pixels)
        if x.ndim == 2:
            x = x[..., None]
        return np.repeat(x[..., :1], 3, axis=2) if x.shape[2] < 3 else x[..., :3]


def _open_pillow(path: Path) -> ImageFile.ImageFile:
    """What `Image.open(path)` returns, without Pillow's decompression-bomb check.

    Each registered plugin that accepts the file's first bytes is tried in Pillow's order.
    Raises UnidentifiedImageError when none opens it, OSError when it cannot be read.
    """
    Image.init()
    with path.open("rb") as f:
        prefix = f.read(16)
    for fmt in list(Image.ID):
        factory, accept = Image.OPEN[fmt]
        accepted = not accept or accept(prefix)
        if not accepted or isinstance(accepted, str):  # a string: a warning, not a match
            continue
        try:
            return factory(str(path), str(path))
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue
    raise UnidentifiedImageError(f"cannot identify image file {str(path)!r}")


def _check_pixels(path: Path, w: int, h: int, max_pixels: int | None) -> None:
    if max_pixels is not None and w * h > max_pixels:
        raise TooManyPixelsError(f"{path}: {w}x{h} is {w * h:,} pixels, over the limit of {max_pixels:,}")


def _header(path: Path, max_pixels: int | None) -> tuple[str, bytes | None, int]:
    """(format, icc, exif orientation) from the header only; refuses oversized images."""
    try:
        with _open_pillow(path) as im:
            fmt, (w, h) = im.format or "", im.size
            _check_pixels(path, w, h, max_pixels)
            icc = im.info.get("icc_profile")
            orientation = im.getexif().get(0x0112, 1)
            _check_still(path, im)
    except UnidentifiedImageError:
        with path.open("rb") as f:
            magic = f.read(4)
        if magic in (b"II*\x00", b"MM\x00*"):  # a TIFF Pillow cannot open
            _check_pixels(path, *_tiff_size(path), max_pixels)
            return "TIFF", None, 1
        raise UnsupportedError(f"{path}: not an image deband can read") from None
    except Image.DecompressionBombError as e:  # a plugin that applies Pillow's limit itself (WebP)
        size = _webp_size(path)
        if size is None:
            raise UnsupportedError(f"{path}: too large for Pillow to open ({e})") from None
        _check_pixels(path, *size, max_pixels)
        return "WEBP", None, 1
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: unreadable image ({e})") from None
    return fmt, icc, orientation


def _check_still(path: Path, im: ImageFile.ImageFile) -> None:
    """Refuse an animation or a stack of pages (GIF, APNG, WebP, TIFF), of which only the first
    picture would be restored; an MPO (a JPEG followed by previews or a depth map) is its first."""
    try:
        frames = getattr(im, "n_frames", 1)
    except (OSError, EOFError, SyntaxError, ValueError):  # a damaged file: decoding reports it
        return
    if frames > 1 and im.format != "MPO":
        raise UnsupportedError(f"{path}: {frames} frames (an animation or several pages); "
                               "deband reads single pictures")


def _webp_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a WebP file's first chunk (VP8, VP8L or VP8X); None if not WebP."""
    with path.open("rb") as f:
        s = f.read(30)
    if len(s) < 30 or s[:4] != b"RIFF" or s[8:12] != b"WEBP":
        return None
    le = lambda a, b: int.from_bytes(s[a:b], "little")  # noqa: E731
    if s[12:16] == b"VP8X":
        return le(24, 27) + 1, le(27, 30) + 1
    if s[12:16] == b"VP8L":
        return (le(21, 25) & 0x3FFF) + 1, ((le(21, 25) >> 14) & 0x3FFF) + 1
    if s[12:16] == b"VP8 ":
        return le(26, 28) & 0x3FFF, le(28, 30) & 0x3FFF
    return None


def _tiff_size(path: Path) -> tuple[int, int]:
    """(width, height) of a TIFF's first page; (0, 0) when tifffile cannot tell either."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            return page.imagewidth, page.imagelength
    except Exception:  # noqa: BLE001 - tifffile raises many types; decoding reports the error
        return 0, 0


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Picture:
    """Read an image exactly as stored, EXIF orientation applied.

    Raises InputError (missing, unreadable, truncated), UnsupportedError (not an image, or
    several frames: an animation or pages) or TooManyPixelsError (over `max_pixels`, None for
    no limit; checked before decoding).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an image file")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    fmt, icc, orientation = _header(path, max_pixels)
    pixels = _decode_tiff(path) if fmt == "TIFF" else _decode_cv2(path) if fmt == "PNG" else None
    if pixels is None:
        pixels = _decode_pil(path)
    return Picture(_orient(pixels, orientation), icc)


def _decode_cv2(path: Path) -> np.ndarray | None:
    """16-bit-safe decode; None when OpenCV declines (palette or exotic TIFF: Pillow's turn)."""
    data = np.fromfile(path, dtype=np.uint8)  # also handles non-ASCII paths
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype not in (np.uint8, np.uint16):
        return None
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    return arr


def _decode_tiff(path: Path) -> np.ndarray | None:
    """TIFF through tifffile (exact 8/16-bit, any channel count); None: Pillow's turn."""
    import tifffile

    try:
        arr = tifffile.imread(path)
    except Exception:  # noqa: BLE001 - tifffile raises many types; Pillow gives the user error
        return None
    if arr.dtype not in (np.uint8, np.uint16) or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] > 4):
        return None
    return arr


def _decode_pil(path: Path) -> np.ndarray:
    try:
        with _open_pillow(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(im, dtype=np.uint32).clip(0, 65535).astype(np.uint16)
            target = {"L": "L", "LA": "LA", "RGBA": "RGBA", "PA": "RGBA"}.get(im.mode)
            if im.mode == "P":
                target = "RGBA" if "transparency" in im.info else "RGB"
            return np.asarray(im.convert(target or "RGB"))
    except Image.DecompressionBombError:  # the plugin applies Pillow's limit itself (WebP)
        pixels = _decode_cv2(path)
        if pixels is None:
            raise InputError(f"{path}: unreadable or truncated image") from None
        return pixels
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: unreadable or truncated image ({e})") from None


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (h, w[, c]) array."""
    ops = {2: "f", 3: "r2", 4: "f r2", 5: "t", 6: "r3", 7: "t r2", 8: "r1"}.get(orientation, "")
    for op in ops.split():
        if op == "f":
            pixels = pixels[:, ::-1]
        elif op == "t":
            pixels = np.swapaxes(pixels, 0, 1)
        else:
            pixels = np.rot90(pixels, int(op[1]))
    return np.ascontiguousarray(pixels)


# --- writing ---------------------------------------------------------------------------------


def check_image_path(path: Path, bit_depth: int = 8) -> None:
    """Refuse a name `write_image` cannot write: an unknown suffix (OutputError) or JPEG for
    more than 8 bits (BitDepthError). Lets a command refuse before its work."""
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise OutputError(f"{path}: cannot write {suffix or 'files without a suffix'}; use .png or .tif")
    if suffix in (".jpg", ".jpeg") and bit_depth > 8:
        raise BitDepthError(f"{path}: JPEG holds 8 bits only; use .png/.tif")


def write_image(
    path: str | Path, pixels: np.ndarray, icc: bytes | None = None, overwrite: bool = False,
    sources: Iterable[str | Path] = (),
) -> None:
    """Write uint8/uint16 RGB(A)/gray pixels atomically as PNG, TIFF or JPEG (8-bit only).

    Raises OutputError (bad suffix, no folder, write failed), BitDepthError (16 bits into
    JPEG), OutputExistsError (path exists and not `overwrite`) or SameFileError (path is one
    of `sources`, whatever `overwrite`); nothing is left at path on failure.
    """
    path = Path(path)
    check_image_path(path, 8 if pixels.dtype == np.uint8 else 16)
    with atomic_output(path, overwrite, sources) as tmp:
        try:
            _encode(tmp, path.suffix.lower(), pixels, icc)
        except OSError as e:
            raise OutputError(f"{path}: write failed ({e.strerror or e})") from None


def _encode(tmp: Path, suffix: str, pixels: np.ndarray, icc: bytes | None) -> None:
    if suffix in (".jpg", ".jpeg"):
        colour = pixels if pixels.ndim == 2 else pixels[..., : 1 if pixels.shape[2] < 3 else 3]
        Image.fromarray(np.squeeze(colour)).save(tmp, format="JPEG", quality=95, icc_profile=icc, subsampling=0)
        return
    if suffix in (".tif", ".tiff"):
        import tifffile

        extratags = [(34675, "B", len(icc), icc, True)] if icc else []
        photometric = "minisblack" if pixels.ndim == 2 or pixels.shape[2] < 3 else "rgb"
        extrasamples = "unassalpha" if pixels.ndim == 3 and pixels.shape[2] in (2, 4) else None
        tifffile.imwrite(tmp, pixels, photometric=photometric, extratags=extratags,
                         compression="zlib", extrasamples=extrasamples)
        return
    arr = pixels
    if arr.ndim == 3 and arr.shape[2] == 2:  # PNG through OpenCV has no gray+alpha: write RGBA
        arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=2), arr[..., 1:]], axis=2)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise OSError("PNG encoding failed")
    data = _with_icc(buf.tobytes(), icc) if icc else buf.tobytes()
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _with_icc(png: bytes, icc: bytes) -> bytes:
    """Insert an iCCP chunk right after IHDR (PNG header 8 bytes + IHDR 25 bytes)."""
    body = b"ICC profile\x00\x00" + zlib.compress(icc)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body
    chunk += struct.pack(">I", zlib.crc32(b"iCCP" + body) & 0xFFFFFFFF)
    return png[:33] + chunk + png[33:]
