"""Control surface: OSC and MIDI in, state commands out. Knows nothing of torch or audio."""
