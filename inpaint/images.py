"""Image files in and out: finding, reading (EXIF, modes, size limits), writing (atomically, by
inpaint.files), grids and contact sheets.

Arrays leaving this module are `(H, W, 3) uint8` RGB unless stated; `to_float`/`to_uint8` convert
to and from the networks' `float32` range [-1, 1].
"""

from __future__ import annotations

import glob
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

from inpaint.errors import DataError, ImageReadError, UsageError
from inpaint.files import atomic_write_bytes, open_regular, safe_resolve

log = logging.getLogger(__name__)

# The one list of formats inpaint reads, by suffix, for files and folders alike: suffix -> Pillow's
# format name (which writers use to write a photo back in its own format). A GIF is read as its
# first frame; other files in a folder are not photos and are skipped.
IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP",
                 ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF"}
IMAGE_SUFFIXES = frozenset(IMAGE_FORMATS)

# Refuse images above this many pixels before decoding them (decompression bombs). 64 Mpx covers
# any real photo; a header claiming 30000x30000 is refused without allocating 2.7 GB.
MAX_PIXELS = 64_000_000


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def find_images(root: str | Path, recursive: bool = True) -> list[Path]:
    """Every entry below `root` (with recursive=False: directly in it) with an image suffix that
    is not a folder (the suffix test is case-insensitive), sorted. FIFOs, dangling links and link
    loops are included, so reading them reports each one (see open_regular) instead of skipping
    it unseen."""
    root = Path(root)
    entries = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in entries if is_image_path(p) and not p.is_dir())


class InputFile(NamedTuple):
    """One file an input names. `rel`: its path below the folder, or below the fixed start of the
    glob, it was found under (a file given by name: its name), for outputs that mirror the
    inputs' folders. `named`: given by name, not found by a folder walk or a glob."""

    path: Path
    rel: Path
    named: bool


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard."""
    base = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def walk_inputs(inputs: Iterable[str | Path], recursive: bool = True) -> Iterator[InputFile]:
    """Files, folders and glob patterns -> the files they name, input by input (a folder's
    sorted, a glob's matches sorted). A folder gives its image files (find_images; recursive=False:
    only those directly in it); a glob gives its matches with an image suffix, and the image files
    of the folders it matches (recursive=False: those folders are left out); anything else is
    given as named, whatever its suffix and whether or not it exists, so that reading it says
    what is wrong with it. Nothing is deduplicated or excluded: the callers decide that."""
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for q in find_images(p, recursive):
                yield InputFile(q, q.relative_to(p), False)
        elif p.exists() or not glob.has_magic(str(item)):
            yield InputFile(p, Path(p.name), True)
        else:
            base = _glob_base(str(item))
            for m in sorted(glob.glob(str(item), recursive=True)):
                q = Path(m)
                if q.is_dir():
                    for r in find_images(q) if recursive else ():
                        yield InputFile(r, Path(os.path.relpath(r, base)), False)
                elif is_image_path(q):  # links that lead nowhere too: reported per file
                    yield InputFile(q, Path(os.path.relpath(q, base)), False)


def expand_inputs(inputs: Iterable[str | Path], exclude: str | Path | None = None,
                  ) -> list[Path]:
    """Files, directories (recursive) and glob patterns -> unique image paths, in given order
    (see walk_inputs). Files found by a directory walk or a glob are left out if they lie inside
    the folder `exclude` (an output folder inside an input folder: its outputs are no inputs)."""
    out: list[Path] = []
    seen: set[Path] = set()
    skip = safe_resolve(exclude) if exclude is not None else None
    for f in walk_inputs(inputs):
        if skip is not None and not f.named and safe_resolve(f.path).is_relative_to(skip):
            continue
        if f.path not in seen:
            seen.add(f.path)
            out.append(f.path)
    return out


def require_inputs(items: Iterable[str | Path]) -> None:
    """Refuse, before any work or output, inputs that name nothing: a path that does not exist
    or a glob that matches nothing (DataError naming the first three). A link that exists but
    leads nowhere (dangling, a loop) is an input: it is reported per file later."""
    missing = [f"nothing matches {item}" if glob.has_magic(str(item))
               else f"{item}: no such file or directory" for item in items
               if not os.path.lexists(item)
               and not (glob.has_magic(str(item)) and glob.glob(str(item), recursive=True))]
    if missing:
        more = f" (and {len(missing) - 3} more missing inputs)" if len(missing) > 3 else ""
        raise DataError("; ".join(missing[:3]) + more)


# 16-bit samples -> 8: v / 257 rounded (65535 -> 255, 257 * k -> k), the inverse of x257.
_16_TO_8 = 65535 / 255
_I16_MODES = ("I;16", "I;16B", "I;16L", "I;16N")

# A photo's mode -> the mode a filled copy of it keeps (premultiplied alpha written straight).
# Palette, CMYK, float and 32-bit images come back as 8-bit RGB.
SOURCE_MODES = {"L": "L", "LA": "LA", "La": "LA", "RGBA": "RGBA", "RGBa": "RGBA",
                **dict.fromkeys(_I16_MODES, "I;16")}
# The modes each format keeps: what Pillow 13 writes and reads back as written (measured: BMP
# reads RGBA back as RGB and has no LA, JPEG has no alpha, WebP stores grey as RGB).
FORMAT_MODES = {"PNG": {"L", "LA", "RGBA", "I;16"}, "TIFF": {"L", "LA", "RGBA", "I;16"},
                "JPEG": {"L"}, "BMP": {"L"}, "WEBP": {"RGBA"}}
_16_FROM_8 = 257  # 8-bit k -> 16-bit 257 * k: 255 -> 65535, the inverse of _16_TO_8


class _RangeError(ValueError):
    """Samples a reader cannot map to 8 bits; read_image prefixes the file's name."""


def _wide_to_8(im: Image.Image) -> Image.Image:
    """One channel of 16-bit, 32-bit integer or float samples -> mode "L", mapped by their range:
    16-bit modes by 65535/255; "I" within [0, 255] kept, within [0, 65535] as 16-bit; floats
    within [0, 1] scaled by 255, within [0, 255] kept. _RangeError for anything else."""
    arr = np.asarray(im, dtype=np.float64)
    kind = "float" if im.mode == "F" else "integer"
    if not np.isfinite(arr).all():
        raise _RangeError(f"{kind} image with NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if im.mode in _I16_MODES or (im.mode == "I" and 0 <= lo and 255 < hi <= 65535):
        scale = 1 / _16_TO_8
    elif im.mode == "F" and 0 <= lo and hi <= 1:
        scale = 255.0
    elif 0 <= lo and hi <= 255:
        scale = 1.0
    else:
        accepted = "[0, 1] or [0, 255]" if kind == "float" else "[0, 65535]"
        raise _RangeError(f"{kind} image with values in [{lo:g}, {hi:g}]; inpaint reads "
                          f"{accepted}")
    return Image.fromarray(np.round(arr * scale).astype(np.uint8), mode="L")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB. Transparency is composited over white; wide samples as
    _wide_to_8."""
    if im.mode in (*_I16_MODES, "I", "F"):
        im = _wide_to_8(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB") if im.mode != "RGB" else im


def to_rgb8(im: Image.Image, name: str = "image") -> np.ndarray:
    """A Pillow image of any mode -> `(H, W, 3) uint8` RGB, as inpaint reads every photo:
    grey, palette and CMYK converted; transparency composited over white; 16-bit samples scaled
    by 65535/255 (rounded); 32-bit integer samples within [0, 255] kept, within [0, 65535] as
    16-bit; float samples within [0, 1] scaled by 255, within [0, 255] kept. Anything else
    (negative, too large, NaN or infinite) is an ImageReadError naming `name` and the range found."""
    try:
        return np.asarray(_to_rgb(im), dtype=np.uint8).copy()
    except _RangeError as exc:
        raise ImageReadError(f"{name}: {exc}") from None


class Photo(NamedTuple):
    """A photo as read_photo reads it. `rgb`: `(H, W, 3) uint8`, as read_image gives it.
    `source`: the decoded image in its own mode (EXIF orientation applied) where a writer can give
    that mode back (SOURCE_MODES), else None."""

    rgb: np.ndarray
    source: Image.Image | None


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file -> `(H, W, 3) uint8` RGB, EXIF orientation applied, modes as to_rgb8.

    Raises ImageReadError with the reason for missing, unreadable, truncated, tiny or oversized
    files."""
    return read_photo(path, max_pixels).rgb


def read_photo(path: str | Path, max_pixels: int = MAX_PIXELS) -> Photo:
    """Read an image file as read_image does, keeping the decoded image where its mode is one
    in_source_mode gives back (grey, grey + alpha, RGBA, 16-bit grey)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ImageReadError(f"read_image takes a file path, got {type(path).__name__}")
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_regular(path) as f, Image.open(f) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageReadError(
                        f"{path}: {w}x{h} pixels is over the limit of {max_pixels} pixels"
                    )
                if getattr(im, "n_frames", 1) > 1:
                    log.warning("%s is animated (%d frames); only its first frame is used", path,
                                im.n_frames)
                im.load()
                im = ImageOps.exif_transpose(im)
                arr = to_rgb8(im, str(path))
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a directory") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(f"{path}: image is too large (decompression bomb check)") from None
    except (OSError, ValueError, SyntaxError, Image.UnidentifiedImageError) as exc:
        reason = "not an image Pillow can read" if isinstance(
            exc, Image.UnidentifiedImageError) else str(exc) or type(exc).__name__
        raise ImageReadError(f"{path}: {reason}") from None
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ImageReadError(f"{path}: image is only {arr.shape[1]}x{arr.shape[0]} pixels")
    return Photo(arr, im if im.mode in SOURCE_MODES else None)


def in_source_mode(rgb: np.ndarray, source: Image.Image | None, fmt: str | None = None,
                   ) -> Image.Image:
    """A copy of `source` changed to `rgb` (`(H, W, 3) uint8`, e.g. filled) in the mode of
    `source` (SOURCE_MODES) where the format `fmt` keeps it (FORMAT_MODES; None: an image in
    memory, any mode); else `rgb` as an RGB image. Pixels `rgb` leaves as to_rgb8 reads them keep
    `source`'s exact values, 16 bits and alpha too; changed ones become grey (Pillow's L) for
    grey modes, x257 for 16 bits, and keep `source`'s alpha."""
    mode = SOURCE_MODES.get(source.mode) if source is not None else None
    if mode is None or (fmt is not None and mode not in FORMAT_MODES.get(fmt, ())):
        return Image.fromarray(rgb)
    changed = (rgb != to_rgb8(source)).any(-1)
    kept = np.asarray(source if source.mode == mode or mode == "I;16" else source.convert(mode))
    out = kept.astype(np.uint16) if mode == "I;16" else kept.copy()
    if mode == "RGBA":
        out[changed, :3] = rgb[changed]
        return Image.fromarray(out, "RGBA")
    grey = np.asarray(Image.fromarray(rgb).convert("L"))[changed]
    if mode == "LA":
        out[changed, 0] = grey
    else:
        out[changed] = grey.astype(out.dtype) * (_16_FROM_8 if mode == "I;16" else 1)
    return Image.fromarray(out, mode if mode != "I;16" else None)


def crop_resize(img: np.ndarray, size: int, crop: str = "center", fraction: float = 1.0,
                ) -> np.ndarray:
    """`(H, W, 3) uint8` -> `(size, size, 3) uint8`.

    crop "center": a centred square of side `fraction * min(H, W)`, then a bicubic resize (Pillow's
    resize is antialiased when shrinking). crop "none": the whole frame squashed to a square."""
    h, w = img.shape[:2]
    if crop == "center":
        side = max(1, int(round(min(h, w) * fraction)))
        top, left = (h - side) // 2, (w - side) // 2
        img = img[top:top + side, left:left + side]
    elif crop != "none":
        raise ValueError(f"unknown crop policy {crop!r}")
    if img.shape[0] == size and img.shape[1] == size:
        return np.ascontiguousarray(img)
    im = Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.uint8)


def read_faces(paths: Iterable[str | Path], size: int,
               ) -> tuple[np.ndarray, list[str], list[str]]:
    """Read images as `size` x `size` faces (centre square, resized): `(faces (N, S, S, 3) uint8,
    their file stems, the reasons of the files that could not be read)`."""
    faces, stems, failed, resized = [], [], [], []
    for p in paths:
        try:
            img = read_image(p)
        except ImageReadError as exc:
            failed.append(str(exc))
            continue
        if img.shape[:2] != (size, size):
            resized.append(f"{p} is {img.shape[1]}x{img.shape[0]}")
        faces.append(crop_resize(img, size))
        stems.append(Path(p).stem)
    if resized:  # one line, not one per image
        import logging

        logging.getLogger(__name__).warning(
            "%d of %d images are not %dx%d, the model's size (%s): centre-cropped and resized. "
            "Faces from `inpaint align` fit this model with `--size %d`.", len(resized),
            len(faces), size, size, resized[0], size)
    return (np.stack(faces) if faces else np.zeros((0, size, size, 3), np.uint8)), stems, failed


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return img.astype(np.float32) / 127.5 - 1.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> uint8 [0, 255] (rounded, clipped)."""
    return np.clip(np.round((np.asarray(img, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(
        np.uint8)


def write_image(path: str | Path, img: np.ndarray) -> None:
    """Write `(H, W, 3)`, `(H, W)` or (not as JPEG) `(H, W, 4)` atomically as 8-bit; format by
    suffix (JPEG for .jpg/.jpeg, else PNG). It takes uint8 [0, 255], written as it is, or
    floats in the networks' range [-1, 1] (to_uint8). UsageError for any other dtype, NaN or infinite values, or floats outside
    [-1, 1]: written as they are they would be silently black or clipped."""
    import io

    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise UsageError(f"write_image takes uint8 in [0, 255] or floats in [-1, 1], got "
                             f"{arr.dtype}")
        if not np.isfinite(arr).all():
            raise UsageError(f"write_image: {path}: the image has NaN or infinite values")
        if arr.size and (arr.min() < -1 or arr.max() > 1):
            raise UsageError(f"write_image: {path}: floats must be in [-1, 1] (the networks' "
                             f"range), got [{arr.min():g}, {arr.max():g}]; uint8 for [0, 255]")
        arr = to_uint8(arr)
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4))) or not arr.size:
        raise UsageError(f"write_image: {path}: an image is (H, W), (H, W, 3) or (H, W, 4), got "
                         f"{arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    path = Path(path)
    buf = io.BytesIO()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    if fmt == "JPEG" and arr.ndim == 3 and arr.shape[2] == 4:
        raise UsageError(f"write_image: {path}: JPEG has no alpha; write RGB or a .png")
    Image.fromarray(arr).save(buf, format=fmt)
    atomic_write_bytes(path, buf.getvalue())


def make_grid(images: Sequence[np.ndarray] | np.ndarray, ncols: int | None = None,
              pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile `N` images `(H, W, 3) uint8` into one `uint8` grid with `pad` pixels between them.
    `ncols` defaults to a square-ish layout."""
    images = [np.asarray(im) for im in images]
    if not images:
        raise ValueError("make_grid needs at least one image")
    n = len(images)
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    h, w = images[0].shape[:2]
    grid = np.full((nrows * h + (nrows + 1) * pad, ncols * w + (ncols + 1) * pad, 3), fill,
                   np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = im if im.ndim == 3 else im[..., None]
    return grid


def sheet_font(px: int):
    """Pillow's built-in font at `px` pixels (a scalable one where Pillow has FreeType)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except (TypeError, ImportError, OSError):  # an old Pillow, or one without FreeType
        return ImageFont.load_default()


def _fit_text(draw, text: str, font, width: int) -> str:
    """`text` shortened with '...' in the middle until it is at most `width` pixels wide."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # undecodable file names
    # control characters (a newline in a file name) shown as escapes: one line of text, always
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)
    if draw.textlength(text, font=font) <= width:
        return text
    keep = len(text)
    while keep > 1:
        keep -= 1
        short = text[:(keep + 1) // 2] + "..." + text[len(text) - keep // 2:]
        if draw.textlength(short, font=font) <= width:
            return short
    return "..."


def contact_sheet(rows: Sequence[Sequence[np.ndarray | None]], col_titles: Sequence[str],
                  row_titles: Sequence[str] | None = None, scale: int = 1, pad: int = 4,
                  ) -> np.ndarray:
    """A labelled grid for people: `rows` of `(H, W, 3) uint8` tiles (None: left blank), each
    magnified `scale` times (nearest neighbour, so pixels stay sharp), a header line with
    `col_titles` above the columns and, with `row_titles`, a column of names on the left
    (shortened with '...' to fit). Returns `(sheet_h, sheet_w, 3) uint8`, white background:
    sheet_w = label_w + ncols * (W * scale + pad) + pad, where label_w is one tile wide with
    row titles and 0 without; sheet_h = header_h + nrows * (H * scale + pad) + pad."""
    from PIL import ImageDraw

    first = next((t for r in rows for t in r if t is not None), None)
    if first is None:
        raise ValueError("contact_sheet needs at least one image")
    th, tw = first.shape[0] * scale, first.shape[1] * scale
    ncols = len(col_titles)
    font = sheet_font(max(12, min(tw // 12, 24)))
    header_h = 2 * font.size if hasattr(font, "size") else 24
    label_w = tw if row_titles is not None else 0
    width = label_w + ncols * (tw + pad) + pad
    height = header_h + len(rows) * (th + pad) + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    ink = (40, 40, 40)

    def centred(text, left, top, w, h):
        text = _fit_text(draw, text, font, w - 2 * pad)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        draw.text((left + (w - (x1 - x0)) // 2 - x0, top + (h - (y1 - y0)) // 2 - y0), text,
                  fill=ink, font=font)

    for c, title in enumerate(col_titles):
        centred(title, label_w + pad + c * (tw + pad), 0, tw, header_h)
    for r, row in enumerate(rows):
        top = header_h + r * (th + pad)
        if row_titles is not None:
            centred(row_titles[r], 0, top, label_w, th)
        for c, tile in enumerate(row[:ncols]):
            if tile is not None:
                big = np.repeat(np.repeat(np.asarray(tile, np.uint8), scale, 0), scale, 1)
                sheet.paste(Image.fromarray(big), (label_w + pad + c * (tw + pad), top))
    return np.asarray(sheet)
