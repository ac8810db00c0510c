"""Files written whole (inpaint.files): atomic folders, their permissions and durability."""

import os

import pytest

from inpaint.files import _umask, atomic_dir


def test_atomic_dir_replaces_a_folder_whole_with_ordinary_permissions(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with atomic_dir(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.")
        (tmp / "new.txt").write_text("new")
        assert (out / "old.txt").is_file()  # nothing is visible under the name before the end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no .model.old, no temp
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert out.stat().st_mode & 0o777 == 0o777 & ~_umask()


def test_atomic_dir_that_fails_leaves_the_old_folder_and_no_temporary(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(out, prefix=".tmp-x-") as tmp:
        assert tmp.name.startswith(".tmp-x-")
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("killed halfway")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert [p.name for p in out.iterdir()] == ["old.txt"]


def test_atomic_dir_syncs_every_file_before_the_rename(tmp_path, monkeypatch):
    import os

    from inpaint import files

    synced = []
    monkeypatch.setattr(files.os, "fsync", lambda fd: synced.append(
        (os.readlink(f"/proc/self/fd/{fd}"), (tmp_path / "ckpt").exists())))
    with files.atomic_dir(tmp_path / "ckpt", fsync=True) as tmp:
        for name in ("a.h5", "b.npz"):
            (tmp / name).write_bytes(b"x")
    assert sorted((os.path.basename(p), published) for p, published in synced) == [
        ("a.h5", False), ("b.npz", False)]


def test_cut_name_keeps_whole_characters():
    from inpaint.files import cut_name, temporary_prefix

    assert cut_name("abc", 2) == "ab" and cut_name("abc", 5) == "abc"
    assert cut_name("éé", 3) == "é"  # 4 bytes: the second character would be cut in half
    assert cut_name("aé", 2) == "a"
    name = "€" * 100  # 300 bytes
    cut = cut_name(name, 100)
    assert cut == "€" * 33 and len(cut.encode()) == 99
    prefix = temporary_prefix("é" * 200 + ".png", ".tmp")
    assert prefix.encode("utf-8")  # whole characters only: a half one does not encode
    assert len(os.fsencode(prefix)) <= 255 - 8 - 4
