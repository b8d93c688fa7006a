// riffbridge player logic for Max (the Live device and the stand-alone player), the same wiring
// as the Pure Data player (riffbridge-player.pd) and the simulation in tests/player_sim.py:
// a clip loads only into the slot that is not sounding, waits there, and switches on the
// quantum (beat, bar or its loop) of the transport with a ramped crossfade; stopping the
// transport fades out and silences; a relative or missing path is refused where it is seen.
//
// Keep this file next to riffbridge.amxd / riffbridge-player.maxpat (Max finds it there).
// In:  clip PATH ALPHA BPM BARS | loaded SLOT | on each quarter note of
//      [metro 4n @active 1 @quantize 4n], [transport]'s outlets right to left: timesig N D,
//      beat B, then bar N (1-based; the bar message is the tick) | run 0/1 (the transport's
//      state) | quantum beat|bar|loop | xfade SECONDS
// Out: 0/1 buffer~ A/B (replace PATH), 2/3 groove~ A/B (position in ms), 4/5 line~ A/B (gain
//      ramps), 6 display (set ...), 7 tempo (for the stand-alone player's transport)
autowatch = 0;
inlets = 1;
outlets = 8;

var playing = -1;    // the slot that sounds, -1 none
var pending = false; // the idle slot holds a clip that waits for the quantum
var want = null;     // [path, bpm, bars] not yet loaded (a crossfade is running)
var fadingUntil = 0; // Date.now() in ms until the last crossfade ends
var bpmOf = [120, 120], barsOf = [2, 2], nameOf = ["", ""];
var quantum = "bar", xfadeMs = 50, running = false, resume = false;

function idle() { return playing === 0 ? 1 : 0; }

function show(text) { outlet(6, "set", text); }

function refusal(path) {
    var p = String(path);
    if (!(p.charAt(0) === "/" || /^[A-Za-z]:[\/\\]/.test(p))) {
        return "refused /rb/clip: relative path " + p + " (riffbridge sends absolute paths: update it)";
    }
    var f = new File(p, "read");
    var ok = f.isopen;
    f.close();
    return ok ? "" : "refused /rb/clip: no such file " + p;
}

function clip(path, alpha, bpm, bars) {
    var problem = refusal(path);
    if (problem) { post(problem + "\n"); show(problem); return; }
    want = [String(path), bpm, bars];
    tryload();
}

function tryload() {
    if (want === null || Date.now() < fadingUntil) { return; } // the idle slot still sounds
    var slot = idle();
    pending = false;
    bpmOf[slot] = want[1]; barsOf[slot] = want[2]; nameOf[slot] = want[0];
    outlet(slot, "replace", want[0]);
    want = null;
}

function loaded(slot) { // buffer~'s right outlet: the file is read
    if (slot === idle()) { pending = true; show("next: " + nameOf[slot]); }
}

function quantumBeats(bpb) {
    if (quantum === "beat") { return 1; }
    if (quantum === "loop") { return bpb * barsOf[idle()]; }
    return bpb;
}

var beatNow = 1, beatsPerBar = 4;
function timesig(n, d) { beatsPerBar = Math.max(1, n); }
function beat(b) { beatNow = b; }
function bar(n) { tick(n, beatNow, beatsPerBar); }

function tick(bars, beats, bpb) {
    var at = (bars - 1) * bpb + (beats - 1);
    if (!running) { run(1); }
    if (resume) { resume = false; outlet(4 + playing, 0, 0, 1, xfadeMs); }
    if (pending && at % quantumBeats(bpb) === 0) {
        var next = idle(), old = playing;
        outlet(4 + next, 0, 0, 1, xfadeMs);
        if (old >= 0) { outlet(4 + old, 0, xfadeMs); }
        playing = next; pending = false;
        fadingUntil = Date.now() + xfadeMs;
        var t = new Task(function () { tryload(); }, this);
        t.schedule(xfadeMs + 1);
        outlet(7, bpmOf[next]);
        show("sounding: " + nameOf[next]);
    }
    if (playing >= 0) { // lock the sounding loop to the transport: beat b plays b mod its loop
        var loopBeats = bpb * barsOf[playing];
        outlet(2 + playing, (at % loopBeats) * 60000 / bpmOf[playing]);
    }
}

function run(on) {
    if (on && !running) { running = true; resume = playing >= 0; }
    else if (!on && running) {
        running = false;
        outlet(4, 0, xfadeMs); outlet(5, 0, xfadeMs);
    }
}

function msg_int(v) { run(v); }

function anything() {
    var a = arrayfromargs(arguments);
    if (messagename === "quantum") { quantum = String(a[0]); }
    else if (messagename === "xfade") { xfadeMs = Math.max(0, a[0] * 1000); }
}
