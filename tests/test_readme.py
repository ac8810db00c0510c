"""The README's Quick start runs in order as written, on the shipped sample photo (faster search
settings and a one-step training: what is checked is that each command, with the folders the
examples before it made, is accepted and does its work)."""

import re
import shlex
import shutil

from .conftest import ROOT, needs_dlib, run_cli


def quick_start_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    lines = []
    for block in re.findall(r"```\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("inpaint "):
                lines.append(shlex.split(line)[1:])
    return lines


def test_the_quick_start_names_the_commands_it_promises():
    commands = [c[0] for c in quick_start_commands()]
    assert commands == ["fill", "fill", "align", "complete", "complete", "align", "train",
                        "complete", "make-gif"]


@needs_dlib
def test_the_quick_start_examples_run_in_order(tmp_path, monkeypatch):
    photo = ROOT / "data" / "photos" / "astronaut.jpg"
    shutil.copy(photo, tmp_path / "my-photo.jpg")
    shutil.copy(photo, tmp_path / "group.jpg")
    (tmp_path / "my-photos").mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copy(photo, tmp_path / "my-photos" / name)
    monkeypatch.chdir(tmp_path)
    for args in quick_start_commands():
        if args[0] in ("fill", "complete"):
            args = [*args, "--iters", "2"]
        if args[0] == "train":  # two faces: a batch of two, one step
            args = [a for a in args if a not in ("--epochs", "10")] + [
                "--epochs", "1", "--batch-size", "2"]
        r = run_cli(*args, "-q") if args[0] != "make-gif" else run_cli(*args)
        assert r.exit_code == 0, f"inpaint {' '.join(args)}:\n{r.output}"
    for made in ("filled/my-photo.jpg", "filled-group/group.jpg", "faces/my-photo.png",
                 "out/sheet.png", "out2/sheet.png", "my-faces/a.png", "runs/mine/model/model.json",
                 "out-mine/sheet.png", "out-mine/completion.gif"):
        assert (tmp_path / made).is_file(), made
