"""The three Max patchers, built from the OSC table: a control panel, a clip player, and the
Max for Live device that combines both and sends Live's tempo.

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


def _control(p: Patcher, ports: _Ports, x: float, live: bool,
             present: list[tuple[str, float, float]]) -> None:
    """The control panel: prompts, seeds, alpha, bpm, bars, denoise, guidance, transport
    buttons, status and the last error."""
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

    names = ["seed_a", "seed_b", "bars", "denoise", "guidance"]
    if not live:  # in Live the device sends Live's tempo instead
        names.insert(2, "bpm")
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
    if live:
        dial = p.add("live.dial", (x + 95, y), width=44.0, height=48.0, parameter_enable=1,
                     varname="alpha", saved_attribute_attributes={"valueof": {
                         "parameter_longname": "alpha", "parameter_shortname": "alpha",
                         "parameter_type": 0, "parameter_mmin": lo, "parameter_mmax": hi,
                         "parameter_initial_enable": 1,
                         "parameter_initial": [float(param.default)],
                         "parameter_unitstyle": 1}})
        send = p.msg(f"{alpha} $1", (x + 150, y))
        p.connect(dial, 0, send)
    else:
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


def _player(p: Patcher, ports: _Ports, x: float, buffers: tuple[str, str],
            outputs: tuple[str, str]) -> None:
    """Loads each /rb/clip into one of two alternating buffer~s and switches to it at the next
    bar line of the transport; both groove~s loop, so the loop plays on until the next clip."""
    y = 20.0
    p.comment("riffbridge player: /rb/clip -> buffer A/B, switch at the next bar", (x, y),
              width=400.0)
    y += 30
    clip = _pushed("/rb/clip")
    route = p.obj(f"route {clip}", (x, y))
    p.connect(ports.receive, 0, route)
    fields = p.obj("unpack " + " ".join(_PUSHED[clip].args), (x, y + 30))
    p.connect(route, 0, fields)
    order = p.obj("t s b", (x, y + 60))
    p.connect(fields, 0, order)
    flip = p.obj("counter 1 2", (x + 120, y + 90))
    p.connect(order, 1, flip)
    load = p.msg("replace $1", (x, y + 120))
    p.connect(order, 0, load)
    which = p.obj("gate 2", (x, y + 150))
    p.connect(flip, 0, which, 0)
    p.connect(load, 0, which, 1)
    pending = p.obj("i", (x + 120, y + 150))
    p.connect(flip, 0, pending, 1)
    y += 190

    ready = p.msg("1", (x + 260, y + 40))
    grooves = []
    for k, name in enumerate(buffers):
        buf = p.obj(f"buffer~ {name}", (x + 130 * k, y))
        p.connect(which, k, buf)
        p.connect(buf, 1, ready)  # the right outlet bangs when the file is read
        grooves.append(p.obj(f"groove~ {name} 2 @loop 1", (x + 130 * k, y + 120)))
    y += 40

    # A bar clock locked to the transport: metro with a note-value interval, quantised to 1n.
    bars = p.obj("metro 1n @quantize 1n @active 1", (x, y))
    armed = p.obj("gate 1", (x, y + 30))
    p.connect(ready, 0, armed, 0)
    p.connect(bars, 0, armed, 1)
    switch = p.obj("t b b b", (x, y + 60))
    p.connect(armed, 0, switch)
    disarm = p.msg("0", (x + 260, y + 60))
    p.connect(switch, 2, disarm)
    p.connect(disarm, 0, armed, 0)
    restart = p.msg("0", (x + 130, y + 60))
    p.connect(switch, 1, restart)
    p.connect(switch, 0, pending)
    speed = p.obj("sig~ 1", (x + 200, y + 60))
    for groove in grooves:
        p.connect(restart, 0, groove)
        p.connect(speed, 0, groove)
    y += 120

    left = p.obj("selector~ 2", (x, y))
    right = p.obj("selector~ 2", (x + 130, y))
    p.connect(pending, 0, left, 0)
    p.connect(pending, 0, right, 0)
    for k, groove in enumerate(grooves):
        p.connect(groove, 0, left, k + 1)
        p.connect(groove, 1, right, k + 1)
    p.connect(left, 0, outputs[0], 0)
    p.connect(right, 0, outputs[1], 1)


def control_patch() -> dict[str, Any]:
    p = Patcher()
    start = p.obj("loadbang", (20.0, 20.0))
    send = p.obj(f"udpsend {HOST} {OSC_PORT}", (600.0, 20.0))
    receive = p.obj(f"udpreceive {REPLY_PORT}", (600.0, 60.0))
    _control(p, _Ports(send, receive, (start, 0)), 20.0, live=False, present=[])
    return p.to_dict()


def player_patch() -> dict[str, Any]:
    p = Patcher()
    start = p.obj("loadbang", (20.0, 20.0))
    send = p.obj(f"udpsend {HOST} {OSC_PORT}", (20.0, 700.0))
    receive = p.obj(f"udpreceive {PLAYER_PORT}", (450.0, 20.0))
    sub = p.msg(f"{_incoming('/rb/subscribe')} {PLAYER_PORT}", (20.0, 660.0))
    p.connect(start, 0, sub)
    p.connect(sub, 0, send)
    transport = p.obj("transport", (300.0, 660.0))
    run = p.add("toggle", (300.0, 620.0), width=24.0, height=24.0)
    p.comment("run the transport (clips switch on its bar lines)", (330.0, 620.0), width=300.0)
    p.connect(run, 0, transport)
    p.msg("; dsp start", (600.0, 620.0))
    p.comment("<- click to turn audio on", (680.0, 620.0), width=160.0)
    dac = p.obj("dac~", (450.0, 700.0))
    _player(p, _Ports(send, receive, (start, 0)), 450.0, ("rbA", "rbB"), (dac, dac))
    return p.to_dict()


def device_patch() -> dict[str, Any]:
    """The Max for Live audio effect: panel + player + Live's tempo to /rb/bpm."""
    present: list[tuple[str, float, float]] = []
    p = Patcher(openinpresentation=1, devicewidth=600.0)
    start = p.obj("live.thisdevice", (20.0, 20.0))
    send = p.obj(f"udpsend {HOST} {OSC_PORT}", (600.0, 20.0))
    receive = p.obj(f"udpreceive {REPLY_PORT}", (600.0, 60.0))
    ports = _Ports(send, receive, (start, 0))
    _control(p, ports, 20.0, live=True, present=present)

    # Live's tempo: poll the transport twice a second, send only changes.
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
    lab = p.comment("Live tempo", (x + 130, 110.0), width=80.0)
    present.extend([(lab, 450.0, 5.0), (tempo, 520.0, 5.0)])

    # Audio: the track's input passes through; the player adds the loop on top.
    into = p.obj("plugin~", (x, 700.0))
    out = p.obj("plugout~", (x, 760.0))
    p.connect(into, 0, out, 0)
    p.connect(into, 1, out, 1)
    _player(p, ports, x, ("---rbA", "---rbB"), (out, out))

    _present(p, present)
    return p.to_dict()


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
