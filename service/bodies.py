"""Request bodies: read under the size limit, and decoded once, at the edge.

Each body type has one decoder, built once (a module-level :class:`VendorBody`
or :class:`NativeBody`). A body is decoded in one pass by msgspec into its
type, every property value left as its JSON text (``msgspec.Raw``), which
goes to the store as it came: compacted (``msgspec.json.format(indent=-1)``
drops the white space between tokens and keeps every number and string byte
for byte), never decoded into Python objects and encoded again. The nesting
limit is checked on the raw text too (:func:`too_deep`: two byte counts, and
only past them a scan with the strings cut out).

What the one pass does not check is checked on the bytes, in C, before a
body is taken: UTF-8 (msgspec does not look inside the raw values), and
numbers too large for a double (``1e400``), which the faces always refused
or wrote as null. A value with a backslash in it (an escape: ``\\u00e9`` is
``é``, ``\\/`` is ``/``) is the one kind that is decoded and encoded again,
so that the object keys a merge compares (lua/lib.lua, byte for byte) are
written one way whoever sent them.

Errors keep the words each face always used: when a body is refused, it is
read again the way that face read it before (only then), so the message is
the one its clients have seen:

- :class:`VendorBody` (LivePerson v1 and v2, Emporix, Genesys): orjson's words
  for malformed JSON, the depth limit on the whole body, then the face's own
  checks, then msgspec's words for a value of the wrong type;
- :class:`NativeBody` (the native API): msgspec's words, the depth limit on
  each property value (with the levels of the body around it).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec
import orjson
from starlette.requests import ClientDisconnect, Request

from .body_timeout import BodyDeadlines
from .web import ApiError

T = TypeVar("T")

WHITESPACE = re.compile(rb"[ \t\r\n]")
STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# a number that is infinite as a double: a 3-digit exponent (then orjson decides) or 309 digits
HUGE_NUMBER = re.compile(rb"[eE][+-]?[0-9]{3}|[0-9]{309}")
SQUARE = bytes.maketrans(b"{}", b"[]")
NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
REQUIRED = "a JSON body is required"
# the server closes the connection after a 408: the rest of the body would be read as the next request
CLOSE = {"Connection": "close"}


async def read(request: Request, limit: int, deadlines: BodyDeadlines) -> bytes:
    """The request's body; 413 over ``limit`` bytes (by its Content-Length
    before reading, or as it arrives), 408 when it has not all come within
    the body timeout of ``deadlines`` (service/body_timeout.py)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid Content-Length")
        if int(declared) > limit:
            raise ApiError(413, f"request body over the limit of {limit} bytes")
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    task = deadlines.start()
    try:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientDisconnect()
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except asyncio.CancelledError:
        if task is not None and deadlines.timed_out(task):
            raise ApiError(408, f"the request body did not arrive within {deadlines.timeout_s:g} s", CLOSE) from None
        raise
    finally:
        if task is not None:
            deadlines.done(task)


def must_be_object(value: Any) -> None:
    """The check of a body that must be a JSON object (VendorBody's ``check``)."""
    if not isinstance(value, dict):
        raise ApiError(400, "the body must be a JSON object")


def blank(body: bytes) -> bool:
    return not body or body.isspace()


def compact(body: bytes) -> bytes:
    """The JSON text without white space between its tokens (DecodeError when it is not JSON)."""
    return msgspec.json.format(body, indent=-1) if WHITESPACE.search(body) else body


def too_deep(json: bytes, limit: int) -> bool:
    """Whether valid JSON text nests deeper than ``limit`` levels: each array
    or object is one level (``[[1]]`` is two, a scalar none)."""
    if json.count(b"[") + json.count(b"{") <= limit:  # brackets in strings only count too many
        return False
    skeleton = STRING.sub(b"", json).translate(SQUARE, NOT_BRACKETS)
    for _ in range(max(limit, 0)):  # each round takes away the innermost level
        if not skeleton:
            return False
        skeleton = skeleton.replace(b"[]", b"")
    return bool(skeleton)


def nested(limit: int) -> ApiError:
    return ApiError(400, f"JSON nested deeper than {limit} levels")


def within_depth(value: Any, limit: int) -> bool:
    """:func:`too_deep` of a decoded value (for the error path only)."""
    if isinstance(value, dict):
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return True
    if limit < 1:
        return False
    return all(within_depth(v, limit - 1) for v in children if isinstance(v, dict | list))


class Body(Generic[T]):
    """The decoder of one body type; :meth:`decode` gives the body as ``type_``."""

    def __init__(self, type_: Any) -> None:
        self.type = type_
        self.decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(type_)

    def decode(self, body: bytes, limit: int) -> T:
        """``body`` as the type; ApiError 400 when it is not, or nests deeper than ``limit``."""
        if blank(body):
            raise ApiError(400, REQUIRED)
        try:
            text = compact(body)
            value = self.decoder.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise self.refused(body, limit, exc) from None
        if not text.isascii():
            try:
                text.decode()
            except UnicodeDecodeError:
                raise self.refused(body, limit, None) from None
        self.check_text(body, text, limit)
        return value

    def check_text(self, body: bytes, text: bytes, limit: int) -> None:
        """What the one pass does not check, on the compact text."""

    def refused(self, body: bytes, limit: int, exc: Exception | None) -> ApiError:
        """Why ``body`` is refused (``exc``: what msgspec said, if it did)."""
        raise NotImplementedError

    def canonical(self, value: bytes) -> bytes:
        """A value decoded and encoded again, as the face always wrote values."""
        raise NotImplementedError

    def value(self, raw: msgspec.Raw) -> bytes:
        """A property value of a decoded body, as the compact JSON text the store keeps."""
        text = bytes(raw)
        return self.canonical(text) if b"\\" in text else text


class VendorBody(Body[T]):
    """A body of a vendor-compatible face: refused as orjson, the depth walk
    and msgspec.convert refused it before, with the face's ``check`` (given
    the decoded body, after the depth limit) in between."""

    def __init__(self, type_: Any, check: Callable[[Any], None] | None = None) -> None:
        super().__init__(type_)
        self.check = check

    def check_text(self, body: bytes, text: bytes, limit: int) -> None:
        if too_deep(text, limit):
            raise self.refused(body, limit, None)
        if HUGE_NUMBER.search(text):
            try:
                orjson.loads(text)
            except orjson.JSONDecodeError:
                raise self.refused(body, limit, None) from None

    def refused(self, body: bytes, limit: int, exc: Exception | None) -> ApiError:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            return ApiError(400, f"malformed JSON: {error.msg}")
        if not within_depth(value, limit):
            return nested(limit)
        if self.check is not None:
            self.check(value)
        if isinstance(exc, msgspec.ValidationError):
            return ApiError(400, f"invalid body: {exc}")
        return ApiError(400, f"malformed JSON: {exc}")  # what msgspec refused and orjson did not

    def canonical(self, value: bytes) -> bytes:
        return orjson.dumps(orjson.loads(value))


class NativeBody(Body[T]):
    """A body of the native API: refused in msgspec's words; the depth limit
    is per property value (:meth:`nested_value`)."""

    def check_text(self, body: bytes, text: bytes, limit: int) -> None:
        if HUGE_NUMBER.search(text):
            try:  # msgspec refuses a number out of a double's range ("Number out of range")
                msgspec.json.decode(text)
            except msgspec.ValidationError as exc:
                raise ApiError(400, f"invalid body: {exc}") from None

    def refused(self, body: bytes, limit: int, exc: Exception | None) -> ApiError:
        try:  # the body as it came (not compacted), its values parsed (not skipped as raw text):
            self.decoder.decode(body)  # msgspec's words and byte positions, as the face always said them
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as error:
            exc = error
        if exc is None or type(exc) is msgspec.DecodeError:  # malformed (a ValidationError is a DecodeError too)
            try:
                msgspec.json.decode(body)
            except (msgspec.DecodeError, RecursionError) as error:
                exc = error
        if isinstance(exc, RecursionError):
            return nested(limit)
        if isinstance(exc, msgspec.ValidationError):
            return ApiError(400, f"invalid body: {exc}")
        return ApiError(400, f"malformed JSON: {exc}")

    def canonical(self, value: bytes) -> bytes:
        return msgspec.json.encode(msgspec.json.decode(value))

    def nested_value(self, raw: msgspec.Raw, limit: int, outer: int) -> bytes:
        """:meth:`value`, refused when it nests deeper than ``limit`` with the
        ``outer`` levels of the body around it (a session body's object and
        its ``properties``)."""
        if too_deep(bytes(raw), limit - outer):
            raise nested(limit)
        return self.value(raw)
