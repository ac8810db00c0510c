"""Masks: which pixels of a face are known. Every mask here is `(S, S) float32` with 1 = known
pixel and 0 = to fill, applied to all channels.

Mask types (as in the reference completion code, plus a box and files):
    center   a centred square hole; `center_scale` is the margin on each side (0.25 -> the middle
             half of each axis, the 32x32 hole of a 64x64 face)
    left, right, top, bottom   that half of the image is missing
    random   each pixel missing with probability `missing_fraction` (0.8 as in Yeh et al.)
    grid     only every 4th pixel in each direction is known
    lowres   no pixel is known; the search matches 8x8 block means of the input instead
    full     nothing is missing: a pure projection of the image onto the generator
"""

from __future__ import annotations

import glob
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inpaint.errors import MaskError
from inpaint.files import open_regular
from inpaint.images import is_image_path

MASK_TYPES = ("center", "left", "right", "top", "bottom", "random", "grid", "lowres", "full")
SCATTERED_TYPES = ("random", "grid")  # missing pixels spread out, known ones everywhere
GRID_STEP = 4  # `grid`: one known pixel in 4 along each axis
LOWRES_BLOCK = 8  # `lowres`: the input is known only as means over 8x8 blocks

# Named face regions (inpaint fill --region) as groups of the 68 iBUG 300-W landmarks (0-based;
# align.py finds them); fill.region_mask turns each group's hull into a hole. "left" and "right"
# are as seen in the photo: the left eye is the one on the photo's left (the person's right eye).
_LEFT_EYE, _RIGHT_EYE = tuple(range(36, 42)), tuple(range(42, 48))
_LEFT_BROW, _RIGHT_BROW = tuple(range(17, 22)), tuple(range(22, 27))
FACE_REGIONS: dict[str, tuple[tuple[int, ...], ...]] = {
    "mouth": (tuple(range(48, 68)),),
    "nose": (tuple(range(27, 36)),),
    "eyes": (_LEFT_EYE, _RIGHT_EYE),
    "left-eye": (_LEFT_EYE,),
    "right-eye": (_RIGHT_EYE,),
    "eyebrows": (_LEFT_BROW, _RIGHT_BROW),
    "left-eyebrow": (_LEFT_BROW,),
    "right-eyebrow": (_RIGHT_BROW,),
    "face": (tuple(range(68)),),
}

Z_STREAM, MASK_STREAM = 0, 1  # independent random streams per image


def image_seed(seed: int, stem: str, stream: int = Z_STREAM) -> list[int]:
    """A per-image seed, so random masks (MASK_STREAM) and starting points (Z_STREAM) depend on
    the image's name and the user's seed, never on which batch the image falls in."""
    return [seed, zlib.crc32(stem.encode("utf-8", "surrogateescape")), stream]


def build_mask(kind: str, size: int, *, center_scale: float = 0.25,
               missing_fraction: float = 0.8, seed: int | list[int] = 0) -> np.ndarray:
    """A mask of type `kind` for a `size` x `size` image: `(size, size) float32`, 1 = known."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise MaskError(f"mask size must be a whole number of pixels >= 1, got {size!r}")
    m = np.ones((size, size), np.float32)
    half = size // 2
    if kind == "center":
        if not 0.0 <= center_scale < 0.5:
            raise MaskError(f"center scale must be in [0, 0.5), got {center_scale}")
        lo, hi = int(size * center_scale), int(size * (1.0 - center_scale))
        m[lo:hi, lo:hi] = 0.0
    elif kind == "left":
        m[:, :half] = 0.0
    elif kind == "right":
        m[:, half:] = 0.0
    elif kind == "top":
        m[:half, :] = 0.0
    elif kind == "bottom":
        m[half:, :] = 0.0
    elif kind == "random":
        if not 0.0 <= missing_fraction <= 1.0:
            raise MaskError(f"missing fraction must be in [0, 1], got {missing_fraction}")
        m[np.random.default_rng(seed).random((size, size)) < missing_fraction] = 0.0
    elif kind == "grid":
        m[:] = 0.0
        m[::GRID_STEP, ::GRID_STEP] = 1.0
    elif kind == "lowres":
        m[:] = 0.0
    elif kind == "full":
        pass
    else:
        raise MaskError(f"unknown mask type {kind!r}; choose from {', '.join(MASK_TYPES)}")
    return m


def check_box(box) -> tuple[int, int, int, int]:
    """`box` as four whole numbers (x, y, w, h); MaskError for anything else (NaN, 2.5, three
    numbers, a string)."""
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or not all(np.isfinite(v) and v == int(v) for v in values):
        raise MaskError(f"a box is four whole numbers x, y, w, h (pixels), got {box!r}")
    x, y, w, h = (int(v) for v in values)
    return x, y, w, h


def box_mask(box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """A hole over the box `(x, y, w, h)` in model pixel coordinates: `(size, size) float32`."""
    x, y, w, h = check_box(box)
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > size or y + h > size:
        raise MaskError(f"mask box {x},{y},{w},{h} must have a positive size and lie inside the "
                        f"{size}x{size} model image")
    m = np.ones((size, size), np.float32)
    m[y:y + h, x:x + w] = 0.0
    return m


def read_mask_image(path: str | Path) -> Image.Image:
    """A mask file as a greyscale ("L") image, read only if it is a regular file; MaskError
    naming the file when it is missing, special (a FIFO, a link loop) or not an image."""
    path = Path(path)
    try:
        with open_regular(path, error=lambda m: MaskError(f"mask {m}")) as f, \
                Image.open(f) as im:
            im.load()
            return im.convert("L")
    except FileNotFoundError:
        raise MaskError(f"mask {path}: no such file") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise MaskError(f"mask {path} is not a readable image: {exc}") from None


def read_mask(path: str | Path, size: int, image_size: tuple[int, int] | None = None,
              ) -> np.ndarray:
    """A mask PNG (white = known, black = fill; grey >= 128 counts as known) -> `(size, size)`.

    The file must be the model's size, or the size of the image it belongs to (`image_size`,
    (width, height)); it is resized with nearest neighbour. Anything else is a MaskError naming
    the file."""
    path = Path(path)
    gray = read_mask_image(path)
    allowed = {(size, size)} | ({tuple(image_size)} if image_size else set())
    if gray.size not in allowed:
        want = " or ".join(f"{w}x{h}" for w, h in sorted(allowed))
        raise MaskError(f"mask {path} is {gray.size[0]}x{gray.size[1]}; it must be {want}")
    if gray.size != (size, size):
        if image_size and gray.size == tuple(image_size):
            gray = _center_square(gray)
        gray = gray.resize((size, size), Image.Resampling.NEAREST)
    return (np.asarray(gray) >= 128).astype(np.float32)


def _center_square(im: Image.Image) -> Image.Image:
    """The centred square crop the images get (see images.crop_resize), applied to a mask."""
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return im.crop((left, top, left + side, top + side))


def find_mask_for(mask_dir: Path, stem: str) -> Path:
    """The mask in `mask_dir` with the image's stem (any image suffix); MaskError if none."""
    # escaped: a stem like "a[1]" is a name, not a pattern
    found = sorted(p for p in mask_dir.glob(f"{glob.escape(stem)}.*") if is_image_path(p))
    if not found:
        raise MaskError(f"no mask for image {stem!r} in {mask_dir} (expected {stem}.png)")
    return found[0]


def context_weights(mask: np.ndarray, window: int = 7) -> np.ndarray:
    """Yeh et al. (2017), eq. 3: each known pixel weighted by the fraction of unknown pixels in
    its `window` x `window` neighbourhood (pixels outside the image do not count); unknown pixels
    weigh 0. `mask`: (..., S, S) with 1 = known -> weights of the same shape in [0, 1].

    A mask with no unknown pixel would weigh everything 0, so it gets the mask itself (plain L1)."""
    m = np.asarray(mask, np.float32)
    r = window // 2
    unknown = 1.0 - m
    pad = [(0, 0)] * (m.ndim - 2) + [(r, r), (r, r)]
    # box sums by an integral image over the padded arrays
    def box_sum(a):
        p = np.pad(a, pad)
        c = np.cumsum(np.cumsum(p, axis=-1), axis=-2)
        c = np.pad(c, [(0, 0)] * (m.ndim - 2) + [(1, 0), (1, 0)])
        s = m.shape[-1]
        h = m.shape[-2]
        return (c[..., window:window + h, window:window + s] - c[..., :h, window:window + s]
                - c[..., window:window + h, :s] + c[..., :h, :s])
    frac = box_sum(unknown) / box_sum(np.ones_like(m))
    w = m * frac
    empty = w.reshape(*w.shape[:-2], -1).sum(-1) == 0
    return np.where(empty[..., None, None], m, w).astype(np.float32)


def lowres(images: np.ndarray, block: int = LOWRES_BLOCK) -> np.ndarray:
    """Block means upsampled back: `(..., S, S, C)` -> same shape, constant on `block` squares."""
    x = np.asarray(images, np.float32)
    *lead, s, _, c = x.shape
    means = x.reshape(*lead, s // block, block, s // block, block, c).mean(axis=(-4, -2))
    return np.repeat(np.repeat(means, block, axis=-3), block, axis=-2)


@dataclass
class MaskSpec:
    """Where each image's mask comes from: a type (MASK_TYPES), a file, a folder of per-image
    files or a box (x, y, w, h in model pixels). `seed` seeds the random masks per image."""

    kind: str = "center"
    center_scale: float = 0.25
    missing_fraction: float = 0.8
    file: Path | None = None
    folder: Path | None = None
    box: tuple[int, int, int, int] | None = None
    seed: int = 0

    @property
    def lowres(self) -> bool:
        return self.kind == "lowres" and self.file is None and self.folder is None \
            and self.box is None

    @property
    def scattered(self) -> bool:
        """Missing pixels spread over the whole face, known ones among them (the random and
        grid types): the search from the encoder runs longer on these (config.DEFAULT_ITERS).
        Masks from files, folders and boxes count as holes."""
        return self.kind in SCATTERED_TYPES and self.file is None and self.folder is None \
            and self.box is None

    def describe(self) -> str:
        if self.file:
            return f"file {self.file}"
        if self.folder:
            return f"folder {self.folder}"
        if self.box:
            return "box {},{},{},{}".format(*self.box)
        return self.kind

    def key(self) -> dict:
        """What decides the masks (for telling runs with other masks apart)."""
        if self.file or self.folder or self.box:
            return {"mask": self.describe()}
        key: dict = {"mask": self.kind}
        if self.kind == "center":
            key["center_scale"] = self.center_scale
        if self.kind == "random":
            key["missing_fraction"] = self.missing_fraction
        return key

    def mask_for(self, stem: str, size: int, image_wh: tuple[int, int] | None = None
                 ) -> np.ndarray:
        """The (size, size) float32 mask of the image named `stem` (image_wh: its size, for
        checking a mask file against it). Raises MaskError."""
        if self.box is not None:
            return box_mask(self.box, size)
        if self.file is not None:
            return read_mask(self.file, size, image_wh)
        if self.folder is not None:
            return read_mask(find_mask_for(self.folder, stem), size, image_wh)
        return build_mask(self.kind, size, center_scale=self.center_scale,
                                  missing_fraction=self.missing_fraction,
                                  seed=image_seed(self.seed, stem, MASK_STREAM))
