"""Data files shipped with riffbridge (the default MIDI map)."""
