"""OSC 1.0 packets <-> (address, arguments): riffbridge's own bounded reader, and the writer.

Every datagram from the network is read here before anything else looks at it. The reader is
strict where python-osc is lenient (it zero-fills a truncated float, skips unknown type tags,
and loops forever on a bundle element of negative size), and it bounds what one packet may
cost: its size, its elements (messages and bundles), the nesting of its bundles and arrays, and
the arguments of a message. It reads each byte at most a few times (``struct.unpack_from`` and
``bytes.index``, no slicing of the rest), so a packet's cost is O(its size). Anything it cannot
read raises ``ControlError`` with a short reason; it never logs (the server rate-limits that).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from riffbridge.errors import ControlError

MAX_PACKET_BYTES = 16384  # two 500-character prompts in 4-byte UTF-8 fit several times over
MAX_ELEMENTS = 64  # messages and bundles in one packet, all levels together
MAX_DEPTH = 4  # bundles inside bundles
MAX_ARGUMENTS = 64  # type tags of one message (array brackets included)
BUNDLE_TAG = b"#bundle\x00"
KNOWN_TYPE_TAGS = "ifsbhdtTFNrm[]"  # what riffbridge reads; others are refused

_INT = struct.Struct(">i")
_UINT = struct.Struct(">I")
_INT64 = struct.Struct(">q")
_UINT64 = struct.Struct(">Q")
_FLOAT = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")
_MIDI = struct.Struct(">4B")


@dataclass(frozen=True)
class Message:
    """One OSC message as read: its address and its arguments."""

    address: str
    args: tuple[Any, ...] = ()

    @property
    def params(self) -> list[Any]:  # python-osc's name, which the tests and tools use
        return list(self.args)


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (4 - len(data) % 4)  # at least one NUL, to a multiple of 4


def encode(address: str, args: tuple[Any, ...] = ()) -> bytes:
    """One OSC message: str -> s, int -> i (h beyond 32 bits), float -> f, bool -> T/F,
    bytes -> b, None -> N (what python-osc's builder guesses, without its re-parse)."""
    tags = [","]
    data: list[bytes] = []
    for arg in args:
        if isinstance(arg, str):
            tags.append("s")
            data.append(_padded(arg.encode("utf-8")))
        elif isinstance(arg, bool):
            tags.append("T" if arg else "F")
        elif isinstance(arg, int):
            small = -(2**31) <= arg < 2**31
            tags.append("i" if small else "h")
            data.append((_INT if small else _INT64).pack(arg))
        elif isinstance(arg, float):
            tags.append("f")
            try:
                data.append(_FLOAT.pack(arg))
            except OverflowError:  # beyond float32: its infinity
                data.append(_FLOAT.pack(math.copysign(math.inf, arg)))
        elif isinstance(arg, (bytes, bytearray)):
            tags.append("b")
            data.append(_UINT.pack(len(arg)) + bytes(arg) + b"\0" * (-len(arg) % 4))
        elif arg is None:
            tags.append("N")
        else:
            raise TypeError(f"cannot send {type(arg).__name__} {arg!r} over OSC")
    return _padded(address.encode("utf-8")) + _padded("".join(tags).encode()) + b"".join(data)


def _show(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:60] + "...")


class _Reader:
    """Reads one datagram; ``fail`` raises with the packet's size in the reason."""

    def __init__(self, dgram: bytes) -> None:
        self.dgram = dgram
        self.messages: list[Message] = []
        self.elements = 0

    def count(self) -> None:
        self.elements += 1
        if self.elements > MAX_ELEMENTS:
            raise self.fail(f"more than {MAX_ELEMENTS} messages and bundles in one packet; "
                            f"send fewer per bundle")

    def fail(self, reason: str) -> ControlError:
        return ControlError(f"malformed OSC packet ({len(self.dgram)} bytes): {reason}")

    def string(self, start: int, end: int, what: str) -> tuple[str, int]:
        try:
            nul = self.dgram.index(0, start, end)
        except ValueError:
            raise self.fail(f"{what} at byte {start} has no NUL terminator before byte "
                            f"{end}") from None
        after = nul + 4 - (nul % 4)  # 1 to 4 NULs make the length a multiple of 4
        if after > end:
            raise self.fail(f"{what} at byte {start} is not padded to 4 bytes")
        try:
            return self.dgram[start:nul].decode("utf-8"), after
        except UnicodeDecodeError:
            raise self.fail(f"{what} at byte {start} is not valid UTF-8") from None

    def fixed(self, fmt: struct.Struct, index: int, end: int, tag: str,
              address: str) -> tuple[Any, int]:
        if index + fmt.size > end:
            raise self.fail(f"{_show(address)}: type tag {tag!r} needs {fmt.size} bytes at byte "
                            f"{index}, the message ends at byte {end}; the data does not "
                            f"match the type tags")
        return fmt.unpack_from(self.dgram, index)[0], index + fmt.size

    def message(self, start: int, end: int) -> None:
        self.count()
        address, index = self.string(start, end, "the address")
        if not address.startswith("/"):
            raise self.fail(f"address {_show(address)} does not start with '/'")
        args: list[Any] = []
        if index < end:  # no type tag string at all: an old-style message without arguments
            tags, index = self.string(index, end, "the type tags")
            if not tags.startswith(","):
                raise self.fail(f"{_show(address)}: type tags {_show(tags)} do not start "
                                f"with ','")
            tags = tags[1:]
            if len(tags) > MAX_ARGUMENTS:
                raise self.fail(f"{_show(address)}: {len(tags)} type tags, at most "
                                f"{MAX_ARGUMENTS}")
            unknown = set(tags) - set(KNOWN_TYPE_TAGS)
            if unknown:
                raise ControlError(f"{_show(address)}: unsupported OSC type tag(s) "
                                   f"{''.join(sorted(unknown))!r}; send i, f, s (or d, h)")
            index = self.arguments(address, tags, index, end, args)
            if index != end:
                raise self.fail(f"{_show(address)}: {end - index} byte(s) after the last "
                                f"argument; the data does not match the type tags")
        self.messages.append(Message(address, tuple(args)))

    def arguments(self, address: str, tags: str, index: int, end: int,
                  args: list[Any]) -> int:
        stack = [args]
        for tag in tags:
            value: Any
            if tag == "i":
                value, index = self.fixed(_INT, index, end, tag, address)
            elif tag == "f":
                value, index = self.fixed(_FLOAT, index, end, tag, address)
            elif tag == "h":
                value, index = self.fixed(_INT64, index, end, tag, address)
            elif tag == "d":
                value, index = self.fixed(_DOUBLE, index, end, tag, address)
            elif tag == "t":
                value, index = self.fixed(_UINT64, index, end, tag, address)
            elif tag == "s":
                value, index = self.string(index, end, f"{_show(address)}'s string argument")
            elif tag == "b":
                size, index = self.fixed(_UINT, index, end, tag, address)
                padded = size + (-size % 4)
                if index + padded > end:
                    raise self.fail(f"{_show(address)}: a blob of {size} bytes at byte "
                                    f"{index} runs past the message's end at byte {end}")
                value, index = self.dgram[index:index + size], index + padded
            elif tag == "r":
                value, index = self.fixed(_UINT, index, end, tag, address)
            elif tag == "m":
                if index + 4 > end:
                    raise self.fail(f"{_show(address)}: type tag 'm' needs 4 bytes at byte "
                                    f"{index}, the message ends at byte {end}")
                value, index = _MIDI.unpack_from(self.dgram, index), index + 4
            elif tag in "TFN":
                value = {"T": True, "F": False, "N": None}[tag]
            elif tag == "[":
                if len(stack) > MAX_DEPTH:
                    raise self.fail(f"{_show(address)}: arrays nested deeper than {MAX_DEPTH}")
                inner: list[Any] = []
                stack[-1].append(inner)
                stack.append(inner)
                continue
            else:  # "]"
                if len(stack) < 2:
                    raise self.fail(f"{_show(address)}: ']' without '[' in the type tags")
                stack.pop()
                continue
            stack[-1].append(value)
        if len(stack) != 1:
            raise self.fail(f"{_show(address)}: '[' without ']' in the type tags")
        return index

    def bundle(self, start: int, end: int, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self.fail(f"bundles nested deeper than {MAX_DEPTH}")
        self.count()
        first = start + len(BUNDLE_TAG) + 8  # after the time tag: riffbridge applies at once
        if first > end:
            raise self.fail(f"bundle at byte {start} is shorter than its 16-byte header")
        # Check every element's size, and their count, before reading any of them.
        elements: list[tuple[int, int]] = []
        index = first
        while index < end:
            if index + 4 > end:
                raise self.fail(f"bundle element size at byte {index} is cut off")
            size = _INT.unpack_from(self.dgram, index)[0]
            index += 4
            if size <= 0 or size % 4 or index + size > end:
                raise self.fail(f"bundle element at byte {index - 4} has size {size}; it "
                                f"must be a positive multiple of 4 within the "
                                f"{end - index} bytes left")
            if self.elements + len(elements) >= MAX_ELEMENTS:
                raise self.fail(f"more than {MAX_ELEMENTS} messages and bundles in one "
                                f"packet; send fewer per bundle")
            elements.append((index, index + size))
            index += size
        for element_start, element_end in elements:
            self.element(element_start, element_end, depth + 1)

    def element(self, start: int, end: int, depth: int) -> None:
        if self.dgram.startswith(BUNDLE_TAG, start, end):
            self.bundle(start, end, depth)
        elif self.dgram.startswith(b"/", start, end):
            self.message(start, end)
        else:
            raise self.fail(f"bundle element at byte {start} is neither a message ('/') nor "
                            f"a bundle ('#bundle')")


def decode(dgram: bytes) -> tuple[list[Message], bool]:
    """The messages of a datagram in packet order, and whether it was a bundle.
    Raises ``ControlError`` for a packet that is malformed or over the bounds."""
    if len(dgram) > MAX_PACKET_BYTES:
        raise ControlError(f"packet of {len(dgram)} bytes is over the {MAX_PACKET_BYTES}-byte "
                           f"limit; send smaller messages")
    if len(dgram) % 4:  # OSC pads everything to 4 bytes
        raise ControlError(f"malformed OSC packet: {len(dgram)} bytes is not a multiple of 4")
    reader = _Reader(dgram)
    if dgram.startswith(BUNDLE_TAG):
        reader.bundle(0, len(dgram), 0)
        return reader.messages, True
    if dgram.startswith(b"/"):
        reader.message(0, len(dgram))
        return reader.messages, False
    raise ControlError(f"not an OSC packet ({len(dgram)} bytes): it must start with '/' or "
                       f"'#bundle'")
