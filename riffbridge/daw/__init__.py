"""The DAW side: Max patches and the Max for Live device, built from the OSC table."""
