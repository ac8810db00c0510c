"""Face alignment the OpenFace way: dlib detection, 68 landmarks, one affine warp onto a template.

The pipeline for one photo (Amos et al., *OpenFace*, CMU-CS-16-118, 2016; dlib's 68-point model):
    1. detect faces: dlib's HOG frontal detector (or its CNN detector), with `upsample` pyramid
       doublings for small faces; detections scoring below `min_score` are dropped;
    2. choose faces: the largest box, all of them, or none when there are several;
    3. predict the 68 iBUG 300-W landmarks inside each box (dlib's shape predictor);
    4. solve the one affine transform that maps three landmarks exactly onto the template scaled to
       `size` (inner eye corners and bottom lip by default) and warp the photo with it.

Coordinates are pixel centres in the photo as `images.read_image` returns it (EXIF orientation
applied): pixel (col, row) = (x, y). A transform is a `(2, 3)` float64 matrix `T` with
`[u, v] = T @ [x, y, 1]` mapping photo coordinates to aligned-face coordinates; `invert_transform`
goes back, which is what pasting a completed face into the photo needs.

dlib is imported inside the functions that need it, so importing this module is cheap and a
missing dlib is an `AlignError` that says how to install it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from inpaint.errors import AlignError, InpaintError, Interrupted, UsageError
from inpaint.files import NAME_MAX, cut_name, safe_resolve
from inpaint.images import read_image, walk_inputs, write_image
from inpaint.records import JsonlLog, read_jsonl

log = logging.getLogger(__name__)

# --- The template -------------------------------------------------------------------------------

# The mean face of dlib's 68 landmarks as OpenFace publishes it (openface/align_dlib.py, Apache-2.0;
# numbers only): x, y in an arbitrary frame, eyes level. `scripts/measure_align.py` re-derives a
# mean face from dlib's example landmarks with `mean_shape` and compares the two.
MEAN_FACE_68 = np.array([
    (0.0792396913815, 0.339223741112), (0.0829219487236, 0.456955367943),
    (0.0967927109165, 0.575648016728), (0.122141515615, 0.691921601066),
    (0.168687863544, 0.800341263616), (0.239789390707, 0.895732504778),
    (0.325662452515, 0.977068762493), (0.422318282013, 1.04329000149),
    (0.531777802068, 1.06080371126), (0.641296298053, 1.03981924107),
    (0.738105872266, 0.972268833998), (0.824444363295, 0.889624082279),
    (0.894792677532, 0.792494155836), (0.939395486253, 0.681546643421),
    (0.96111933829, 0.562238253072), (0.970579841181, 0.441758925744),
    (0.971193274221, 0.322118743967), (0.163846223133, 0.249151738053),
    (0.21780354657, 0.204255863861), (0.291299351124, 0.192367318323),
    (0.367460241458, 0.203582210627), (0.4392945113, 0.233135599851),
    (0.586445962425, 0.228141644834), (0.660152671635, 0.195923841854),
    (0.737466449096, 0.182360984545), (0.813236546239, 0.192828009114),
    (0.8707571886, 0.235293377042), (0.51534533827, 0.31863546193),
    (0.516221448289, 0.396200446263), (0.517118861835, 0.473797687758),
    (0.51816430343, 0.553157797772), (0.433701156035, 0.604054457668),
    (0.475501237769, 0.62076344024), (0.520712933176, 0.634268222208),
    (0.565874114041, 0.618796581487), (0.607054002672, 0.60157671656),
    (0.252418718401, 0.331052263829), (0.298663015648, 0.302646354002),
    (0.355749724218, 0.303020650651), (0.403718978315, 0.33867711083),
    (0.352507175597, 0.349987615384), (0.296791759886, 0.350478978225),
    (0.631326076346, 0.334136672344), (0.679073381078, 0.29645404267),
    (0.73597236153, 0.294721285802), (0.782865376271, 0.321305281656),
    (0.740312274764, 0.341849376713), (0.68499850091, 0.343734332172),
    (0.353167761422, 0.746189164237), (0.414587777921, 0.719053835073),
    (0.477677654595, 0.706835892494), (0.522732900812, 0.717092275768),
    (0.569832064287, 0.705414478982), (0.635195811927, 0.71565572516),
    (0.69951672331, 0.739419187253), (0.639447159575, 0.805236879972),
    (0.576410514055, 0.835436670169), (0.525398405766, 0.841706377792),
    (0.47641545769, 0.837505914975), (0.41379548902, 0.810045601727),
    (0.380084785646, 0.749979603086), (0.477955996282, 0.74513234612),
    (0.523389793327, 0.748924302636), (0.571057789237, 0.74332894691),
    (0.672409137852, 0.744177032192), (0.572539621444, 0.776609286626),
    (0.5240106503, 0.783370783245), (0.477561227414, 0.778476346951),
])

# Which three landmarks the affine transform pins to the template (iBUG 300-W indices, 0-based).
LANDMARK_SETS = {
    "inner-eyes-and-bottom-lip": (39, 42, 57),  # OpenFace's default and the blog post's choice
    "outer-eyes-and-nose": (36, 45, 33),
}
DEFAULT_LANDMARKS = "inner-eyes-and-bottom-lip"
FACE_POLICIES = ("largest", "all", "skip-multi")
DETECTORS = ("hog", "cnn")

# Detections scoring below this are dropped. dlib's own HOG threshold is 0; on scikit-image's
# astronaut it also returns a spurious "face" on the suit at 0.12 (0.21 after JPEG at quality 80)
# against 1.16 for the real one. 0.3 clears that with a margin and costs 1 of dlib's 43 labelled
# example faces and 1.2 % of CelebA faces (scripts/measure_align.py, tables in the README).
DEFAULT_MIN_SCORE = 0.3
# The lowest min_score taken: HOG scores of real faces lie around 0.3-3; far below 0 the detector
# returns its every window (1,777 "faces" at -1e9 in a photo of ten), which then hang the fill.
MIN_SCORE_FLOOR = -1.0
# Faces kept per photo, largest first: more than the 24 of the largest group photo we have, and
# enough to stop a photo of a crowd (or a low min_score) from running for minutes unasked.
MAX_FACES = 100

# Detection runs on a copy shrunk so that, after `upsample` doublings, it has at most this many
# pixels: a 24-Mpx phone photo needs no upsampling to find its faces, and dlib's pyramid of it
# would take gigabytes (the CNN's feature maps are 32 float channels per pixel). Landmarks are
# always predicted on the full-resolution photo.
DETECT_MAX_PIXELS = {"hog": 16_000_000, "cnn": 4_000_000}

RECORDS_NAME = "align.jsonl"
STATUSES = ("aligned", "no-face", "skipped-multi", "error")
INSTALL_HINT = "pip install 'inpaint[align]'"


def minmax_normalise(points: np.ndarray) -> np.ndarray:
    """`(N, 2)` points -> `(N, 2)` float64 with each axis scaled to [0, 1] by its min and max."""
    points = np.asarray(points, dtype=np.float64)
    lo, hi = points.min(axis=0), points.max(axis=0)
    return (points - lo) / (hi - lo)


# The template: the mean face normalised per axis to [0, 1]; `template_targets` scales it to pixels.
TEMPLATE_68 = minmax_normalise(MEAN_FACE_68)


def template_targets(size: int, landmarks: str = DEFAULT_LANDMARKS) -> np.ndarray:
    """Where the chosen three landmarks land in a `size` x `size` aligned face: `(3, 2)` float64
    (x, y) pixel coordinates. For size 64 and the default set: about (23.3, 11.4), (39.6, 11.1),
    (32.0, 48.0)."""
    return size * TEMPLATE_68[list(landmark_indices(landmarks))]


def landmark_indices(landmarks: str) -> tuple[int, int, int]:
    try:
        return LANDMARK_SETS[landmarks]
    except KeyError:
        raise UsageError(f"unknown landmark set {landmarks!r}; choose one of "
                         f"{', '.join(LANDMARK_SETS)}") from None


def solve_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The affine transform mapping three points exactly onto three others.

    src, dst: `(3, 2)` (x, y). Returns `T`, `(2, 3)` float64, with `T @ [x, y, 1] = dst` for each
    row of src. Raises AlignError when the source points are (nearly) collinear."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    a = np.hstack([src, np.ones((3, 1))])  # rows [x, y, 1]
    # Twice the triangle's area against its longest side squared: scale-free collinearity test.
    area2 = abs(np.linalg.det(a))
    side2 = max(np.sum((src[i] - src[j]) ** 2) for i, j in ((0, 1), (1, 2), (0, 2)))
    if side2 == 0 or area2 < 1e-6 * side2:
        raise AlignError("the landmarks the alignment uses are collinear; cannot align this face")
    return np.linalg.solve(a, dst).T


def apply_transform(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`(2, 3)` transform applied to `(N, 2)` points -> `(N, 2)` float64."""
    points = np.asarray(points, dtype=np.float64)
    return points @ np.asarray(transform)[:, :2].T + np.asarray(transform)[:, 2]


def invert_transform(transform: np.ndarray) -> np.ndarray:
    """Inverse of a `(2, 3)` affine transform (aligned face -> photo), `(2, 3)` float64."""
    full = np.vstack([np.asarray(transform, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def _similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) mapping src onto dst, `(2, 3)`
    (Umeyama, 1991, without reflection)."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    u, sig, vt = np.linalg.svd(d.T @ s)
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    fix = np.diag([1.0, sign])
    rot = u @ fix @ vt
    scale = np.trace(np.diag(sig) @ fix) / np.sum(s ** 2)
    lin = scale * rot
    return np.hstack([lin, (md - lin @ ms)[:, None]])


def mean_shape(shapes: Sequence[np.ndarray], reference: np.ndarray | None = None,
               iterations: int = 20) -> np.ndarray:
    """Mean of `K` landmark sets `(K, N, 2)` after removing each one's position, size and roll
    (generalised Procrustes analysis), minmax-normalised like the template: `(N, 2)` in [0, 1].

    The frame (roll) is the `reference` shape's, `(N, 2)`; by default the first shape turned so
    that the line between its eye centres (points 36-41 and 42-47 of 68) is level."""
    shapes = [np.asarray(s, dtype=np.float64) for s in shapes]
    if reference is None:
        reference = shapes[0]
        if len(reference) == 68:
            left, right = reference[36:42].mean(0), reference[42:48].mean(0)
            angle = np.arctan2(right[1] - left[1], right[0] - left[0])
            c, s = np.cos(-angle), np.sin(-angle)
            reference = reference @ np.array([[c, -s], [s, c]]).T
    frame = np.asarray(reference, dtype=np.float64)
    frame = (frame - frame.mean(0)) / np.sqrt(np.sum((frame - frame.mean(0)) ** 2))
    mean = frame
    for _ in range(iterations):
        new = np.mean([apply_transform(_similarity_fit(s, mean), s) for s in shapes], axis=0)
        # Re-fit onto the fixed frame so that the iteration cannot drift in scale or roll.
        new = apply_transform(_similarity_fit(new, frame), new)
        if np.allclose(new, mean, atol=1e-12):
            break
        mean = new
    return minmax_normalise(mean)


# --- Warping ------------------------------------------------------------------------------------

def _homogeneous(transform: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(transform, dtype=np.float64), [0.0, 0.0, 1.0]])


def warp_face(image: np.ndarray, transform: np.ndarray, size: int, *, resample: str = "bicubic",
              antialias: bool = True) -> np.ndarray:
    """Warp a photo into the aligned frame.

    image: `(H, W, 3)` uint8. transform: `(2, 3)`, photo -> face pixel coordinates. Returns
    `(size, size, 3)` uint8; parts of the face square outside the photo are black.

    When the face shrinks (most photos), the region of the photo under the face square is first
    resized with Pillow's antialiasing filter to about the output's scale, so that a 600-pixel face
    brought to 64 pixels does not alias; the remaining warp is near 1:1. `antialias=False` with
    `resample="bilinear"` is plain bilinear sampling, what OpenCV's `warpAffine` (and so OpenFace)
    does."""
    filters = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
    if resample not in filters:
        raise ValueError(f"resample must be one of {sorted(filters)}")
    filt = filters[resample]
    im = Image.fromarray(np.ascontiguousarray(image))
    t = _homogeneous(transform)
    scale = float(np.linalg.svd(t[:2, :2], compute_uv=False).max())  # output px per photo px
    if antialias and scale < 0.95:
        inv = np.linalg.inv(t)
        corners = np.array([[-0.5, -0.5, 1], [size - 0.5, -0.5, 1], [-0.5, size - 0.5, 1],
                            [size - 0.5, size - 0.5, 1]]) @ inv[:2].T
        margin = 4.0 / scale + 2.0  # room for the filters' support at the crop's edges
        x0 = max(0.0, np.floor(corners[:, 0].min() - margin))
        y0 = max(0.0, np.floor(corners[:, 1].min() - margin))
        x1 = min(float(im.width), np.ceil(corners[:, 0].max() + margin))
        y1 = min(float(im.height), np.ceil(corners[:, 1].max() + margin))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            w2 = max(2, int(round((x1 - x0) * scale)))
            h2 = max(2, int(round((y1 - y0) * scale)))
            im = im.resize((w2, h2), filt, box=(x0, y0, x1, y1))
            kx, ky = w2 / (x1 - x0), h2 / (y1 - y0)
            # Pixel-centre coordinates: x2 = (x + 0.5 - x0) * kx - 0.5.
            shrink = np.array([[kx, 0, (0.5 - x0) * kx - 0.5], [0, ky, (0.5 - y0) * ky - 0.5],
                               [0, 0, 1]])
            t = t @ np.linalg.inv(shrink)
    # Pillow wants output -> input in its own convention, where pixel centres sit at +0.5.
    inv = np.linalg.inv(t)
    a, b, c = inv[0]
    d, e, f = inv[1]
    data = (a, b, c + 0.5 - 0.5 * (a + b), d, e, f + 0.5 - 0.5 * (d + e))
    out = im.transform((size, size), Image.Transform.AFFINE, data, resample=filt, fillcolor=0)
    return np.asarray(out, dtype=np.uint8)


# --- dlib: detection and landmarks --------------------------------------------------------------

def _import_dlib():
    try:
        import dlib  # heavy: imported only when aligning
    except ImportError as exc:
        raise AlignError(f"face alignment needs dlib, which is not installed ({exc}); "
                         f"install it with: {INSTALL_HINT}") from None
    return dlib


def _packaged_model(name: str, what: str) -> Path:
    """A model file of the `face-recognition-models` package, found without importing it (its
    `__init__` imports pkg_resources, which is slow and deprecated)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise AlignError(f"the {what} comes from the package face-recognition-models, which is not "
                         f"installed; install it with: {INSTALL_HINT} (or pass the model file)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise AlignError(f"{path}: the {what} is missing from face-recognition-models; reinstall "
                         f"it with: {INSTALL_HINT}")
    return path


def default_predictor_path() -> Path:
    """dlib's 68-point landmark model (iBUG 300-W; non-commercial) from face-recognition-models."""
    return _packaged_model("shape_predictor_68_face_landmarks.dat", "68-point landmark model")


def default_cnn_detector_path() -> Path:
    """dlib's MMOD CNN face detector from face-recognition-models."""
    return _packaged_model("mmod_human_face_detector.dat", "CNN face detector")


@dataclass(frozen=True)
class Detection:
    """A detected face: `box` (left, top, right, bottom) in dlib's inclusive integer pixel
    coordinates, and the detector's score (HOG: SVM margin, CNN: MMOD confidence)."""

    box: tuple[int, int, int, int]
    score: float

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return (right - left + 1) * (bottom - top + 1)


@dataclass(frozen=True)
class AlignSettings:
    """Everything that decides what an aligned face looks like (stored in each record)."""

    size: int = 64
    landmarks: str = DEFAULT_LANDMARKS
    faces: str = "largest"
    detector: str = "hog"
    upsample: int = 1
    min_score: float = DEFAULT_MIN_SCORE
    predictor: str | None = None  # None: the face-recognition-models copy

    def __post_init__(self):
        landmark_indices(self.landmarks)
        if self.faces not in FACE_POLICIES:
            raise UsageError(f"faces must be one of {', '.join(FACE_POLICIES)}")
        if self.detector not in DETECTORS:
            raise UsageError(f"detector must be one of {', '.join(DETECTORS)}")
        if self.size < 8:
            raise UsageError(f"size must be at least 8 pixels, not {self.size}")
        if self.upsample < 0:
            raise UsageError("upsample must be >= 0")
        if not MIN_SCORE_FLOOR <= self.min_score or not np.isfinite(self.min_score):
            raise UsageError(f"min score must be a number >= {MIN_SCORE_FLOOR}, got "
                             f"{self.min_score}")

    def key(self) -> dict:
        """The settings that shape the outputs (the predictor's location does not)."""
        d = asdict(self)
        d.pop("predictor")
        return d


_MODELS: dict = {}  # loaded dlib models by (loader, path, size, mtime)


class FaceAligner:
    """dlib's detector and shape predictor, loaded once, and the alignment of one photo.

    Loading raises AlignError when dlib or a model file is missing or unreadable."""

    def __init__(self, settings: AlignSettings | None = None):
        self.settings = settings or AlignSettings()
        dlib = _import_dlib()
        self._dlib = dlib
        predictor = (Path(self.settings.predictor) if self.settings.predictor
                     else default_predictor_path())
        self._predictor = self._load(dlib.shape_predictor, predictor, "landmark model")
        if self.settings.detector == "hog":
            self._detector = dlib.get_frontal_face_detector()
        else:
            self._detector = self._load(dlib.cnn_face_detection_model_v1,
                                        default_cnn_detector_path(), "CNN face detector")

    @staticmethod
    def _load(loader, path: Path, what: str):
        path = Path(path)
        if not path.is_file():
            raise AlignError(f"{path}: no such {what} file")
        stat = path.stat()
        key = (loader, str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _MODELS:  # the 68-point model takes ~0.7 s to load; keep it per process
            try:
                _MODELS[key] = loader(str(path))
            except RuntimeError as exc:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise AlignError(f"{path}: not a dlib {what} ({reason})") from None
        return _MODELS[key]

    def detect(self, image: np.ndarray) -> tuple[list[Detection], list[Detection]]:
        """Faces in `image` `(H, W, 3)` uint8 -> (kept, weak): detections at or above `min_score`
        and those below it, each sorted largest first (ties: higher score first)."""
        s = self.settings
        h, w = image.shape[:2]
        budget = DETECT_MAX_PIXELS[s.detector]
        shrink = min(1.0, float(np.sqrt(budget / (h * w * 4.0 ** s.upsample))))
        small = image
        if shrink < 1.0:
            size = (max(1, round(w * shrink)), max(1, round(h * shrink)))
            small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        small = np.ascontiguousarray(small)
        if s.detector == "hog":
            # dlib's threshold is 0; asking for min(0, min_score) also returns the weak detections
            # between 0 and min_score, so the record can show what min_score dropped.
            rects, scores, _ = self._detector.run(small, s.upsample, min(0.0, s.min_score))
            found = list(zip(rects, scores))
        else:
            found = [(d.rect, d.confidence) for d in self._detector(small, s.upsample)]
        dets = []
        for r, score in found:
            box = (r.left(), r.top(), r.right(), r.bottom())
            if shrink < 1.0:
                box = tuple(int(round(v / shrink)) for v in box)
            dets.append(Detection(box, float(score)))
        dets.sort(key=lambda d: (-d.area, -d.score))
        kept = [d for d in dets if d.score >= s.min_score]
        weak = [d for d in dets if d.score < s.min_score]
        if len(kept) > MAX_FACES:
            log.warning("%d faces found; the %d largest are used (align.MAX_FACES)", len(kept),
                        MAX_FACES)
            kept = kept[:MAX_FACES]
        return kept, weak

    def landmarks(self, image: np.ndarray, box: Sequence[int]) -> np.ndarray:
        """The 68 landmarks of the face in `box` (left, top, right, bottom): `(68, 2)` int64
        (x, y) pixel coordinates."""
        rect = self._dlib.rectangle(*(int(v) for v in box))
        shape = self._predictor(np.ascontiguousarray(image), rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.int64)

    def transform_for(self, landmarks: np.ndarray) -> np.ndarray:
        """The `(2, 3)` transform pinning this face's three chosen landmarks to the template."""
        idx = list(landmark_indices(self.settings.landmarks))
        return solve_affine(np.asarray(landmarks)[idx],
                            template_targets(self.settings.size, self.settings.landmarks))

    def align(self, image: np.ndarray, box: Sequence[int]) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]:
        """Align the face in `box`: (face `(size, size, 3)` uint8, landmarks `(68, 2)`,
        transform `(2, 3)`)."""
        points = self.landmarks(image, box)
        transform = self.transform_for(points)
        return warp_face(image, transform, self.settings.size), points, transform


def align_face(image: np.ndarray, settings: AlignSettings | None = None,
               aligner: FaceAligner | None = None) -> np.ndarray:
    """The largest face of `image` `(H, W, 3)` uint8, aligned: `(size, size, 3)` uint8.
    Raises NoFaceFound when the detector finds none above `min_score`."""
    from inpaint.errors import NoFaceFound

    aligner = aligner or FaceAligner(settings)
    kept, _ = aligner.detect(image)
    if not kept:
        raise NoFaceFound("no face found")
    face, _, _ = aligner.align(image, kept[0].box)
    return face


# --- Planning a batch: which inputs, which outputs ----------------------------------------------

@dataclass(frozen=True)
class AlignJob:
    """One input and the output stem it owns: `key` is a relative POSIX path without suffix inside
    the output folder (`sub/photo` -> `sub/photo.png`, or `sub/photo_0.png`... with all faces)."""

    path: Path
    key: str


# Bytes an output name's key may take: NAME_MAX less ".png", a face's "_99" (MAX_FACES) and an
# input suffix added to tell two inputs apart ("_jpeg").
KEY_MAX = NAME_MAX - len(".png") - len("_99") - len("_jpeg")


def _safe_key(rel: Path) -> str | None:
    """`rel` without suffix as a POSIX key if it stays inside the output folder, else None.
    A name whose stem is only dots ("..jpg") or starts with one would make a hidden output:
    its leading dots are dropped (None if nothing is left)."""
    norm = Path(os.path.normpath(rel))
    if norm.is_absolute() or not norm.parts or norm.parts[0] in ("..", ".") or ".." in norm.parts:
        return None
    stem = cut_name(norm.with_suffix("").name.lstrip("."), KEY_MAX)  # outputs fit NAME_MAX
    return norm.with_name(stem).as_posix() if stem else None


def plan_jobs(inputs: Iterable[str | Path], out_dir: str | Path) -> list[AlignJob]:
    """Files, directories (recursive) and globs -> jobs whose outputs mirror the inputs' folders.

    A directory's images keep their paths below it; a named file is written at the top of the output
    folder; a glob's matches keep their paths below the glob's fixed prefix. Files already inside
    `out_dir` are left out (so an output folder inside the input folder is not re-aligned). Output
    names never leave `out_dir`. Two inputs that would write the same output are disambiguated by
    their suffix (`photo_jpg`, `photo_png`) or, failing that, refused with AlignError."""
    out_root = safe_resolve(out_dir)
    jobs: list[AlignJob] = []
    seen: set[Path] = set()
    for f in walk_inputs(inputs):
        resolved = safe_resolve(f.path)
        if resolved in seen or (not f.named and resolved.is_relative_to(out_root)):
            continue
        seen.add(resolved)
        key = _safe_key(f.rel) or _safe_key(Path(f.path.name)) or "image"
        jobs.append(AlignJob(f.path, key))
    return _disambiguate(jobs)


def _disambiguate(jobs: list[AlignJob]) -> list[AlignJob]:
    by_key: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        by_key.setdefault(job.key, []).append(i)
    out = list(jobs)
    for key, idxs in by_key.items():
        if len(idxs) == 1:
            continue
        suffixes = [jobs[i].path.suffix.lower().lstrip(".") or "noext" for i in idxs]
        if len(set(suffixes)) < len(suffixes):
            paths = ", ".join(str(jobs[i].path) for i in idxs)
            raise AlignError(f"{len(idxs)} inputs would be written to the same output {key}.png: "
                             f"{paths}; pass their folders instead of the files (outputs mirror "
                             f"sub-folders) or align them into separate --out-dir")
        for i, suffix in zip(idxs, suffixes):
            out[i] = AlignJob(jobs[i].path, f"{key}_{suffix}")
    if len({job.key for job in out}) < len(out):  # e.g. photo.jpg + photo.png + photo_jpg.png
        raise AlignError("inputs would be written to the same output names even after adding "
                         "their suffixes (photo_jpg); rename them or align them separately")
    return out


def output_name(key: str, k: int | None = None) -> str:
    """`key` -> `key.png`, or `key_k.png` for the k-th face when all faces are written."""
    return f"{key}.png" if k is None else f"{key}_{k}.png"


# --- Processing -------------------------------------------------------------------------------

def align_file(aligner: FaceAligner, job: AlignJob, out_dir: Path) -> dict:
    """Align one input and write its faces; returns its record (see `align_batch`). Never raises for
    a problem with this one input: unreadable files and failed alignments become status "error"."""
    s = aligner.settings
    record = {"input": str(safe_resolve(job.path)), "key": job.key, "status": "error",
              "message": None, "image_size": None, "detections": [], "weak_scores": [],
              "faces": [], "settings": s.key()}
    try:
        image = read_image(job.path)
        record["image_size"] = [int(image.shape[1]), int(image.shape[0])]
        kept, weak = aligner.detect(image)
        record["detections"] = [{"box": list(d.box), "score": round(d.score, 4)} for d in kept]
        record["weak_scores"] = [round(d.score, 4) for d in weak]
        if not kept:
            record["status"] = "no-face"
            return record
        if s.faces == "skip-multi" and len(kept) > 1:
            record["status"] = "skipped-multi"
            record["message"] = f"{len(kept)} faces"
            return record
        chosen = kept if s.faces == "all" else kept[:1]
        faces = []
        for k, det in enumerate(chosen):
            face, points, transform = aligner.align(image, det.box)
            name = output_name(job.key, k if s.faces == "all" else None)
            faces.append((name, face, det, points, transform))
        for name, face, det, points, transform in faces:
            write_image(out_dir / name, face)
            record["faces"].append({
                "output": name, "box": list(det.box), "score": round(det.score, 4),
                "landmarks": points.tolist(),
                "transform": np.round(transform, 8).tolist()})
        record["status"] = "aligned"
    except InpaintError as exc:
        record["message"] = str(exc)
    except (RuntimeError, ValueError, MemoryError, OSError) as exc:  # dlib, Pillow, disk
        record["message"] = f"{job.path}: {type(exc).__name__}: {exc}"
    return record


# Worker processes: the aligner is built once per process (or inherited through fork).
_WORKER: dict = {}


def _worker_init(settings: AlignSettings, out_dir: Path) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if _WORKER.get("settings") != settings:
        _WORKER["aligner"] = FaceAligner(settings)
        _WORKER["settings"] = settings
    _WORKER["out_dir"] = out_dir


def _worker_run(job: AlignJob) -> dict:
    return align_file(_WORKER["aligner"], job, _WORKER["out_dir"])


# --- Records ----------------------------------------------------------------------------------

def read_records(out_dir: str | Path) -> dict[str, dict]:
    """The last record per input in `out_dir/align.jsonl`, keyed by the input's absolute path.
    A torn last line (a crash mid-write) is ignored."""
    return {rec["input"]: rec for rec in read_jsonl(Path(out_dir) / RECORDS_NAME)
            if "input" in rec}


def _is_done(record: dict | None, out_dir: Path) -> bool:
    if not record or record.get("status") not in ("aligned", "no-face", "skipped-multi"):
        return False
    return all((out_dir / f["output"]).is_file() for f in record.get("faces", []))


@dataclass
class AlignSummary:
    """What a batch did. `counts` is per status over every input, including those an earlier run
    had already done (`resumed` of them); `problems` lists (input, status, message) for inputs
    without an aligned face, inputs named as they were given."""

    out_dir: Path
    total: int
    counts: dict[str, int]
    faces: int
    resumed: int
    processed: int
    seconds: float
    problems: list[tuple[str, str, str | None]] = field(default_factory=list)
    # With faces="largest": detected faces not written, and how many photos had them.
    faces_left_out: int = 0
    photos_with_faces_left_out: int = 0

    @property
    def images_per_s(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def records_path(self) -> Path:
        return self.out_dir / RECORDS_NAME


def align_batch(inputs: Iterable[str | Path], out_dir: str | Path,
                settings: AlignSettings | None = None, *, workers: int = 1,
                overwrite: bool = False, progress: bool = False) -> AlignSummary:
    """Align every image of `inputs` (files, directories, globs) into `out_dir`.

    Outputs mirror the inputs' sub-folders as PNG (`plan_jobs`). One JSON line per input is
    appended to `out_dir/align.jsonl`:
        input        absolute path of the photo
        key          output stem inside out_dir
        status       "aligned" | "no-face" | "skipped-multi" | "error"
        message      why, for errors (and the face count for skipped-multi), else null
        image_size   [width, height] after EXIF orientation, or null if unreadable
        detections   [{box: [left, top, right, bottom], score}] at or above min_score, largest first
        weak_scores  scores of the detections dropped by min_score
        faces        [{output, box, score, landmarks: 68 x [x, y], transform: 2 x 3}] written
        settings     size, landmarks, faces, detector, upsample, min_score
    An input whose last record is complete (not an error, outputs present) is skipped unless
    `overwrite`; an output folder holding records made with other settings is refused unless
    `overwrite`. Raises AlignError for a missing dlib or model, DataError when nothing matches."""
    from inpaint.errors import DataError

    settings = settings or AlignSettings()
    out_dir = Path(out_dir)
    inputs = list(inputs)
    jobs = plan_jobs(inputs, out_dir)
    if not jobs:
        raise DataError("no images found in " + ", ".join(map(str, inputs)))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlignError(f"{out_dir}: cannot create the output folder ({exc.strerror})") from None
    previous = read_records(out_dir)
    if not overwrite:
        _check_same_settings(previous, settings, out_dir)
    done, todo, stale = _partition(jobs, previous, out_dir, overwrite)
    if done:
        log.info("%d of %d inputs already aligned in %s (--overwrite redoes them)", len(done),
                 len(jobs), out_dir)
    results: list[dict] = []
    start = time.perf_counter()
    if todo:
        aligner = FaceAligner(settings)  # fails fast on a missing dlib or model
        start = time.perf_counter()  # `seconds` measures the aligning, not loading the models
        records = JsonlLog(out_dir / RECORDS_NAME, compact=True, flush=True)
        try:
            results = _run(aligner, todo, out_dir, workers, progress, records, stale)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted; the records of the inputs done so far are in "
                              f"{out_dir / RECORDS_NAME}; re-run the command to resume") from None
        finally:
            records.close()
    return _summarise(jobs, done, results, time.perf_counter() - start, out_dir)


def _check_same_settings(previous: dict[str, dict], settings: AlignSettings,
                         out_dir: Path) -> None:
    """AlignError if `out_dir` holds records made with other settings."""
    other = {json.dumps(r.get("settings"), sort_keys=True) for r in previous.values()}
    other.discard(json.dumps(settings.key(), sort_keys=True))
    if other:
        raise AlignError(f"{out_dir} holds faces aligned with other settings "
                         f"({sorted(other)[0]}); use --overwrite to realign them there, or "
                         f"another --out-dir")


def _partition(jobs: list[AlignJob], previous: dict[str, dict], out_dir: Path,
               overwrite: bool) -> tuple[list, list, dict]:
    """(done: [(job, record)], todo: [job], stale: {input: outputs of its earlier record}); the
    stale outputs are removed if the new record does not write them again."""
    done, todo, stale = [], [], {}
    for job in jobs:
        rec = previous.get(str(safe_resolve(job.path)))
        if not overwrite and _is_done(rec, out_dir):
            done.append((job, rec))
            continue
        todo.append(job)
        if rec:
            stale[rec["input"]] = {f["output"] for f in rec.get("faces", [])}
    return done, todo, stale


def _summarise(jobs: list[AlignJob], done: list, results: list[dict], seconds: float,
               out_dir: Path) -> AlignSummary:
    given = {str(safe_resolve(job.path)): str(job.path) for job in jobs}
    everything = [rec for _, rec in done] + results
    counts = {s: 0 for s in STATUSES}
    for rec in everything:
        counts[rec["status"]] = counts.get(rec["status"], 0) + 1
    problems = [(given.get(rec["input"], rec["input"]), rec["status"], rec.get("message"))
                for rec in everything if rec["status"] != "aligned"]
    left_out = [len(r["detections"]) - len(r["faces"]) for r in everything
                if r["status"] == "aligned"]
    return AlignSummary(out_dir=out_dir, total=len(jobs), counts=counts,
                        faces=sum(len(r["faces"]) for r in everything), resumed=len(done),
                        processed=len(results), seconds=seconds, problems=sorted(problems),
                        faces_left_out=sum(left_out),
                        photos_with_faces_left_out=sum(n > 0 for n in left_out))


def _run(aligner: FaceAligner, todo: list[AlignJob], out_dir: Path, workers: int, progress: bool,
         record_log: JsonlLog, stale: dict[str, set[str]]) -> list[dict]:
    from tqdm import tqdm

    results = []

    def finish(rec: dict) -> None:
        record_log.write(rec)
        results.append(rec)
        # A realigned input that now has fewer faces (or none) must not leave old faces behind.
        for name in stale.get(rec["input"], set()) - {f["output"] for f in rec["faces"]}:
            if _safe_key(Path(name)) is not None:
                (out_dir / name).unlink(missing_ok=True)

    workers = max(1, min(workers, len(todo)))
    if workers == 1:
        with tqdm(total=len(todo), unit="img", desc="align", disable=not progress) as bar:
            for job in todo:
                finish(align_file(aligner, job, out_dir))
                bar.update()
        return results
    # fork hands the loaded models to the workers for free; elsewhere each worker loads them.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    _WORKER.update(aligner=aligner, settings=aligner.settings, out_dir=out_dir)
    pool = ctx.Pool(workers, initializer=_worker_init, initargs=(aligner.settings, out_dir))
    try:
        with tqdm(total=len(todo), unit="img", desc="align", disable=not progress) as bar:
            for rec in pool.imap_unordered(_worker_run, todo, chunksize=1):
                finish(rec)
                bar.update()
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
    return results
