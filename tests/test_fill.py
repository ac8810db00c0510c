"""inpaint fill: regions from landmarks, the warp back to the photo, blending at photo resolution,
masks and boxes in photo pixels, EXIF orientation, the Python API and the CLI (with the tiny model
on the shipped astronaut photo)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inpaint.align import MEAN_FACE_68, AlignSettings, FaceAligner, solve_affine, warp_face
from inpaint.cli import cli
from inpaint.config import SearchOptions
from inpaint.errors import MaskError, NoFaceFound
from inpaint.fill import (
    blend_into_photo,
    box_hole,
    convex_hull,
    fill,
    fill_photo,
    read_photo_mask,
    region_mask,
    square_in_photo,
    warp_to_photo,
)
from inpaint.masks import FACE_REGIONS

from .conftest import ASTRONAUT, run_cli, run_without_tensorflow

FAST = SearchOptions(iters=3)


def synthetic_landmarks(width: float = 200.0, x0: float = 50.0, y0: float = 40.0) -> np.ndarray:
    """The mean face scaled to `width` pixels at (x0, y0): (68, 2)."""
    return MEAN_FACE_68 * width + np.array([x0, y0])


def test_cli_region_names_are_the_library_regions():
    region = next(p for p in cli.commands["fill"].params if p.name == "regions")
    assert list(region.type.choices) == list(FACE_REGIONS) and "mouth" in FACE_REGIONS


def test_convex_hull_of_a_square_with_inner_points():
    pts = np.array([[0, 0], [4, 0], [4, 4], [0, 4], [2, 2], [1, 3], [4, 2]])
    hull = convex_hull(pts)
    assert {tuple(p) for p in hull} == {(0, 0), (4, 0), (4, 4), (0, 4)}


def test_regions_from_synthetic_landmarks_cover_their_feature_only():
    pts = synthetic_landmarks()
    shape = (300, 300)

    def at(mask, p):
        x, y = np.round(p).astype(int)
        return bool(mask[y, x])

    mouth = region_mask(pts, ["mouth"], shape, grow=0)
    assert at(mouth, pts[48:68].mean(0)) and not at(mouth, pts[30]) and not at(mouth, pts[36])
    eyes = region_mask(pts, ["eyes"], shape, grow=0)
    assert at(eyes, pts[36:42].mean(0)) and at(eyes, pts[42:48].mean(0))
    assert not at(eyes, (pts[39] + pts[42]) / 2)  # two hulls: the bridge of the nose is kept
    left = region_mask(pts, ["left-eye"], shape, grow=0)
    assert at(left, pts[36:42].mean(0)) and not at(left, pts[42:48].mean(0))
    # growing by r adds about perimeter * r pixels
    grown = region_mask(pts, ["mouth"], shape, grow=5)
    assert (grown & ~mouth).sum() > 0 and not (mouth & ~grown).any()
    hull = convex_hull(pts[48:68])
    perimeter = np.sum(np.linalg.norm(hull - np.roll(hull, 1, axis=0), axis=1))
    assert (grown.sum() - mouth.sum()) == pytest.approx(perimeter * 5 + np.pi * 25, rel=0.15)
    with pytest.raises(MaskError, match="unknown region 'ears'"):
        region_mask(pts, ["ears"], shape)


RAMP_POINTS = np.array([[190.0, 170.0], [270.0, 166.0], [232.0, 270.0]])  # eyes, lip: 5x the face


def ramp(x, y):
    """A linear colour ramp: (..., 3) float64."""
    return np.stack([10 + 0.4 * x, 0.45 * y, 128 + 0.2 * (x - y)], -1)


def test_warp_back_puts_each_face_pixel_where_the_transform_says():
    # A face that is a linear ramp in photo coordinates, rounded to uint8, warped back: Lanczos
    # and bicubic interpolation reproduce linear functions, so only the face's rounding (<= 0.5)
    # remains, scaled by the kernels' absolute weight sums (Lanczos-3 about 1.3, bicubic about
    # 1.2): <= 0.78 grey levels. Half a face pixel off would be 1 grey level (0.4 x 2.5 px).
    from scipy.ndimage import binary_erosion

    from inpaint.align import apply_transform, invert_transform

    transform = solve_affine(RAMP_POINTS, np.array([[23.3, 11.4], [39.6, 11.1], [32.0, 48.0]]))
    vv, uu = np.mgrid[:64, :64].astype(np.float64)
    pts = apply_transform(invert_transform(transform), np.stack([uu.ravel(), vv.ravel()], 1))
    face = np.round(ramp(pts[:, 0], pts[:, 1])).astype(np.uint8).reshape(64, 64, 3)
    back = warp_to_photo(face, transform, (0, 0, 460, 500))
    yy, xx = np.mgrid[:500, :460].astype(np.float64)
    # away from the square's edge, where the filters reach past the face (3 face pixels)
    core = binary_erosion(square_in_photo(transform, 64, (500, 460)), iterations=16)
    assert core.sum() > 40000
    assert np.abs(back[core] - ramp(xx, yy)[core]).max() <= 0.78


def test_aligning_a_photo_and_warping_it_back_gives_back_the_photo():
    # photo -> warp_face -> warp_to_photo on a linear ramp: the photo's rounding (0.5), the
    # aligned face's (Pillow's 8-bit affine transform truncates: up to 1 below) times the
    # kernels' weight sums (1.56): <= 2.06 grey levels.
    from scipy.ndimage import binary_erosion

    yy, xx = np.mgrid[:500, :460].astype(np.float64)
    photo = np.round(ramp(xx, yy)).astype(np.uint8)
    transform = solve_affine(RAMP_POINTS, np.array([[23.3, 11.4], [39.6, 11.1], [32.0, 48.0]]))
    back = warp_to_photo(warp_face(photo, transform, 64), transform, (0, 0, 460, 500))
    core = binary_erosion(square_in_photo(transform, 64, (500, 460)), iterations=16)
    assert np.abs(back[core] - photo[core]).max() <= 2.06


def test_blend_with_an_empty_hole_or_outside_it_changes_nothing():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    fill_px = rng.uniform(0, 255, (20, 30, 3))
    hole = np.zeros((50, 60), bool)
    hole[10:20, 15:30] = True
    bbox = (10, 5, 40, 25)
    out = blend_into_photo(photo, fill_px, hole, bbox)
    assert (out[~hole] == photo[~hole]).all() and not (out[hole] == photo[hole]).all()
    same = blend_into_photo(photo, fill_px, np.zeros_like(hole), bbox)
    assert (same == photo).all()


def test_masks_and_boxes_in_photo_pixels(tmp_path):
    m = np.full((30, 40), 255, np.uint8)
    m[5:10, 20:30] = 0  # black = fill
    Image.fromarray(m).save(tmp_path / "m.png")
    hole = read_photo_mask(tmp_path / "m.png", (30, 40))
    assert hole.sum() == 50 and hole[5:10, 20:30].all()
    with pytest.raises(MaskError, match=r"is 40x30; it must be the photo's size, 41x30"):
        read_photo_mask(tmp_path / "m.png", (30, 41))
    assert box_hole((20, 5, 10, 5), (30, 40)).sum() == 50
    with pytest.raises(MaskError, match="inside the 40x30 photo"):
        box_hole((35, 5, 10, 5), (30, 40))


@pytest.fixture(scope="module")
def astronaut():
    from inpaint.images import read_image

    return read_image(ASTRONAUT)


@pytest.fixture(scope="module")
def aligner16():
    return FaceAligner(AlignSettings(size=16))


def test_fill_changes_only_the_region_and_records_the_face(tiny_model, astronaut, aligner16):
    res = fill_photo(astronaut, tiny_model, aligner16, regions=["mouth"], options=FAST)
    assert res.image.shape == astronaut.shape and len(res.faces) == 1
    assert (res.image[~res.hole] == astronaut[~res.hole]).all()
    assert res.hole.sum() == res.faces[0].hole_pixels > 100
    assert (res.image[res.hole] != astronaut[res.hole]).any()
    # the hole is the mouth: around the landmarks 48-67, nowhere near the eyes
    pts = res.faces[0].landmarks
    ys, xs = np.nonzero(res.hole)
    assert pts[48:68, 1].min() - 20 <= ys.min() and ys.max() <= pts[48:68, 1].max() + 20
    assert ys.min() > pts[36:48, 1].max()


def test_fill_is_independent_of_the_other_photos(tiny_model, astronaut, aligner16):
    a = fill_photo(astronaut, tiny_model, aligner16, regions=["nose"], options=FAST, name="x")
    b = fill_photo(astronaut, tiny_model, aligner16, regions=["nose"], options=FAST, name="x")
    assert (a.image == b.image).all()


def test_fill_photo_takes_its_options_from_one_source(tiny_model, astronaut, aligner16):
    from inpaint.errors import UsageError
    from inpaint.search import Completer

    search = Completer(tiny_model, FAST)  # set up once, as fill_files does for many photos
    a = fill_photo(astronaut, tiny_model, aligner16, regions=["nose"], options=FAST, name="x")
    b = fill_photo(astronaut, search, aligner16, regions=["nose"], name="x")
    assert (a.image == b.image).all()
    with pytest.raises(UsageError, match="not to both"):
        fill_photo(astronaut, search, aligner16, regions=["nose"], options=FAST, name="x")


def test_no_face_and_off_face_regions_are_errors(tiny_model, astronaut, aligner16):
    with pytest.raises(NoFaceFound, match="flat: no face found"):
        fill_photo(np.full((80, 80, 3), 128, np.uint8), tiny_model, aligner16,
                   regions=["mouth"], options=FAST, name="flat")
    corner = box_hole((0, 480, 30, 30), astronaut.shape[:2])  # bottom-left: the suit
    with pytest.raises(MaskError, match="outside every detected face"):
        fill_photo(astronaut, tiny_model, aligner16, hole=corner, options=FAST, name="a")


def test_api_takes_and_gives_numpy_or_pil(tiny_model, astronaut, aligner16):
    out = fill(astronaut, region="mouth", model=tiny_model, options=FAST, aligner=aligner16)
    assert isinstance(out, np.ndarray) and out.shape == astronaut.shape
    im = Image.fromarray(astronaut)
    pts = aligner16.landmarks(astronaut, aligner16.detect(astronaut)[0][0].box)
    (x0, y0), (x1, y1) = pts[48:68].min(0), pts[48:68].max(0)
    keep = np.ones(astronaut.shape[:2], bool)
    keep[y0:y1 + 1, x0:x1 + 1] = False  # the mouth's box, in photo pixels
    out_pil = fill(im, mask=keep, model=tiny_model, options=FAST, aligner=aligner16)
    assert isinstance(out_pil, Image.Image) and out_pil.size == im.size
    arr = np.asarray(out_pil)
    assert (arr[keep] == astronaut[keep]).all() and (arr[~keep] != astronaut[~keep]).any()


def test_api_import_does_not_load_tensorflow():
    run_without_tensorflow("import inpaint; f = inpaint.fill")



def test_cli_fills_photos_keeps_exif_orientation_and_reports_failures(tmp_path, tiny_run,
                                                                       astronaut):
    photos = tmp_path / "photos"
    photos.mkdir()
    # a PNG stored sideways with EXIF orientation 6 (rotate 90 clockwise to view): the output is
    # the photo as seen, upright, bit-exact outside the hole (PNG is lossless)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(astronaut).rotate(90, expand=True).save(photos / "turned.png", exif=exif)
    Image.fromarray(np.full((60, 60, 3), 90, np.uint8)).save(photos / "empty.png")
    r = run_cli("fill", photos, "-o", tmp_path / "out", "--region", "mouth", "--model",
            tiny_run / "model", "--iters", 3, "-q")
    assert r.exit_code == 1, r.output
    assert "filled 1, already done 0, failed 1" in r.output and "empty.png: no face found" in r.output
    out = np.asarray(Image.open(tmp_path / "out" / "turned.png"))
    assert out.shape == astronaut.shape
    changed = (out != astronaut).any(-1)
    assert 100 < changed.sum() < 20000
    records = [json.loads(s) for s in (tmp_path / "out" / "fill.jsonl").read_text().splitlines()]
    by_name = {r["input"].rsplit("/", 1)[-1]: r for r in records}
    assert by_name["empty.png"]["status"] == "error"
    face = by_name["turned.png"]["faces"][0]
    assert by_name["turned.png"]["status"] == "filled" and len(face["transform"]) == 2
    assert face["hole_pixels"] == by_name["turned.png"]["hole_pixels"] >= changed.sum()
    sheet = Image.open(tmp_path / "out" / "compare" / "turned.png")
    assert sheet.height >= 512 + 16 * 4


def test_cli_usage_errors(tmp_path):
    r = run_cli("fill", ASTRONAUT, "-o", tmp_path / "o")
    assert r.exit_code == 2 and "--region, --mask or --box" in r.output
    r = run_cli("fill", ASTRONAUT, "-o", tmp_path / "o", "--region", "ears")
    assert r.exit_code == 2
    r = run_cli("fill", ASTRONAUT, "-o", tmp_path / "o", "--box", "1,2,3")
    assert r.exit_code == 2 and "X,Y,W,H" in r.output


def test_a_fifo_as_mask_is_refused_without_waiting(tmp_path):
    import os

    fifo = tmp_path / "mask.png"
    os.mkfifo(fifo)
    with pytest.raises(MaskError, match="mask"):
        read_photo_mask(fifo, (30, 40))


def _fill_cli(photo, out, tiny_run, *extra):
    return run_cli("fill", photo, "-o", out, "--model", tiny_run / "model", "--iters", 3, "-q",
                   *extra)


@pytest.mark.parametrize("spelling", ["same", ".", "link"])
def test_fill_never_replaces_its_input(tmp_path, tiny_run, astronaut, monkeypatch, spelling):
    folder = tmp_path / "same"
    folder.mkdir()
    photo = folder / "photo.png"
    Image.fromarray(astronaut).save(photo)
    original = photo.read_bytes()
    if spelling == "same":
        out = folder
    elif spelling == ".":
        monkeypatch.chdir(folder)
        photo, out = Path("photo.png"), Path(".")
    else:  # the output folder holds a link to the input under the output's name
        out = tmp_path / "out"
        out.mkdir()
        (out / "photo.png").symlink_to(folder / "photo.png")
    r = _fill_cli(photo, out, tiny_run, "--region", "mouth")
    assert r.exit_code == 2 and "would replace an input photo" in r.output, r.output
    assert (folder / "photo.png").read_bytes() == original


def test_fill_rerun_skips_the_same_settings_and_refuses_others(tmp_path, tiny_run, astronaut):
    photo = tmp_path / "photo.png"
    Image.fromarray(astronaut).save(photo)
    out = tmp_path / "out"
    assert _fill_cli(photo, out, tiny_run, "--region", "mouth").exit_code == 0
    first = (out / "photo.png").read_bytes()
    r = _fill_cli(photo, out, tiny_run, "--region", "mouth")
    assert r.exit_code == 0 and "filled 0, already done 1" in r.output, r.output
    r = _fill_cli(photo, out, tiny_run, "--region", "eyes")
    assert r.exit_code == 1 and "other settings" in r.output and "regions" in r.output, r.output
    assert (out / "photo.png").read_bytes() == first  # the mouth result is kept
    r = _fill_cli(photo, out, tiny_run, "--region", "eyes", "--overwrite")
    assert r.exit_code == 0 and "filled 1" in r.output, r.output
    assert (out / "photo.png").read_bytes() != first


def test_fill_reports_its_progress_per_face_and_iteration(tiny_model, astronaut, aligner16):
    from inpaint.fill import progress_text

    seen = []
    fill_photo(astronaut, tiny_model, aligner16, regions=["mouth"], options=FAST,
               progress=seen.append, detail="context")
    stages = [p["stage"] for p in seen]
    assert stages[0] == "detect" and stages[-1] == "detail" and "blend" in stages
    search = [p for p in seen if p["stage"] == "search"]
    # one record before the search, one per update and one after the last (the losses' record)
    assert [p["iteration"] for p in search] == [0, *range(FAST.iters + 1)]
    assert all(p["iterations"] == FAST.iters and (p["face"], p["faces"]) == (1, 1)
               for p in search)
    assert progress_text(search[-1]) == f"face 1/1: search {FAST.iters}/{FAST.iters}"
    assert progress_text(seen[0]) == "detecting faces"


def test_each_failed_photo_is_named_and_an_empty_mask_says_so(tmp_path, tiny_run):
    photo = tmp_path / "me.png"
    Image.open(ASTRONAUT).save(photo)
    r = run_cli("fill", photo, "-o", tmp_path / "o1", "--box", "5000,5000,10,10", "--model",
                tiny_run / "model", "--iters", 1, "-q")
    assert r.exit_code == 1 and f"failed: {photo}: box 5000,5000,10,10" in r.output
    white = tmp_path / "white.png"
    Image.new("L", Image.open(photo).size, 255).save(white)
    r = run_cli("fill", photo, "-o", tmp_path / "o2", "--mask", white, "--model",
                tiny_run / "model", "--iters", 1, "-q")
    assert r.exit_code == 1 and "the mask marks nothing to fill" in r.output
    assert "outside every" not in r.output


def test_api_reads_16_bit_and_float_pil_images_as_the_cli_does(tiny_model, astronaut, aligner16):
    gray = np.asarray(Image.fromarray(astronaut).convert("L"))
    as_read = np.repeat(gray[..., None], 3, -1)  # what read_image gives for either file
    deep = Image.fromarray(gray.astype(np.uint16) * 257)  # "I;16", as a 16-bit PNG opens
    floats = Image.fromarray(gray.astype(np.float32) / 255, "F")  # a float TIFF in [0, 1]
    want = fill(as_read, region="mouth", model=tiny_model, options=FAST, aligner=aligner16)
    for im in (deep, floats):
        out = fill(im, region="mouth", model=tiny_model, options=FAST, aligner=aligner16)
        assert isinstance(out, Image.Image) and out.size == im.size
        assert (np.asarray(out.convert("RGB")) == want).all() or out.mode == "I;16"
    out = fill(deep, region="mouth", model=tiny_model, options=FAST, aligner=aligner16)
    assert out.mode == "I;16"  # given back as it came, the fill scaled to 16 bits
    filled = (want != as_read).any(-1)
    assert (np.asarray(out)[~filled] == gray[~filled].astype(np.uint16) * 257).all()
    assert (np.asarray(out)[filled] == np.asarray(Image.fromarray(want).convert("L"))[filled]
            .astype(np.uint16) * 257).all()


def test_cli_fill_gives_grey_alpha_and_16_bit_photos_back_in_their_mode(tmp_path, tiny_run,
                                                                        astronaut):
    photos = tmp_path / "photos"
    photos.mkdir()
    gray = np.asarray(Image.fromarray(astronaut).convert("L"))
    alpha = np.tile(np.arange(256, dtype=np.uint8), (512, 2))  # every opacity, 512x512
    deep = gray.astype(np.uint16) * 257 + 100  # not x257: 8 bits could not give these back
    inputs = {"gray.png": Image.fromarray(gray),
              "alpha.png": Image.fromarray(np.dstack([gray, alpha]), "LA"),
              "rgba.tif": Image.fromarray(np.dstack([astronaut, alpha]), "RGBA"),
              "deep.png": Image.fromarray(deep), "deep16.tif": Image.fromarray(deep)}
    for name, im in inputs.items():
        im.save(photos / name)
    r = run_cli("fill", photos, "-o", tmp_path / "out", "--region", "mouth", "--model",
                tiny_run / "model", "--iters", 3, "-q")
    assert r.exit_code == 0 and "filled 5" in r.output, r.output
    for name, im in inputs.items():
        out = Image.open(tmp_path / "out" / name)
        assert out.mode == im.mode and out.size == im.size, name
        before, after = np.asarray(im).astype(np.int64), np.asarray(out).astype(np.int64)
        changed = (before != after).reshape(512, 512, -1).any(-1)
        assert 100 < changed.sum() < 20000, name  # the mouth; every other pixel exact
        if im.mode in ("LA", "RGBA"):
            assert (after[..., -1] == alpha).all(), name  # alpha as it was
        if name.startswith("deep"):
            assert (after[changed] % 257 == 0).all()  # the 8-bit fill, x257


def test_a_hole_up_to_the_faces_edge_stays_inside_its_square(tiny_model, astronaut, aligner16):
    # --region face used to be filled up to the aligned square's edge, where G is free: a bright
    # band and a straight stair-stepped seam. The hole keeps SQUARE_INSET of the side inside.
    from inpaint.fill import SQUARE_INSET

    everything = np.ones(astronaut.shape[:2], bool)
    res = fill_photo(astronaut, tiny_model, aligner16, hole=everything, options=FAST,
                     detail="none")
    t = res.faces[0].transform
    inner = square_in_photo(t, 16, astronaut.shape[:2], inset=SQUARE_INSET * 16)
    assert res.hole.any() and not (res.hole & ~inner).any()
    assert (square_in_photo(t, 16, astronaut.shape[:2]) & ~inner).sum() > 100  # a real margin
    # what the face could not fill is counted, and left as it was
    assert res.unfilled_pixels == everything.sum() - res.hole.sum()
    assert np.array_equal(res.image[~res.hole], astronaut[~res.hole])


def test_the_compare_sheet_of_many_faces_tiles_them_under_the_photos():
    # 24 faces used to make a 1324x6856 column of unlabelled crops
    from inpaint.fill import COMPARE_HEIGHT, FaceFill, FillResult, compare_sheet

    photo = np.full((600, 800, 3), 200, np.uint8)
    face = np.zeros((64, 64, 3), np.uint8)
    faces = [FaceFill((10 * k, 10, 10 * k + 30, 40), 1.0, np.zeros((68, 2)), np.eye(2, 3), 10,
                      face, face, face, 0.0) for k in range(24)]
    sheet = compare_sheet(photo, FillResult(photo.copy(), np.zeros((600, 800), bool), faces))
    photos_width = 2 * round(800 * COMPARE_HEIGHT / 600) + 8
    assert sheet.shape[1] == photos_width  # the pairs fit the photos' width
    per_row = (photos_width + 8) // (2 * 128 + 4 + 8)  # 24 faces: magnified 2x, not 4x
    rows = -(-24 // per_row)
    assert sheet.shape[0] == COMPARE_HEIGHT + 8 + rows * (20 + 128 + 8)
    one = compare_sheet(photo, FillResult(photo.copy(), np.zeros((600, 800), bool), faces[:1]))
    assert one.shape[0] == COMPARE_HEIGHT + 8 + 20 + 256 + 8  # one face: 4x, labelled
    assert (one[COMPARE_HEIGHT + 8:COMPARE_HEIGHT + 28] < 100).any()  # "face 1" is written
