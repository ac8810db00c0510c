

from inpaint import __version__
from inpaint.cli import cli

from .conftest import ROOT, run_cli, run_without_tensorflow, write_faces


def test_version_and_help_do_not_import_tensorflow():
    code = ("import sys; from inpaint.cli import cli\n"
            "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass")
    run_without_tensorflow(code)
    r = run_cli("--version")
    assert r.exit_code == 0 and __version__ in r.output


def test_train_alias_and_end_to_end(tmp_path):
    data = write_faces(tmp_path / "faces", n=8)
    r = run_cli("train", "--dataset", data, "--out", tmp_path / "run", "--config",
            ROOT / "configs" / "tiny.toml", "--epochs", 1, "-q")
    assert r.exit_code == 0, r.output
    assert "trained 2 steps" in r.output
    assert (tmp_path / "run" / "model" / "generator.keras").is_file()
    # re-running resumes without --dataset or --config: both come from the run
    r = run_cli("train-dcgan", "--out", tmp_path / "run", "--epochs", 2, "-q")
    assert r.exit_code == 0, r.output
    assert "trained 2 steps" in r.output and "step 4/4" in r.output
    r = run_cli("train", "--out", tmp_path / "run", "--export-only")
    assert r.exit_code == 0 and "exported" in r.output


def test_export_only_with_an_average_after_the_run(tiny_run, tmp_path):
    from inpaint.models import load_model

    r = run_cli("train", "-o", tiny_run, "--export-only", "--average-decay", 0.5,
                "--export-to", tmp_path / "m")
    assert r.exit_code == 0, r.output
    assert "exported" in r.output and str(tmp_path / "m") in r.output
    assert load_model(tmp_path / "m").meta["generator"].startswith("average at decay 0.5")
    r = run_cli("train", "-o", tiny_run, "--export-only", "--average-decay", "nan",
                "--export-to", tmp_path / "n")
    assert r.exit_code != 0 and "decay must be in [0, 1), got nan" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "n").exists()
    r = run_cli("train", "-o", tiny_run, "--export-only", "--average-decay", 0.5, "--upto", 2,
                "--export-to", tmp_path / "n")
    assert r.exit_code == 1 and "no checkpoint up to step 2" in r.output
    r = run_cli("train", "-o", tiny_run, "--export-only", "--upto", 5)
    assert r.exit_code == 2 and "--upto goes with --average-decay" in r.output
    r = run_cli("train", "--dataset", tmp_path, "-o", tmp_path / "r", "--average-decay", 0.9)
    assert r.exit_code == 2 and "go with --export-only" in r.output
    assert not (tmp_path / "r").exists()


def test_usage_errors_exit_2(tmp_path):
    r = run_cli("train", "--dataset", tmp_path, "--out", tmp_path / "r", "--set", "train.nope=1")
    assert r.exit_code == 2 and "unknown key 'train.nope'" in r.output
    r = run_cli("train", "--dataset", tmp_path, "--out", tmp_path / "r", "--set", "train.epochs=x")
    assert r.exit_code == 2 and "train.epochs expects an integer" in r.output
    r = run_cli("train", "--out", tmp_path / "fresh")
    assert r.exit_code == 2 and "--dataset is required" in r.output


def test_library_errors_exit_1_without_traceback(tmp_path):
    r = run_cli("train", "--dataset", tmp_path / "missing", "--out", tmp_path / "r")
    assert r.exit_code == 1 and "Error:" in r.output and "Traceback" not in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("train", "--dataset", empty, "--out", tmp_path / "r2")
    assert r.exit_code == 1 and "no images" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = 'x'\n")
    r = run_cli("train", "--dataset", empty, "--out", tmp_path / "r3", "--config", bad)
    assert r.exit_code == 1 and "train.epochs expects an integer" in r.output


def test_train_on_two_folders_from_a_model_then_resume_without_options(tmp_path, tiny_run):
    a = write_faces(tmp_path / "a", n=4, seed=1)
    b = write_faces(tmp_path / "b", n=4, seed=2)
    out = tmp_path / "run"
    # no --config: the run takes the model's config (tiny, 8 images = 2 steps an epoch)
    r = run_cli("train", "--dataset", a, "--dataset", b, "-o", out, "--init-from",
            tiny_run / "model", "--epochs", 1, "-q")
    assert r.exit_code == 0, r.output
    assert "trained 2 steps" in r.output and "8 images" in r.output
    r = run_cli("train", "--out-dir", out, "--epochs", 2, "-q")  # both folders come from run.json
    assert r.exit_code == 0, r.output
    assert "step 4/4" in r.output and "8 images" in r.output


def test_init_from_a_folder_without_a_model_is_a_usage_error(tmp_path):
    r = run_cli("train", "--dataset", tmp_path, "-o", tmp_path / "r", "--init-from", tmp_path / "no")
    assert r.exit_code == 2 and "--init-from" in r.output and "does not exist" in r.output
    assert not (tmp_path / "r").exists()


COMMANDS = ("train-dcgan", "complete", "make-gif", "align", "evaluate", "fill")


def test_help_shows_the_command_name_the_user_typed():
    assert "Usage: inpaint train [OPTIONS]" in run_cli("train", "--help").output
    assert "Usage: inpaint train-dcgan [OPTIONS]" in run_cli("train-dcgan", "--help").output


def _examples(help_text):
    """The command lines of a --help's Examples block, split into arguments."""
    import shlex

    block = help_text.split("Examples:", 1)[1].split("\n\n", 1)[0]
    lines = [line.strip() for line in block.splitlines() if line.strip().startswith("inpaint ")]
    return [shlex.split(part, comments=True)[1:] for line in lines for part in line.split("&&")]


def _parses(args):
    """None if the command's parser takes `args` (options known, values of the right type;
    paths are not looked at), else the usage error."""
    import click

    cmd = cli.get_command(None, args[0])
    ctx = click.Context(cmd, info_name=args[0])
    try:
        opts, _, _ = cmd.make_parser(ctx).parse_args(list(args[1:]))
        for param in cmd.params:
            if param.name in opts and not isinstance(param.type, click.Path):
                param.type_cast_value(ctx, opts[param.name])
    except click.UsageError as exc:
        return str(exc)
    return None


def test_every_command_help_has_examples_that_parse():
    assert _parses(["complete", "x", "--no-such-option"]) is not None  # the check can fail
    assert _parses(["complete", "x", "--iters", "many"]) is not None
    for name in COMMANDS:
        r = run_cli(name, "--help")
        assert r.exit_code == 0 and "Examples:" in r.output, name
        examples = _examples(r.output)
        assert 2 <= len(examples) <= 5, (name, examples)
        for args in examples:
            assert cli.get_command(None, args[0]) is not None, args
            assert _parses(args) is None, (args, _parses(args))


def test_old_option_spellings_are_accepted_but_not_shown():
    cmd = cli.get_command(None, "complete")
    old = cmd.make_context("complete", ["x.png", "--outDir", "o", "--maskType", "random",
                                        "--batchSize", "4", "--outInterval", "5"])
    new = cmd.make_context("complete", ["x.png", "-o", "o", "--mask-type", "random",
                                        "--batch-size", "4", "--out-interval", "5"])
    assert old.params == new.params and new.params["out_dir"].name == "o"
    ev = cli.get_command(None, "evaluate")
    assert ev.make_context("evaluate", ["x", "--maskType", "left"]).params["mask_types"] == (
        "left",)
    shown = run_cli("complete", "--help").output + run_cli("evaluate", "--help").output
    for spelling in ("--outDir", "--maskType", "--batchSize", "--outInterval"):
        assert spelling not in shown
    assert "-o, --out-dir" in run_cli("complete", "--help").output
    assert "-o, --out-dir" in run_cli("align", "--help").output
    assert "-o, --output" in run_cli("make-gif", "--help").output
    r = run_cli("complete", "x.png")
    assert r.exit_code == 2 and "Missing option '-o' / '--out-dir'." in r.output


def test_a_missing_input_is_exit_1_and_leaves_nothing_behind(tmp_path):
    missing, out = tmp_path / "nonexistent", tmp_path / "out"
    for args in (["align", missing, "-o", out], ["complete", missing, "-o", out],
                 ["complete", tmp_path / "no-*.png", "-o", out], ["evaluate", missing],
                 ["make-gif", missing, "-o", out / "a.gif"],
                 ["train", "--dataset", missing, "--out", out]):
        r = run_cli(*args)
        assert r.exit_code == 1, (args, r.output)
        assert "Error:" in r.output and "Traceback" not in r.output, r.output
        assert not out.exists(), args
    assert f"{missing}: no such file or directory" in run_cli("align", missing, "-o", out).output


def test_a_failed_training_start_removes_the_run_folder_it_made(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("train", "--dataset", empty, "--out", tmp_path / "runs" / "run", "-q")
    assert r.exit_code == 1 and "no images" in r.output
    assert not (tmp_path / "runs").exists()  # nor the parent folder it made
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    r = run_cli("train", "--dataset", empty, "--out", kept, "-q")
    assert r.exit_code == 1 and (kept / "notes.txt").read_text() == "mine"  # not ours to remove


def test_conflicting_mask_options_are_refused_and_ignored_ones_warned(tmp_path):
    face = write_faces(tmp_path / "faces", n=1)
    r = run_cli("complete", face, "-o", tmp_path / "o", "--mask-type", "random", "--mask-box",
            "1,2,3,4")
    assert r.exit_code == 2 and "give one of --mask-type, --mask and --mask-box" in r.output
    r = run_cli("complete", face, "-o", tmp_path / "o", "--missing-fraction", "0.5",
            "--max-shift", "2", "--model", tmp_path / "no-model")
    assert "--missing-fraction is ignored: it applies only with --mask-type random" in r.output
    assert "--max-shift is ignored: it applies only with --optimize-shift" in r.output
    assert "loading TensorFlow and the model ..." in r.output  # the start-up status line
    assert r.exit_code == 1 and "does not exist" in r.output


def test_progress_bars_in_a_log_are_plain_lines():
    import io

    from tqdm import tqdm

    from inpaint.terminal import PlainLines

    log = io.StringIO()
    plain = PlainLines(log)
    with tqdm(total=2, file=plain, desc="outer", mininterval=0) as outer:
        for _ in range(2):
            with tqdm(total=3, file=plain, desc="inner", leave=False, mininterval=0) as inner:
                for _ in range(3):
                    inner.update()
            outer.update()
    text = log.getvalue()
    assert "\x1b[" not in text and "\r" not in text
    lines = text.splitlines()
    assert lines and all(line.strip() for line in lines)
    assert lines[-1].startswith("outer: 100%") and any(x.startswith("inner:") for x in lines)
    plain.write("Error: kept as it is\n")
    assert log.getvalue().endswith("Error: kept as it is\n")


def test_train_shows_one_output_spelling_and_still_takes_out(tmp_path):
    r = run_cli("train", "--help")
    assert "-o, --out-dir" in r.output and "--out " not in r.output.replace("--out-dir", "")
    data = write_faces(tmp_path / "faces", n=4)
    r = run_cli("train", "--dataset", data, "--out", tmp_path / "run", "--config",
            ROOT / "configs" / "tiny.toml", "--epochs", 1, "-q")
    assert r.exit_code == 0 and "trained 1 steps" in r.output, r.output


def test_help_names_every_pipeline_step_and_every_option():
    top = run_cli("--help").output
    assert "inpaint fill PHOTOS" in top and "inpaint serve" in top
    encoder = run_cli("train-encoder", "--help").output
    assert "Training updates" in encoder and "learning rate" in encoder
    assert "No progress bar" in run_cli("evaluate", "--help").output
    assert "'pretrained'" in run_cli("complete", "--help").output


def test_complete_takes_pretrained_as_train_init_from_does(tmp_path):
    src = write_faces(tmp_path / "in", n=1)
    r = run_cli("complete", src, "-o", tmp_path / "o", "--model", "pretrained", "--iters", 1,
                "-q")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "completed" / "000.png").is_file()


def test_run_folder_messages_name_the_option_the_command_has(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    r = run_cli("train", "--dataset", write_faces(tmp_path / "in", n=2), "-o", tmp_path / "busy")
    assert r.exit_code == 1 and "new or empty --out-dir" in r.output


def test_bad_inputs_are_refused_before_tensorflow_loads(tmp_path):
    # each of these used to wait 3-5 s for TensorFlow before saying what was wrong
    cases = [
        (["fill", str(tmp_path / "missing.jpg"), "--region", "mouth", "-o", str(tmp_path / "a")],
         1, "no such file"),
        (["fill", str(ROOT / "data" / "samples"), "-o", str(tmp_path / "b")], 2, "--region"),
        (["fill", str(ROOT / "data" / "samples"), "--box", "1,2", "-o", str(tmp_path / "c")],
         2, "--box"),
        (["train-encoder", "-o", str(tmp_path / "d"), "--batch-size", "3"], 2, "even"),
        (["complete", str(ROOT / "data" / "samples"), "--mask", str(tmp_path / "nope"), "-o",
          str(tmp_path / "e")], 2, "--mask"),
    ]
    for args, code, said in cases:
        run_without_tensorflow(
            "from click.testing import CliRunner\nfrom inpaint.cli import cli\n"
            f"r = CliRunner().invoke(cli, {args!r})\n"
            f"assert r.exit_code == {code} and {said!r} in r.output, r.output")
