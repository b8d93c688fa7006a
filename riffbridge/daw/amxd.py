"""The .amxd container of a Max for Live device: a chunked binary wrapper around patcher JSON.

Layout (documented by the community parsers, e.g. aklaswad's AMXD notes and Ableton's
maxdevtools/maxdiff): a sequence of chunks, each a 4-byte ASCII tag and a little-endian uint32
length of the payload that follows:

    b"ampf" <4> b"aaaa"      device type: aaaa audio effect, iiii instrument, mmmm MIDI effect
    b"meta" <4> 0x00000000   metadata (empty)
    b"ptch" <n> JSON + b"\\n\\x00"   the patcher, UTF-8, NUL-terminated
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from riffbridge.errors import ConfigError

DEVICE_TYPES = {"audio": b"aaaa", "instrument": b"iiii", "midi": b"mmmm"}


def _chunk(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack("<I", len(payload)) + payload


def pack_amxd(patcher_json: str, device_type: str = "audio") -> bytes:
    """The bytes of a .amxd file holding ``patcher_json``."""
    if device_type not in DEVICE_TYPES:
        raise ConfigError(f"device type must be one of {sorted(DEVICE_TYPES)}, got {device_type!r}")
    body = patcher_json.encode("utf-8")
    if not body.endswith(b"\n"):
        body += b"\n"
    return (
        _chunk(b"ampf", DEVICE_TYPES[device_type])
        + _chunk(b"meta", b"\x00\x00\x00\x00")
        + _chunk(b"ptch", body + b"\x00")
    )


@dataclass(frozen=True)
class Amxd:
    device_type: bytes
    meta: bytes
    patcher_json: str


def unpack_amxd(data: bytes) -> Amxd:
    """Parse a .amxd file; every declared length must match the bytes that follow it."""
    chunks: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        if pos + 8 > len(data):
            raise ConfigError(f"truncated chunk header at byte {pos}")
        tag = data[pos:pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4:pos + 8])
        if pos + 8 + size > len(data):
            raise ConfigError(f"chunk {tag!r} declares {size} bytes, only "
                              f"{len(data) - pos - 8} follow")
        chunks[tag] = data[pos + 8:pos + 8 + size]
        pos += 8 + size
    if list(chunks)[:1] != [b"ampf"] or set(chunks) != {b"ampf", b"meta", b"ptch"}:
        raise ConfigError(f"not an amxd file: chunks {list(chunks)}")
    body = chunks[b"ptch"]
    if not body.endswith(b"\x00"):
        raise ConfigError("ptch chunk is not NUL-terminated")
    return Amxd(chunks[b"ampf"], chunks[b"meta"], body.rstrip(b"\x00").decode("utf-8"))
