"""inpaint.align and `inpaint align`: template maths and warps exactly, then detection, records,
resume and the CLI on the shipped public-domain photo (data/photos/astronaut.jpg, NASA)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inpaint import align
from inpaint.errors import AlignError, DataError
from inpaint.images import read_image
from inpaint.records import JsonlLog

from .conftest import (
    ASTRONAUT,
    SHARED_DATA,
    needs_dlib,
    run_cli,
    run_without_tensorflow,
)


def records(out_dir):
    return [json.loads(line) for line in (out_dir / "align.jsonl").read_text().splitlines()]


def write_png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def blank_photo(path, seed=0):
    """A smooth random image: no face in it."""
    low = np.random.default_rng(seed).integers(0, 255, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(low).resize((120, 100), Image.Resampling.BILINEAR).save(path)
    return path


# --- Template and affine maths (exact, no dlib) -----------------------------------------------

@pytest.mark.parametrize("settings", [dict(faces="most"), dict(detector="sift"), dict(size=4),
                                      dict(upsample=-1), dict(landmarks="ears")])
def test_bad_align_settings_are_usage_errors(settings):
    from inpaint.errors import UsageError

    with pytest.raises(UsageError) as bad:
        align.AlignSettings(**settings)
    assert bad.value.exit_code == 2


def test_template_targets_for_size_64_match_the_published_positions():
    targets = align.template_targets(64)
    expected = [(23.3, 11.4), (39.6, 11.1), (32.0, 48.0)]
    np.testing.assert_allclose(targets, expected, atol=0.06)
    outer = align.template_targets(96, "outer-eyes-and-nose")
    np.testing.assert_allclose(outer, 96 * align.TEMPLATE_68[[36, 45, 33]])


def test_template_is_the_mean_face_minmax_normalised_per_axis():
    t = align.TEMPLATE_68
    assert t.shape == (68, 2)
    np.testing.assert_allclose(t.min(axis=0), [0, 0])
    np.testing.assert_allclose(t.max(axis=0), [1, 1])
    # x and y are normalised separately, so the template is not a uniform rescale
    m = align.MEAN_FACE_68
    scale = (m.max(0) - m.min(0))
    assert not np.isclose(scale[0], scale[1], rtol=1e-3)
    np.testing.assert_allclose(t * scale + m.min(0), m, atol=1e-12)


def test_solve_affine_maps_three_points_exactly():
    rng = np.random.default_rng(1)
    for _ in range(20):
        src = rng.uniform(-500, 500, (3, 2))
        dst = rng.uniform(0, 64, (3, 2))
        t = align.solve_affine(src, dst)
        assert t.shape == (2, 3)
        np.testing.assert_allclose(align.apply_transform(t, src), dst, atol=1e-9)
    # a known answer: halve and shift
    src = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    t = align.solve_affine(src, src / 2 + [3, 4])
    np.testing.assert_allclose(t, [[0.5, 0, 3], [0, 0.5, 4]], atol=1e-12)


def test_solve_affine_refuses_collinear_landmarks():
    with pytest.raises(AlignError, match="collinear"):
        align.solve_affine([[0, 0], [1, 1], [2, 2]], [[0, 0], [1, 0], [0, 1]])
    with pytest.raises(AlignError, match="collinear"):
        align.solve_affine([[5, 5], [5, 5], [5, 5]], [[0, 0], [1, 0], [0, 1]])


def test_invert_transform_takes_face_points_back_to_the_photo():
    t = align.solve_affine([[100, 120], [160, 118], [131, 200]], align.template_targets(64))
    pts = np.random.default_rng(2).uniform(0, 300, (10, 2))
    back = align.apply_transform(align.invert_transform(t), align.apply_transform(t, pts))
    np.testing.assert_allclose(back, pts, atol=1e-9)


def test_mean_shape_removes_position_size_and_roll():
    m = align.MEAN_FACE_68
    rng = np.random.default_rng(3)
    copies = []
    for _ in range(6):
        a, s = rng.uniform(-0.6, 0.6), rng.uniform(20, 300)
        rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        copies.append(m @ rot.T + rng.uniform(-200, 200, 2))
    np.testing.assert_allclose(align.mean_shape(copies, reference=m), align.TEMPLATE_68,
                               atol=1e-9)
    # default frame: eyes levelled
    levelled = align.mean_shape(copies)
    left, right = levelled[36:42].mean(0), levelled[42:48].mean(0)
    assert abs(left[1] - right[1]) < 1e-9 and right[0] > left[0]


# --- Warping --------------------------------------------------------------------------------

def test_warp_with_an_integer_shift_copies_pixels_exactly():
    img = np.random.default_rng(4).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    t = np.array([[1.0, 0, -5], [0, 1.0, -3]])  # photo (5, 3) -> face (0, 0)
    for resample in ("bicubic", "bilinear"):
        out = align.warp_face(img, t, 10, resample=resample)
        np.testing.assert_array_equal(out, img[3:13, 5:15])


def _blob(shape, cx, cy, sigma):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))
    return np.repeat((255 * g).astype(np.uint8)[..., None], 3, axis=2)


def _centroid(img):
    w = img[..., 0].astype(np.float64)
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    return np.array([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("shrink,sigma", [(6.0, 24.0), (2.0, 8.0)])
def test_warp_puts_a_photo_point_where_the_transform_sends_it(antialias, shrink, sigma):
    # a shrink with a rotation: the antialiased path crops and resizes before warping, and must
    # keep pixel centres where they belong (a half-pixel slip moves the blob by 0.5 / shrink)
    photo = _blob((400, 500), cx=287.0, cy=203.0, sigma=sigma)
    a = 0.3
    t = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0]]) / shrink
    t[:, 2] = [32, 32] - t[:, :2] @ [287.0, 203.0] + [-3.25, 2.5]
    out = align.warp_face(photo, t, 64, antialias=antialias)
    np.testing.assert_allclose(_centroid(out), [32 - 3.25, 32 + 2.5], atol=0.02)


def test_warp_outside_the_photo_is_black_and_antialiasing_removes_aliasing():
    stripes = np.zeros((600, 600, 3), np.uint8)
    stripes[:, ::2] = 255  # finest vertical stripes: mean grey 127.5
    t = np.array([[0.1, 0, 0], [0, 0.1, 0]])  # 600 px -> 60 px inside a 64-px face
    smooth = align.warp_face(stripes, t, 64)
    assert np.all(smooth[62:, :] == 0) and np.all(smooth[:, 62:] == 0)
    assert np.abs(smooth[5:55, 5:55].astype(float) - 127.5).max() < 12
    aliased = align.warp_face(stripes, t, 64, resample="bilinear", antialias=False)
    assert np.abs(aliased[5:55, 5:55].astype(float) - 127.5).max() > 100


# --- Planning outputs ------------------------------------------------------------------------

def test_outputs_mirror_sub_folders_and_stay_inside_the_output_dir(tmp_path):
    photos = tmp_path / "photos"
    for rel in ("a.jpg", "sub/b.png", "sub/deeper/c.JPG", "sub/notes.txt"):
        (photos / rel).parent.mkdir(parents=True, exist_ok=True)
        (photos / rel).write_bytes(b"x")
    (tmp_path / "single.png").write_bytes(b"x")
    out = tmp_path / "out"
    jobs = align.plan_jobs([photos, tmp_path / "single.png",
                            str(photos / "sub" / "deeper" / ".." / "*.png"), "missing.jpg"], out)
    keys = {j.path.name: j.key for j in jobs}
    assert keys == {"a.jpg": "a", "b.png": "sub/b", "c.JPG": "sub/deeper/c",
                    "single.png": "single", "missing.jpg": "missing"}
    # a glob that climbs out of its fixed prefix: the output falls back to the file's name
    (job,) = align.plan_jobs([str(photos / "sub" / "*" / ".." / ".." / "*.jpg")], out)
    assert job.key == "a"
    assert align._safe_key(Path("../../etc/passwd")) is None
    assert align._safe_key(Path("/etc/passwd")) is None


def test_output_folder_inside_the_input_folder_is_not_realigned(tmp_path):
    photos = tmp_path / "photos"
    (photos / "aligned").mkdir(parents=True)
    (photos / "x.png").write_bytes(b"x")
    (photos / "aligned" / "x.png").write_bytes(b"x")
    jobs = align.plan_jobs([photos], photos / "aligned")
    assert [j.key for j in jobs] == ["x"]


def test_same_stem_with_other_suffixes_is_disambiguated_and_true_clashes_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for name in ("a/p.jpg", "a/p.png", "b/p.jpg"):
        (tmp_path / name).write_bytes(b"x")
    jobs = align.plan_jobs([tmp_path / "a"], tmp_path / "out")
    assert sorted(j.key for j in jobs) == ["p_jpg", "p_png"]
    with pytest.raises(AlignError, match="same output p.png"):
        align.plan_jobs([tmp_path / "a" / "p.jpg", tmp_path / "b" / "p.jpg"], tmp_path / "out")


def test_records_survive_a_torn_last_line(tmp_path):
    path = tmp_path / "align.jsonl"
    path.write_text('{"input": "/x", "status": "aligned", "faces": []}\n{"input": "/y", "sta')
    assert list(align.read_records(tmp_path)) == ["/x"]
    with JsonlLog(path, compact=True) as log:  # as align_batch appends
        log.write({"input": "/z", "status": "no-face", "faces": []})
    assert list(align.read_records(tmp_path)) == ["/x", "/z"]


def test_missing_dlib_is_an_error_that_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` fail
    blank_photo(tmp_path / "p.png")
    with pytest.raises(AlignError, match=r"pip install 'inpaint\[align\]'"):
        align.FaceAligner()
    r = run_cli("align", tmp_path / "p.png", "--out-dir", tmp_path / "out")
    assert r.exit_code == 1 and "Error: face alignment needs dlib" in r.output
    assert "Traceback" not in r.output


def test_nothing_to_align_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no images found"):
        align.align_batch([str(tmp_path / "*.jpg")], tmp_path / "out")
    r = run_cli("align", str(tmp_path / "*.jpg"), "--out-dir", tmp_path / "out")
    assert r.exit_code == 1 and f"Error: nothing matches {tmp_path / '*.jpg'}" in r.output
    assert not (tmp_path / "out").exists()


def test_bad_options_are_usage_errors(tmp_path):
    r = run_cli("align", ASTRONAUT, "--out-dir", tmp_path, "--faces", "some")
    assert r.exit_code == 2 and "Invalid value for '--faces'" in r.output
    r = run_cli("align", ASTRONAUT, "--out-dir", tmp_path, "--size", "4")
    assert r.exit_code == 2
    r = run_cli("align", ASTRONAUT, "--out-dir", tmp_path, "--predictor", tmp_path / "none.dat")
    assert r.exit_code == 2 and "does not exist" in r.output


def test_cli_min_score_default_is_the_library_default():
    r = run_cli("align", "--help")
    assert f"[default: {align.DEFAULT_MIN_SCORE:g}]" in " ".join(r.output.split())


# --- With dlib and its model -----------------------------------------------------------------

@needs_dlib
def test_astronaut_is_aligned_with_its_landmarks_on_the_template(tmp_path):
    s = align.align_batch([ASTRONAUT], tmp_path, align.AlignSettings())
    assert s.counts["aligned"] == 1 and s.faces == 1 and s.problems == []
    (rec,) = records(tmp_path)
    assert rec["status"] == "aligned" and rec["image_size"] == [512, 512]
    (face,) = rec["faces"]
    assert face["output"] == "astronaut.png"
    left, top, right, bottom = face["box"]
    assert 150 < left < right < 300 and 50 < top < bottom < 200  # the face, not the suit
    pts = np.array(face["landmarks"], dtype=float)
    assert pts.shape == (68, 2)
    assert np.all((pts >= [left - 20, top - 20]) & (pts <= [right + 20, bottom + 20]))
    t = np.array(face["transform"])
    np.testing.assert_allclose(align.apply_transform(t, pts[[39, 42, 57]]),
                               align.template_targets(64), atol=1e-5)
    out = read_image(tmp_path / "astronaut.png")
    assert out.shape == (64, 64, 3)
    # the face in the file is the photo warped by the recorded transform: pasting it back with
    # the inverse reproduces the photo around the eyes and mouth
    photo = read_image(ASTRONAUT)
    back = align.warp_face(out, align.invert_transform(t), 512)  # (512, 512) canvas
    region = (slice(int(pts[:, 1].min()) + 5, int(pts[:, 1].max()) - 5),
              slice(int(pts[:, 0].min()) + 5, int(pts[:, 0].max()) - 5))
    diff = np.abs(back[region].astype(float) - photo[region]).mean()
    assert diff < 12, diff


@needs_dlib
def test_weak_detection_on_the_suit_is_dropped_by_min_score(tmp_path):
    aligner = align.FaceAligner(align.AlignSettings(min_score=0.0))
    kept, _ = aligner.detect(read_image(ASTRONAUT))
    assert len(kept) == 2 and min(d.score for d in kept) < 0.25 < max(d.score for d in kept)
    s = align.align_batch([ASTRONAUT], tmp_path, align.AlignSettings(faces="skip-multi"))
    assert s.counts["aligned"] == 1
    (rec,) = records(tmp_path)
    assert len(rec["detections"]) == 1 and len(rec["weak_scores"]) == 1
    assert rec["weak_scores"][0] < align.DEFAULT_MIN_SCORE


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    """The astronaut's face twice, side by side (400x200)."""
    img = read_image(ASTRONAUT)[40:240, 120:320]
    return write_png(tmp_path_factory.mktemp("two") / "pair.png", np.hstack([img, img]))


@needs_dlib
def test_several_faces_all_largest_or_skipped(tmp_path, two_faces):
    r = run_cli("align", two_faces, "--out-dir", tmp_path / "all", "--faces", "all", "-q")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "all").glob("*.png")) == ["pair_0.png", "pair_1.png"]
    (rec,) = records(tmp_path / "all")
    assert [f["output"] for f in rec["faces"]] == ["pair_0.png", "pair_1.png"]
    assert rec["faces"][0]["box"] != rec["faces"][1]["box"]
    r = run_cli("align", two_faces, "--out-dir", tmp_path / "skip", "--faces", "skip-multi", "-q")
    assert r.exit_code == 0 and "photos with several faces skipped: 1" in r.output
    assert list((tmp_path / "skip").glob("*.png")) == []
    assert records(tmp_path / "skip")[0]["status"] == "skipped-multi"
    r = run_cli("align", two_faces, "--out-dir", tmp_path / "largest", "-q")
    assert r.exit_code == 0 and [p.name for p in (tmp_path / "largest").glob("*.png")] == [
        "pair.png"]


@needs_dlib
def test_largest_counts_and_reports_the_faces_it_leaves_out(tmp_path, two_faces):
    r = run_cli("align", two_faces, ASTRONAUT, "-o", tmp_path / "out", "-q")
    assert r.exit_code == 0, r.output
    assert "faces left out: 1 in 1 photos with several faces (--faces all keeps them)" in r.output
    s = align.align_batch([two_faces, ASTRONAUT], tmp_path / "out")  # resumed: still counted
    assert (s.faces, s.faces_left_out, s.photos_with_faces_left_out) == (2, 1, 1)


@needs_dlib
def test_no_face_and_bad_files_are_reported_and_strict_fails(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "astronaut.jpg").write_bytes(ASTRONAUT.read_bytes())
    blank_photo(photos / "wall.png")
    (photos / "broken.jpg").write_bytes(b"not a jpeg at all")
    out = tmp_path / "out"
    r = run_cli("align", photos, "--out-dir", out, "-q")
    assert r.exit_code == 0, r.output
    assert "aligned 1 of 3 inputs" in r.output
    assert "no face: 1, faces left out: 0 in 0 photos with several faces, errors: 1" in r.output
    assert "no-face: " in r.output and "wall.png" in r.output
    assert "broken.jpg: not an image Pillow can read" in r.output
    by_name = {rec["key"]: rec for rec in records(out)}
    assert by_name["wall"]["status"] == "no-face" and by_name["wall"]["faces"] == []
    assert by_name["broken"]["status"] == "error" and by_name["broken"]["image_size"] is None
    assert sorted(p.name for p in out.glob("*.png")) == ["astronaut.png"]
    r = run_cli("align", photos, "--out-dir", out, "--strict", "-q")
    assert r.exit_code == 1
    assert "Error: --strict: 2 of 3 inputs have no aligned face" in r.output
    assert "Traceback" not in r.output


@needs_dlib
def test_rerun_skips_what_is_done_and_redoes_missing_outputs(tmp_path, two_faces):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (photos / "sub" / "astronaut.jpg").write_bytes(ASTRONAUT.read_bytes())
    (photos / "pair.png").write_bytes(two_faces.read_bytes())
    blank_photo(photos / "wall.png")
    out = tmp_path / "out"
    first = align.align_batch([photos], out)
    assert first.processed == 3 and first.counts == {"aligned": 2, "no-face": 1,
                                                     "skipped-multi": 0, "error": 0}
    stamp = (out / "sub" / "astronaut.png").stat().st_mtime_ns
    again = align.align_batch([photos], out)
    assert again.processed == 0 and again.resumed == 3 and again.counts == first.counts
    assert (out / "sub" / "astronaut.png").stat().st_mtime_ns == stamp
    (out / "pair.png").unlink()
    third = align.align_batch([photos], out)
    assert third.processed == 1 and third.resumed == 2 and (out / "pair.png").is_file()
    forced = align.align_batch([photos], out, overwrite=True)
    assert forced.processed == 3
    # other settings into the same folder would mix sizes: refused unless --overwrite
    r = run_cli("align", photos, "--out-dir", out, "--size", 32, "-q")
    assert r.exit_code == 1 and "aligned with other settings" in r.output
    r = run_cli("align", photos, "--out-dir", out, "--size", 32, "--overwrite", "-q")
    assert r.exit_code == 0 and read_image(out / "pair.png").shape == (32, 32, 3)
    # realigned with a bar no detection passes: the faces written before must not linger
    r = run_cli("align", photos, "--out-dir", out, "--size", 32, "--min-score", 5, "--overwrite", "-q")
    assert r.exit_code == 0 and "aligned 0 of 3" in r.output
    assert list(out.rglob("*.png")) == []


@needs_dlib
def test_two_workers_write_the_same_faces_as_one(tmp_path, two_faces):
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(3):
        (photos / f"a{k}.jpg").write_bytes(ASTRONAUT.read_bytes())
    (photos / "pair.png").write_bytes(two_faces.read_bytes())
    one = align.align_batch([photos], tmp_path / "one", workers=1)
    two = align.align_batch([photos], tmp_path / "two", workers=2)
    assert one.counts == two.counts and two.processed == 4
    for p in sorted((tmp_path / "one").glob("*.png")):
        assert (tmp_path / "two" / p.name).read_bytes() == p.read_bytes()
    assert len(records(tmp_path / "two")) == 4


@needs_dlib
def test_exif_rotation_grayscale_and_pixel_limit(tmp_path):
    photo = read_image(ASTRONAUT)
    plain = align.align_batch([ASTRONAUT], tmp_path / "plain")
    assert plain.counts["aligned"] == 1
    # stored rotated, with EXIF orientation 6 ("rotate 90 CW to display"): read upright
    rotated = Image.fromarray(photo).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(tmp_path / "rotated.png", exif=exif)
    Image.fromarray(photo).convert("L").save(tmp_path / "gray.png")
    Image.new("1", (8001, 8001)).save(tmp_path / "huge.png")  # 64.0 Mpx > the limit
    s = align.align_batch([tmp_path / "rotated.png", tmp_path / "gray.png", tmp_path / "huge.png"],
                          tmp_path / "out")
    assert s.counts == {"aligned": 2, "no-face": 0, "skipped-multi": 0, "error": 1}
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "rotated.png"),
                                  read_image(tmp_path / "plain" / "astronaut.png"))
    gray = read_image(tmp_path / "out" / "gray.png")
    assert np.array_equal(gray[..., 0], gray[..., 1])
    (message,) = [m for _, status, m in s.problems if status == "error"]
    assert "over the limit" in message


@needs_dlib
def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path):
    fake = tmp_path / "model.dat"
    fake.write_bytes(b"\0" * 100)
    r = run_cli("align", ASTRONAUT, "--out-dir", tmp_path / "out", "--predictor", fake)
    assert r.exit_code == 1 and "not a dlib landmark model" in r.output


@needs_dlib
@pytest.mark.skipif(not (SHARED_DATA / "raw-photos").is_dir(), reason="needs ../shared/data")
def test_aligned_faces_agree_with_openface_outputs(tmp_path):
    # OpenFace's own 96x96 outputs were made with an older dlib; faces should still line up
    src = SHARED_DATA / "raw-photos" / "openface-examples"
    ref = SHARED_DATA / "raw-photos" / "openface-examples-aligned"
    s = align.align_batch([src / "lennon-1.jpg", src / "adams.jpg"], tmp_path,
                          align.AlignSettings(size=96))
    assert s.counts["aligned"] == 2
    for name in ("lennon-1", "adams"):
        ours = read_image(tmp_path / f"{name}.png").astype(float)
        assert np.abs(ours - read_image(ref / f"{name}.png")).mean() < 25
    # the bound means something: another person's aligned face differs far more
    assert np.abs(read_image(tmp_path / "lennon-1.png").astype(float)
                  - read_image(ref / "adams.png")).mean() > 40


def test_importing_align_loads_neither_dlib_nor_tensorflow():
    run_without_tensorflow("import sys, inpaint.align, inpaint.cli\n"
                           "assert 'dlib' not in sys.modules, 'dlib imported'")


@needs_dlib
def test_align_command_does_not_import_tensorflow(tmp_path):
    code = ("import sys\nfrom inpaint.cli import cli\n"
            f"try:\n    cli(['align', {str(ASTRONAUT)!r}, '--out-dir', {str(tmp_path)!r}, '-q'])\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code")
    run_without_tensorflow(code)
    assert (tmp_path / "astronaut.png").is_file()


def test_min_score_has_a_floor_checked_before_any_work(tmp_path):
    from inpaint.errors import UsageError

    with pytest.raises(UsageError, match="min score"):
        align.AlignSettings(min_score=-1e9)
    with pytest.raises(UsageError, match="min score"):
        align.AlignSettings(min_score=float("nan"))
    align.AlignSettings(min_score=align.MIN_SCORE_FLOOR)
    r = run_cli("fill", ASTRONAUT, "-o", tmp_path / "o", "--region", "mouth", "--faces", "all",
                "--min-score", "-1e9")
    assert r.exit_code == 2 and "--min-score" in r.output
    assert not (tmp_path / "o").exists()


class _ManyFaces:
    """A stand-in for dlib's HOG detector that finds `n` faces of growing size."""

    def __init__(self, n):
        self.n = n

    def run(self, image, upsample, threshold):
        import dlib

        rects = [dlib.rectangle(2 * i, 2 * i, 2 * i + 10 + i, 2 * i + 10 + i) for i in range(self.n)]
        return rects, [1.0] * self.n, [0] * self.n


@needs_dlib
def test_a_photo_keeps_at_most_max_faces_the_largest(monkeypatch, caplog):
    monkeypatch.setattr(align, "MAX_FACES", 3)
    aligner = align.FaceAligner(align.AlignSettings(faces="all"))
    aligner._detector = _ManyFaces(7)
    with caplog.at_level("WARNING", logger="inpaint.align"):
        kept, _ = aligner.detect(np.zeros((64, 64, 3), np.uint8))
    assert len(kept) == 3
    assert [d.area for d in kept] == sorted((d.area for d in kept), reverse=True)
    assert kept[0].box == (12, 12, 28, 28)  # the largest of the seven
    assert "7 faces found; the 3 largest" in caplog.text
