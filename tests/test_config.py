import pytest

from inpaint.config import (
    Config,
    apply_overrides,
    diff_configs,
    dumps_config,
    load_config,
    parse_override,
)
from inpaint.errors import ConfigError

from .conftest import ROOT


def test_dcgan64_file_equals_builtin_defaults():
    assert load_config(ROOT / "configs" / "dcgan64.toml") == Config()


def test_defaults_are_the_reference_dcgan():
    c = Config()
    assert (c.model.image_size, c.model.z_dim, c.model.gf, c.model.df) == (64, 100, 64, 64)
    assert (c.model.bn_momentum, c.model.bn_epsilon, c.model.init_stddev) == (0.9, 1e-5, 0.02)
    assert (c.train.lr, c.train.beta1, c.train.batch_size, c.train.g_steps) == (2e-4, 0.5, 64, 2)


def test_every_shipped_config_loads():
    for path in (ROOT / "configs").glob("*.toml"):
        load_config(path)


def test_override_types_are_parsed_and_checked():
    cfg = apply_overrides(Config(), ["train.epochs=3", "train.lr=1e-3", "data.flip=false",
                                     "train.precision=mixed_bfloat16"])
    assert cfg.train.epochs == 3 and cfg.train.lr == 1e-3 and cfg.data.flip is False
    assert cfg.train.precision == "mixed_bfloat16"
    assert parse_override("train.lr=1") == ("train", "lr", 1)
    assert apply_overrides(Config(), ["train.lr=1"]).train.lr == 1.0  # int accepted as float


@pytest.mark.parametrize("text, message", [
    ("train.epochs=abc", "train.epochs expects an integer"),
    ("train.epochs=2.5", "train.epochs expects an integer"),
    ("data.flip=1", "data.flip expects true or false"),
    ("train.nope=1", "unknown key 'train.nope'"),
    ("nope.x=1", "unknown section [nope]"),
    ("epochs=3", "section.key=value"),
    ("train.precision=fp8", "train.precision must be one of"),
    ("model.image_size=48", "power of two"),
])
def test_bad_overrides_name_the_key(text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        apply_overrides(Config(), [text])


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = 'three'\n")
    with pytest.raises(ConfigError, match="train.epochs expects an integer"):
        load_config(bad)
    bad.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_dump_round_trip(tmp_path):
    cfg = apply_overrides(Config(), ["train.epochs=7", "data.crop=none"])
    path = tmp_path / "c.toml"
    path.write_text(dumps_config(cfg))
    assert load_config(path) == cfg
    assert diff_configs(Config(), cfg) == [("data.crop", "center", "none"),
                                           ("train.epochs", 25, 7)]


def test_a_run_starts_from_the_file_else_its_stored_config_else_its_models(tmp_path):
    from inpaint.config import run_config, save_config

    def with_seed(folder, seed, name="config.toml"):
        folder.mkdir(exist_ok=True)
        save_config(apply_overrides(Config(), [f"train.seed={seed}"]), folder / name)
        return folder / name

    given, run, model = with_seed(tmp_path, 3, "c.toml"), tmp_path / "run", tmp_path / "model"
    with_seed(run, 1)
    with_seed(model, 2)
    assert run_config(given, run, model).train.seed == 3
    assert run_config(None, run, model).train.seed == 1  # a resumed run keeps its config
    assert run_config(None, tmp_path / "new", model).train.seed == 2
    assert run_config(None, tmp_path / "new").train.seed == Config().train.seed == 0
    with pytest.raises(ConfigError, match="cannot read config"):  # a model without one
        run_config(None, tmp_path / "new", tmp_path / "nothing")
