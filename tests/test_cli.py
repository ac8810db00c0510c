import subprocess
import sys

from click.testing import CliRunner

from inpaint import __version__
from inpaint.cli import cli

from .conftest import ROOT, write_faces


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_version_and_help_do_not_import_tensorflow():
    code = ("import sys; from inpaint.cli import cli\n"
            "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.output


def test_train_alias_and_end_to_end(tmp_path):
    data = write_faces(tmp_path / "faces", n=8)
    r = run("train", "--dataset", data, "--out", tmp_path / "run", "--config",
            ROOT / "configs" / "tiny.toml", "--epochs", 1, "-q")
    assert r.exit_code == 0, r.output
    assert "trained 2 steps" in r.output
    assert (tmp_path / "run" / "model" / "generator.keras").is_file()
    # re-running resumes without --dataset or --config: both come from the run
    r = run("train-dcgan", "--out", tmp_path / "run", "--epochs", 2, "-q")
    assert r.exit_code == 0, r.output
    assert "trained 2 steps" in r.output and "step 4/4" in r.output
    r = run("train", "--out", tmp_path / "run", "--export-only")
    assert r.exit_code == 0 and "exported" in r.output


def test_usage_errors_exit_2(tmp_path):
    r = run("train", "--dataset", tmp_path, "--out", tmp_path / "r", "--set", "train.nope=1")
    assert r.exit_code == 2 and "unknown key 'train.nope'" in r.output
    r = run("train", "--dataset", tmp_path, "--out", tmp_path / "r", "--set", "train.epochs=x")
    assert r.exit_code == 2 and "train.epochs expects an integer" in r.output
    r = run("train", "--out", tmp_path / "fresh")
    assert r.exit_code == 2 and "--dataset is required" in r.output


def test_library_errors_exit_1_without_traceback(tmp_path):
    r = run("train", "--dataset", tmp_path / "missing", "--out", tmp_path / "r")
    assert r.exit_code == 1 and "Error:" in r.output and "Traceback" not in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("train", "--dataset", empty, "--out", tmp_path / "r2")
    assert r.exit_code == 1 and "no images" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = 'x'\n")
    r = run("train", "--dataset", empty, "--out", tmp_path / "r3", "--config", bad)
    assert r.exit_code == 1 and "train.epochs expects an integer" in r.output


def test_train_on_two_folders_from_a_model_then_resume_without_options(tmp_path, tiny_run):
    a = write_faces(tmp_path / "a", n=4, seed=1)
    b = write_faces(tmp_path / "b", n=4, seed=2)
    out = tmp_path / "run"
    # no --config: the run takes the model's config (tiny, 8 images = 2 steps an epoch)
    r = run("train", "--dataset", a, "--dataset", b, "-o", out, "--init-from",
            tiny_run / "model", "--epochs", 1, "-q")
    assert r.exit_code == 0, r.output
    assert "trained 2 steps" in r.output and "8 images" in r.output
    r = run("train", "--out-dir", out, "--epochs", 2, "-q")  # both folders come from run.json
    assert r.exit_code == 0, r.output
    assert "step 4/4" in r.output and "8 images" in r.output


def test_init_from_a_folder_without_a_model_is_a_usage_error(tmp_path):
    r = run("train", "--dataset", tmp_path, "-o", tmp_path / "r", "--init-from", tmp_path / "no")
    assert r.exit_code == 2 and "--init-from" in r.output and "does not exist" in r.output
    assert not (tmp_path / "r").exists()
