"""inpaint.gif and `inpaint make-gif`: frame collection and order, what the written animation holds
(frames, delays, loop, scale, colours), and the error paths."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from inpaint import gif
from inpaint.errors import DataError, ImageReadError, InpaintError

from .conftest import run_cli, run_without_tensorflow

SIZE = (6, 4)  # (w, h) of the synthetic frames


def flat(value: int, size=SIZE) -> np.ndarray:
    """A one-colour frame whose colour encodes `value`, so a frame read back says which it was."""
    w, h = size
    rgb = np.array([value % 256, value // 256 % 256, 128], np.uint8)
    return np.broadcast_to(rgb, (h, w, 3)).copy()


def save(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def save_numbered(folder: Path, names: list[str]) -> None:
    """Frame `name` gets the colour flat(int of its digits)."""
    for name in names:
        save(folder / name, flat(int("".join(c for c in Path(name).stem if c.isdigit()))))


def read_gif(path: Path):
    """-> (frames as (H, W, 3) uint8, per-frame durations in ms, loop or None)."""
    with Image.open(path) as im:
        assert im.format == "GIF"
        loop = im.info.get("loop")
        frames, durations = [], []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")))
            durations.append(im.info["duration"])
    return frames, durations, loop


def colours(frames) -> list[int]:
    """The value each flat frame encodes."""
    return [int(f[0, 0, 0]) + 256 * int(f[0, 0, 1]) for f in frames]



# ---- collecting and ordering frames -------------------------------------------------------------

def test_natural_key_orders_digit_runs_by_value():
    names = ["10.png", "9.png", "0100.png", "0050.png", "b2_1.png", "b10_1.png", "1.png"]
    assert sorted(names, key=gif.natural_key) == [
        "1.png", "9.png", "10.png", "0050.png", "0100.png", "b2_1.png", "b10_1.png"]


def test_unpadded_frames_are_sorted_numerically_and_only_images_kept(tmp_path):
    save_numbered(tmp_path, ["10.png", "2.png", "9.png", "1.png", "11.png"])
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / ".0003.png.abc.tmp").write_bytes(b"half a file")  # a write in progress
    save(tmp_path / "sub" / "5.png", flat(5))  # a frame folder is flat: not searched
    assert [p.name for p in gif.collect_frames(tmp_path)] == [
        "1.png", "2.png", "9.png", "10.png", "11.png"]


def test_complete_dir_animates_progress_frames_not_hats_frames_or_later_batches(tmp_path):
    names = ["1000.png", "0050.png", "0000.png", "0500.png", "0100.png"]
    save_numbered(tmp_path / "progress", names + ["b001_0000.png"])
    save_numbered(tmp_path / "hats", names)
    save_numbered(tmp_path / "frames" / "face", names)
    save(tmp_path / "face.png", flat(3))
    frames = gif.collect_frames(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in frames] == [
        "progress/0000.png", "progress/0050.png", "progress/0100.png", "progress/0500.png",
        "progress/1000.png"]


def test_progress_with_only_batch_prefixes_animates_batch_zero(tmp_path):
    save_numbered(tmp_path / "progress", ["b000_0050.png", "b000_0000.png", "b001_0000.png"])
    assert [p.name for p in gif.collect_frames(tmp_path)] == ["b000_0000.png", "b000_0050.png"]


def test_image_option_takes_that_images_frames(tmp_path):
    save_numbered(tmp_path / "progress", ["0000.png", "0050.png"])
    save_numbered(tmp_path / "frames" / "alice", ["0100.png", "0000.png", "0050.png"])
    save_numbered(tmp_path / "frames" / "bob", ["0000.png"])
    frames = gif.collect_frames(tmp_path, image="alice")
    assert [p.relative_to(tmp_path).as_posix() for p in frames] == [
        "frames/alice/0000.png", "frames/alice/0050.png", "frames/alice/0100.png"]
    with pytest.raises(DataError, match=r"no frames for image 'carol'.*alice, bob"):
        gif.collect_frames(tmp_path, image="carol")


def test_glob_and_several_files_are_sorted_together(tmp_path):
    save_numbered(tmp_path, ["3.png", "20.png", "100.png", "7.jpg"])
    assert [p.name for p in gif.collect_frames(str(tmp_path / "*.png"))] == [
        "3.png", "20.png", "100.png"]
    files = [tmp_path / "100.png", tmp_path / "3.png", tmp_path / "20.png"]
    assert [p.name for p in gif.collect_frames(files)] == ["3.png", "20.png", "100.png"]


# ---- what the written file holds ---------------------------------------------------------------

def test_gif_has_every_frame_in_order_with_its_delay_and_the_last_held(tmp_path):
    names = ["1000.png", "0050.png", "0000.png", "0500.png", "0100.png"]
    save_numbered(tmp_path / "out" / "progress", names)
    result = gif.make_animation(tmp_path / "out", tmp_path / "out" / "completion.gif", fps=10,
                                hold_last=1.0, scale=2)
    frames, durations, loop = read_gif(tmp_path / "out" / "completion.gif")
    assert len(frames) == result.frames == 5
    assert colours(frames) == [0, 50, 100, 500, 1000]
    assert durations == [100, 100, 100, 100, 1100]
    assert loop == 0
    assert frames[0].shape == (SIZE[1] * 2, SIZE[0] * 2, 3)
    assert (result.width, result.height, result.seconds) == (12, 8, 1.5)


def test_hold_last_lengthens_only_the_last_frame(tmp_path):
    frames = [flat(v) for v in (10, 20, 30)]
    gif.write_animation(frames, tmp_path / "held.gif", fps=4, hold_last=0.5)
    gif.write_animation(frames, tmp_path / "plain.gif", fps=4, hold_last=0)
    assert read_gif(tmp_path / "held.gif")[1] == [250, 250, 750]
    assert read_gif(tmp_path / "plain.gif")[1] == [250, 250, 250]


def test_gif_delays_are_whole_centiseconds():
    assert gif.frame_durations_ms(3, 30, 0.0, ".gif") == [30, 30, 30]
    assert gif.frame_durations_ms(3, 30, 0.0, ".webp") == [33, 33, 33]
    assert gif.frame_durations_ms(2, 3, 1.0, ".gif") == [330, 1330]


def test_identical_consecutive_frames_merge_keeping_the_total_time(tmp_path):
    # Pillow stores a repeated frame once with the delays added: playback is unchanged.
    frames = [flat(10), flat(10), flat(20)]
    gif.write_animation(frames, tmp_path / "a.gif", fps=10, hold_last=0.5)
    out, durations, _ = read_gif(tmp_path / "a.gif")
    assert colours(out) == [10, 20] and durations == [200, 600]


def test_a_single_frame_is_written_with_the_hold(tmp_path):
    gif.write_animation([flat(7)], tmp_path / "a.gif", fps=10, hold_last=0.5)
    frames, durations, _ = read_gif(tmp_path / "a.gif")
    assert colours(frames) == [7] and durations == [600]


@pytest.mark.parametrize(("plays", "stored"), [(0, 0), (1, None), (3, 2)])
def test_loop_option_counts_plays(tmp_path, plays, stored):
    # GIF's NETSCAPE block counts repeats after the first play; without it a GIF plays once.
    gif.write_animation([flat(1), flat(2)], tmp_path / "a.gif", loop=plays)
    assert read_gif(tmp_path / "a.gif")[2] == stored


def test_scale_turns_each_pixel_into_a_block(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    gif.write_animation([img, img[::-1].copy()], tmp_path / "a.gif", scale=3)
    out, _, _ = read_gif(tmp_path / "a.gif")
    expected = np.repeat(np.repeat(img, 3, axis=0), 3, axis=1)
    assert out[0].shape == (9, 15, 3)
    np.testing.assert_array_equal(out[0], expected)


def test_each_frame_has_its_own_palette_so_few_colour_frames_are_exact(tmp_path):
    # 200 colours per frame, 400 in all: one shared 256-colour palette could not hold both.
    palette = np.arange(400) * 41941 % 256**3  # 400 distinct colours (41941 is odd)
    rgb = np.stack([palette >> 16, (palette >> 8) & 255, palette & 255], -1).astype(np.uint8)
    a = rgb[:200].reshape(10, 20, 3)
    b = rgb[200:].reshape(10, 20, 3)
    gif.write_animation([a, b], tmp_path / "a.gif", scale=1)
    out, _, _ = read_gif(tmp_path / "a.gif")
    np.testing.assert_array_equal(out[0], a)
    np.testing.assert_array_equal(out[1], b)


def _box_blur(img: np.ndarray, k: int = 9) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    return uniform_filter(img.astype(np.float64), size=(k, k, 1))[k:-k, k:-k]


def test_smooth_gradient_gif_frame_has_no_bands(tmp_path):
    # 16384 colours. Bands are errors that survive local averaging; dither grain averages out.
    y, x = np.mgrid[0:128, 0:128]
    gradient = np.stack([x * 2, y * 2, x + y], -1).astype(np.uint8)
    plain = np.asarray(Image.fromarray(gradient).convert("P", palette=Image.Palette.ADAPTIVE)
                       .convert("RGB"))
    assert np.abs(_box_blur(plain) - _box_blur(gradient)).max() > 4  # undithered: bands
    gif.write_animation([gradient, gradient[::-1].copy()], tmp_path / "g.gif", scale=1)
    out, _, _ = read_gif(tmp_path / "g.gif")
    for frame, source in zip(out, [gradient, gradient[::-1]]):
        assert np.abs(_box_blur(frame) - _box_blur(source)).max() < 2.5


@pytest.mark.skipif(not features.check("webp"), reason="Pillow without WebP")
def test_webp_has_frames_delays_and_loop(tmp_path):
    frames = [flat(v) for v in (10, 20, 30)]
    gif.write_animation(frames, tmp_path / "a.webp", fps=5, hold_last=1.0, loop=2, scale=1)
    with Image.open(tmp_path / "a.webp") as im:
        assert im.format == "WEBP" and im.n_frames == 3 and im.info["loop"] == 2
        durations = []
        for i in range(3):
            im.seek(i)
            im.load()
            durations.append(im.info["duration"])
            np.testing.assert_array_equal(np.asarray(im.convert("RGB")), frames[i])  # lossless
    assert durations == [200, 200, 1200]


def test_webp_output_inside_the_frame_folder_is_not_taken_as_a_frame(tmp_path):
    save_numbered(tmp_path, ["1.png", "2.png"])
    for _ in range(2):
        result = gif.make_animation(tmp_path, tmp_path / "anim.webp")
        assert result.frames == 2


def test_mp4_has_the_frames_and_repeats_the_last_for_the_hold(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import imageio.v2 as iio2

    frames = [flat(v, size=(7, 5)) for v in (10, 100, 200)]
    result = gif.write_animation(frames, tmp_path / "a.mp4", fps=5, hold_last=1.0, scale=1)
    reader = iio2.get_reader(tmp_path / "a.mp4", format="FFMPEG")
    try:
        assert reader.count_frames() == 3 + 5
        assert reader.get_meta_data()["size"] == (8, 6)  # padded to even for yuv420p
    finally:
        reader.close()
    assert (result.width, result.height) == (8, 6)


def test_mp4_without_imageio_ffmpeg_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails
    save_numbered(tmp_path / "f", ["1.png", "2.png"])
    with pytest.raises(InpaintError, match="pip install imageio-ffmpeg"):
        gif.make_animation(tmp_path / "f", tmp_path / "a.mp4")
    r = run_cli("make-gif", tmp_path / "f", "-o", tmp_path / "a.mp4")
    assert r.exit_code == 1 and "Error: writing .mp4 needs" in r.output
    assert not (tmp_path / "a.mp4").exists()


# ---- errors -----------------------------------------------------------------------------------

def test_missing_or_empty_sources_name_the_path(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'}: no such file or directory"):
        gif.collect_frames(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no image files in it"):
        gif.collect_frames(tmp_path / "empty")
    (tmp_path / "run" / "progress").mkdir(parents=True)
    with pytest.raises(DataError, match="progress: no progress frames"):
        gif.collect_frames(tmp_path / "run")
    with pytest.raises(DataError, match=r"\*\.png: no image files match"):
        gif.collect_frames(str(tmp_path / "empty" / "*.png"))
    with pytest.raises(DataError, match="no frames/ folder"):
        gif.collect_frames(tmp_path / "run", image="x")


def test_unreadable_frame_is_named_and_nothing_is_written(tmp_path):
    save_numbered(tmp_path / "f", ["1.png", "3.png"])
    (tmp_path / "f" / "2.png").write_bytes(b"not a png")
    out = tmp_path / "a.gif"
    with pytest.raises(ImageReadError, match=r"2\.png: not an image"):
        gif.make_animation(tmp_path / "f", out)
    assert not out.exists()


def test_frame_of_another_size_is_named(tmp_path):
    save_numbered(tmp_path / "f", ["1.png", "2.png"])
    save(tmp_path / "f" / "10.png", flat(10, size=(8, 4)))
    with pytest.raises(DataError, match=r"10\.png: frame is 8x4 but .*1\.png is 6x4"):
        gif.make_animation(tmp_path / "f", tmp_path / "a.gif")
    assert not (tmp_path / "a.gif").exists()


def test_library_rejects_bad_options_before_reading_frames(tmp_path):
    with pytest.raises(InpaintError, match="at most 50 fps|faster than 50 fps"):
        gif.make_animation(tmp_path / "missing", tmp_path / "a.gif", fps=60)
    with pytest.raises(InpaintError, match="must end in .gif, .webp, .mp4"):
        gif.make_animation(tmp_path / "missing", tmp_path / "a.png")
    with pytest.raises(InpaintError, match="scale must be a positive integer"):
        gif.write_animation([flat(1)], tmp_path / "a.gif", scale=0)


# ---- the command ------------------------------------------------------------------------------

def test_cli_writes_the_gif_the_makefile_asks_for(tmp_path):
    out = tmp_path / "out"
    save_numbered(out / "progress", ["0000.png", "0050.png", "0100.png"])
    r = run_cli("make-gif", out, "-o", out / "completion.gif", "-q")
    assert r.exit_code == 0, r.output
    # how long it plays, and (not to be read as that) how long it took to make
    assert f"wrote {out / 'completion.gif'}: 3 frames, 12x8, plays 1.3 s (made in " in r.output
    frames, durations, loop = read_gif(out / "completion.gif")
    assert colours(frames) == [0, 50, 100] and durations == [100, 100, 1100] and loop == 0


def test_cli_options_reach_the_file(tmp_path):
    save_numbered(tmp_path / "out" / "frames" / "face", ["0000.png", "0050.png"])
    r = run_cli("make-gif", tmp_path / "out", "--image", "face", "-o", tmp_path / "f.gif", "--fps",
            20, "--loop", 2, "--scale", 3, "--hold-last", 0.25, "-q")
    assert r.exit_code == 0, r.output
    frames, durations, loop = read_gif(tmp_path / "f.gif")
    assert durations == [50, 300] and loop == 1 and frames[0].shape == (12, 18, 3)


def test_cli_errors_exit_1_naming_the_file_without_traceback(tmp_path):
    r = run_cli("make-gif", tmp_path / "missing", "-o", tmp_path / "a.gif")
    assert r.exit_code == 1 and "Error:" in r.output and "missing: no such file" in r.output
    assert "Traceback" not in r.output
    save_numbered(tmp_path / "f", ["1.png", "2.png"])
    save(tmp_path / "f" / "3.png", flat(3, size=(5, 5)))
    r = run_cli("make-gif", tmp_path / "f", "-o", tmp_path / "a.gif", "-q")
    assert r.exit_code == 1 and "3.png: frame is 5x5" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "a.gif").exists()


@pytest.mark.parametrize("args", [
    ["--scale", "0"], ["--scale", "1.5"], ["--fps", "0"], ["--fps", "60"], ["--loop", "-1"],
    ["--hold-last", "-1"], ["--hold-last", "601"],
])
def test_cli_bad_option_values_exit_2(tmp_path, args):
    save_numbered(tmp_path / "f", ["1.png", "2.png"])
    r = run_cli("make-gif", tmp_path / "f", "-o", tmp_path / "a.gif", *args)
    assert r.exit_code == 2 and args[0] in r.output, r.output
    assert not (tmp_path / "a.gif").exists()


def test_cli_output_is_required_and_its_suffix_checked_exit_2(tmp_path):
    save_numbered(tmp_path / "f", ["1.png", "2.png"])
    r = run_cli("make-gif", tmp_path / "f")
    assert r.exit_code == 2 and "Missing option '-o'" in r.output
    r = run_cli("make-gif", tmp_path / "f", "-o", tmp_path / "a.png")
    assert r.exit_code == 2 and "must end in .gif, .webp, .mp4" in r.output
    assert not (tmp_path / "a.png").exists()


def test_image_with_two_sources_is_a_usage_error_exit_2(tmp_path):
    from inpaint.errors import UsageError

    save_numbered(tmp_path / "out" / "frames" / "000", ["1.png", "2.png"])
    with pytest.raises(UsageError, match="needs a single"):
        gif.collect_frames([tmp_path / "out", tmp_path / "out"], image="000")
    r = run_cli("make-gif", tmp_path / "out", tmp_path / "out", "--image", "000", "-o",
            tmp_path / "a.gif")
    assert r.exit_code == 2, r.output
    assert "Error: --image needs a single `inpaint complete` output directory" in r.output
    assert not (tmp_path / "a.gif").exists()


@pytest.mark.parametrize("options", [dict(fps=0.01), dict(fps=60), dict(loop=-1), dict(scale=0),
                                     dict(hold_last=601)])
def test_the_library_refuses_bad_option_values_as_usage_errors(tmp_path, options):
    from inpaint.errors import UsageError

    with pytest.raises(UsageError):
        gif.write_animation([flat(0), flat(9)], tmp_path / "a.gif", **options)
    assert not (tmp_path / "a.gif").exists()


def test_cli_make_gif_does_not_import_tensorflow(tmp_path):
    save_numbered(tmp_path / "f", ["1.png", "2.png"])
    code = ("import sys; from inpaint.cli import cli\n"
            f"try:\n    cli(['make-gif', {str(tmp_path / 'f')!r}, '-o', "
            f"{str(tmp_path / 'a.gif')!r}, '-q'])\n"
            "except SystemExit as exc:\n    assert exc.code == 0, exc.code")
    run_without_tensorflow(code)
    assert (tmp_path / "a.gif").is_file()


def test_image_frames_are_blended_like_the_blended_output(tmp_path, tiny_run):
    from inpaint.batch import complete_files
    from inpaint.config import SearchOptions
    from inpaint.masks import MaskSpec
    from inpaint.models import load_model

    from .conftest import write_faces

    src = write_faces(tmp_path / "in", n=2, size=(16, 16))
    out = tmp_path / "out"
    complete_files(sorted(src.iterdir()), out, load_model(tiny_run), mask=MaskSpec("center"),
                   options=SearchOptions(iters=4), out_interval=2, progress=False)
    paths = gif.collect_frames(out, image="001")
    assert [p.name for p in paths] == ["0000.png", "0002.png", "0004.png"]  # not generated/
    plain = gif.read_frames(paths)
    blended = gif.blend_image_frames(out, "001", paths, plain)
    final = np.asarray(Image.open(out / "blended" / "001.png")).astype(int)
    assert np.abs(blended[-1].astype(int) - final).max() <= 2  # G(z) stored as uint8
    seam = np.abs(plain[-1].astype(int) - final).max()
    assert seam > 2  # without blending the last frame is the completed/ image, not blended/
    known = np.asarray(Image.open(out / "masks" / "001.png")) > 127
    assert all((b[known] == p[known]).all() for b, p in zip(blended, plain))
    r = run_cli("make-gif", out, "--image", "001", "-o", tmp_path / "a.webp", "--scale", "1")
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "a.webp") as im:  # lossless: the blended frames themselves
        im.seek(im.n_frames - 1)
        assert (np.asarray(im.convert("RGB")) == blended[-1]).all()
    (out / "masks" / "001.png").unlink()  # without the mask: the frames as they are
    assert all((b == p).all() for b, p in zip(gif.blend_image_frames(out, "001", paths, plain),
                                              plain))


def test_interrupted_writing_closes_its_progress_bar_before_the_interrupt_leaves(monkeypatch,
                                                                                 tmp_path):
    """Ctrl-C while Pillow encodes: the frames' generator (and its progress bar) is closed
    before KeyboardInterrupt leaves write_animation, so the CLI's "Interrupted." is the last
    line, not a bar redrawn after it when the suspended generator is collected."""
    import tqdm

    closed = []
    close = tqdm.tqdm.close

    def recording_close(self):
        closed.append(self.desc)
        return close(self)

    def encode(seq, *args, **kwargs):
        next(seq)
        next(seq)
        raise KeyboardInterrupt

    monkeypatch.setattr(tqdm.tqdm, "close", recording_close)
    monkeypatch.setattr(gif, "_encode_pillow", encode)
    frames = [np.full((8, 8, 3), i * 20, np.uint8) for i in range(5)]
    with pytest.raises(KeyboardInterrupt) as interrupt:
        gif.write_animation(frames, tmp_path / "a.gif", progress=True)
    # `interrupt` holds the traceback, and with it encode's frame and the generator, alive
    assert interrupt.traceback and "writing a.gif" in closed
    assert not (tmp_path / "a.gif").exists()
