"""Whole photos: detect and align each face, fill the chosen region by latent search, map the
result back with the inverse of the alignment and blend it into the photo at its own resolution.

For one photo `(H, W, 3)` uint8 and a region to fill (landmark hulls, a photo-sized mask or a box):
    1. detect faces and their 68 landmarks; each face has its alignment transform T (photo ->
       the model's S x S template frame, see align.py);
    2. the hole of each face is the region's part inside that face's aligned square (the square's
       corners mapped back with T^-1); a region that touches no face is an error;
    3. warp the face and its hole into the template frame (a pixel touched by the hole counts as
       unknown; template pixels outside the photo are unknown too) and search z (search.py);
    4. warp G(z) back to the photo: upsampled with Lanczos to the face's scale in the photo, then
       sampled through T with bicubic interpolation;
    5. Poisson-blend it into the hole at photo resolution (a sparse direct solve over the hole's
       bounding box): the fill takes G(z)'s gradients and the photo's values at the hole's border,
       so no seam shows where the fill meets the photo or where the aligned square ends.
Pixels outside the hole are copied bit-exactly.

The model works at 64x64: on a face 300 pixels wide the fill is upsampled about 5x and is that
much softer than the photo around it (see README, Limits).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from inpaint.align import (
    AlignSettings,
    FaceAligner,
    apply_transform,
    invert_transform,
    warp_face,
)
from inpaint.blend import poisson_blend
from inpaint.detail import DEFAULT_DETAIL, check_detail, restore_detail
from inpaint.errors import InpaintError, MaskError, NoFaceFound, UsageError
from inpaint.files import atomic_path, atomic_write_bytes
from inpaint.images import (
    IMAGE_FORMATS,
    in_source_mode,
    read_photo,
    sheet_font,
    to_rgb8,
    to_uint8,
    write_image,
)
from inpaint.masks import FACE_REGIONS, check_box, find_mask_for, image_seed, read_mask_image
from inpaint.records import append_jsonl, check_settings, output_stems, read_jsonl

SQUARE_INSET = 0.04  # of the aligned square's side (2.6 of 64 pixels): the hole stays this far
# inside, so the search sees known photo all around it; at 0 a hole reaching the square's edge
# (--region face) got a bright band and a straight, stair-stepped seam there, G being free up
# to the edge (Grace Hopper, --region face; 0.08 left the glasses' frame at the eyes' level)
MAX_GROW = 1000.0  # pixels a region may be grown by (--grow, the page's field): past any face

log = logging.getLogger(__name__)

# Default growth of a region's hull: a tenth of the distance between the outer eye corners
# (landmarks 36 and 45), so the hole covers the feature's edge (lip line, lashes) at any face size.
DEFAULT_GROW_FRACTION = 0.1
RECORDS_NAME = "fill.jsonl"
SETTINGS_NAME = "fill.json"  # the settings the fills in an output folder were made with
COMPARE_HEIGHT = 512  # pixels of the before | after photos in compare/<stem>.png
COMPARE_FACE_SCALE = 4  # the aligned faces in compare/<stem>.png, magnified


# ----------------------------------------------------------------------------- geometry


def convex_hull(points: np.ndarray) -> np.ndarray:
    """`(N, 2)` points -> their convex hull's vertices `(K, 2)` float64, counter-clockwise
    (Andrew's monotone chain)."""
    pts = sorted({(float(x), float(y)) for x, y in np.asarray(points, np.float64)})
    if len(pts) <= 2:
        return np.array(pts, np.float64).reshape(-1, 2)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1], np.float64)


def polygon_mask(vertices: np.ndarray, shape: tuple[int, int], grow: float = 0.0) -> np.ndarray:
    """`(H, W)` bool: the pixels whose centres lie in the polygon grown by `grow` pixels (the
    polygon plus a disk of that radius around every edge and vertex)."""
    h, w = shape
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    pts = [(float(x), float(y)) for x, y in vertices]
    if len(pts) >= 3:
        draw.polygon(pts, fill=255)
    r = max(float(grow), 0.0)
    if r > 0 or len(pts) < 3:
        width = max(1, int(round(2 * r)))
        for i, p in enumerate(pts):
            q = pts[(i + 1) % len(pts)]
            draw.line([p, q], fill=255, width=width)
            draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=255)
    return np.asarray(im) > 127


def default_grow(landmarks: np.ndarray) -> float:
    """DEFAULT_GROW_FRACTION of the outer-eye-corner distance, at least one pixel."""
    pts = np.asarray(landmarks, np.float64)
    return max(1.0, DEFAULT_GROW_FRACTION * float(np.linalg.norm(pts[45] - pts[36])))


def region_mask(landmarks: np.ndarray, regions: Sequence[str], shape: tuple[int, int],
                grow: float | None = None) -> np.ndarray:
    """`(H, W)` bool, True = fill: the union of the named regions' landmark hulls, each grown by
    `grow` pixels (default: `default_grow`). MaskError for an unknown region name."""
    pts = np.asarray(landmarks, np.float64)
    grow = default_grow(pts) if grow is None else float(grow)
    out = np.zeros(shape, bool)
    for name in regions:
        if name not in FACE_REGIONS:
            raise MaskError(f"unknown region {name!r}; choose from {', '.join(FACE_REGIONS)}")
        for group in FACE_REGIONS[name]:
            out |= polygon_mask(convex_hull(pts[list(group)]), shape, grow)
    return out


def square_in_photo(transform: np.ndarray, size: int, shape: tuple[int, int],
                    inset: float = 0.0) -> np.ndarray:
    """`(H, W)` bool: the photo pixels that the aligned `size` x `size` square covers, less
    `inset` face pixels along each side."""
    lo, hi = inset - 0.5, size - inset - 0.5
    corners = np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]])
    return polygon_mask(apply_transform(invert_transform(transform), corners), shape)


def box_hole(box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """`(H, W)` bool hole over the box (x, y, w, h) in photo pixels; MaskError if it does not
    fit the photo."""
    x, y, w, h = check_box(box)
    height, width = shape
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise MaskError(f"box {x},{y},{w},{h} must have a positive size and lie inside the "
                        f"{width}x{height} photo")
    out = np.zeros(shape, bool)
    out[y:y + h, x:x + w] = True
    return out


def read_photo_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask file the size of the photo (white = keep, black = fill; grey >= 128 keeps) ->
    `(H, W)` bool hole. MaskError naming the file when unreadable or of another size."""
    gray = read_mask_image(path)
    height, width = shape
    if gray.size != (width, height):
        raise MaskError(f"mask {path} is {gray.size[0]}x{gray.size[1]}; it must be the photo's "
                        f"size, {width}x{height}")
    return np.asarray(gray) < 128


# ----------------------------------------------------------------------------- warping back


def warp_to_photo(face: np.ndarray, transform: np.ndarray, bbox: tuple[int, int, int, int]
                  ) -> np.ndarray:
    """Sample an aligned face `(S, S, 3)` uint8 at the photo pixels of `bbox` (x0, y0, x1, y1,
    exclusive ends) through `transform` (photo -> face): `(y1 - y0, x1 - x0, 3)` float64.

    The face is first enlarged with Lanczos to about the photo's scale, so the bicubic sampling
    that follows interpolates between neighbouring pixels rather than magnifying them."""
    t = np.vstack([np.asarray(transform, np.float64), [0.0, 0.0, 1.0]])
    photo_per_face = 1.0 / float(np.linalg.svd(t[:2, :2], compute_uv=False).min())
    k = max(1, int(np.ceil(photo_per_face)))
    s = face.shape[0]
    # big pixel centre u' = k (u + 0.5) - 0.5; bbox pixel (i, j) is photo pixel (x0 + i, y0 + j)
    up = np.array([[k, 0, 0.5 * k - 0.5], [0, k, 0.5 * k - 0.5], [0, 0, 1]])
    x0, y0, x1, y1 = bbox
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)
    m = up @ t @ shift  # bbox pixel -> big face pixel, pixel-centre coordinates
    a, b, c = m[0]
    d, e, f = m[1]
    data = (a, b, c + 0.5 - 0.5 * (a + b), d, e, f + 0.5 - 0.5 * (d + e))  # Pillow's convention
    channels = []
    for ch in range(face.shape[2]):  # 32-bit float images: Pillow truncates 8-bit results
        im = Image.fromarray(np.ascontiguousarray(face[..., ch], np.float32), mode="F")
        big = im.resize((s * k, s * k), Image.Resampling.LANCZOS)
        out = big.transform((x1 - x0, y1 - y0), Image.Transform.AFFINE, data,
                            resample=Image.Resampling.BICUBIC)
        channels.append(np.asarray(out, np.float64))
    return np.stack(channels, -1)


def _bbox(hole: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(hole)
    h, w = hole.shape
    return (max(0, int(xs.min()) - margin), max(0, int(ys.min()) - margin),
            min(w, int(xs.max()) + 1 + margin), min(h, int(ys.max()) + 1 + margin))


def blend_into_photo(photo: np.ndarray, fill: np.ndarray, hole: np.ndarray,
                     bbox: tuple[int, int, int, int]) -> np.ndarray:
    """Poisson-blend `fill` (the bbox's pixels, float) into `photo`'s `hole` (bool (H, W), inside
    bbox). Returns a new uint8 photo; pixels outside the hole are `photo`'s, bit for bit."""
    x0, y0, x1, y1 = bbox
    crop, hole_c = photo[y0:y1, x0:x1].astype(np.float64), hole[y0:y1, x0:x1]
    solved = poisson_blend(crop, fill, (~hole_c).astype(np.float32), solver="direct")
    out = photo.copy()
    region = out[y0:y1, x0:x1]
    region[hole_c] = np.clip(np.round(solved[hole_c]), 0, 255).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------- one photo


@dataclass
class FaceFill:
    """One face of a photo and what was filled in it."""

    box: tuple[int, int, int, int]  # detector box (left, top, right, bottom)
    score: float
    landmarks: np.ndarray  # (68, 2)
    transform: np.ndarray  # (2, 3) photo -> aligned face
    hole_pixels: int  # photo pixels filled for this face
    before: np.ndarray  # (S, S, 3) uint8 aligned face, hole greyed out
    after: np.ndarray  # (S, S, 3) uint8 aligned face of the result
    generated: np.ndarray  # (S, S, 3) uint8 G(z)
    loss: float  # the search's final loss

    def record(self) -> dict:
        return {"box": list(self.box), "score": round(self.score, 4),
                "transform": np.round(self.transform, 6).tolist(),
                "landmarks": np.asarray(self.landmarks).tolist(),
                "hole_pixels": self.hole_pixels, "loss": round(self.loss, 6)}


@dataclass
class FillResult:
    image: np.ndarray  # (H, W, 3) uint8, the whole photo with the region filled
    hole: np.ndarray  # (H, W) bool, the pixels that were filled
    faces: list[FaceFill] = field(default_factory=list)
    unfilled_pixels: int = 0  # pixels of a mask or box outside every face's aligned square
    seconds: dict[str, float] = field(default_factory=dict)


def _pick(kept, policy: str):
    if policy == "largest":
        return kept[:1]
    if policy == "all":
        return kept
    raise InpaintError(f"faces must be 'largest' or 'all', got {policy!r}")


def fill_photo(photo: np.ndarray, model, aligner, *, regions: Sequence[str] = (),
               grow: float | None = None, hole: np.ndarray | None = None, faces: str = "largest",
               options=None, name: str = "photo", detail: str = DEFAULT_DETAIL,
               progress: Callable[[dict], None] | None = None) -> FillResult:
    """Fill `photo` `(H, W, 3)` uint8 where asked: the landmark `regions` of each chosen face,
    and/or `hole` `(H, W)` bool (True = fill) in photo pixels.

    `model`: a LoadedModel, searched with `options` (SearchOptions; default: the defaults), or a
    search.Completer set up once for many photos, which holds its own options (then `options`
    must be None); `aligner`: an align.FaceAligner whose size is the model's; `faces`: "largest"
    or "all"; `name` seeds each face's search (so a photo's result does not depend on what else
    is in the batch) and names it in errors; `detail`: "context" adds the photo's own high
    frequencies to each filled region (detail.restore_detail), "none" leaves the upsampled fill;
    `progress`, if given, is called with {"stage": "detect" | "search" | "blend" | "detail",
    "face": k (1-based), "faces": n, "iteration": i, "iterations": N} as the work goes on
    (iteration and iterations only in "search", once per update of the latent search).
    Raises NoFaceFound, or MaskError when the region lies outside every detected face."""
    from inpaint.search import Completer  # TensorFlow: imported when used

    photo = np.ascontiguousarray(photo, np.uint8)
    if isinstance(model, Completer) and options is not None:
        raise UsageError("fill_photo: give the options to the Completer, not to both")
    completer = model if isinstance(model, Completer) else Completer(model, options)
    _check_request(photo, completer, aligner, regions, hole, name, grow)
    check_detail(detail)
    tell = progress or (lambda _: None)
    t0 = time.perf_counter()
    tell({"stage": "detect", "face": 0, "faces": 0})
    kept, _ = aligner.detect(photo)
    if not kept:
        raise NoFaceFound(f"{name}: no face found")
    chosen = _pick(kept, faces)
    seconds = {"detect": time.perf_counter() - t0, "search": 0.0, "blend": 0.0, "detail": 0.0}
    result = FillResult(photo.copy(), np.zeros(photo.shape[:2], bool), seconds=seconds)
    covered = np.zeros(photo.shape[:2], bool)
    for k, det in enumerate(chosen):
        face = _fill_face(photo, det, result, covered, aligner, completer,
                          regions=regions, grow=grow, hole=hole, seed_name=f"{name}#{k}",
                          detail=detail, tell=_telling(tell, k + 1, len(chosen)))
        if face is not None:
            result.faces.append(face)
    if hole is not None:
        result.unfilled_pixels = int((hole & ~covered).sum())
    if not result.faces:
        raise MaskError(f"{name}: the region to fill lies outside every detected face "
                        f"({len(chosen)} face(s) used, with --faces {faces})")
    if result.unfilled_pixels:
        log.warning("%s: %d pixels of the region lie outside every face's aligned square and "
                    "are left as they were", name, result.unfilled_pixels)
    seconds["total"] = time.perf_counter() - t0
    return result


def _check_request(photo, completer, aligner, regions, hole, name: str, grow=None) -> None:
    shape = photo.shape[:2]
    if not regions and hole is None:
        raise MaskError("nothing to fill: give a region, a mask or a box")
    if hole is not None and hole.shape != shape:
        raise MaskError(f"{name}: the mask is {'x'.join(map(str, hole.shape[::-1]))}, the "
                        f"photo {shape[1]}x{shape[0]}")
    if not regions and not hole.any():
        raise MaskError(f"{name}: the mask marks nothing to fill (black = fill, white = keep)")
    if grow is not None and not (np.isfinite(grow) and 0 <= grow <= MAX_GROW):
        raise MaskError(f"grow must be a number of pixels in [0, {MAX_GROW}], got {grow}")
    size = completer.image_size
    if aligner.settings.size != size:
        raise InpaintError(f"the aligner makes {aligner.settings.size}-pixel faces; the model "
                           f"needs {size}")


def _telling(tell: Callable[[dict], None], face: int, faces: int) -> Callable[..., None]:
    """tell(stage, **more) for one face: the progress record with the face's place added."""
    return lambda stage, **more: tell({"stage": stage, "face": face, "faces": faces, **more})


def _fill_face(photo, det, result: FillResult, covered: np.ndarray, aligner, completer, *,
               regions, grow, hole, seed_name: str, detail: str = DEFAULT_DETAIL,
               tell: Callable[..., None] = lambda stage, **more: None) -> FaceFill | None:
    """Fill the part of the request inside one face's aligned square into `result.image`
    (updating `result.hole`, `result.seconds` and `covered`); None if that part is empty."""
    shape, size, seconds = photo.shape[:2], aligner.settings.size, result.seconds
    t1 = time.perf_counter()
    face, points, transform = aligner.align(photo, det.box)
    square = square_in_photo(transform, size, shape)
    inner = square_in_photo(transform, size, shape, inset=SQUARE_INSET * size)
    covered |= inner
    mine = np.zeros(shape, bool)
    if regions:
        mine |= region_mask(points, regions, shape, grow)
    if hole is not None:
        mine |= hole
    mine &= inner & ~result.hole  # a pixel is filled once, by the first face covering it
    seconds["detect"] += time.perf_counter() - t1
    if not mine.any():
        return None
    t2 = time.perf_counter()
    known = _known_in_face(mine, transform, size)
    seed = image_seed(completer.options.seed, seed_name)
    iters = completer.options.iters
    tell("search", iteration=0, iterations=iters)
    out = completer(face[None], known[None], blend_result=False, seeds=[seed],
                    callback=lambda i, *_: tell("search", iteration=i, iterations=iters))
    tell("blend")
    seconds["search"] += time.perf_counter() - t2
    t3 = time.perf_counter()
    generated = to_uint8(out.generated[0])
    bbox = _bbox(mine, margin=2)
    result.image = blend_into_photo(result.image, warp_to_photo(generated, transform, bbox),
                                    mine, bbox)
    result.hole |= mine
    seconds["blend"] += time.perf_counter() - t3
    if detail == "context":
        tell("detail")
        t4 = time.perf_counter()
        result.image = add_photo_detail(result.image, mine, transform, square, seed, points)
        seconds["detail"] += time.perf_counter() - t4
    before = np.where(known[..., None] > 0.5, face, 128).astype(np.uint8)
    return FaceFill(det.box, det.score, points, transform, int(mine.sum()), before,
                    warp_face(result.image, transform, size), generated,
                    float(out.losses["total"][-1][0]))


def add_photo_detail(image: np.ndarray, hole: np.ndarray, transform: np.ndarray,
                     square: np.ndarray, seed: int, landmarks: np.ndarray | None = None
                     ) -> np.ndarray:
    """`image` (H, W, 3) uint8 with the photo's own detail restored in `hole` (detail.py), from
    a crop around the hole as large again on every side, inside the face's aligned `square`
    (so the work is bounded by the face, not the photo), taking detail only from the face's
    skin where its 68 `landmarks` (photo pixels) are given (their hull, drawn in the crop: no
    hair or background strands in a cheek). Pixels outside the hole are kept."""
    x0, y0, x1, y1 = _bbox(hole, margin=0)
    m = max(x1 - x0, y1 - y0)
    fx0, fy0, fx1, fy1 = _bbox(square | hole, margin=0)
    bx0, by0 = max(fx0, x0 - m), max(fy0, y0 - m)
    bx1, by1 = min(fx1, x1 + m), min(fy1, y1 + m)
    t = np.asarray(transform, np.float64)
    scale = 1.0 / np.sqrt(abs(np.linalg.det(t[:2, :2])))  # photo pixels per face pixel
    crop, hole_c = image[by0:by1, bx0:bx1], hole[by0:by1, bx0:bx1]
    source = None if landmarks is None else region_mask(
        np.asarray(landmarks, np.float64) - [bx0, by0], ["face"], hole_c.shape, grow=0.0)
    restored = restore_detail(crop, hole_c, scale, seed=seed, source=source)
    out = image.copy()
    out[by0:by1, bx0:bx1][hole_c] = np.round(restored[hole_c]).astype(np.uint8)
    return out


def _known_in_face(hole: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    """The search mask in the aligned frame, `(S, S)` float32 with 1 = known: 0 wherever the
    photo's hole reaches (any overlap) and where the square leaves the photo."""
    h, w = hole.shape
    layers = np.zeros((h, w, 3), np.uint8)
    layers[..., 0] = np.where(hole, 255, 0)
    layers[..., 1] = 255  # inside the photo
    warped = warp_face(layers, transform, size, resample="bilinear", antialias=False)
    # bilinear sampling: any share of a hole pixel makes a face pixel unknown
    return ((warped[..., 0] == 0) & (warped[..., 1] == 255)).astype(np.float32)


# ----------------------------------------------------------------------------- the API


_DEFAULTS: dict = {}


def _default_model():
    from inpaint.models import PRETRAINED_DIR, load_model

    if "model" not in _DEFAULTS:
        _DEFAULTS["model"] = load_model(PRETRAINED_DIR)
    return _DEFAULTS["model"]


def fill(image, region: str | Sequence[str] | None = None, mask=None,
         box: tuple[int, int, int, int] | None = None, *, grow: float | None = None,
         faces: str = "largest", model=None, options=None, aligner=None,
         detail: str = DEFAULT_DETAIL, progress: Callable[[dict], None] | None = None):
    """Fill part of the face(s) in a photo and return the whole photo.

    image: a numpy array `(H, W, 3)` uint8 or a PIL image (the result is of the same kind).
    Say where to fill with any of: `region` ("mouth", "nose", ... see masks.FACE_REGIONS, or a list),
    `mask` `(H, W)` array with 1/True = keep and 0/False = fill (as every mask in inpaint), or
    `box` (x, y, w, h) in photo pixels. `model`: a LoadedModel or a model directory (default:
    the shipped model); `options`: config.SearchOptions; `detail`: "context" (default) restores
    the photo's own fine detail in the filled region, "none" keeps the upsampled 64-px fill;
    `progress`: called with each progress record of fill_photo (stage, face, iteration).

        import inpaint
        from PIL import Image
        inpaint.fill(Image.open("me.jpg"), region="mouth").save("me_filled.jpg")
    """
    from inpaint.backend import import_tensorflow

    import_tensorflow()  # with its C++ start-up lines hidden, as in the command line
    from inpaint.models import LoadedModel, load_model

    as_pil = isinstance(image, Image.Image)
    photo = to_rgb8(image) if as_pil else np.asarray(image)  # any mode, as read_image reads
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise InpaintError(f"image must be (H, W, 3) uint8 or a PIL image, got {photo.shape} "
                           f"{photo.dtype}")
    if model is None:
        model = _default_model()
    elif not isinstance(model, LoadedModel):
        model = load_model(model)
    regions = [region] if isinstance(region, str) else list(region or [])
    hole = None
    if mask is not None:
        hole = np.asarray(mask) < 0.5 if np.asarray(mask).dtype != bool else ~np.asarray(mask)
    if box is not None:
        b = box_hole(box, photo.shape[:2])
        hole = b if hole is None else hole | b
    aligner = aligner or FaceAligner(AlignSettings(size=model.config.model.image_size))
    out = fill_photo(photo, model, aligner, regions=regions, grow=grow, hole=hole, faces=faces,
                     options=options, detail=detail, progress=progress).image
    return in_source_mode(out, image) if as_pil else out  # in the image's mode (grey, 16-bit)


# ----------------------------------------------------------------------------- files


def compare_sheet(before: np.ndarray, result: FillResult) -> np.ndarray:
    """before | after at COMPARE_HEIGHT pixels high, each face's box drawn and numbered on the
    before side; below, per face, "face K" over its aligned face before (hole in grey) | after,
    magnified COMPARE_FACE_SCALE x (half that for more than 4 faces), as many pairs to a row as
    fit the photos' width: `(H', W', 3)` uint8."""
    h, w = before.shape[:2]
    scale = COMPARE_HEIGHT / h
    size = (max(1, round(w * scale)), COMPARE_HEIGHT)
    left, right = (Image.fromarray(im).resize(size, Image.Resampling.LANCZOS)
                   for im in (before, result.image))
    font = sheet_font(16)
    draw = ImageDraw.Draw(left)
    for k, f in enumerate(result.faces, 1):
        box = [round(v * scale) for v in f.box]
        draw.rectangle(box, outline=(80, 255, 120), width=2)
        draw.text((box[0] + 3, box[1] + 2), str(k), fill=(80, 255, 120), font=font)
    width = 2 * size[0] + 8
    sheet = [np.concatenate([np.asarray(left), np.full((COMPARE_HEIGHT, 8, 3), 255, np.uint8),
                             np.asarray(right)], 1)]
    mag = COMPARE_FACE_SCALE if len(result.faces) <= 4 else max(1, COMPARE_FACE_SCALE // 2)
    pairs = [_face_pair(k, f, mag, font) for k, f in enumerate(result.faces, 1)]
    if pairs:
        per_row = max(1, (width + 8) // (pairs[0].shape[1] + 8))
        for i in range(0, len(pairs), per_row):
            row = np.concatenate([np.pad(p, ((0, 0), (0, 8), (0, 0)), constant_values=255)
                                  for p in pairs[i:i + per_row]], 1)
            sheet.append(row)
    width = max(width, *(r.shape[1] for r in sheet))
    return np.concatenate([np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)),
                                  constant_values=255) for r in sheet], 0)


def _face_pair(k: int, face: FaceFill, mag: int, font) -> np.ndarray:
    """"face K" over the aligned face before | after, magnified `mag` x (nearest neighbour)."""
    big = [np.repeat(np.repeat(im, mag, 0), mag, 1) for im in (face.before, face.after)]
    pair = np.concatenate([big[0], np.full((big[0].shape[0], 4, 3), 255, np.uint8), big[1]], 1)
    label = Image.new("RGB", (pair.shape[1], 20), (255, 255, 255))
    ImageDraw.Draw(label).text((2, 2), f"face {k}", fill=(40, 40, 40), font=font)
    return np.concatenate([np.asarray(label), pair], 0)


# every format inpaint reads is written back in it, but GIF (256 colours at most): that is PNG
_SAVE_FORMATS = {suffix: f for suffix, f in IMAGE_FORMATS.items() if f != "GIF"}


def save_photo(path: Path, image: np.ndarray, like: Path, source=None) -> Path:
    """Write `image` atomically in the format of `like` where Pillow writes it losslessly or as
    JPEG (quality 95, no chroma subsampling); other formats become PNG. With `source` (the photo
    as read, images.read_photo), in its mode where the format keeps it (images.in_source_mode:
    grey, alpha, 16-bit grey). Returns the path used."""
    fmt = _SAVE_FORMATS.get(like.suffix.lower())
    if fmt is None:
        path, fmt = path.with_suffix(".png"), "PNG"
    kwargs = {"JPEG": {"quality": 95, "subsampling": 0}, "WEBP": {"lossless": True}}.get(fmt, {})
    with atomic_path(path) as tmp:
        in_source_mode(image, source, fmt).save(tmp, format=fmt, **kwargs)
    return path


@dataclass
class FillSummary:
    filled: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # filled by an earlier run, same settings
    seconds: float = 0.0


def output_path(out_dir: Path, stem: str, photo: Path) -> Path:
    """Where fill_files writes the filled `photo`: its stem, in its own format (save_photo)."""
    return save_photo_path(out_dir / f"{stem}{photo.suffix}", photo)


def save_photo_path(path: Path, like: Path) -> Path:
    return path if like.suffix.lower() in _SAVE_FORMATS else path.with_suffix(".png")


def fill_settings(completer, model, *, regions, grow, mask, box, faces, detail, align_settings
                  ) -> dict:
    """Everything that decides a filled photo, as JSON values: the search's finished options,
    the model (its files' hashes), where to fill, which faces, the aligner, the detail step."""
    settings = {"options": asdict(completer.options), "regions": sorted(regions), "grow": grow,
                "mask": str(Path(mask).resolve()) if mask is not None else None,
                "box": list(box) if box is not None else None, "faces": faces,
                "detail": detail, "align": asdict(align_settings),
                "model_sha256": getattr(model, "identity", {}).get("sha256")}
    return json.loads(json.dumps(settings, default=str))


def _file_ids(paths) -> set[tuple[int, int]]:
    ids = set()
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        ids.add((st.st_dev, st.st_ino))
    return ids


def check_outputs_spare_inputs(photos: Sequence[Path], stems: list[str], out_dir: Path) -> None:
    """UsageError, before anything is written, when an output of this run (the filled photo or
    its compare/ sheet) is one of the input files, however the paths are spelled or linked:
    filling `photo.jpg -o .` beside it would replace the original."""
    inputs = _file_ids(photos)
    for photo, stem in zip(photos, stems):
        outs = (output_path(out_dir, stem, photo), out_dir / "compare" / f"{stem}.png")
        if _file_ids(outs) & inputs:
            raise UsageError(f"the output for {photo} would replace an input photo "
                             f"({out_dir}); choose another --out-dir")


def _open_out_dir(out_dir: Path, photos, stems, overwrite: bool, settings: dict) -> dict:
    """Check that the run may write `out_dir` (no output replaces an input; earlier fills there
    were made with these `settings` unless `overwrite`), record the settings, and return the
    photos already filled there ({} with `overwrite`)."""
    check_outputs_spare_inputs(photos, stems, out_dir)
    check_settings(out_dir, settings, overwrite, SETTINGS_NAME, "fills")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / SETTINGS_NAME, json.dumps({"settings": settings}).encode())
    return {} if overwrite else _done_before(out_dir)


def _done_before(out_dir: Path) -> dict[str, str]:
    """{input path: output path} of the photos fill.jsonl records as filled whose output is
    still there."""
    done = {}
    for r in read_jsonl(out_dir / RECORDS_NAME):
        if r.get("status") == "filled" and Path(str(r.get("output", ""))).is_file():
            done[str(r.get("input"))] = str(r["output"])
    return done


def progress_text(p: dict) -> str:
    """A fill_photo progress record in words: "face 2/24: search 12/30", "detecting faces"."""
    if p["stage"] == "detect":
        return "detecting faces"
    text = f"face {p['face']}/{p['faces']}: {p['stage']}"
    return text + (f" {p['iteration']}/{p['iterations']}" if "iteration" in p else "")


def _postfix(bar) -> Callable[[dict], None]:
    """Progress records shown after a tqdm bar, at most about 10 times a second."""
    last = [0.0]

    def show(p: dict) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.1 or p["stage"] != "search":
            last[0] = now
            bar.set_postfix_str(progress_text(p))

    return show


def _requested_hole(path: Path, shape: tuple[int, int], mask: Path | None,
                    box: tuple[int, int, int, int] | None) -> np.ndarray | None:
    """The photo's hole from --mask (a file, or a folder's mask of the photo's stem) and --box,
    (H, W) bool; None when neither is given (the regions say where)."""
    hole = None
    if mask is not None:
        hole = read_photo_mask(find_mask_for(mask, path.stem) if mask.is_dir() else mask, shape)
    if box is not None:
        b = box_hole(box, shape)
        hole = b if hole is None else hole | b
    return hole


def fill_files(photos: Sequence[Path], out_dir: Path, model, *, regions: Sequence[str] = (),
               grow: float | None = None, mask: Path | None = None,
               box: tuple[int, int, int, int] | None = None, faces: str = "largest",
               align_settings=None, options=None, progress: bool = False,
               detail: str = DEFAULT_DETAIL, overwrite: bool = False) -> FillSummary:
    """Fill each photo and write `out_dir/<stem><suffix>` (the whole photo),
    `out_dir/compare/<stem>.png` and a line of `out_dir/fill.jsonl`. `mask` is a file (used for
    every photo) or a folder of masks matched by stem. A photo that fails (unreadable, no face,
    region off the faces, mask of the wrong size) is recorded and the others go on. `detail`:
    as fill_photo's.

    No output may replace an input (UsageError before anything is written). A folder filled
    before with the same settings (fill.json) skips the photos already filled; with other
    settings it is refused (RunDirError) unless `overwrite`, which fills every photo again."""
    from tqdm import tqdm

    from inpaint.search import Completer

    check_detail(detail)
    settings = align_settings or AlignSettings(size=model.config.model.image_size)
    aligner = FaceAligner(settings)
    completer = Completer(model, options)  # set up once for every photo
    stems = output_stems(photos)
    done = _open_out_dir(out_dir, photos, stems, overwrite, fill_settings(
        completer, model, regions=regions, grow=grow, mask=mask, box=box, faces=faces,
        detail=detail, align_settings=settings))
    summary = FillSummary()
    t0 = time.perf_counter()
    bar = tqdm(list(zip(photos, stems)), disable=not progress, unit="photo")
    for path, stem in bar:
        if str(path) in done:
            summary.skipped.append(str(path))
            continue
        record = {"input": str(path), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            photo, source = read_photo(path)
            hole = _requested_hole(path, photo.shape[:2], mask, box)
            res = fill_photo(photo, completer, aligner, regions=regions, grow=grow, hole=hole,
                             faces=faces, name=str(path), detail=detail,
                             progress=_postfix(bar) if progress else None)
            out = save_photo(out_dir / f"{stem}{path.suffix}", res.image, path, source)
            write_image(out_dir / "compare" / f"{stem}.png", compare_sheet(photo, res))
            record.update(status="filled", output=str(out), size=[photo.shape[1], photo.shape[0]],
                          hole_pixels=int(res.hole.sum()), unfilled_pixels=res.unfilled_pixels,
                          faces=[f.record() for f in res.faces],
                          seconds={k: round(v, 3) for k, v in res.seconds.items()})
            summary.filled.append(str(path))
        except InpaintError as exc:
            reason = str(exc) if str(path) in str(exc) else f"{path}: {exc}"  # named once
            record.update(status="error", reason=reason)
            summary.failed.append((str(path), reason))
            log.warning("%s", reason)
        append_jsonl(out_dir / RECORDS_NAME, record, fsync=True)
    summary.seconds = time.perf_counter() - t0
    return summary
