import numpy as np
import pytest
from PIL import Image

from inpaint.errors import ImageReadError
from inpaint.files import _umask
from inpaint.images import (
    crop_resize,
    expand_inputs,
    find_images,
    make_grid,
    read_image,
    to_float,
    to_uint8,
    write_image,
)


def test_find_images_recursive_any_case(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("x.JPG", "a/y.png", "a/b/z.WebP", "a/notes.txt", "a/b/w.bmp"):
        (tmp_path / name).write_bytes(b"")
    names = [p.name for p in find_images(tmp_path)]
    assert sorted(names) == ["w.bmp", "x.JPG", "y.png", "z.WebP"]


def test_expand_inputs_files_dirs_globs(tmp_path):
    for name in ("a.png", "b.png", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    got = expand_inputs([str(tmp_path / "*.png"), tmp_path, tmp_path / "c.txt"])
    assert [p.name for p in got] == ["a.png", "b.png", "c.txt"]


def test_walk_inputs_gives_each_file_with_its_path_below_the_folder_or_glob(tmp_path):
    from pathlib import Path

    from inpaint.images import walk_inputs

    for name in ("d/a.png", "d/sub/b.jpg", "d/notes.txt", "g/x/c.png", "g/y.txt", "f.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    got = list(walk_inputs([tmp_path / "d", str(tmp_path / "g" / "*"), tmp_path / "f.txt",
                            tmp_path / "missing.png"]))
    assert [(f.path.relative_to(tmp_path).as_posix(), f.rel.as_posix(), f.named)
            for f in got] == [
        ("d/a.png", "a.png", False), ("d/sub/b.jpg", "sub/b.jpg", False),
        ("g/x/c.png", "x/c.png", False),  # below the glob's fixed start, g/
        ("f.txt", "f.txt", True), ("missing.png", "missing.png", True)]
    path, rel, named = got[0]  # a (path, relative key, named) tuple
    assert isinstance(path, Path) and rel == Path("a.png") and named is False


def test_walk_inputs_not_recursive_takes_only_the_files_directly_in_a_folder(tmp_path):
    from inpaint.images import walk_inputs

    for name in ("d/a.png", "d/sub/b.png", "e/sub/c.png", "e/d.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    got = walk_inputs([tmp_path / "d", str(tmp_path / "e" / "*")], recursive=False)
    assert [f.path.relative_to(tmp_path).as_posix() for f in got] == ["d/a.png", "e/d.png"]


def test_read_modes_are_converted(tmp_path):
    gray = Image.fromarray(np.full((5, 6), 100, np.uint8), "L")
    gray.save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png").shape == (5, 6, 3)
    deep = Image.fromarray(np.full((5, 6), 65535, np.uint16))
    deep.save(tmp_path / "d.png")
    assert read_image(tmp_path / "d.png").max() == 255
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.save(tmp_path / "t.png")
    assert (read_image(tmp_path / "t.png") == 255).all()  # transparent -> white
    Image.new("CMYK", (4, 4), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").shape == (4, 4, 3)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (6, 3), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (6, 3, 3)


@pytest.mark.parametrize("content, reason", [
    (b"", "cannot identify|not an image"),
    (b"hello, not an image", "not an image"),
])
def test_unreadable_files_raise(tmp_path, content, reason):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason):
        read_image(path)


def test_missing_truncated_and_oversized(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "none.png")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError):
        read_image(tmp_path / "cut.jpg")
    with pytest.raises(ImageReadError, match="over the limit"):
        read_image(tmp_path / "ok.jpg", max_pixels=100)


def test_crop_resize_center_square():
    img = np.zeros((10, 6, 3), np.uint8)
    img[2:8] = 200  # the centred 6x6 square
    out = crop_resize(img, 6)
    assert out.shape == (6, 6, 3) and (out == 200).all()
    assert crop_resize(img, 4, crop="none").shape == (4, 4, 3)


def test_float_round_trip_is_exact():
    u = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, -1)
    f = to_float(u)
    assert f.min() == -1.0 and f.max() == 1.0
    assert (to_uint8(f) == u).all()


def test_write_is_atomic_and_readable(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    write_image(tmp_path / "sub" / "a.png", img)
    assert (read_image(tmp_path / "sub" / "a.png") == img).all()
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.png"]  # no temp file left
    assert (tmp_path / "sub" / "a.png").stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_make_grid_layout():
    ims = [np.full((2, 3, 3), i, np.uint8) for i in range(5)]
    g = make_grid(ims, ncols=3, pad=1, fill=255)
    assert g.shape == (2 * 2 + 3, 3 * 3 + 4, 3)
    assert (g[1:3, 1:4] == 0).all() and (g[4:6, 5:8] == 4).all()


def test_read_faces_resizes_and_reports_failures(tmp_path):
    from inpaint.images import read_faces

    Image.new("RGB", (20, 30), (10, 20, 30)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"junk")
    faces, stems, failed = read_faces([tmp_path / "a.png", tmp_path / "b.png"], 8)
    assert faces.shape == (1, 8, 8, 3) and (faces == (10, 20, 30)).all()
    assert stems == ["a"] and len(failed) == 1 and "b.png" in failed[0]


def test_read_faces_warns_once_about_faces_of_another_size(tmp_path, caplog):
    from inpaint.images import read_faces

    for i in range(3):
        Image.new("RGB", (20, 20), (10, 20, 30)).save(tmp_path / f"big{i}.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "fits.png")
    with caplog.at_level("WARNING", logger="inpaint.images"):
        read_faces(sorted(tmp_path.iterdir()), 8)
    (message,) = [r.getMessage() for r in caplog.records if r.name == "inpaint.images"]
    assert "3 of 4 images are not 8x8" in message and "is 20x20" in message
    assert "--size 8" in message
    caplog.clear()
    with caplog.at_level("WARNING", logger="inpaint.images"):
        read_faces([tmp_path / "fits.png"], 8)
    assert not caplog.records


def test_contact_sheet_places_magnified_tiles_under_titles():
    from inpaint.images import contact_sheet

    a = np.full((4, 4, 3), 10, np.uint8)
    b = np.full((4, 4, 3), 200, np.uint8)
    sheet = contact_sheet([[a, None], [b, a]], ["one", "two"], scale=3, pad=2)
    header = sheet.shape[0] - 2 * (12 + 2) - 2
    assert sheet.shape[1] == 2 * (12 + 2) + 2 and header > 0  # no row titles: no label column
    assert (sheet[header:header + 12, 2:14] == 10).all()
    assert (sheet[header:header + 12, 16:28] == 255).all()  # None: left blank
    assert (sheet[header + 14:header + 26, 2:14] == 200).all()
    assert (sheet[:header, 2:14] < 128).any() and (sheet[:header, 16:28] < 128).any()


def test_folders_take_tiff_and_gif_like_single_files_and_still_skip_other_files(tmp_path):
    from inpaint.images import IMAGE_SUFFIXES, walk_inputs

    photo = np.random.default_rng(0).integers(0, 255, (6, 5, 3), dtype=np.uint8)
    for name in ("a.tif", "b.TIFF", "c.gif", "d.png"):
        Image.fromarray(photo).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "e.psd").write_bytes(b"8BPS")
    found = [p.name for p in find_images(tmp_path)]
    assert found == ["a.tif", "b.TIFF", "c.gif", "d.png"]
    assert [f.path.name for f in walk_inputs([str(tmp_path / "*")])] == found
    assert {".tif", ".tiff", ".gif"} <= IMAGE_SUFFIXES
    for name in ("a.tif", "b.TIFF"):  # read as a single file reads them
        assert (read_image(tmp_path / name) == photo).all()
    assert read_image(tmp_path / "c.gif").shape == photo.shape  # palette: first frame, RGB


def test_gif_is_read_as_its_first_frame(tmp_path):
    first, second = (Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 0, 255)))
    first.save(tmp_path / "a.gif", save_all=True, append_images=[second])
    assert (read_image(tmp_path / "a.gif") == (255, 0, 0)).all()


@pytest.mark.parametrize("values, expected", [
    ([0.0, 0.5, 1.0], [0, 128, 255]),  # within [0, 1]: scaled by 255
    ([0.0, 2.0, 255.0], [0, 2, 255]),  # within [0, 255]: kept
])
def test_float_images_are_read_by_their_range(tmp_path, values, expected):
    arr = np.array([values, values], np.float32)
    Image.fromarray(arr, "F").save(tmp_path / "f.tif")
    got = read_image(tmp_path / "f.tif")
    assert got.shape == (2, 3, 3) and (got == np.array(expected)[None, :, None]).all()


@pytest.mark.parametrize("bad, shown", [(-0.5, r"\[-0.5, 1\]"), (300.0, r"\[0, 300\]"),
                                        (np.nan, "NaN or infinite"), (np.inf, "NaN or infinite")])
def test_float_images_out_of_range_are_refused_naming_the_file_and_range(tmp_path, bad, shown):
    arr = np.array([[0.0, 1.0], [bad, 0.5]], np.float32)
    Image.fromarray(arr, "F").save(tmp_path / "f.tif")
    with pytest.raises(ImageReadError, match=f"f.tif: .*{shown}"):
        read_image(tmp_path / "f.tif")


def test_16_bit_images_are_scaled_to_8_bits_not_clipped(tmp_path):
    from inpaint.images import to_rgb8

    deep = np.array([[0, 257 * 100, 257 * 100 + 128], [1000, 65535, 300]], np.uint16)
    want = np.array([[0, 100, 100], [4, 255, 1]], np.uint8)
    images = {"I;16": Image.fromarray(deep), "I": Image.fromarray(deep).convert("I"),
              "I;16B": Image.frombytes("I;16B", (3, 2), deep.astype(">u2").tobytes())}
    for mode, im in images.items():
        assert im.mode == mode
        got = to_rgb8(im)
        assert got.dtype == np.uint8 and got.shape == (2, 3, 3), mode
        assert (got == want[..., None]).all(), mode
    Image.fromarray(deep).save(tmp_path / "d.png")
    assert (read_image(tmp_path / "d.png") == want[..., None]).all()


def test_write_image_refuses_non_finite_and_out_of_range_arrays(tmp_path):
    from inpaint.errors import UsageError

    nan = np.full((4, 4, 3), np.nan, np.float32)
    for bad, why in ((nan, "NaN or infinite"), (np.full((4, 4), 3.0), r"\[-1, 1\]"),
                     (np.zeros((4, 4, 3), np.uint16), "uint8")):
        with pytest.raises(UsageError, match=why):
            write_image(tmp_path / "x.png", bad)
    assert not (tmp_path / "x.png").exists()
    write_image(tmp_path / "ok.png", np.full((4, 4, 3), 1.0, np.float32))  # [-1, 1]: kept
    assert (read_image(tmp_path / "ok.png") == 255).all()
