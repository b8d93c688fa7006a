"""The parameter table is the one source: every view of it (state, config keys, serve flags, the
OSC table, the loop key, the sidecar, the MIDI targets) agrees with it. The docs and the Max
patches are checked against it in test_docs.py and test_max_patches.py."""

from __future__ import annotations

import argparse
import pickle

import pytest

from riffbridge import params as P
from riffbridge.cli import serve
from riffbridge.config import ServeConfig, build
from riffbridge.control.midi_map import make_target
from riffbridge.control.osc_spec import OSC_SPEC
from riffbridge.engine.plan import LoopKey, key_for
from riffbridge.errors import ConfigError, ControlError
from riffbridge.state import EngineState, SetMany, SetParam, apply


def test_names_keys_flags_and_addresses_are_each_unique() -> None:
    for attr in ("name", "key", "cli_flag", "osc"):
        values = [getattr(p, attr) for p in P.PARAMS if getattr(p, attr)]
        assert len(values) == len(set(values)), attr


@pytest.mark.parametrize("param", P.PARAMS, ids=lambda p: p.name)
def test_each_default_passes_its_own_check(param: P.Param) -> None:
    assert P.check(param, param.default) == param.default


def test_the_state_is_the_live_params_plus_the_transport() -> None:
    assert EngineState.field_names() == (*(p.name for p in P.LIVE), "playing")
    state = EngineState()
    assert state.params() == {p.name: p.default for p in P.LIVE}
    assert state.playing is False


def test_the_osc_params_are_the_live_params_with_addresses() -> None:
    tags = {"str": "s", "int": "i", "float": "f"}
    entries = [e for e in OSC_SPEC if e.kind == "param" and e.param]
    assert {e.param for e in entries} == {p.name for p in P.LIVE if p.osc}
    for entry in entries:
        param = P.BY_NAME[entry.param or ""]
        assert (entry.args, entry.minimum, entry.maximum, entry.choices) == (
            tags[param.kind], param.minimum, param.maximum, param.choices)
        assert entry.address in (param.osc, *param.aliases)
    # a group address sets several params at once, each of them checked as itself
    groups = [e for e in OSC_SPEC if e.kind == "param" and not e.param]
    assert [(e.address, e.args, e.params) for e in groups] == [("/rb/xy", "ff", ("x", "y"))]


def test_the_config_keys_and_their_defaults_are_the_tables() -> None:
    conf = ServeConfig()
    assert ServeConfig.field_names() == tuple(p.key for p in P.SETTINGS)
    assert conf.as_dict() == {p.key: p.default for p in P.SETTINGS}
    assert EngineState(**conf.initial_state()) == EngineState()


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["serve"]


def test_the_serve_flags_are_the_tables() -> None:
    flags = {opt: action.dest for action in _serve_parser()._actions
             for opt in action.option_strings if opt.startswith("--")}
    expected = {p.cli_flag: p.key for p in P.SETTINGS if p.cli_flag}
    assert {f: d for f, d in flags.items() if f not in ("--help", "--config",
                                                         "--for-seconds")} == expected


def test_every_flag_reaches_the_config_checked() -> None:
    args = _serve_parser().parse_args(["--gain", "-6", "--denoise", "0.5", "--no-autoplay",
                                       "--prompt", "dub", "--no-cuda-graphs", "--no-compile",
                                       "--width-buckets", "on", "--device", "cuda"])
    conf = build(None, serve._flags(args))
    assert (conf.gain_db, conf.denoise, conf.autoplay, conf.prompt, conf.cuda_graphs,
            conf.compile, conf.width_buckets) == (-6.0, 0.5, False, "dub", False, False, "on")
    state = serve.initial_state(conf)
    assert (state.gain_db, state.denoise, state.prompt_a) == (-6.0, 0.5, "dub")
    with pytest.raises(ConfigError, match=r"--denoise: denoise must be in \[0, 1\], got 1.5"):
        build(None, serve._flags(_serve_parser().parse_args(["--denoise", "1.5"])))


def test_the_loop_key_and_its_sidecar_are_the_sound_params() -> None:
    key = key_for(EngineState(denoise=0.1234567, bpm=120.000001))
    assert LoopKey.field_names() == tuple(p.name for p in P.SOUND)
    assert (key.denoise, key.bpm) == (0.123457, 120.0)  # rounded to the table's digits
    assert list(key.sidecar()) == [p.key for p in P.SOUND]
    assert pickle.loads(pickle.dumps(key)) == key  # it crosses to the render worker


def test_a_param_that_does_not_change_the_sound_does_not_change_the_key() -> None:
    state = EngineState()
    quiet = [p for p in P.LIVE if not p.sound]
    assert {p.name for p in quiet} >= {"gain_db", "xfade", "quantum", "auto", "clock"}
    for p in quiet:
        other = p.choices[-1] if p.choices else p.maximum
        assert key_for(state.replace(**{p.name: other})) == key_for(state)
    for p in P.SOUND:
        if p.blend:  # the style mix's inputs change the key through the mix (below)
            continue
        other = "zz" if p.kind == "str" else (p.maximum if p.maximum is not None else 1)
        assert key_for(state.replace(**{p.name: other})) != key_for(state), p.name
    # a slot's prompt and seed change the key exactly when the slot has a part in the mix
    mixed = apply(state, SetMany((("weight_1", 0.5), ("weight_2", 0.25),
                                  *((f"weight_{n}", 0.1) for n in range(3, P.MAX_SLOTS + 1)))))
    assert mixed.mix == "weights" and mixed.slots == P.MAX_SLOTS
    for family in ("prompt", "seed"):
        for n, name in P.SLOT[family].items():
            other = "zz" if family == "prompt" else 7777
            assert key_for(mixed.replace(**{name: other})) != key_for(mixed), name
            if n > 1:  # at alpha 0 only slot 1 plays
                assert key_for(state.replace(**{name: other})) == key_for(state), name


def test_slot_families_are_declared_once_and_expanded() -> None:
    assert set(P.SLOT) == {"prompt", "seed", "weight"}
    for family, members in P.SLOT.items():
        assert sorted(members) == list(range(1, P.MAX_SLOTS + 1))
        for n, name in members.items():
            param = P.BY_NAME[name]
            assert (param.family, param.index, param.live, param.sound, param.blend) == (
                family, n, True, True, True)
            # every member answers on /rb/slot/N/<family>; A and B also on their old addresses
            assert P.slot_address(n, family) in (param.osc, *param.aliases)
    assert P.BY_NAME["prompt_a"].osc == "/rb/prompt/a"
    assert P.BY_NAME["weight_3"].range_text() == "[0, 1]"


def test_the_midi_targets_are_the_numeric_and_choice_live_params() -> None:
    for p in P.PARAMS:
        knob = p.live and (p.kind in ("int", "float") or bool(p.choices))
        if knob:
            assert make_target(p.name).param == p.name
        else:
            with pytest.raises(ConfigError):
                make_target(p.name)


def test_records_are_immutable_values() -> None:
    state = EngineState()
    with pytest.raises(AttributeError):
        state.alpha = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError, match="no field"):
        EngineState(volume=1.0)
    assert state.replace(alpha=0.5) == EngineState(alpha=0.5)
    assert hash(state.replace(alpha=0.5)) == hash(EngineState(alpha=0.5))
    assert state.replace(alpha=0.5) != state


@pytest.mark.parametrize(("name", "value", "message"), [
    ("osc_port", 0, "osc_port must be in [1, 65535], got 0"),
    ("device", "gpu", "device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    ("setlist", [["a"]], "setlist entry 1 must be a pair of prompts"),
    ("cuda_graphs", "yes", "cuda_graphs must be true or false, got 'yes'"),
])
def test_settings_are_checked_by_the_table(name: str, value: object, message: str) -> None:
    with pytest.raises(ControlError) as info:
        P.check(P.BY_KEY[name], value)
    assert message in str(info.value)


def test_unknown_live_params_are_refused_by_name() -> None:
    with pytest.raises(ControlError, match="unknown parameter 'model'"):
        apply(EngineState(), SetParam("model", "tiny"))  # a setting, not a live param
