"""The committed Max patches and device: they parse, every box is a known class with Max's own
inlet/outlet counts, every patchline fits, every OSC address they send or route is in the OSC
table with the same argument types, every param widget has the parameter table's type and range,
the .amxd container agrees with its JSON, and the committed files equal what the generator
writes now. (docs/osc.md and the other generated docs: tests/test_docs.py.)"""

from __future__ import annotations

import importlib.util
import json
import re
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from osc_helpers import Listener

from riffbridge import params as P
from riffbridge.control.osc_spec import OSC_SPEC, by_address
from riffbridge.daw.amxd import pack_amxd, unpack_amxd
from riffbridge.daw.maxpatch import NEWOBJ, UI, box_io
from riffbridge.daw.patches import device_patch

ROOT = Path(__file__).resolve().parents[1]
PATCH_DIR = ROOT / "max_patches"
MAXPATS = ["riffbridge-control.maxpat", "riffbridge-player.maxpat"]
PUSHED = {a.address: a.args for a in OSC_SPEC if a.kind == "push"}
# Param answers come back on the param's own address, so a patch may route those too.
ROUTABLE = {**{a.address: a.args for a in OSC_SPEC if a.kind == "param"}, **PUSHED}


def _load_script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _patchers() -> dict[str, dict[str, Any]]:
    found = {name: json.loads((PATCH_DIR / name).read_text(encoding="utf-8")) for name in MAXPATS}
    found["riffbridge.amxd"] = json.loads(
        unpack_amxd((PATCH_DIR / "riffbridge.amxd").read_bytes()).patcher_json)
    return found


PATCHERS = _patchers()


def _boxes(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["box"]["id"]: b["box"] for b in doc["patcher"]["boxes"]}


def _lines(doc: dict[str, Any]) -> list[tuple[str, int, str, int]]:
    return [(ln["patchline"]["source"][0], ln["patchline"]["source"][1],
             ln["patchline"]["destination"][0], ln["patchline"]["destination"][1])
            for ln in doc["patcher"]["lines"]]


@pytest.mark.parametrize("name", sorted(PATCHERS))
def test_patch_is_a_max_patcher(name: str) -> None:
    patcher = PATCHERS[name]["patcher"]
    assert patcher["fileversion"] == 1
    assert isinstance(patcher["appversion"]["major"], int)
    assert len(patcher["rect"]) == 4
    assert patcher["boxes"] and patcher["lines"]
    ids = [b["box"]["id"] for b in patcher["boxes"]]
    assert len(ids) == len(set(ids)), "box ids must be unique"


@pytest.mark.parametrize("name", sorted(PATCHERS))
def test_every_box_is_known_with_max_inlets_and_outlets(name: str) -> None:
    for box in _boxes(PATCHERS[name]).values():
        cls = box["maxclass"]
        if cls == "newobj":
            assert box["text"].split()[0] in NEWOBJ, box["text"]
        else:
            assert cls in UI, cls
        io = box_io(cls, box.get("text", ""))
        assert box["numinlets"] == io.numinlets, box
        assert box["numoutlets"] == io.numoutlets, box
        assert box.get("outlettype", []) == list(io.outlettype), box
        assert len(box["patching_rect"]) == 4


@pytest.mark.parametrize("name", sorted(PATCHERS))
def test_every_patchline_joins_existing_boxes_within_their_counts(name: str) -> None:
    boxes = _boxes(PATCHERS[name])
    for src, outlet, dst, inlet in _lines(PATCHERS[name]):
        assert src in boxes and dst in boxes, (src, dst)
        assert 0 <= outlet < boxes[src]["numoutlets"], (src, outlet)
        assert 0 <= inlet < boxes[dst]["numinlets"], (dst, inlet)
        # A signal outlet may only feed a signal object (names ending in ~).
        if boxes[src]["outlettype"][outlet] == "signal":
            kind = boxes[dst].get("text", boxes[dst]["maxclass"]).split()[0]
            assert kind.endswith("~"), (src, dst)


def _source_type(boxes: dict[str, dict[str, Any]], lines: list[tuple[str, int, str, int]],
                 target: str) -> set[str]:
    """OSC type tags of what arrives at a message box's left inlet, from the boxes feeding it:
    one tag per value ("f"), or one per element of a list (a pack of two floats: "ff")."""
    tags = set()
    for src, outlet, dst, inlet in lines:
        if dst != target or inlet != 0:
            continue
        box = boxes[src]
        cls = box["maxclass"]
        text = box.get("text", "")
        if cls == "flonum" or cls == "live.dial" or (text.startswith("/ ") and "." in text):
            tags.add("f")
        elif cls in ("number", "live.numbox", "pictslider"):  # live.numbox: parameter_type 1
            tags.add("i")  # pictslider: outlettype ["int", "int"]
        elif text.startswith("pack "):  # a list, typed by the pack's arguments: "0." a float
            tags.add("".join("f" if "." in a else "i" for a in text.split()[1:]))
        elif text == "tosymbol" or text.startswith("pattr ") or (cls == "live.menu"
                                                                  and outlet == 1):
            tags.add("s")  # a pattr holds what tosymbol gave it; live.menu's outlet 1: the item
        else:
            tags.add(f"?{cls}:{text}")
    return tags


def _literal_tag(word: str) -> str:
    if re.fullmatch(r"-?\d+", word):
        return "i"
    if re.fullmatch(r"-?\d*\.\d*", word):
        return "f"
    return "s"


@pytest.mark.parametrize("name", sorted(PATCHERS))
def test_every_osc_address_sent_is_in_the_spec_with_its_types(name: str) -> None:
    boxes, lines = _boxes(PATCHERS[name]), _lines(PATCHERS[name])
    sent = []
    for box_id, box in boxes.items():
        if box["maxclass"] != "message" or not box["text"].startswith("/"):
            continue
        address, *args = box["text"].split()
        entry = by_address(address)
        assert entry is not None, f"{name}: {address} is not accepted by riffbridge"
        tags = ""
        for word in args:
            if re.fullmatch(r"\$\d", word):  # $N: the Nth element of what arrives
                (arriving,) = _source_type(boxes, lines, box_id)
                tags += arriving[int(word[1:]) - 1]
            else:
                tags += _literal_tag(word)
        allowed = {entry.args, ""} if entry.optional else {entry.args}
        assert tags in allowed, f"{name}: {box['text']} sends {tags!r}, spec says {entry.args!r}"
        # And the message actually reaches the udpsend.
        targets = [boxes[d]["text"] for s, _, d, _ in lines if s == box_id]
        assert targets == ["udpsend 127.0.0.1 9000"], (box["text"], targets)
        sent.append(address)
    assert sent, f"{name} sends nothing"


@pytest.mark.parametrize("name", sorted(PATCHERS))
def test_every_osc_address_routed_is_sent_by_riffbridge_with_its_types(name: str) -> None:
    boxes, lines = _boxes(PATCHERS[name]), _lines(PATCHERS[name])
    for box_id, box in boxes.items():
        words = box.get("text", "").split()
        if box["maxclass"] != "newobj" or words[:1] != ["route"] or not words[1].startswith("/"):
            continue
        for k, address in enumerate(words[1:]):
            assert address in ROUTABLE, f"{name}: riffbridge never sends {address}"
            for src, outlet, dst, _ in lines:
                if src == box_id and outlet == k and boxes[dst]["text"].startswith("unpack"):
                    assert "".join(boxes[dst]["text"].split()[1:]) == ROUTABLE[address]


def test_control_panel_subscribes_on_load_and_shows_status_and_errors() -> None:
    boxes, lines = _boxes(PATCHERS["riffbridge-control.maxpat"]), _lines(
        PATCHERS["riffbridge-control.maxpat"])
    loadbang = next(i for i, b in boxes.items() if b.get("text") == "loadbang")
    fed = {boxes[d]["text"] for s, _, d, _ in lines if s == loadbang}
    assert "/rb/subscribe" in fed
    texts = {b.get("text") for b in boxes.values()}
    assert "udpreceive 9001" in texts and "udpsend 127.0.0.1 9000" in texts
    assert "route /rb/status /rb/error /rb/progress" in texts
    for address in ("/rb/prompt/a", "/rb/prompt/b", "/rb/seed/a", "/rb/seed/b", "/rb/alpha",
                    "/rb/bpm", "/rb/bars", "/rb/denoise", "/rb/guidance"):
        assert f"{address} $1" in texts, address
    for command in ("/rb/render", "/rb/play", "/rb/stop"):
        assert command in texts


@pytest.mark.parametrize("name", ["riffbridge-player.maxpat", "riffbridge.amxd"])
def test_player_loads_through_the_logic_and_follows_the_transport(name: str) -> None:
    """Each clip goes to the js logic, which alone addresses the two buffer~s, groove~s and
    line~ ramps; the transport's quarter notes tick it, its state stops it."""
    boxes, lines = _boxes(PATCHERS[name]), _lines(PATCHERS[name])
    texts = [b.get("text", "") for b in boxes.values()]
    logic = next(i for i, b in boxes.items() if b.get("text") == "js riffbridge-player.js")
    fed = {(o, boxes[d].get("text", "")) for s, o, d, _ in lines if s == logic}
    names = ("rbA", "rbB") if name.endswith(".maxpat") else ("---rbA", "---rbB")
    for k, buf in enumerate(names):
        assert (k, f"buffer~ {buf}") in fed
        assert (2 + k, f"groove~ {buf} 2 @loop 1") in fed
        assert (4 + k, "line~") in fed
    into = {boxes[s].get("text", "") for s, _, d, _ in lines if d == logic}
    for prefix in ("prepend clip", "prepend bar", "prepend beat", "prepend timesig",
                   "prepend run", "prepend quantum", "prepend xfade", "loaded 0", "loaded 1"):
        assert prefix in into, prefix
    assert "metro 4n @active 1 @quantize 4n" in texts
    assert not any(t.startswith("selector~") for t in texts), "an unramped switch"
    port = 9002 if name.endswith(".maxpat") else 9001
    assert f"/rb/subscribe {port}" in texts and f"udpreceive {port}" in texts
    assert f"metro {2000}" in texts  # the keep-alive re-subscribes


def test_the_stand_alone_player_sets_max_tempo_and_runs_max_transport() -> None:
    boxes, lines = _boxes(PATCHERS["riffbridge-player.maxpat"]), _lines(
        PATCHERS["riffbridge-player.maxpat"])
    logic = next(i for i, b in boxes.items() if b.get("text") == "js riffbridge-player.js")
    tempo = next(d for s, o, d, _ in lines if s == logic and o == 7)
    assert boxes[tempo]["text"] == "prepend tempo"
    assert [boxes[d]["text"] for s, _, d, _ in lines if s == tempo] == ["transport"]
    toggle = next(i for i, b in boxes.items() if b["maxclass"] == "toggle"
                  and any(boxes[d].get("text") == "transport" for s, _, d, _ in lines if s == i))
    assert toggle


def test_the_js_logic_declares_the_inlets_and_outlets_the_table_gives_it() -> None:
    from riffbridge.daw.maxpatch import JS_IO

    for script, (inlets, outlets) in JS_IO.items():
        text = (PATCH_DIR / script).read_text()
        assert re.search(rf"^inlets = {inlets};$", text, re.M), script
        assert re.search(rf"^outlets = {outlets};$", text, re.M), script


def test_the_device_sends_the_sets_values_before_it_follows_riffbridges_pushes() -> None:
    """The params' route sits behind a gate that opens only after /rb/status (the end of the
    state a new subscriber gets) has made every control send its value, and that closes when
    the connection light goes out."""
    doc = PATCHERS["riffbridge.amxd"]
    boxes, lines = _boxes(doc), _lines(doc)
    gate = next(i for i, b in boxes.items() if b.get("text") == "gate 1")
    (params_route,) = [d for s, _, d, _ in lines if s == gate]
    assert boxes[params_route]["text"].startswith("route /rb/prompt/a")
    main = next(i for i, b in boxes.items() if b.get("text", "").startswith("route /rb/clip"))
    words = boxes[main]["text"].split()[1:]
    synced = next(d for s, o, d, _ in lines if s == main and o == words.index("/rb/status"))
    assert boxes[synced]["text"] == "t b b"
    banged = {d for s, o, d, _ in lines if s == synced and o == 1}
    from riffbridge.daw.patches import device_params

    assert len(banged) == len(device_params())
    opens = [d for s, o, d, _ in lines if s == synced and o == 0]
    assert [boxes[d]["text"] for d in opens] == ["1"]
    assert (opens[0], 0, gate, 0) in lines
    closers = {s for s, _, d, i in lines if d == gate and i == 0 and boxes[s]["text"] == "0"}
    timers = {s for s, _, d, _ in lines if d in closers and boxes[s]["text"] == "del 5000"}
    assert timers, "the connection light's timer closes the gate"


def test_the_device_has_the_top_level_keys_max_writes_and_every_control_is_a_parameter(
        ) -> None:
    from riffbridge.daw.patches import AMXD_AUDIO_EFFECT, device_params, long_name

    patcher = PATCHERS["riffbridge.amxd"]["patcher"]
    for key in ("fileversion", "appversion", "rect", "openrect", "boxes", "lines", "parameters",
                "latency", "is_mpe", "project", "autosave", "saved_attribute_attributes"):
        assert key in patcher, key
    assert patcher["project"]["amxdtype"] == AMXD_AUDIO_EFFECT
    params = patcher["parameters"]
    boxes = _boxes(PATCHERS["riffbridge.amxd"])
    enabled = {i for i, b in boxes.items() if b.get("parameter_enable") == 1}
    assert set(params) - {"parameterbanks", "inherited_shortname"} == enabled
    for box_id in enabled:
        values = boxes[box_id]["saved_attribute_attributes"]["valueof"]
        assert params[box_id] == [values["parameter_longname"], values["parameter_shortname"], 0]
        assert len(values["parameter_shortname"]) <= 12
        if values["parameter_type"] == 2:
            assert values["parameter_mmax"] == len(values["parameter_enum"]) - 1
    longnames = [v[0] for k, v in params.items() if k in enabled]
    assert len(longnames) == len(set(longnames)), "Live needs unique parameter names"
    # every device param is a Live parameter, and Push's banks hold every non-text one
    shown = {boxes[i]["saved_attribute_attributes"]["valueof"]["parameter_longname"]
             for i in enabled}
    banked = [n for bank in params["parameterbanks"].values() for n in bank["parameters"]
              if n != "-"]
    for param in device_params():
        assert long_name(param) in shown, param.name
        if param.kind != "str" or param.choices:
            assert long_name(param) in banked, param.name
    assert all(len(bank["parameters"]) == 8 for bank in params["parameterbanks"].values())
    assert "live.banks" in {b.get("text") for b in boxes.values()}
    assert any(b["maxclass"] == "live.gain~" for b in boxes.values())


def test_device_sends_live_tempo_and_outputs_audio() -> None:
    doc = PATCHERS["riffbridge.amxd"]
    boxes, lines = _boxes(doc), _lines(doc)
    by_text = {b.get("text"): i for i, b in boxes.items()}
    # transport's tempo outlet (4) -> change -> flonum -> "/rb/bpm $1" -> udpsend
    transport = next(i for i, b in boxes.items() if b.get("text") == "transport"
                     and any(s == i and o == 4 for s, o, _, _ in lines))
    chain = [transport]
    while boxes[chain[-1]].get("text") != "udpsend 127.0.0.1 9000":
        nxt = [d for s, _, d, _ in lines if s == chain[-1]]
        assert len(nxt) == 1, boxes[chain[-1]]
        chain.append(nxt[0])
    assert [boxes[i]["maxclass"] for i in chain] == [
        "newobj", "newobj", "flonum", "message", "newobj"]
    assert boxes[chain[3]]["text"] == "/rb/bpm $1"
    assert "plugout~" in by_text and "live.thisdevice" in by_text
    dial = next(b for b in boxes.values() if b["maxclass"] == "live.dial")
    assert dial["saved_attribute_attributes"]["valueof"]["parameter_mmax"] == 1.0
    assert doc["patcher"]["openinpresentation"] == 1


def test_the_device_has_a_cue_dial_and_a_cue_commit_button_that_reach_udpsend() -> None:
    """Issue 16: the cue bus is played from the device: a dial auditions an alpha on
    riffbridge's cue outputs, a button commits it. Nothing but a hand moves either (the set's
    load would otherwise audition or commit)."""
    doc = PATCHERS["riffbridge.amxd"]
    boxes, lines = _boxes(doc), _lines(doc)

    def source_of(message: str) -> str:
        msg = next(i for i, b in boxes.items() if b.get("text") == message)
        assert any(s == msg and boxes[d].get("text", "").startswith("udpsend")
                   for s, _, d, _ in lines), message
        feeders = [s for s, _, d, _ in lines if d == msg]
        while boxes[feeders[0]]["maxclass"] not in ("live.dial", "live.text"):
            feeders = [s for s, _, d, _ in lines if d == feeders[0]]
        assert len(feeders) == 1
        return feeders[0]

    dial, button = source_of("/rb/cue/alpha $1"), source_of("/rb/cue/commit")
    assert boxes[dial]["saved_attribute_attributes"]["valueof"]["parameter_longname"] \
        == "cue alpha"
    assert boxes[button]["text"] == "cue commit"
    assert not any(d in (dial, button) for _, _, d, _ in lines)


def test_amxd_header_declares_the_lengths_and_holds_the_generated_patcher() -> None:
    data = (PATCH_DIR / "riffbridge.amxd").read_bytes()
    assert data[:4] == b"ampf" and struct.unpack("<I", data[4:8])[0] == 4
    assert data[8:12] == b"aaaa"  # audio effect
    assert data[12:16] == b"meta"
    meta_len = struct.unpack("<I", data[16:20])[0]
    ptch_at = 20 + meta_len
    assert data[ptch_at:ptch_at + 4] == b"ptch"
    ptch_len = struct.unpack("<I", data[ptch_at + 4:ptch_at + 8])[0]
    assert ptch_at + 8 + ptch_len == len(data)
    parsed = unpack_amxd(data)
    assert json.loads(parsed.patcher_json) == device_patch()


def test_amxd_rejects_a_truncated_file() -> None:
    data = pack_amxd('{"patcher": {}}')
    with pytest.raises(Exception, match="declares"):
        unpack_amxd(data[:-3])


def test_committed_files_equal_the_generator_output() -> None:
    generated = _load_script("make_max_patches").generated()
    assert sorted(generated) == sorted([*MAXPATS, "riffbridge.amxd", "riffbridge-player.pd"])
    for name, data in generated.items():
        assert (PATCH_DIR / name).read_bytes() == data, (
            f"{name} is stale: run .venv/bin/python scripts/make_max_patches.py")
    script = _load_script("make_max_patches")
    doc = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    assert script.quickstart(doc) == doc, "docs/quickstart.md's device table is stale"


def _addresses_fed(boxes: dict[str, dict[str, Any]], lines: list[tuple[str, int, str, int]],
                   box_id: str) -> list[str]:
    """The OSC addresses of the message boxes a widget feeds, directly or through a scaler."""
    found, todo, seen = [], [box_id], {box_id}
    while todo:
        for src, _, dst, _ in lines:
            if src != todo[0] or dst in seen:
                continue
            seen.add(dst)
            text = boxes[dst].get("text", "")
            if boxes[dst]["maxclass"] == "message" and text.startswith("/"):
                found.append(text.split()[0])
            elif text.startswith("/ "):
                todo.append(dst)
        todo.pop(0)
    return found


NUMERIC_WIDGETS = ("number", "flonum", "dial", "live.dial", "live.numbox")
_PANEL = {"seed_a", "seed_b", "bars", "denoise", "guidance", "alpha"}


def _device_numeric() -> set[str]:
    from riffbridge.daw.patches import device_params

    return {p.name for p in device_params() if p.kind in ("int", "float")}


# By patch: the params the performer sets with a widget, and those a widget only passes on.
PARAM_WIDGETS: dict[str, tuple[set[str], set[str]]] = {
    "riffbridge-control.maxpat": (_PANEL | {"bpm"}, set()),
    "riffbridge-player.maxpat": (set(), set()),
    "riffbridge.amxd": (_device_numeric(), {"bpm"}),  # Live's tempo goes to /rb/bpm as it is
}


@pytest.mark.parametrize("name", sorted(PATCHERS))
def test_every_numeric_widget_has_its_params_range_from_the_table(name: str) -> None:
    """A widget the performer turns is clamped to the parameter table's range and has the
    param's type; a widget that shows a value from elsewhere (Live's tempo) is not clamped, so
    a value outside the range reaches riffbridge and is answered with /rb/error instead of being
    changed in silence."""
    boxes, lines = _boxes(PATCHERS[name]), _lines(PATCHERS[name])
    checked, shown = set(), set()
    for box_id, box in boxes.items():
        if box["maxclass"] not in NUMERIC_WIDGETS:
            continue
        addresses = _addresses_fed(boxes, lines, box_id)
        if not addresses and box.get("varname") == "osc_port":
            continue  # the device's own setting: where riffbridge listens (udpsend's port)
        assert len(addresses) == 1, (box_id, addresses)
        entry = by_address(addresses[0])
        from riffbridge.daw.patches import CUE_DIAL

        if addresses[0] == CUE_DIAL:  # the cue bus's candidate: an alpha, not a param
            entry = by_address("/rb/alpha")
        assert entry is not None and entry.param is not None, addresses
        param = P.BY_NAME[entry.param]
        # fed by something other than riffbridge's echo ("set": shown, not sent on) or a bang
        # (the device's load, a new connection: the control sends the value saved with the set)
        if any(dst == box_id and boxes[src].get("text") not in (
                "prepend set", "prepend setsymbol", "live.thisdevice", "t b b")
               for src, _, dst, _ in lines):
            assert "minimum" not in box and "maximum" not in box, box
            shown.add(param.name)
            continue
        cls = box["maxclass"]
        if cls in ("number", "flonum"):
            assert cls == {"int": "number", "float": "flonum"}[param.kind], (cls, param.name)
            assert box.get("minimum") == param.minimum, (param.name, box.get("minimum"))
            assert box.get("maximum") == param.maximum, (param.name, box.get("maximum"))
            number_type = int if param.kind == "int" else float
            assert all(isinstance(box[k], number_type) for k in ("minimum", "maximum") if k in box)
        elif cls in ("live.dial", "live.numbox"):
            from riffbridge.daw.patches import LIVE_INT_MAX

            values = box["saved_attribute_attributes"]["valueof"]
            top = param.maximum if param.kind == "float" else min(param.maximum, LIVE_INT_MAX)
            assert (values["parameter_mmin"], values["parameter_mmax"]) == (param.minimum, top)
            assert values["parameter_initial"] == [param.default]
            assert values["parameter_type"] == {"int": 1, "float": 0}[param.kind]
        else:  # a Max dial counts 0 .. size-1; the "/ N." box after it scales that to the range
            scaler = next(boxes[d]["text"] for s, _, d, _ in lines if s == box_id)
            divisor = float(scaler.split()[1])
            assert param.minimum == 0
            assert (box["size"] - 1) / divisor == pytest.approx(param.maximum)
        checked.add(param.name)
    turned, from_live = PARAM_WIDGETS[name]
    assert (checked, shown) == (turned, from_live)


def _value_for(tag: str, address: str) -> Any:
    """A valid value of the type a patch sends, inside the param's range."""
    entry = by_address(address)
    assert entry is not None
    if entry.choices:
        return entry.choices[-1]
    lo = entry.minimum if entry.minimum is not None else 0.0
    hi = entry.maximum if entry.maximum is not None else lo + 2.0
    if tag == "f":
        return float(lo + hi) / 2.0
    if tag == "i":
        return int(lo + hi) // 2 or 1
    return "a dusty funk break"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["riffbridge-control.maxpat", "riffbridge.amxd"])
def test_every_message_a_patch_sends_is_accepted_by_the_real_server(
        name: str, replies: Listener) -> None:
    """Send each message box's message, typed as Max would send it, to a real OscServer on
    loopback: none may be refused, and each param lands in the state."""
    from pythonosc.udp_client import SimpleUDPClient

    from riffbridge.control.hub import Hub
    from riffbridge.control.osc_server import OscServer

    boxes, lines = _boxes(PATCHERS[name]), _lines(PATCHERS[name])
    hub = Hub()
    with OscServer(hub, host="127.0.0.1", port=0, reply_port=replies.port) as srv:
        client = SimpleUDPClient(*srv.address)
        for box_id, box in boxes.items():
            if box["maxclass"] != "message" or not box["text"].startswith("/"):
                continue
            address, *words = box["text"].split()
            if address == "/rb/subscribe" and words:
                continue  # would point the pushes at the player's port; covered by the type test
            args: list[Any] = []
            for k, word in enumerate(words):
                if re.fullmatch(r"\$\d", word):
                    (arriving,) = _source_type(boxes, lines, box_id)
                    # a point off the diagonal, so x and y cannot be swapped unseen
                    args.append(_value_for(arriving[int(word[1:]) - 1], address) * (k + 1) / 2
                                if address == "/rb/xy" else
                                _value_for(arriving[int(word[1:]) - 1], address))
                else:
                    args.append(int(word) if _literal_tag(word) == "i" else word)
            client.send_message(address, args)
            client.send_message("/rb/ping", [])
            while True:
                got, got_args = replies.get()
                assert got != "/rb/error", (box["text"], got_args)
                if got == "/rb/pong":
                    break
            entry = by_address(address)
            if entry is not None and entry.params:  # a group address: /rb/xy x y
                assert [hub.value(n) for n in entry.params] == pytest.approx(args), box["text"]
            if entry is not None and entry.param and args:
                # it landed (checked at once: a later control may move it, as /rb/alpha puts
                # the mix back on the A/B path and ``slots`` back to 2)
                assert hub.value(entry.param) == pytest.approx(args[0]), box["text"]


def test_the_pd_player_speaks_only_addresses_in_the_osc_table() -> None:
    """What the Pd player sends (``oscformat rb X``: the subscription and the XY pad's
    ``/rb/xy``) riffbridge accepts; what it routes after ``route rb`` riffbridge pushes (or is a
    param it pushes to subscribers: the pad follows ``/rb/x`` and ``/rb/y``)."""
    from riffbridge.control.osc_spec import OSC_SPEC, by_address

    text = (PATCH_DIR / "riffbridge-player.pd").read_text()
    sent = re.findall(r"oscformat rb (\w+)", text)
    assert sorted(sent) == ["subscribe", "unsubscribe", "xy"]
    for word in sent:
        assert by_address(f"/rb/{word}") is not None
    pushed = {a.address for a in OSC_SPEC if a.kind in ("push", "param")}
    (routed,) = re.findall(r"obj \d+ \d+ route (clip .*?);", text)
    for word in routed.split():
        assert f"/rb/{word}" in pushed, f"the Pd player routes /rb/{word}, never pushed"


@pytest.mark.parametrize("name", ["riffbridge-control.maxpat", "riffbridge.amxd"])
def test_the_xy_pad_sends_one_xy_message_and_follows_riffbridges_x_and_y(name: str) -> None:
    """The pad (a pictslider counting 0..1000 on each axis, y up): its outlets (x left, y
    right) are scaled to 0..1 into one ``pack 0. 0.`` (y into the cold inlet, x into the hot
    one), which alone feeds ``/rb/xy $1 $2`` -> udpsend. It is moved only by ``set`` (no
    output, so no echo): per axis, riffbridge's ``/rb/x`` or ``/rb/y`` (in the device: from
    the params' route behind the gate, and the Live dial) -> ``* 1000.`` -> ``i`` -> ``set $1``
    into that axis's inlet."""
    from riffbridge.daw.patches import PAD_STEPS

    boxes, lines = _boxes(PATCHERS[name]), _lines(PATCHERS[name])
    (pad,) = [i for i, b in boxes.items() if b["maxclass"] == "pictslider"]
    box = boxes[pad]
    assert (box["leftvalue"], box["rightvalue"]) == (0, PAD_STEPS)
    assert (box["bottomvalue"], box["topvalue"]) == (0, PAD_STEPS)  # y up: slots 3, 4 on top

    def fed(src: str, outlet: int | None = None) -> list[tuple[str, int]]:
        return [(d, i) for s, o, d, i in lines if s == src and outlet in (None, o)]

    packs = set()
    for k in (0, 1):
        ((scale, inlet),) = fed(pad, k)
        assert inlet == 0
        assert boxes[scale]["text"] == f"/ {PAD_STEPS}."
        targets = fed(scale)
        (to_pack,) = [(d, i) for d, i in targets if boxes[d].get("text") == "pack 0. 0."]
        assert to_pack[1] == k, "x into the pack's hot (left) inlet, y into the cold one"
        packs.add(to_pack[0])
        others = [d for d, _ in targets if d != to_pack[0]]
        if name.endswith(".amxd"):  # the pad drives the axis's Live dial, silently
            (shown,) = others
            assert boxes[shown]["text"] == "prepend set"
            (dial, _), = fed(shown)
            values = boxes[dial]["saved_attribute_attributes"]["valueof"]
            assert boxes[dial]["maxclass"] == "live.dial"
            assert values["parameter_longname"] == "xy"[k]
        else:
            assert not others
    (both,) = packs
    (send, _), = fed(both)
    assert boxes[send]["text"] == "/rb/xy $1 $2"
    assert [boxes[d]["text"] for d, _ in fed(send)] == ["udpsend 127.0.0.1 9000"]
    assert _source_type(boxes, lines, send) == {"ff"}

    # moved only by "set" (no output: riffbridge's echo of a drag is not sent back)
    into_pad = [(s, i) for s, _, d, i in lines if d == pad]
    assert sorted(i for _, i in into_pad) == [0, 1]
    gate = next((i for i, b in boxes.items() if b.get("text") == "gate 1"), None)
    for src, k in into_pad:
        assert boxes[src]["maxclass"] == "message" and boxes[src]["text"] == "set $1"
        (whole,) = [s for s, _, d, _ in lines if d == src]
        assert boxes[whole]["text"] == "i"
        (steps,) = [s for s, _, d, _ in lines if d == whole]
        assert boxes[steps]["text"] == f"* {PAD_STEPS}."
        sources = [(s, o) for s, o, d, _ in lines if d == steps]
        routes = [(s, o) for s, o in sources if boxes[s].get("text", "").startswith("route ")]
        (route, outlet), = routes
        assert boxes[route]["text"].split()[1 + outlet] == f"/rb/{'xy'[k]}"
        if gate is not None:  # the device: riffbridge's pushes reach the pad past the gate only
            assert [s for s, _, d, _ in lines if d == route] == [gate]
            (dial,) = [s for s, o in sources if (s, o) not in routes]
            assert boxes[dial]["saved_attribute_attributes"]["valueof"][
                "parameter_longname"] == "xy"[k]
        else:
            assert sources == routes
