"""The three Max patchers, built from the OSC table: a control panel, a clip player, and the
Max for Live device (every device param a Live parameter, the player locked to Live's
transport, Live's tempo sent to riffbridge). The players' switching logic is
``max_patches/riffbridge-player.js``; the Pure Data player is ``riffbridge.daw.pd_player``.

Every OSC message a patch sends is a message box whose text starts with the address, and each
address is looked up in ``OSC_SPEC`` here, so a renamed address fails the build, not the gig.
Each param widget is a view of its entry in the parameter table (``riffbridge.params``): its
address, int or float box, and range come from there, so a changed range changes the patches on
the next ``scripts/make_max_patches.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from riffbridge import params as P
from riffbridge.control.osc_spec import OSC_SPEC, by_address
from riffbridge.daw.maxpatch import Patcher
from riffbridge.errors import ConfigError

HOST = "127.0.0.1"
OSC_PORT = 9000  # riffbridge listens here (riffbridge serve --osc-port)
REPLY_PORT = 9001  # riffbridge answers here (riffbridge serve --reply-port)
PLAYER_PORT = 9002  # the stand-alone player subscribes here, so it can run beside the panel

_PUSHED = {a.address: a for a in OSC_SPEC if a.kind == "push"}
# The panel's labels where the param's name would read worse; the others show their names.
LABELS = {"seed_a": "seed A", "seed_b": "seed B", "alpha": "alpha (A -> B)"}


def _incoming(address: str) -> str:
    entry = by_address(address)
    if entry is None:
        raise ConfigError(f"{address} is not in the OSC table (riffbridge osc-spec)")
    return address


def _pushed(address: str) -> str:
    if address not in _PUSHED:
        raise ConfigError(f"{address} is not pushed by riffbridge (riffbridge osc-spec)")
    return address


def _address(param: P.Param) -> str:
    if param.osc is None:
        raise ConfigError(f"{param.name} has no OSC address, so no patch can set it")
    return _incoming(param.osc)


def _bound(param: P.Param, value: float) -> int | float:
    return int(value) if param.kind == "int" else float(value)


def number_widget(param: P.Param) -> tuple[str, dict[str, Any]]:
    """The Max box for a numeric param: ``number`` (int) or ``flonum`` (float), clamped to the
    param's range."""
    if param.kind not in ("int", "float"):
        raise ConfigError(f"{param.name} is a {param.kind}, not a number: no number box for it")
    attrs: dict[str, Any] = {}
    if param.minimum is not None:
        attrs["minimum"] = _bound(param, param.minimum)
    if param.maximum is not None:
        attrs["maximum"] = _bound(param, param.maximum)
    if param.kind == "int":
        return "number", attrs
    return "flonum", {**attrs, "format": 6}


def _alpha_range() -> tuple[float, float]:
    alpha = P.BY_NAME["alpha"]
    if alpha.minimum is None or alpha.maximum is None:
        raise ConfigError("alpha needs a range in the parameter table for the panel's dial")
    return float(alpha.minimum), float(alpha.maximum)


def _max_float(value: float) -> str:
    """A float as Max writes it in a box (``100.``): a trailing dot makes the object float."""
    text = f"{value:g}"
    return text if "." in text or "e" in text else text + "."


@dataclass(frozen=True)
class _Ports:
    send: str  # the udpsend box
    receive: str  # the udpreceive box
    start: tuple[str, int]  # the box and outlet that bangs once the patch is loaded


def _param_row(p: Patcher, ports: _Ports, x: float, y: float, param: P.Param,
               present: list[tuple[str, float, float]], px: float, py: float) -> None:
    """label, a number box of the param's type and range, and the message box that sends it."""
    address = _address(param)
    ui, attrs = number_widget(param)
    lab = p.comment(LABELS.get(param.name, param.name), (x, y), width=90.0)
    box = p.add(ui, (x + 95, y), width=60.0, **attrs)
    send = p.msg(f"{address} $1", (x + 165, y))
    p.connect(box, 0, send)
    p.connect(send, 0, ports.send)
    present.extend([(lab, px, py), (box, px + 70, py)])


def _control(p: Patcher, ports: _Ports, x: float,
             present: list[tuple[str, float, float]]) -> None:
    """The stand-alone control panel: prompts, seeds, alpha, bpm, bars, denoise, guidance,
    transport buttons, status and the last error. (The Live device builds its controls from
    the parameter table instead: ``_device_controls``.)"""
    y = 20.0
    p.comment("riffbridge control: udpsend 127.0.0.1 9000, replies on 9001", (x, y), width=380.0)
    y += 30
    sub = p.msg(_incoming("/rb/subscribe"), (x, y))
    p.connect(ports.start[0], ports.start[1], sub)
    p.connect(sub, 0, ports.send)
    poll = p.obj("metro 1000", (x + 120, y))
    p.connect(ports.start[0], ports.start[1], poll)
    ask = p.msg(_incoming("/rb/status"), (x + 210, y))
    p.connect(poll, 0, ask)
    p.connect(ask, 0, ports.send)
    y += 40

    for side, py in (("a", 5.0), ("b", 30.0)):
        address = _incoming(f"/rb/prompt/{side}")
        lab = p.comment(f"prompt {side.upper()}", (x, y), width=70.0)
        edit = p.add("textedit", (x + 75, y), width=260.0, keymode=1, lines=1,
                     text=f"style {side.upper()} (type, then Return)")
        route = p.obj("route text", (x + 75, y + 30))
        sym = p.obj("tosymbol", (x + 75, y + 60))
        send = p.msg(f"{address} $1", (x + 75, y + 90))
        p.connect(edit, 0, route)
        p.connect(route, 0, sym)
        p.connect(sym, 0, send)
        p.connect(send, 0, ports.send)
        present.extend([(lab, 10.0, py), (edit, 80.0, py)])
        y += 125

    names = ["seed_a", "seed_b", "bpm", "bars", "denoise", "guidance"]
    py = 55.0
    for name in names:
        _param_row(p, ports, x, y, P.BY_NAME[name], present, 10.0, py)
        y += 30
        py += 22

    # Alpha: the knob the instrument is about.
    param = P.BY_NAME["alpha"]
    alpha = _address(param)
    lo, hi = _alpha_range()
    lab = p.comment(LABELS["alpha"], (x, y), width=90.0)
    # Max's dial counts 0 .. size-1 in steps of 1: 0 .. 100, divided down to 0 .. alpha's max.
    if lo != 0.0:
        raise ConfigError(f"the panel's alpha dial starts at 0, the table's alpha at {lo:g}")
    dial = p.add("dial", (x + 95, y), width=40.0, height=40.0, size=101.0)
    scale = p.obj(f"/ {_max_float(100.0 / hi)}", (x + 150, y))
    send = p.msg(f"{alpha} $1", (x + 150, y + 30))
    p.connect(dial, 0, scale)
    p.connect(scale, 0, send)
    p.connect(send, 0, ports.send)
    present.extend([(lab, 160.0, 55.0), (dial, 170.0, 75.0)])
    y += 65

    for k, address in enumerate(("/rb/render", "/rb/play", "/rb/stop")):
        button = p.msg(_incoming(address), (x + 100.0 * k, y))
        p.connect(button, 0, ports.send)
        present.append((button, 350.0, 5.0 + 25.0 * k))
    y += 40

    status, error, progress = _pushed("/rb/status"), _pushed("/rb/error"), _pushed("/rb/progress")
    route = p.obj(f"route {status} {error} {progress}", (x, y))
    p.connect(ports.receive, 0, route)
    y += 30
    for i, label in enumerate(("status", "last error", "progress")):
        lab = p.comment(label, (x, y), width=70.0)
        setter = p.obj("prepend set", (x + 75, y))
        shown = p.msg("", (x + 75, y + 28), width=300.0)
        p.connect(route, i, setter)
        p.connect(setter, 0, shown)
        present.extend([(lab, 230.0, 90.0 + 22 * i), (shown, 300.0, 90.0 + 22 * i)])
        y += 60

    # The XY surface: the pad sends /rb/xy and follows riffbridge's x and y (whoever moved them).
    follow = p.obj(f"route {_address(P.BY_NAME['x'])} {_address(P.BY_NAME['y'])}",
                   (x + 680, 100.0))
    p.connect(ports.receive, 0, follow)
    p.comment(PAD_LABEL, (x + 680, 130.0), width=300.0)
    _xy_pad(p, ports, (x + 680, 160.0), {"x": [(follow, 0)], "y": [(follow, 1)]})


PAD_STEPS = 1000  # the XY pad counts 0 .. PAD_STEPS on each axis (a pictslider sends ints)
PAD_SIZE = 140.0
PAD_LABEL = "XY: slot 1 bottom left, 2 bottom right, 3 top left, 4 top right"


def _xy_range() -> None:
    entry = by_address("/rb/xy")
    if entry is None or entry.params != ("x", "y") or (entry.minimum, entry.maximum) != (0, 1):
        raise ConfigError("the XY pad sends /rb/xy x y, each 0..1; the OSC table says otherwise")


def _xy_pad(p: Patcher, ports: _Ports, xy: tuple[float, float],
            follow: dict[str, list[tuple[str, int]]],
            drive: dict[str, str] | None = None) -> str:
    """The XY surface's pad (a pictslider, 0 .. PAD_STEPS on each axis, y up): a drag sends
    ``/rb/xy x y`` once per move (Max fires a pictslider's outlets right to left: y reaches the
    pack's cold inlet first, x its hot one); each (box, outlet) in ``follow[axis]`` (a float
    0..1: riffbridge's push, a dial) moves the pad without output (``set``). ``drive[axis]``
    (the device's x and y dials) take the pad's values with ``set``: the dial and its Live
    parameter show the point, and the pad's own /rb/xy is the one message sent. Returns the
    pad."""
    _xy_range()
    x, y = xy
    pad = p.add("pictslider", (x, y), width=PAD_SIZE, height=PAD_SIZE, parameter_enable=0,
                leftvalue=0, rightvalue=PAD_STEPS, bottomvalue=0, topvalue=PAD_STEPS)
    both = p.obj("pack 0. 0.", (x, y + PAD_SIZE + 70))
    send = p.msg(f"{_incoming('/rb/xy')} $1 $2", (x, y + PAD_SIZE + 100))
    p.connect(both, 0, send)
    p.connect(send, 0, ports.send)
    for k, axis in enumerate(("x", "y")):
        ax = x + 80.0 * k
        scale = p.obj(f"/ {_max_float(PAD_STEPS)}", (ax, y + PAD_SIZE + 40))
        p.connect(pad, k, scale)
        p.connect(scale, 0, both, k)
        if drive and axis in drive:
            shown = p.obj("prepend set", (ax + 200, y + PAD_SIZE + 70))
            p.connect(scale, 0, shown)
            p.connect(shown, 0, drive[axis])
        # riffbridge's value (or the dial's) -> the pad's steps, whole -> "set" in the axis's
        # inlet: the knob moves, nothing is sent
        steps = p.obj(f"* {_max_float(PAD_STEPS)}", (x + PAD_SIZE + 20, y + 30.0 * k))
        whole = p.obj("i", (x + PAD_SIZE + 90, y + 30.0 * k))
        place = p.msg("set $1", (x + PAD_SIZE + 130, y + 30.0 * k))
        for box, outlet in follow.get(axis, []):
            p.connect(box, outlet, steps)
        p.connect(steps, 0, whole)
        p.connect(whole, 0, place)
        p.connect(place, 0, pad, k)
    return pad


JS = "riffbridge-player.js"  # max_patches/riffbridge-player.js: the switching logic
KEEPALIVE_MS = 2000  # re-subscribe this often: a riffbridge started later or restarted finds us
LIGHT_MS = 5000  # the connection light goes out this long after the last /rb/pong


def _subscription(p: Patcher, ports: _Ports, x: float, y: float,
                  reply_port: int) -> tuple[str, str]:
    """Unsubscribe and subscribe at load (a new subscriber gets the whole state), then
    re-subscribe every KEEPALIVE_MS; returns the box that bangs a reconnect and the metro."""
    again = p.obj("t b b", (x, y))
    p.connect(ports.start[0], ports.start[1], again)
    unsub = p.msg(f"{_incoming('/rb/unsubscribe')} {reply_port}", (x + 150, y + 30))
    sub = p.msg(f"{_incoming('/rb/subscribe')} {reply_port}", (x, y + 60))
    p.connect(again, 1, unsub)
    p.connect(again, 0, sub)
    p.connect(unsub, 0, ports.send)
    p.connect(sub, 0, ports.send)
    keep = p.obj(f"metro {KEEPALIVE_MS}", (x + 150, y + 60))
    on = p.msg("1", (x + 150, y + 90))
    p.connect(ports.start[0], ports.start[1], on)
    p.connect(on, 0, keep)
    p.connect(keep, 0, sub)
    return again, keep


def _light(p: Patcher, route: str, outlet: int, x: float, y: float) -> tuple[str, str]:
    """A toggle lit by each /rb/pong (the keep-alive's answer), out LIGHT_MS after the last;
    returns it and the "0" box that puts it out (riffbridge went away)."""
    heard = p.obj("t b b", (x, y))
    p.connect(route, outlet, heard)
    on = p.msg("1", (x, y + 30))
    wait = p.obj(f"del {LIGHT_MS}", (x + 60, y + 30))
    off = p.msg("0", (x + 60, y + 60))
    light = p.add("toggle", (x, y + 90), width=20.0, height=20.0)
    p.connect(heard, 1, on)
    p.connect(heard, 0, wait)
    p.connect(wait, 0, off)
    p.connect(on, 0, light)
    p.connect(off, 0, light)
    return light, off


def _player(p: Patcher, ports: _Ports, x: float, buffers: tuple[str, str],
            outputs: tuple[str, str], route: str, clip_outlet: int,
            settings: dict[str, tuple[str, int]]) -> tuple[str, str, str]:
    """Two buffer~/groove~ slots driven by the switching logic in ``JS``: a clip loads only into
    the slot that is not sounding, switches on the quantum of the transport (Live's in the
    device) with two line~ ramps, the sounding loop's position follows the transport's beat.
    Returns (the js box, its display message box, the tempo outlet's box)."""
    y = 20.0
    p.comment("riffbridge player: /rb/clip -> the idle slot; switch on the quantum, ramped",
              (x, y), width=420.0)
    y += 30
    logic = p.obj(f"js {JS}", (x, y + 120), width=200.0)
    clip = p.obj("prepend clip", (x, y + 90))
    p.connect(route, clip_outlet, clip)
    p.connect(clip, 0, logic)
    for word, (box, outlet) in settings.items():  # quantum, xfade: as the engine has them
        pre = p.obj(f"prepend {word}", (x + 120, y + 90))
        p.connect(box, outlet, pre)
        p.connect(pre, 0, logic)

    # The transport's beat: metro @active 1 runs while the transport (Live's) runs, on its
    # quarter notes; transport reports the bar and beat (outlets fire right to left: the bar,
    # outlet 0, comes last and is the tick).
    beats = p.obj("metro 4n @active 1 @quantize 4n", (x + 260, y))
    where = p.obj("transport", (x + 260, y + 30))
    p.connect(beats, 0, where)
    for outlet, word in ((5, "timesig"), (1, "beat"), (0, "bar")):
        pre = p.obj(f"prepend {word}", (x + 260 + 70 * (2 - min(outlet, 2)), y + 60))
        p.connect(where, outlet, pre)
        p.connect(pre, 0, logic)
    # Stop: poll the transport's state (outlet 6) and pass on its changes.
    poll = p.obj("qmetro 50", (x + 480, y))
    on = p.msg("1", (x + 480, y - 25))
    p.connect(ports.start[0], ports.start[1], on)
    p.connect(on, 0, poll)
    state = p.obj("transport", (x + 480, y + 30))
    p.connect(poll, 0, state)
    changed = p.obj("change", (x + 480, y + 60))
    p.connect(state, 6, changed)
    run = p.obj("prepend run", (x + 480, y + 90))
    p.connect(changed, 0, run)
    p.connect(run, 0, logic)
    y += 170

    mix: list[tuple[str, int]] = []
    for k, name in enumerate(buffers):
        bx = x + 200 * k
        buf = p.obj(f"buffer~ {name}", (bx, y))
        p.connect(logic, k, buf)
        loaded = p.msg(f"loaded {k}", (bx, y + 30))
        p.connect(buf, 1, loaded)  # the right outlet bangs when the file is read
        p.connect(loaded, 0, logic)
        groove = p.obj(f"groove~ {name} 2 @loop 1", (bx, y + 90))
        speed = p.obj("sig~ 1", (bx + 100, y + 60))
        p.connect(speed, 0, groove)
        p.connect(logic, 2 + k, groove)  # the position in ms, on each beat
        ramp = p.obj("line~", (bx + 100, y + 90))
        p.connect(logic, 4 + k, ramp)
        for ch in (0, 1):
            amp = p.obj("*~", (bx + 60 * ch, y + 130))
            p.connect(groove, ch, amp)
            p.connect(ramp, 0, amp, 1)
            mix.append((amp, ch))
    for amp, ch in mix:
        p.connect(amp, 0, outputs[ch], ch)
    shown = p.msg("", (x, y + 170), width=400.0)
    p.connect(logic, 6, shown)
    return logic, shown, where


def control_patch() -> dict[str, Any]:
    p = Patcher()
    start = p.obj("loadbang", (20.0, 20.0))
    send = p.obj(f"udpsend {HOST} {OSC_PORT}", (600.0, 20.0))
    receive = p.obj(f"udpreceive {REPLY_PORT}", (600.0, 60.0))
    ports = _Ports(send, receive, (start, 0))
    _control(p, ports, 20.0, present=[])
    keep = p.obj(f"metro {KEEPALIVE_MS}", (450.0, 20.0))  # re-subscribe: see _subscription
    on = p.msg("1", (450.0, 50.0))
    p.connect(start, 0, on)
    p.connect(on, 0, keep)
    again = p.msg(_incoming("/rb/subscribe"), (450.0, 80.0))
    p.connect(keep, 0, again)
    p.connect(again, 0, send)
    return p.to_dict()


def player_patch() -> dict[str, Any]:
    """The stand-alone Max player: follows Max's transport (the run toggle), sets its tempo to
    each clip's as it switches, plays through dac~."""
    p = Patcher()
    start = p.obj("loadbang", (20.0, 20.0))
    send = p.obj(f"udpsend {HOST} {OSC_PORT}", (20.0, 700.0))
    receive = p.obj(f"udpreceive {PLAYER_PORT}", (20.0, 60.0))
    ports = _Ports(send, receive, (start, 0))
    route = p.obj(f"route {_pushed('/rb/clip')} {_address(P.BY_NAME['quantum'])} "
                  f"{_address(P.BY_NAME['xfade'])} {_pushed('/rb/pong')} {_pushed('/rb/error')}",
                  (20.0, 100.0))
    p.connect(receive, 0, route)
    _subscription(p, ports, 20.0, 560.0, PLAYER_PORT)
    _light(p, route, 3, 250.0, 560.0)  # the stand-alone player has no param controls
    p.comment("connected (lit while riffbridge answers)", (280.0, 650.0), width=250.0)
    errors = p.obj("prepend set", (20.0, 140.0))
    p.connect(route, 4, errors)
    shown = p.msg("", (20.0, 170.0), width=400.0)
    p.connect(errors, 0, shown)
    dac = p.obj("dac~", (450.0, 760.0))
    logic, _, _ = _player(p, ports, 450.0, ("rbA", "rbB"), (dac, dac), route, 0,
                          {"quantum": (route, 1), "xfade": (route, 2)})
    clock = p.obj("transport", (800.0, 700.0))  # Max's global transport: tempo and run
    tempo = p.obj("prepend tempo", (800.0, 670.0))
    p.connect(logic, 7, tempo)
    p.connect(tempo, 0, clock)
    run = p.add("toggle", (760.0, 620.0), width=24.0, height=24.0)
    p.comment("run Max's transport (clips switch on its beats; stop silences)", (790.0, 620.0),
              width=330.0)
    p.connect(run, 0, clock)
    p.msg("; dsp start", (450.0, 800.0))
    p.comment("<- click to turn audio on", (530.0, 800.0), width=160.0)
    return p.to_dict()


# ---- the Max for Live device -------------------------------------------------------------------

DEVICE_SKIP = {"bpm": "Live's tempo is sent instead", "clock": "the tempo comes from Live"}
LIVE_INT_MAX = 2**24 - 1  # Live stores a parameter as a 32-bit float: integers exact to 2**24
AMXD_AUDIO_EFFECT = 1633771873  # "aaaa": project.amxdtype of an audio effect (CPU Reporter.amxd)
COMMANDS = ("/rb/render", "/rb/play", "/rb/stop", "/rb/cue/commit")
COMMAND_NAMES = {"/rb/cue/commit": "cue commit"}  # else the address's last part
# The cue bus's candidate (issue 16): a dial that auditions its alpha on riffbridge's cue
# outputs; "cue commit" makes it the next loop on the quantum.
CUE_DIAL = "/rb/cue/alpha"
PAD_X = 830.0  # the XY pad's place in the device view, right of the rest
DEVICE_WIDTH = PAD_X + PAD_SIZE + 10.0


def command_name(address: str) -> str:
    return COMMAND_NAMES.get(address, address.rsplit("/", 1)[1])


def cue_valueof() -> dict[str, Any]:
    """The cue dial's Live parameter: alpha's range, its own names, not stored as a preset
    value that would audition at load."""
    block = valueof(P.BY_NAME["alpha"])
    block.update(parameter_longname="cue alpha", parameter_shortname="cue alpha")
    return block


def device_params() -> list[P.Param]:
    """The params the device shows, each a Live parameter: every live param with an OSC
    address, in table order, but those in DEVICE_SKIP. A param added to the table appears here
    with no change to the generator."""
    return [p for p in P.LIVE if p.osc and p.name not in DEVICE_SKIP]


# Live parameter names where the param's own name would read worse (short names: 12 chars).
DEVICE_NAMES = {"seed_a": "seed A", "seed_b": "seed B", "prompt_a": "prompt A",
                "prompt_b": "prompt B", "beats_per_bar": "beats/bar",
                "gain_db": "engine gain"}


def long_name(param: P.Param) -> str:
    return DEVICE_NAMES.get(param.name, param.name.replace("_", " "))


def short_name(param: P.Param) -> str:
    return long_name(param)[:12]


def _unitstyle(param: P.Param) -> dict[str, Any]:
    """Live's unit style, as Max writes it: 0 int, 1 float, 4 dB, 9 custom with a format."""
    if param.unit == "dB":
        return {"parameter_unitstyle": 4}
    if param.unit:
        fmt = "%d" if param.kind == "int" else "%.2f"
        return {"parameter_unitstyle": 9, "parameter_units": f"{fmt} {param.unit}"}
    return {"parameter_unitstyle": 0 if param.kind == "int" else 1}


def live_range(param: P.Param) -> tuple[float, float]:
    """The param's range as the Live parameter holds it (ints capped at LIVE_INT_MAX)."""
    if param.minimum is None or param.maximum is None:
        raise ConfigError(f"{param.name} needs a range in the parameter table for a Live control")
    lo, hi = float(param.minimum), float(param.maximum)
    if param.kind == "int":
        return lo, min(hi, float(LIVE_INT_MAX))
    return lo, hi


def valueof(param: P.Param) -> dict[str, Any]:
    """The ``saved_attribute_attributes.valueof`` block of the param's Live control, with the
    keys Max writes (Test.amxd, CPU Reporter.amxd in Ableton/maxdevtools)."""
    block: dict[str, Any] = {"parameter_longname": long_name(param),
                             "parameter_shortname": short_name(param),
                             "parameter_modmode": 0,
                             "parameter_initial_enable": 1}
    if param.choices:
        block.update(parameter_type=2, parameter_enum=list(param.choices),
                     parameter_mmax=len(param.choices) - 1,
                     parameter_initial=[param.choices.index(param.default)])
        return block
    if param.kind == "str":  # prompts: a blob stored with the set (a pattr)
        block.update(parameter_type=3, parameter_invisible=1)
        del block["parameter_initial_enable"]
        return block
    lo, hi = live_range(param)
    block.update(parameter_type=1 if param.kind == "int" else 0, parameter_mmin=lo,
                 parameter_mmax=hi, parameter_initial=[_bound(param, param.default)],
                 **_unitstyle(param))
    return block


def _live_control(p: Patcher, param: P.Param, xy: tuple[float, float]) -> tuple[str, int, str]:
    """The param's Live control: (the box the value leaves, its outlet, the box that takes a
    "set"/"setsymbol" from riffbridge's push)."""
    attrs: dict[str, Any] = {"parameter_enable": 1, "varname": param.name,
             "saved_attribute_attributes": {"valueof": valueof(param)}}
    if param.choices:
        menu = p.add("live.menu", xy, width=70.0, height=15.0, **attrs)
        return menu, 1, menu  # outlet 1: the item's text
    if param.kind == "str":
        store = p.obj(f"pattr {param.name}", (xy[0], xy[1] + 30), **attrs)
        return store, 0, store
    cls = "live.numbox" if param.kind == "int" else "live.dial"
    size = (44.0, 15.0) if cls == "live.numbox" else (44.0, 48.0)
    box = p.add(cls, xy, width=size[0], height=size[1], **attrs)
    return box, 0, box


def _device_controls(p: Patcher, ports: _Ports, x: float,
                     present: list[tuple[str, float, float]]
                     ) -> tuple[str, dict[str, int], list[str], str]:
    """Every device param a Live parameter that sends its OSC address and shows riffbridge's
    pushes; returns (the route of what the device always takes, the outlet of each address
    there, the parameters' ids in order, the gate before the params' route)."""
    params = device_params()
    # What the device always takes, and the params riffbridge pushes, behind a gate: the set's
    # values win. The gate opens once riffbridge's state has arrived (/rb/status ends the
    # snapshot a new subscriber gets) and the device has sent its own values over it; it
    # closes when the connection light goes out (a restarted riffbridge starts from its
    # defaults, which must not overwrite the set's).
    always = [_pushed("/rb/clip"), _pushed("/rb/error"), _pushed("/rb/pong"),
              _pushed("/rb/status"), _address(P.BY_NAME["quantum"]),
              _address(P.BY_NAME["xfade"])]
    main = p.obj("route " + " ".join(always), (x, 20.0))
    p.connect(ports.receive, 0, main)
    gate = p.obj("gate 1", (x + 400, 20.0))
    p.connect(main, len(always), gate, 1)
    for address in always[4:]:  # the player needs these at once; the controls after the gate
        again = p.obj(f"prepend {address}", (x + 400 + 100 * always.index(address), 0.0))
        p.connect(main, always.index(address), again)
        p.connect(again, 0, gate, 1)
    routed = [_address(q) for q in params]
    route = p.obj("route " + " ".join(routed), (x, 40.0))
    p.connect(gate, 0, route)
    outlet_of = {address: k for k, address in enumerate(routed)}
    main_of = {address: k for k, address in enumerate(always)}
    ids: list[str] = []
    control_of: dict[str, str] = {}
    y = 60.0
    px, py = 5.0, 5.0
    for param in params:
        address = _address(param)
        lab = p.comment(long_name(param), (x, y), width=90.0)
        source, outlet, target = _live_control(p, param, (x + 95, y))
        send = p.msg(f"{address} $1", (x + 200, y))
        p.connect(source, outlet, send)
        p.connect(send, 0, ports.send)
        setter = p.obj("prepend setsymbol" if param.choices else "prepend set", (x + 300, y))
        p.connect(route, outlet_of[address], setter)
        p.connect(setter, 0, target)
        if param.kind == "str" and not param.choices:
            edit = p.add("textedit", (x + 95, y), width=200.0, keymode=1, lines=1)
            text = p.obj("route text", (x + 95, y + 60))
            sym = p.obj("tosymbol", (x + 95, y + 90))
            p.connect(edit, 0, text)
            p.connect(text, 0, sym)
            p.connect(sym, 0, source)  # the pattr passes it on and keeps it with the set
            shown = p.obj("prepend set", (x + 300, y + 30))
            p.connect(source, 0, shown)
            p.connect(shown, 0, edit)
            present.append((edit, px, py))
            y += 130
        else:
            present.append((source, px, py))
            y += 60
        present.append((lab, px, py - 2))
        ids.append(source)
        control_of[param.name] = source
        px += 90.0
        if px > 700.0:
            px, py = 5.0, py + 60.0
    # The XY pad drives the x and y dials (Live parameters: automation, Push and the set's
    # values act on them) and follows them, and riffbridge's pushes behind the gate.
    if "x" in control_of and "y" in control_of:
        follow = {axis: [(control_of[axis], 0), (route, outlet_of[_address(P.BY_NAME[axis])])]
                  for axis in ("x", "y")}
        lab = p.comment("XY: slots 1 2 bottom, 3 4 top", (x + 700, 40.0), width=PAD_SIZE)
        pad = _xy_pad(p, ports, (x + 700, 80.0), follow,
                      drive={axis: control_of[axis] for axis in ("x", "y")})
        present.extend([(lab, PAD_X, 2.0), (pad, PAD_X, 24.0)])
    # At load, each control sends the value saved with the set (a pattr sends its own).
    for box_id in [i for i in ids if not p.boxes[int(i.split("-")[1]) - 1]["box"]
                   .get("text", "").startswith("pattr")]:
        p.connect(ports.start[0], ports.start[1], box_id)
    for k, address in enumerate(COMMANDS):
        name = command_name(address)
        button = p.add("live.text", (x + 100.0 * k, y), width=60.0, height=20.0,
                       parameter_enable=1, varname=name.replace(" ", "_"), mode=0,
                       text=name,
                       saved_attribute_attributes={"valueof": {
                           "parameter_longname": name,
                           "parameter_shortname": name,
                           "parameter_type": 2, "parameter_enum": ["off", "on"],
                           "parameter_mmax": 1, "parameter_modmode": 0}})
        bang = p.obj("t b", (x + 100.0 * k, y + 30))
        command = p.msg(_incoming(address), (x + 100.0 * k, y + 60))
        p.connect(button, 0, bang)
        p.connect(bang, 0, command)
        p.connect(command, 0, ports.send)
        present.append((button, 720.0, 5.0 + 25.0 * k))
        ids.append(button)
    # The cue dial: not sent at load (it would audition), only when turned.
    cue = p.add("live.dial", (x + 100.0 * len(COMMANDS), y), width=44.0, height=48.0,
                parameter_enable=1, varname="cue_alpha",
                saved_attribute_attributes={"valueof": cue_valueof()})
    cue_send = p.msg(f"{CUE_DIAL} $1", (x + 100.0 * len(COMMANDS), y + 60))
    p.connect(cue, 0, cue_send)
    p.connect(cue_send, 0, ports.send)
    present.append((cue, 720.0, 5.0 + 25.0 * len(COMMANDS)))
    ids.append(cue)
    synced = p.obj("t b b", (x + 400, 60.0))
    p.connect(main, main_of[_pushed("/rb/status")], synced)
    for box_id in ids[:len(params)]:
        p.connect(synced, 1, box_id)  # send the set's values ...
    opened = p.msg("1", (x + 400, 90.0))
    p.connect(synced, 0, opened)
    p.connect(opened, 0, gate)  # ... then follow riffbridge's pushes
    return main, {**main_of, **{a: k for a, k in outlet_of.items() if a not in main_of}}, \
        ids, gate


def _parameters(p: Patcher, ids: list[str]) -> dict[str, Any]:
    """The patcher's top-level ``parameters``: each Live parameter's box id -> [long name,
    short name, 0], and Push banks of eight in the device's order (as Max writes them)."""
    table: dict[str, Any] = {}
    names = []
    for entry in p.boxes:
        box = entry["box"]
        if box["id"] in ids or box.get("parameter_enable") == 1:
            values = box["saved_attribute_attributes"]["valueof"]
            table[box["id"]] = [values["parameter_longname"], values["parameter_shortname"], 0]
            if values.get("parameter_type") != 3 and box["id"] in ids:
                names.append(values["parameter_longname"])
    banks = {}
    for b in range(0, len(names), 8):
        chunk = names[b:b + 8]
        banks[str(b // 8)] = {"index": b // 8, "name": f"riffbridge {b // 8 + 1}",
                              "parameters": chunk + ["-"] * (8 - len(chunk))}
    table["parameterbanks"] = banks
    table["inherited_shortname"] = 1
    return table


def device_patch() -> dict[str, Any]:
    """The Max for Live audio effect: every param a Live parameter, the player locked to Live's
    transport, Live's tempo to /rb/bpm, host and ports, a connection light, errors and the
    sounding clip shown, output gain and meter (live.gain~)."""
    present: list[tuple[str, float, float]] = []
    p = Patcher(openinpresentation=1, devicewidth=DEVICE_WIDTH)
    start = p.obj("live.thisdevice", (20.0, 20.0))
    send = p.obj(f"udpsend {HOST} {OSC_PORT}", (600.0, 20.0))
    receive = p.obj(f"udpreceive {REPLY_PORT}", (600.0, 60.0))
    ports = _Ports(send, receive, (start, 0))
    route, outlet_of, ids, gate = _device_controls(p, ports, 20.0, present)
    p.obj("live.banks", (20.0, 1800.0))

    # riffbridge's host and port, saved with the set; a change reconnects.
    x = 1600.0
    host = p.add("textedit", (x, 20.0), width=120.0, keymode=1, lines=1, text=HOST)
    host_text = p.obj("route text", (x, 50.0))
    host_sym = p.obj("tosymbol", (x, 65.0))
    host_store = p.obj("pattr osc_host", (x + 60, 65.0), parameter_enable=1, varname="osc_host",
                       saved_attribute_attributes={"valueof": {
                           "parameter_longname": "osc host", "parameter_shortname": "osc host",
                           "parameter_type": 3, "parameter_invisible": 1,
                           "parameter_modmode": 0}})
    host_msg = p.msg("host $1", (x, 80.0))
    host_shown = p.obj("prepend set", (x + 60, 95.0))
    p.connect(host, 0, host_text)
    p.connect(host_text, 0, host_sym)
    p.connect(host_sym, 0, host_store)  # kept with the set; restored at load
    p.connect(host_store, 0, host_msg)
    p.connect(host_store, 0, host_shown)
    p.connect(host_shown, 0, host)
    p.connect(host_msg, 0, send)
    port = p.add("live.numbox", (x + 150, 20.0), width=50.0, height=15.0, parameter_enable=1,
                 varname="osc_port", saved_attribute_attributes={"valueof": {
                     "parameter_longname": "osc port", "parameter_shortname": "osc port",
                     "parameter_type": 1, "parameter_mmin": 1.0, "parameter_mmax": 65535.0,
                     "parameter_initial_enable": 1, "parameter_initial": [OSC_PORT],
                     "parameter_unitstyle": 0, "parameter_modmode": 0}})
    port_msg = p.msg("port $1", (x + 150, 50.0))
    p.connect(port, 0, port_msg)
    p.connect(port_msg, 0, send)
    again, keep = _subscription(p, ports, x, 120.0, REPLY_PORT)
    p.connect(host_msg, 0, again)
    p.connect(port_msg, 0, again)
    reconnect = p.add("live.text", (x + 300, 20.0), width=70.0, height=20.0, parameter_enable=1,
                      varname="reconnect", mode=0, text="reconnect",
                      saved_attribute_attributes={"valueof": {
                          "parameter_longname": "reconnect", "parameter_shortname": "reconnect",
                          "parameter_type": 2, "parameter_enum": ["off", "on"],
                          "parameter_mmax": 1, "parameter_modmode": 0,
                          "parameter_invisible": 1}})
    p.connect(reconnect, 0, again)
    light, dark = _light(p, route, outlet_of[_pushed("/rb/pong")], x + 300, 120.0)
    p.connect(dark, 0, gate)  # riffbridge went away: the set's values win when it is back
    present.extend([(host, 560.0, 90.0), (port, 690.0, 90.0), (reconnect, 745.0, 90.0),
                    (light, 720.0, 90.0)])
    errors = p.obj("prepend set", (x, 300.0))
    p.connect(route, outlet_of[_pushed("/rb/error")], errors)
    error_box = p.msg("", (x, 330.0), width=300.0)
    p.connect(errors, 0, error_box)
    present.append((error_box, 560.0, 115.0))

    # Live's tempo: poll the transport twice a second, send changes, and again with each
    # keep-alive (a restarted riffbridge learns it at once).
    x = 1100.0
    poll = p.obj("metro 500", (x, 20.0))
    p.connect(start, 0, poll)
    transport = p.obj("transport", (x, 50.0))
    p.connect(poll, 0, transport)
    changed = p.obj("change", (x + 60, 80.0))
    p.connect(transport, 4, changed)
    tempo = p.add("flonum", (x + 60, 110.0), width=60.0, format=6)
    p.connect(changed, 0, tempo)
    bpm = p.msg(f"{_incoming('/rb/bpm')} $1", (x + 60, 140.0))
    p.connect(tempo, 0, bpm)
    p.connect(bpm, 0, send)
    p.connect(again, 0, tempo)
    p.connect(keep, 0, tempo)
    lab = p.comment("Live tempo", (x + 130, 110.0), width=80.0)
    present.extend([(lab, 560.0, 140.0), (tempo, 640.0, 140.0)])

    # Audio: the track's input passes through; the player adds the loop on top, through a
    # gain with a meter.
    into = p.obj("plugin~", (x, 900.0))
    out = p.obj("plugout~", (x, 1000.0))
    p.connect(into, 0, out, 0)
    p.connect(into, 1, out, 1)
    gain = p.add("live.gain~", (x + 200, 900.0), width=48.0, height=136.0, parameter_enable=1,
                 varname="output", saved_attribute_attributes={"valueof": {
                     "parameter_longname": "output", "parameter_shortname": "output",
                     "parameter_type": 0, "parameter_mmin": -70.0, "parameter_mmax": 6.0,
                     "parameter_initial_enable": 1, "parameter_initial": [0.0],
                     "parameter_unitstyle": 4, "parameter_modmode": 0}})
    p.connect(gain, 0, out, 0)
    p.connect(gain, 1, out, 1)
    present.append((gain, 780.0, 5.0))
    settings = {"quantum": (route, outlet_of[_address(P.BY_NAME["quantum"])]),
                "xfade": (route, outlet_of[_address(P.BY_NAME["xfade"])])}
    _, clip_box, _ = _player(p, ports, x, ("---rbA", "---rbB"), (gain, gain), route,
                             outlet_of[_pushed("/rb/clip")], settings)
    present.append((clip_box, 560.0, 165.0))

    _present(p, present)
    doc = p.to_dict()
    patcher = doc["patcher"]
    patcher["openrect"] = [0.0, 0.0, DEVICE_WIDTH, 169.0]
    patcher["parameters"] = _parameters(p, ids)
    patcher.update(latency=0, is_mpe=0, minimum_live_version="", minimum_max_version="",
                   platform_compatibility=0, autosave=0,
                   saved_attribute_attributes={"default_plcolor": {"expression": ""}},
                   dependency_cache=[{"name": JS, "type": "TEXT", "implicit": 1}])
    patcher["project"] = {
        "version": 1, "creationdate": 3590052493, "modificationdate": 3590052493,
        "viewrect": [0.0, 0.0, 300.0, 500.0], "autoorganize": 1, "hideprojectwindow": 1,
        "showdependencies": 1, "autolocalize": 0, "contents": {"patchers": {}},
        "layout": {}, "searchpath": {}, "detailsvisible": 0, "amxdtype": AMXD_AUDIO_EFFECT,
        "readonly": 0, "devpathtype": 0, "devpath": ".", "sortmode": 0, "viewmode": 0,
        "includepackages": 0}
    return doc
def _present(p: Patcher, placed: list[tuple[str, float, float]]) -> None:
    """Put the performer's controls in the device view (presentation mode)."""
    where = {box_id: (px, py) for box_id, px, py in placed}
    for entry in p.boxes:
        box = entry["box"]
        if box["id"] in where:
            px, py = where[box["id"]]
            w, h = box["patching_rect"][2], box["patching_rect"][3]
            box["presentation"] = 1
            box["presentation_rect"] = [px, py, min(w, 260.0), h]


PATCHES = {
    "riffbridge-control.maxpat": control_patch,
    "riffbridge-player.maxpat": player_patch,
}


def device_controls_table() -> str:
    """The Markdown table of every device control and its Live parameter (docs/quickstart.md,
    written between markers by scripts/make_max_patches.py)."""
    rows = ["| control | Live parameter (long / short name) | kind | range | sends |",
            "| --- | --- | --- | --- | --- |"]
    for param in device_params():
        values = valueof(param)
        if param.choices:
            kind, span = "live.menu", ", ".join(param.choices)
        elif param.kind == "str":
            kind, span = "text field, stored in a pattr", "text"
        else:
            kind = "live.numbox" if param.kind == "int" else "live.dial"
            lo, hi = live_range(param)
            unit = f" {param.unit}" if param.unit else ""
            span = (f"{int(lo)} .. {int(hi)}{unit}" if param.kind == "int"
                    else f"{lo:g} .. {hi:g}{unit}")
        rows.append(f"| {long_name(param)} | {values['parameter_longname']} / "
                    f"{values['parameter_shortname']} | {kind} | {span} | `{param.osc}` |")
    for address in COMMANDS:
        name = command_name(address)
        rows.append(f"| {name} | {name} / {name} | live.text (button) | - | `{address}` |")
    rows.append(f"| cue alpha | cue alpha / cue alpha | live.dial | 0 .. 1 | `{CUE_DIAL}` "
                f"(auditions on riffbridge's cue outputs) |")
    rows.append("| XY pad | none: it sets the x and y parameters above, and follows them | "
                "pictslider, y up | 0 .. 1 each | `/rb/xy` (one message per move) |")
    rows.append("| reconnect | reconnect / reconnect | live.text (button) | - | "
                "`/rb/unsubscribe`, `/rb/subscribe` |")
    rows.append(f"| osc host | osc host / osc host | text field, stored in a pattr | "
                f"address (default {HOST}) | where riffbridge runs |")
    rows.append(f"| osc port | osc port / osc port | live.numbox | 1 .. 65535 (default "
                f"{OSC_PORT}) | where riffbridge listens |")
    rows.append("| output | output / output | live.gain~ with meter | -70 .. 6 dB | the loop's "
                "level (the track's input passes unchanged) |")
    return "\n".join(rows) + "\n"
