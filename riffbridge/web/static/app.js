// riffbridge's page: plain JS, no build step, no library. It speaks the OSC grammar in JSON
// over one WebSocket ({"address": "/rb/alpha", "args": [0.5]}) and draws what the server sends.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const $ = (id) => document.getElementById(id);
let ws = null;
let table = [];          // the live params, from the server's hello
let grid = 8;
let xyGrid = 4;           // XY lattice steps per axis
let cuePoint = null;     // the point this page last cued: [x, y] on the surface, or [alpha]
let state = {};
let playing = false;
let status = null;       // the latest status, and when it came (for the playhead)
let statusAt = 0;
const controls = {};
let ownErrors = [];      // answers to this page's own messages, newest first
let engineErrors = [];   // the engine's and the other transports' errors, from the status     // param name -> {input, number}
const pendingSend = new Map();  // address -> args, sent on the next animation frame

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const query = token ? "?token=" + encodeURIComponent(token) : "";
  ws = new WebSocket(scheme + location.host + "/ws" + query);
  ws.onopen = () => { $("conn").className = "dot on"; };
  ws.onclose = () => { $("conn").className = "dot off"; setTimeout(connect, 1000); };
  ws.onmessage = (e) => handle(JSON.parse(e.data));
}

function send(address, args) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ address, args }));
}

// A dragged control sends at most once a frame: the latest value wins.
function sendSoon(address, args) {
  if (pendingSend.size === 0) requestAnimationFrame(flushSends);
  pendingSend.set(address, args);
}
function flushSends() {
  for (const [address, args] of pendingSend) send(address, args);
  pendingSend.clear();
}

function handle(msg) {
  if (msg.type === "hello") { table = msg.params; grid = msg.grid; xyGrid = msg.xy_grid || 4; buildControls(); }
  else if (msg.type === "state") { state = msg.state; playing = msg.playing; showState(); }
  else if (msg.type === "status") { status = msg; statusAt = performance.now(); showStatus(); }
  else if (msg.type === "event" && msg.kind === "cue") { setText("cuelabel", "cue: " + msg.label); }
  else if (msg.type === "event" && msg.kind === "error") { ownErrors.unshift(msg); ownErrors.length = Math.min(ownErrors.length, 8); showErrors(); showState(); }
}

function buildControls() {
  const box = $("params");
  box.textContent = "";
  for (const p of table) {
    const label = document.createElement("label");
    label.textContent = p.name.replace(/_/g, " ") + (p.unit ? " (" + p.unit + ")" : "");
    label.title = p.help;
    box.appendChild(label);
    let input, number = null;
    if (p.choices.length) {
      input = document.createElement("select");
      for (const c of p.choices) { const o = document.createElement("option"); o.value = o.textContent = c; input.appendChild(o); }
      input.addEventListener("change", () => send(p.address, [input.value]));
    } else if (p.kind === "str") {
      input = document.createElement("input");
      input.type = "text";
      input.maxLength = 500;
      input.addEventListener("change", () => send(p.address, [input.value]));
    } else {
      input = document.createElement("input");
      input.type = "range";
      input.min = p.min; input.max = p.max;
      input.step = p.kind === "int" ? 1 : (p.max - p.min) / 1000;
      number = document.createElement("input");
      number.type = "number";
      number.min = p.min; number.max = p.max; number.step = p.kind === "int" ? 1 : "any";
      const value = (el) => p.kind === "int" ? parseInt(el.value, 10) : parseFloat(el.value);
      input.addEventListener("input", () => { number.value = input.value; sendSoon(p.address, [value(input)]); });
      input.addEventListener("pointerdown", () => { input.dataset.dragging = "1"; });
      input.addEventListener("pointerup", () => { delete input.dataset.dragging; });
      number.addEventListener("change", () => { send(p.address, [value(number)]); number.blur(); });
    }
    input.id = "ctl-" + p.name;
    input.title = p.help;
    box.appendChild(input);
    if (number) { number.id = "num-" + p.name; box.appendChild(number); }
    else if (input.type !== "text") box.appendChild(document.createElement("span"));
    controls[p.name] = { input, number };
  }
  showState();
}

function busy(el) { return el === document.activeElement && (el.type !== "range" || el.dataset.dragging); }

function showState() {
  for (const [name, c] of Object.entries(controls)) {
    if (!(name in state)) continue;
    const v = state[name];
    if (!busy(c.input)) c.input.value = v;
    if (c.number && !busy(c.number)) c.number.value = typeof v === "number" ? +v.toFixed(4) : v;
  }
  $("play").className = playing ? "on" : "";
  $("stop").className = playing ? "" : "on";
  $("tempo").textContent = (state.bpm || 0).toFixed(2) + " BPM \u00b7 " + state.clock + " clock \u00b7 switch on the " + state.quantum;
  drawMap();
}

function showImage(img, part) {
  const serial = part && part.image;
  if (serial && img.dataset.serial !== String(serial)) {
    img.src = "/spectrogram/" + serial + ".png";
    img.dataset.serial = String(serial);
  }
}

// Only what changed touches the page: a status comes ten times a second.
function setText(id, text) { const el = $(id); if (el.textContent !== text) el.textContent = text; }
let mapKey = "", errorsKey = "";

function showStatus() {
  const s = status;
  setText("sounding", s.loop ? s.loop.label : (s.sounding || "silence"));
  showImage($("specimg"), s.loop);
  if (s.next) {
    const bars = s.rate ? " at bar " + (Math.floor(beatAt(s.next.at) / (state.beats_per_bar || 4)) + 1) : "";
    setText("nextlabel", s.next.label + bars);
    showImage($("nextimg"), s.next);
    $("nextimg").style.display = "block";
  } else {
    setText("nextlabel", "nothing cued");
    $("nextimg").style.display = "none";
  }
  setText("worker", (s.worker || "-") + (s.rendering != null ? " alpha " + s.rendering.toFixed(3) + " " + Math.round(s.progress * 100) + "%" : ""));
  setText("queued", String(s.queued));
  setText("cached", String(s.cached));
  setText("underruns", String(s.underruns));
  setText("lastrender", s.last_render_s ? s.last_render_s.toFixed(2) + " s" : "-");
  setText("queue", s.wanted && s.wanted.length ? "render queue: " + s.wanted.map((a) => a.toFixed(3)).join(", ") : "render queue: empty");
  const errors = JSON.stringify(s.errors || []);
  if (errors !== errorsKey) { errorsKey = errors; engineErrors = (s.errors || []).slice().reverse(); showErrors(); }
  drawMap();
}

function showErrors() {
  const list = $("errors");
  list.textContent = "";
  for (const e of ownErrors.concat(engineErrors).slice(0, 10)) {
    const li = document.createElement("li");
    li.textContent = e.source + ": " + e.message;
    list.appendChild(li);
  }
}

function frameNow() {
  if (!status || status.frame == null) return 0;
  return status.frame + (performance.now() - statusAt) / 1000 * status.rate;
}
function beatAt(frame) {
  const s = status;
  return s.anchor_beat + (frame - s.anchor_frame) / (s.rate * 60 / s.bpm);
}

// The playhead is a line moved by a transform (the compositor's work, no repaint), at most every
// other display frame and only when it has moved by a pixel: the page shares its machine with
// the engine.
let lastDraw = 0, lastX = -1, lastCount = "";
function drawPlayhead() {
  const head = $("playhead");
  const line = head.firstElementChild;
  if (!(status && status.loop && status.rate)) {
    if (lastX !== -1) { line.style.display = "none"; lastX = -1; }
    return;
  }
  const f = frameNow();
  const loop = status.loop;
  const phase = (((f - loop.origin) % loop.frames) + loop.frames) % loop.frames / loop.frames;
  const x = Math.round(phase * head.clientWidth);
  if (x !== lastX) {
    if (lastX === -1) line.style.display = "block";
    line.style.transform = "translateX(" + x + "px)";
    lastX = x;
  }
  head.dataset.phase = phase.toFixed(4);
  const bpb = state.beats_per_bar || 4;
  const beat = beatAt(f);
  const bar = Math.floor(beat / bpb);
  const count = "bar " + (bar + 1) + " . " + (Math.floor(beat - bar * bpb) + 1);
  if (count !== lastCount) { $("counter").textContent = count; lastCount = count; }
  $("counter").dataset.beat = beat.toFixed(3);
}

// The XY surface (mix "xy"): corners are slots 1 (0,0), 2 (1,0), 3 (0,1), 4 (1,1); y grows up.
const XY_HEIGHT = 300, LINE_HEIGHT = 120;
function xyFrame(canvas) {
  const pad = 30, size = canvas.height - 2 * pad;
  return { pad, size, left: (canvas.width - size) / 2 };
}
function drawSurface(canvas, s) {
  const g = canvas.getContext("2d");
  const { pad, size, left } = xyFrame(canvas);
  const px = (x) => left + x * size, py = (y) => pad + (1 - y) * size;
  g.clearRect(0, 0, canvas.width, canvas.height);
  g.strokeStyle = "#3a404d"; g.lineWidth = 2; g.strokeRect(px(0), py(1), size, size);
  g.fillStyle = "#8a8f9c"; g.font = "12px system-ui";
  g.fillText("1", px(0) - 14, py(0) + 4); g.fillText("2", px(1) + 6, py(0) + 4);
  g.fillText("3", px(0) - 14, py(1) + 4); g.fillText("4", px(1) + 6, py(1) + 4);
  const key = (p) => p[0].toFixed(4) + "," + p[1].toFixed(4);
  const rendered = new Set((s.rendered_xy || []).map(key));
  const wanted = new Set((s.wanted_xy || []).map(key));
  for (let i = 0; i <= xyGrid; i++) {
    for (let j = 0; j <= xyGrid; j++) {
      const p = [i / xyGrid, j / xyGrid];
      g.beginPath(); g.arc(px(p[0]), py(p[1]), 5, 0, 2 * Math.PI);
      if (rendered.has(key(p))) { g.fillStyle = "#5ad17a"; g.fill(); }
      else { g.strokeStyle = wanted.has(key(p)) ? "#fb8861" : "#3a404d"; g.lineWidth = 2; g.stroke(); }
    }
  }
  if (s.rendering_xy) {
    g.strokeStyle = "#fb8861"; g.lineWidth = 3;
    g.beginPath(); g.arc(px(s.rendering_xy[0]), py(s.rendering_xy[1]), 10, -Math.PI / 2, -Math.PI / 2 + 2 * Math.PI * (s.progress || 0)); g.stroke();
  }
  if (cuePoint && cuePoint.length === 2) {  // the point this page cued: a ring, not the master
    g.strokeStyle = "#61c6fb"; g.lineWidth = 3;
    g.beginPath(); g.arc(px(cuePoint[0]), py(cuePoint[1]), 9, 0, 2 * Math.PI); g.stroke();
  }
  canvas.dataset.cue = cuePoint && cuePoint.length === 2 ? cuePoint[0].toFixed(3) + "," + cuePoint[1].toFixed(3) : "";
  if (typeof state.x === "number" && typeof state.y === "number") {
    g.fillStyle = "#fff";
    g.beginPath(); g.arc(px(state.x), py(state.y), 7, 0, 2 * Math.PI); g.fill();
    g.fillText("x " + state.x.toFixed(3) + "  y " + state.y.toFixed(3), 8, 16);
  }
  canvas.dataset.point = typeof state.x === "number" ? state.x.toFixed(3) + "," + state.y.toFixed(3) : "";
}

function drawMap() {
  const s0 = status || {};
  const xy = state.mix === "xy";
  const key = JSON.stringify([xy, s0.rendered, s0.wanted, s0.rendering, s0.rendered_xy, s0.wanted_xy,
                              s0.rendering_xy, s0.progress, state.alpha, state.x, state.y, grid, cuePoint]);
  if (key === mapKey) return;
  mapKey = key;
  const canvas = $("map");
  canvas.dataset.mode = xy ? "xy" : "alpha";
  const height = xy ? XY_HEIGHT : LINE_HEIGHT;
  if (canvas.height !== height) canvas.height = height;
  $("maphint").textContent = xy ? "the XY surface, corners slots 1-4: click or drag to move, shift-click to cue"
                                : "A (alpha 0) to B (alpha 1): click or drag to move, shift-click to cue";
  if (xy) { drawSurface(canvas, s0); return; }
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 30, y = h / 2;
  const xOf = (a) => pad + a * (w - 2 * pad);
  g.clearRect(0, 0, w, h);
  g.strokeStyle = "#3a404d"; g.lineWidth = 3;
  g.beginPath(); g.moveTo(xOf(0), y); g.lineTo(xOf(1), y); g.stroke();
  g.fillStyle = "#8a8f9c"; g.font = "12px system-ui";
  g.fillText("A", xOf(0) - 4, y + 30); g.fillText("B", xOf(1) - 4, y + 30);
  const s = status || {};
  const rendered = new Set((s.rendered || []).map((a) => a.toFixed(4)));
  const wanted = s.wanted || [];
  for (let i = 0; i <= grid; i++) {
    const a = i / grid;
    g.beginPath(); g.arc(xOf(a), y, 6, 0, 2 * Math.PI);
    if (rendered.has(a.toFixed(4))) { g.fillStyle = "#5ad17a"; g.fill(); }
    else { g.strokeStyle = wanted.some((b) => Math.abs(b - a) < 1e-6) ? "#fb8861" : "#3a404d"; g.lineWidth = 2; g.stroke(); }
  }
  if (s.rendering != null) {
    g.strokeStyle = "#fb8861"; g.lineWidth = 3;
    g.beginPath(); g.arc(xOf(s.rendering), y, 11, -Math.PI / 2, -Math.PI / 2 + 2 * Math.PI * (s.progress || 0)); g.stroke();
  }
  if (typeof state.alpha === "number") {
    g.fillStyle = "#fff";
    g.beginPath(); g.moveTo(xOf(state.alpha), y - 12); g.lineTo(xOf(state.alpha) - 7, y - 24); g.lineTo(xOf(state.alpha) + 7, y - 24); g.fill();
    g.fillText("alpha " + state.alpha.toFixed(3), Math.min(xOf(state.alpha) - 20, w - 80), 14);
  }
}

function mapAlpha(e) {
  const canvas = $("map");
  const r = canvas.getBoundingClientRect();
  const pad = 30 * r.width / canvas.width;
  return Math.min(1, Math.max(0, (e.clientX - r.left - pad) / (r.width - 2 * pad)));
}
function mapXY(e) {
  const canvas = $("map");
  const r = canvas.getBoundingClientRect();
  const scale = r.width / canvas.width;
  const { pad, size, left } = xyFrame(canvas);
  const clamp = (v) => Math.min(1, Math.max(0, v));
  const x = clamp((e.clientX - r.left - left * scale) / (size * scale));
  const y = clamp(1 - (e.clientY - r.top - pad * scale) / (size * scale));
  return [Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000];
}
// A click or drag moves the master; with shift held (or "cue on map" ticked) it cues the point
// on the cue bus instead (/rb/cue/xy, /rb/cue/alpha), and "commit cue" makes it the next loop.
let mapCue = false;
function mapMove(e) {
  if (state.mix === "xy") {
    const p = mapXY(e);
    if (mapCue) { cuePoint = p; sendSoon("/rb/cue/xy", p); drawMap(); } else sendSoon("/rb/xy", p);
  } else {
    const a = mapAlpha(e);
    if (mapCue) { cuePoint = [a]; $("cue").value = a; sendSoon("/rb/cue/alpha", [a]); } else sendSoon("/rb/alpha", [a]);
  }
}
let mapDrag = false;
$("map").addEventListener("pointerdown", (e) => { mapDrag = true; mapCue = e.shiftKey || $("cuemode").checked; mapMove(e); });
$("map").addEventListener("pointermove", (e) => { if (mapDrag) mapMove(e); });
window.addEventListener("pointerup", () => { mapDrag = false; });
$("play").addEventListener("click", () => send("/rb/play", []));
$("stop").addEventListener("click", () => send("/rb/stop", []));
$("render").addEventListener("click", () => send("/rb/render", []));
$("cue").addEventListener("input", () => { cuePoint = [parseFloat($("cue").value)]; sendSoon("/rb/cue/alpha", cuePoint); });
$("commit").addEventListener("click", () => { send("/rb/cue/commit", []); cuePoint = null; setText("cuelabel", "no cue"); drawMap(); });
$("recall").addEventListener("click", () => send("/rb/preset", [$("preset").value]));
$("save").addEventListener("click", () => send("/rb/preset/save", [$("preset").value]));

connect();
setInterval(drawPlayhead, 33);
