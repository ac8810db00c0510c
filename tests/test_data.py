import numpy as np
import pytest

from inpaint.config import DataConfig
from inpaint.data import epoch_dataset, load_face_dataset
from inpaint.errors import DataError

from .conftest import write_faces


def test_corrupt_files_are_skipped_and_counted(image_dir):
    (image_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (image_dir / "notes.txt").write_text("ignored: not an image suffix")
    ds = load_face_dataset(image_dir, 16, DataConfig())
    assert len(ds) == 12 and ds.n_files == 13
    assert [p for p, _ in ds.skipped] == [str(image_dir / "broken.jpg")]
    assert ds.images.shape == (12, 16, 16, 3) and ds.images.dtype == np.uint8


def test_no_usable_images_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no images"):
        load_face_dataset(tmp_path, 16, DataConfig())
    (tmp_path / "a.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="none of the 1 image files"):
        load_face_dataset(tmp_path, 16, DataConfig())
    with pytest.raises(DataError, match="not a directory"):
        load_face_dataset(tmp_path / "missing", 16, DataConfig())


def test_epochs_are_deterministic_and_resumable(tmp_path):
    images = load_face_dataset(write_faces(tmp_path, n=10), 8, DataConfig()).images
    first = [b.numpy() for b in epoch_dataset(images, 3, seed=1, epoch=0, flip=True)]
    again = [b.numpy() for b in epoch_dataset(images, 3, seed=1, epoch=0, flip=True)]
    later = [b.numpy() for b in epoch_dataset(images, 3, seed=1, epoch=0, flip=True,
                                              skip_batches=2)]
    other = [b.numpy() for b in epoch_dataset(images, 3, seed=1, epoch=1, flip=True)]
    assert len(first) == 3  # 10 // 3, the remainder dropped
    assert all((a == b).all() for a, b in zip(first, again))
    assert len(later) == 1 and (later[0] == first[2]).all()
    assert not all((a == b).all() for a, b in zip(first, other))
    assert first[0].min() >= -1.0 and first[0].max() <= 1.0


def test_flip_mirrors_images(tmp_path):
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    plain = np.concatenate([b.numpy() for b in epoch_dataset(images, 1, 0, 0, flip=False)])
    seen = set()
    for epoch in range(8):
        for b in epoch_dataset(images, 1, 0, epoch, flip=True):
            x = b.numpy()[0]
            match = [i for i in range(2) if (x == plain[i]).all() or (x == plain[i][:, ::-1]).all()]
            assert match
            seen.add(bool((x == plain[match[0]][:, ::-1]).all()))
    assert seen == {True, False}


def test_several_folders_are_loaded_together_without_repeats(tmp_path):
    a = write_faces(tmp_path / "a", n=4, seed=1)
    b = write_faces(tmp_path / "a" / "b", n=3, seed=2)  # inside a: overlapping roots
    ds = load_face_dataset([a, b], 8, DataConfig())
    assert len(ds) == 7 and ds.n_files == 7 and ds.roots == [a, b]
    with pytest.raises(DataError, match="is not a directory"):
        load_face_dataset([a, tmp_path / "missing"], 8, DataConfig())
