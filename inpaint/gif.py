"""Frames -> animation: collect and naturally sort frame files, check them, upscale, write a GIF
(or an animated WebP, or an MP4) with imageio.

Frames come from an `inpaint complete` output directory (`progress/NNNN.png`, or one image's
`frames/<stem>/NNNN.png`), from any directory of frames, from a glob or from a list of files. Arrays
are `(H, W, 3) uint8` RGB throughout.

GIF stores at most 256 colours per frame. Every frame gets its own adaptive palette and is mapped
onto it with Floyd-Steinberg error diffusion, so smooth shading (skin, gradients) comes out as fine
grain instead of the flat bands that plain nearest-colour quantization (what Pillow does by
default) draws. A frame with 256 colours or fewer is stored exactly.
"""

from __future__ import annotations

import contextlib
import glob
import io
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inpaint import layout
from inpaint.errors import DataError, InpaintError, UsageError
from inpaint.files import atomic_path, atomic_write_bytes, safe_resolve
from inpaint.images import find_images, read_image, walk_inputs
from inpaint.records import check_stem

log = logging.getLogger(__name__)

SUFFIXES = (".gif", ".webp", ".mp4")

# GIF delays are whole centiseconds, and browsers play any delay under 2 cs (0.02 s) as 0.1 s, so
# a GIF cannot run faster than 50 frames per second.
MAX_GIF_FPS = 50.0
# The longest GIF delay is 65535 cs; stay well inside it, also for the last frame, which is shown
# 1 / MIN_FPS + MAX_HOLD_SECONDS = 610 s at most.
MAX_HOLD_SECONDS = 600.0
MIN_FPS = 0.1
# The writer holds every output frame in memory (about 4 bytes per pixel: RGB plus the paletted
# copy), so refuse more than this many output pixels in all (about 4 GB) before starting.
MAX_ANIMATION_PIXELS = 1_000_000_000
# libx264's yuv420p needs even width and height.
_MP4_BLOCK = 2

_DIGITS = re.compile(r"(\d+)")
_PROGRESS_STEM = re.compile(r"\d+")
_FIRST_BATCH_STEM = re.compile(r"b000_\d+")


@dataclass(frozen=True)
class Animation:
    """What `write_animation` wrote."""

    path: Path
    frames: int  # source frames (the held last frame counts once)
    width: int  # output size in pixels, after --scale
    height: int
    seconds: float  # one play, the hold included


def natural_key(name: str | Path) -> tuple:
    """Sort key that orders the digit runs of a name by value: "9" < "10", "0050" < "0100".

    `re.split` with a capture group alternates text and digits, starting with text, so the keys
    of any two names compare text with text and numbers with numbers."""
    parts = _DIGITS.split(str(name))
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts))


def _sorted_frames(paths: Iterable[Path]) -> list[Path]:
    return sorted(set(paths), key=lambda p: (natural_key(p), str(p)))


def _progress_frames(progress: Path) -> list[Path]:
    """`progress/NNNN.png`; when `complete` ran several batches and wrote only `bKKK_NNNN.png`,
    the first batch's."""
    images = find_images(progress, recursive=False)
    frames = [p for p in images if _PROGRESS_STEM.fullmatch(p.stem)]
    if not frames:
        frames = [p for p in images if _FIRST_BATCH_STEM.fullmatch(p.stem)]
    if not frames:
        raise DataError(f"{progress}: no progress frames (NNNN.png or b000_NNNN.png) in it")
    return frames


def _image_frames(src: Path, stem: str) -> list[Path]:
    """One image's frames, `src/frames/<stem>/NNNN.png`."""
    check_stem(stem)
    frames_dir = src / layout.FRAMES
    if not frames_dir.is_dir():
        raise DataError(f"{src}: no frames/ folder, so no per-image frames for --image {stem} "
                        f"(give the output directory of `inpaint complete`, which keeps them)")
    folder = frames_dir / stem
    if not folder.is_dir():
        stems = sorted((p.name for p in frames_dir.iterdir() if p.is_dir()), key=natural_key)
        shown = ", ".join(stems[:10]) + (", ..." if len(stems) > 10 else "")
        raise DataError(f"{folder}: no frames for image {stem!r}; images with frames: "
                        f"{shown or 'none'}")
    frames = find_images(folder, recursive=False)
    if not frames:
        raise DataError(f"{folder}: no image files in it")
    return frames


def _frames_of(source: str | Path) -> list[Path]:
    """One SRC -> its frame files. See `collect_frames`."""
    path = Path(source)
    if path.is_dir() and (path / layout.PROGRESS).is_dir():
        return _progress_frames(path / layout.PROGRESS)
    if not (path.exists() or glob.has_magic(str(source))):
        raise DataError(f"{source}: no such file or directory")
    # a frame folder is flat; a file named explicitly is kept whatever its suffix, so reading
    # it says what is wrong
    frames = [f.path for f in walk_inputs([source], recursive=False)]
    if not frames:
        raise DataError(f"{path}: no image files in it (and no progress/ folder)" if path.is_dir()
                        else f"{source}: no image files match this pattern")
    return frames


def collect_frames(sources: str | Path | Sequence[str | Path], image: str | None = None,
                   ) -> list[Path]:
    """Frame files, in natural order (0050 before 0100, 9 before 10).

    Each source is an `inpaint complete` output directory (its `progress/` frames: the stems that
    are all digits, else batch 0's `b000_NNNN`), a directory of frames (the image files directly
    in it), a glob pattern, or a frame file. `image` picks one image's frames,
    `<source>/frames/<image>/`, from a single `complete` output directory.

    Raises DataError, naming the path, when a source is missing or holds no frames."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    sources = list(sources)
    if not sources:
        raise DataError("no frames given")
    if image is not None:
        if len(sources) != 1 or not Path(sources[0]).is_dir():
            raise UsageError("--image needs a single `inpaint complete` output directory as SRC")
        return _sorted_frames(_image_frames(Path(sources[0]), image))
    frames: list[Path] = []
    for source in sources:
        frames.extend(_frames_of(source))
    return _sorted_frames(frames)


def read_frames(paths: Sequence[Path], progress: bool = False) -> list[np.ndarray]:
    """Read frame files -> `(H, W, 3) uint8` arrays, all of the first frame's size.

    Raises ImageReadError for a file that cannot be read and DataError for a frame whose size
    differs from the first's, both naming the file."""
    from tqdm import tqdm

    if not paths:
        raise DataError("no frames given")
    frames: list[np.ndarray] = []
    for path in tqdm(paths, desc="reading frames", unit="frame", disable=not progress):
        frame = read_image(path)
        if frames and frame.shape != frames[0].shape:
            h, w = frame.shape[:2]
            h0, w0 = frames[0].shape[:2]
            raise DataError(f"{path}: frame is {w}x{h} but {paths[0]} is {w0}x{h0}; "
                            f"all frames must have the same size")
        frames.append(frame)
    return frames


def upscale_nearest(img: np.ndarray, scale: int) -> np.ndarray:
    """`(H, W, C)` -> `(H*scale, W*scale, C)`: every pixel becomes a `scale` x `scale` block
    (nearest neighbour, so a 64x64 face stays crisp instead of blurred)."""
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if scale == 1:
        return img
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def quantize_frame(img: np.ndarray) -> np.ndarray:
    """`(H, W, 3) uint8` -> the same with at most 256 colours, for GIF: the frame's own palette
    (octree: on face grids it leaves less grain than median cut), applied with Floyd-Steinberg
    dithering so smooth shading shows no bands. A frame of 256 colours or fewer is returned as it
    is: Pillow's GIF writer stores it exactly, and dithering would only add noise."""
    im = Image.fromarray(img)
    if im.getcolors(256) is not None:  # None: more than 256 colours
        return img
    palette = im.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    dithered = im.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
    return np.asarray(dithered.convert("RGB"))


def frame_durations_ms(n: int, fps: float, hold_last: float, suffix: str = ".gif") -> list[int]:
    """Display time of each of `n` frames in milliseconds: `1000 / fps` each, the last one
    `hold_last` seconds longer. For GIF, whose delays are whole centiseconds, every value is
    rounded to a multiple of 10."""
    step = 10 if suffix == ".gif" else 1

    def ms(seconds: float) -> int:
        return int(round(seconds * 1000 / step)) * step

    durations = [ms(1 / fps)] * n
    durations[-1] = ms(1 / fps + hold_last)
    return durations


def _check_options(suffix: str, fps: float, loop: int, scale: int, hold_last: float) -> None:
    if suffix not in SUFFIXES:
        raise UsageError(f"cannot write {suffix or 'a file without suffix'!r}; the output must "
                         f"end in {', '.join(SUFFIXES)}")
    if not MIN_FPS <= fps < float("inf"):
        raise UsageError(f"fps must be at least {MIN_FPS:g} (a frame shows at most "
                         f"{1 / MIN_FPS:g} s), got {fps}")
    if suffix == ".gif" and fps > MAX_GIF_FPS:
        raise UsageError(f"a GIF cannot play faster than {MAX_GIF_FPS:g} fps (browsers slow "
                         f"shorter delays down to 10 fps); use --fps {MAX_GIF_FPS:g} or less, "
                         f"or write .mp4 or .webp")
    if loop < 0:
        raise UsageError(f"loop must be 0 (forever) or a number of plays, got {loop}")
    if int(scale) != scale or scale < 1:
        raise UsageError(f"scale must be a positive integer, got {scale}")
    if not 0 <= hold_last <= MAX_HOLD_SECONDS:
        raise UsageError(f"hold-last must be between 0 and {MAX_HOLD_SECONDS:g} seconds, "
                         f"got {hold_last}")


def _check_writer(suffix: str) -> None:
    """Fail early, before reading any frame, when the writer for `suffix` is not installed."""
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg

            imageio_ffmpeg.get_ffmpeg_exe()
        except (ImportError, RuntimeError):
            raise InpaintError("writing .mp4 needs ffmpeg through imageio-ffmpeg: "
                               "pip install imageio-ffmpeg (or write .gif)") from None
    elif suffix == ".webp":
        from PIL import features

        if not features.check("webp"):
            raise InpaintError("writing .webp needs a Pillow built with WebP support: "
                               "pip install --force-reinstall pillow (or write .gif)")


def _encode_pillow(frames: Iterable[np.ndarray], suffix: str, durations: list[int], loop: int,
                   ) -> bytes:
    """GIF or WebP bytes through imageio's Pillow plugin, one frame at a time."""
    import imageio.v3 as iio

    # Pillow takes a list only for several frames; a single frame needs a number.
    extra: dict = {"duration": durations if len(durations) > 1 else durations[0]}
    if suffix == ".gif":
        # The NETSCAPE block counts repeats after the first play: absent plays once.
        if loop == 0:
            extra["loop"] = 0
        elif loop > 1:
            extra["loop"] = loop - 1
    else:
        extra.update(loop=loop, lossless=True)  # WebP counts plays; 0 is forever
    buf = io.BytesIO()
    writer = iio.imopen(buf, "w", extension=suffix, plugin="pillow")
    try:
        for frame in frames:
            # The plugin gathers the frames and hands Pillow these options when it closes.
            writer.write(frame, is_batch=False, **extra)
    except BaseException:
        # Ctrl-C (or an error) between frames: closing would encode the frames gathered so far,
        # with durations for all of them, and fail with a TypeError that hides the first error.
        writer.images_to_write.clear()
        writer.close()
        raise
    writer.close()
    return buf.getvalue()


def _write_mp4(frames: Iterable[np.ndarray], path: Path, fps: float) -> None:
    """MP4 (H.264) through imageio's ffmpeg plugin, to a temporary file renamed into place."""
    import imageio.v2 as iio2

    path.parent.mkdir(parents=True, exist_ok=True)
    # ffmpeg picks the container by the file name, so the temporary name ends in .mp4 too.
    with atomic_path(path, suffix=".tmp.mp4") as tmp:
        writer = iio2.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                 quality=8, pixelformat="yuv420p",
                                 macro_block_size=_MP4_BLOCK, ffmpeg_log_level="error")
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()


def _pad_to_even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return np.pad(img, ((0, -h % _MP4_BLOCK), (0, -w % _MP4_BLOCK), (0, 0)), mode="edge")


def write_animation(frames: Sequence[np.ndarray], path: str | Path, *, fps: float = 10.0,
                    loop: int = 0, scale: int = 2, hold_last: float = 1.0,
                    progress: bool = False) -> Animation:
    """Write `frames` (`(H, W, 3) uint8`, all one size) as an animation; the format follows the
    suffix of `path`: .gif, .webp or .mp4. Written atomically.

    fps: frames per second (at most 50 for GIF). loop: how many times it plays, 0 for forever
    (GIF and WebP; an MP4 has no loop flag). scale: integer nearest-neighbour upscaling.
    hold_last: extra seconds the last frame stays on screen before the animation starts over.

    GIF: one adaptive palette per frame with dithering (see the module docstring). GIF and WebP
    give the last frame a longer delay; consecutive identical frames may be merged into one with
    the delays added. MP4 repeats the last frame `round(hold_last * fps)` times instead.

    Raises InpaintError for options out of range, an unsupported suffix or a writer that is not
    installed (saying what to install), DataError for no frames or frames of different sizes."""
    from tqdm import tqdm

    path = Path(path)
    suffix = path.suffix.lower()
    _check_options(suffix, fps, loop, scale, hold_last)
    _check_writer(suffix)
    if len(frames) == 0:
        raise DataError("no frames to animate")
    h, w = frames[0].shape[:2]
    for i, frame in enumerate(frames):
        if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
            raise DataError(f"frame {i} is {frame.shape} {frame.dtype}; expected ({h}, {w}, 3) "
                            f"uint8 like frame 0")
    if len(frames) * h * w * scale * scale > MAX_ANIMATION_PIXELS:
        raise InpaintError(f"{len(frames)} frames of {w * scale}x{h * scale} pixels are too many "
                           f"to hold in memory; use a smaller --scale or fewer frames")

    def prepared(extra_last: int = 0):
        seq = list(range(len(frames))) + [len(frames) - 1] * extra_last
        for i in tqdm(seq, desc=f"writing {path.name}", unit="frame", disable=not progress):
            frame = quantize_frame(frames[i]) if suffix == ".gif" else frames[i]
            frame = upscale_nearest(frame, scale)
            yield _pad_to_even(frame) if suffix == ".mp4" else frame

    # The frames are closed when the writing ends, also by Ctrl-C or an error, so that the
    # progress bar is finished before the caller prints its one line (not after it, when the
    # suspended generator is collected).
    if suffix == ".mp4":
        held = int(round(hold_last * fps))
        with contextlib.closing(prepared(held)) as seq:
            _write_mp4(seq, path, fps)
        seconds = (len(frames) + held) / fps
        out_h, out_w = _pad_to_even(np.empty((h * scale, w * scale, 3), np.uint8)).shape[:2]
    else:
        durations = frame_durations_ms(len(frames), fps, hold_last, suffix)
        with contextlib.closing(prepared()) as seq:
            atomic_write_bytes(path, _encode_pillow(seq, suffix, durations, loop))
        seconds = sum(durations) / 1000
        out_h, out_w = h * scale, w * scale
    log.debug("wrote %s: %d frames, %dx%d, %.1f s", path, len(frames), out_w, out_h, seconds)
    return Animation(path=path, frames=len(frames), width=out_w, height=out_h, seconds=seconds)


def blend_image_frames(src: str | Path, stem: str, paths: Sequence[Path],
                       frames: list[np.ndarray]) -> list[np.ndarray]:
    """One image's completion frames, Poisson-blended as `complete` blends blended/<stem>.png:
    each frame's G(z) (`frames/<stem>/generated/NNNN.png`) blended into the known pixels of the
    mask `masks/<stem>.png` (white = known). `complete` writes both only when it blends; without
    them the frames are returned as they are (the hole's seam shows)."""
    from inpaint.blend import poisson_blend

    src = Path(src)
    mask_path = layout.image_output(src, layout.MASKS, stem)
    generated = [p.parent / layout.GENERATED / p.name for p in paths]
    if not mask_path.is_file() or not all(g.is_file() for g in generated):
        log.info("frames of %s not blended: %s or frames/%s/generated/ is missing (complete "
                 "ran with --no-blend, or before blended frames were kept)", stem, mask_path, stem)
        return frames
    known = read_image(mask_path)[..., 0] > 127
    if known.shape != frames[0].shape[:2]:
        raise DataError(f"{mask_path}: mask is {known.shape[1]}x{known.shape[0]} but the frames "
                        f"are {frames[0].shape[1]}x{frames[0].shape[0]}")
    out = []
    for frame, gen_path in zip(frames, generated):
        solved = poisson_blend(frame.astype(np.float64), read_image(gen_path).astype(np.float64),
                               known)
        filled = np.clip(np.round(solved), 0, 255).astype(np.uint8)
        out.append(np.where(known[..., None], frame, filled))
    return out


def make_animation(sources: str | Path | Sequence[str | Path], output: str | Path, *,
                   image: str | None = None, fps: float = 10.0, loop: int = 0, scale: int = 2,
                   hold_last: float = 1.0, progress: bool = False) -> Animation:
    """Collect (`collect_frames`), read (`read_frames`) and write (`write_animation`) in one call.
    The options are checked, and the writer looked for, before any frame is read."""
    output = Path(output)
    _check_options(output.suffix.lower(), fps, loop, scale, hold_last)
    _check_writer(output.suffix.lower())
    # An animation written into its own frame folder (a .webp is an image suffix) is no frame.
    paths = [p for p in collect_frames(sources, image=image)
             if safe_resolve(p) != safe_resolve(output)]
    frames = read_frames(paths, progress=progress)
    if image is not None:
        frames = blend_image_frames(Path(sources if isinstance(sources, (str, Path))
                                         else sources[0]), image, paths, frames)
    return write_animation(frames, output, fps=fps, loop=loop, scale=scale, hold_last=hold_last,
                           progress=progress)
