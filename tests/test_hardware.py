"""Precision "auto": bfloat16 only where the hardware computes it."""

import logging

import pytest

from inpaint import hardware


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine with the given GPU and CPU flags (None: unreadable)."""

    def set_machine(gpu: bool, flags: set[str] | None, ratio: float = 1.0):
        hardware.native_bfloat16.cache_clear()
        hardware._WARNED.clear()
        hardware._TOLD.clear()
        monkeypatch.setattr(hardware, "_has_gpu", lambda: gpu)
        monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
        monkeypatch.setattr(hardware, "_timed_ratio", lambda: ratio)

    yield set_machine
    hardware.native_bfloat16.cache_clear()
    hardware._WARNED.clear()


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags\t\t: fpu avx2 avx512_bf16 fma\n\nprocessor : 1\n")
    assert hardware.cpu_flags(info) == {"fpu", "avx2", "avx512_bf16", "fma"}
    assert hardware.cpu_flags(tmp_path / "missing") is None


@pytest.mark.parametrize("gpu, flags, ratio, training, expected", [
    (True, {"avx2"}, 9.0, True, "mixed_bfloat16"),          # a GPU
    (False, {"avx2", "avx512_bf16"}, 0.6, True, "mixed_bfloat16"),  # EPYC: timed, fast
    (False, {"avx2", "avx512_bf16"}, 1.5, True, "float32"),   # Xeon without AMX: timed, slow
    (False, {"avx2", "avx512_bf16"}, 1.5, False, "float32"),
    (False, {"avx512_bf16", "amx_bf16"}, 9.0, True, "mixed_bfloat16"),  # AMX: not timed
    (False, {"avx2", "amx_bf16"}, 9.0, False, "bfloat16"),
    (False, {"avx2", "fma"}, 0.5, True, "float32"),           # AVX2-only EPYC: emulated
    (False, {"avx2", "fma"}, 0.5, False, "float32"),
    (False, None, 0.6, False, "bfloat16"),                    # flags unknown: timed, fast
    (False, None, 7.0, True, "float32"),                      # flags unknown: timed, slow
])
def test_auto_picks_bfloat16_only_where_it_is_native(machine, gpu, flags, ratio, training,
                                                     expected):
    machine(gpu, flags, ratio)
    assert hardware.resolve_precision("auto", training=training) == expected


def test_explicit_bfloat16_on_an_emulating_cpu_warns_once_and_is_kept(machine, caplog):
    machine(False, {"avx2"})
    with caplog.at_level(logging.WARNING, logger="inpaint.hardware"):
        for _ in range(3):
            assert hardware.resolve_precision("mixed_bfloat16", training=True) == "mixed_bfloat16"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "emulated" in warnings[0].getMessage()
    assert "9x slower" in warnings[0].getMessage()
    machine(False, {"avx512_bf16"})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="inpaint.hardware"):
        assert hardware.resolve_precision("bfloat16", training=False) == "bfloat16"
        assert hardware.resolve_precision("float32", training=False) == "float32"
    assert not caplog.records


def test_this_machine_gives_a_reason():
    native, why = hardware.native_bfloat16()
    assert isinstance(native, bool) and why


def test_auto_says_its_choice_once_per_process(machine, caplog):
    machine(False, {"avx2"})
    with caplog.at_level(logging.INFO, logger="inpaint.hardware"):
        for _ in range(4):
            assert hardware.resolve_precision("auto", training=False) == "float32"
            assert hardware.resolve_precision("auto", training=True) == "float32"
    told = [r for r in caplog.records if "precision auto" in r.getMessage()]
    assert len(told) == 1 and "float32" in told[0].getMessage()
