"""service/bodies.py: one decode at the edge. The depth limit on raw text agrees
with a walk of the decoded value; compaction keeps every number and string as
sent; a refused body is answered with the words its face always used (the
chain the faces ran before: orjson, a depth walk, msgspec.convert)."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.bodies import NativeBody, VendorBody, compact, must_be_object, too_deep, within_depth
from service.web import ApiError

LIMIT = 64

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(min_value=-2, max_value=8))
def test_the_depth_of_raw_text_is_the_depth_of_the_value(value: Any, limit: int) -> None:
    text = orjson.dumps(value)
    assert too_deep(text, limit) is not within_depth(value, limit)
    spaced = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    assert too_deep(spaced, limit) is not within_depth(value, limit)


def test_brackets_in_strings_do_not_count() -> None:
    text = orjson.dumps({"a": "[" * 100 + "{" * 100, "b": ['"]]]"']})
    assert not too_deep(text, 2) and too_deep(text, 1)


@pytest.mark.parametrize(
    "text",
    [b'{"a": [1, 2 ,{"b" : "c d"}]}', b"[1.50, -0.0, 1e+2, 1E5, 100000000000000000000]", b'"\\u00e9\\/ x"', b" 7 "],
)
def test_compact_drops_the_space_between_tokens_and_nothing_else(text: bytes) -> None:
    compacted = compact(text)
    assert b" " not in compacted.replace(b"c d", b"").replace(b" x", b"")
    assert msgspec.json.decode(compacted) == msgspec.json.decode(text)
    for token in (b"1.50", b"-0.0", b"1e+2", b"1E5", b"100000000000000000000", b"\\u00e9\\/"):
        assert (token in compacted) is (token in text)


def old_vendor_error(body: bytes, type_: Any, check: Any = None) -> str:
    """What the vendor faces answered before: orjson.loads, the depth walk, the check, msgspec.convert."""
    if not body.strip():
        return "a JSON body is required"
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return f"malformed JSON: {exc.msg}"
    if not within_depth(value, LIMIT):
        return f"JSON nested deeper than {LIMIT} levels"
    if check is not None:
        try:
            check(value)
        except ApiError as exc:
            return exc.message
    try:
        msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        return f"invalid body: {exc}"
    return "accepted"


class Visit(msgspec.Struct):
    visitId: str | msgspec.UnsetType = msgspec.UNSET
    extra: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class RawVisit(msgspec.Struct):
    visitId: str | msgspec.UnsetType = msgspec.UNSET
    extra: dict[str, msgspec.Raw] | msgspec.UnsetType = msgspec.UNSET


BAD = [
    b"",
    b"  ",
    b"{",
    b"[]",
    b"null",
    b'{"visitId": 1}',
    b'{"visitId": "\xff"}',
    b'{"extra": {"a": "\xed\xa0\x80"}}',
    b'{"extra": {"a": "\\ud800"}}',
    b'{"extra": {"a": "\\udc00"}}',
    b'{"extra": {"a": 1e400}}',
    b'{"extra": {"a": -1e400}}',
    b'{"extra": {"a": 01}}',
    b'{"extra": {"a": tru}}',
    b'{"extra": {"a": [1,]}}',
    b'{"extra": {}} x',
    b"\xef\xbb\xbf{}",
    b'{"extra": {"a": ' + b"[" * 70 + b"]" * 70 + b"}}",
    b"[" * 2000 + b"]" * 2000,
    b'{"extra": [' + b"[" * 70 + b"]" * 70 + b"]}",
]


@pytest.mark.parametrize("body", BAD)
def test_a_vendor_body_is_refused_in_the_old_words(body: bytes) -> None:
    decoder: VendorBody[RawVisit] = VendorBody(RawVisit, must_be_object)
    with pytest.raises(ApiError) as refused:
        decoder.decode(body, LIMIT)
    assert refused.value.status == 400
    assert refused.value.message == old_vendor_error(body, Visit, must_be_object)


def test_a_vendor_body_that_fits_keeps_its_values_as_sent() -> None:
    decoder: VendorBody[RawVisit] = VendorBody(RawVisit)
    body = b'{"visitId": "v", "extra": {"a": 1E5, "b": [1, {"c" : 1.50}], "d": 1.5e308}}'
    decoded = decoder.decode(body, LIMIT)
    assert isinstance(decoded.extra, dict)
    assert {k: decoder.value(v) for k, v in decoded.extra.items()} == {
        "a": b"1E5",
        "b": b'[1,{"c":1.50}]',
        "d": b"1.5e308",
    }


def test_a_value_with_an_escape_is_written_one_way() -> None:
    decoder: VendorBody[RawVisit] = VendorBody(RawVisit)
    native: NativeBody[RawVisit] = NativeBody(RawVisit)
    body = b'{"extra": {"a": {"\\u00e9\\/": "\\u0041"}, "b": "\\"x\\\\"}}'
    for one in (decoder, native):
        decoded = one.decode(body, LIMIT)
        assert isinstance(decoded.extra, dict)
        assert one.value(decoded.extra["a"]) == '{"é/":"A"}'.encode()
        assert one.value(decoded.extra["b"]) == b'"\\"x\\\\"'


class Session(msgspec.Struct, forbid_unknown_fields=True):
    properties: dict[str, Any]


class RawSession(msgspec.Struct, forbid_unknown_fields=True):
    properties: dict[str, msgspec.Raw]


def old_native_error(body: bytes) -> str:
    """What the native face answered before: msgspec.json.decode into the type with Any values."""
    try:
        msgspec.json.decode(body, type=Session)
    except msgspec.ValidationError as exc:
        return f"invalid body: {exc}"
    except msgspec.DecodeError as exc:
        return f"malformed JSON: {exc}"
    return "accepted"


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"{} x",
        b'{"properties": {"a": tru}}',
        b'{"properties":{"a":tru}}',
        b'{"properties": [1]}',
        b'{"other": 1}',
        b'{"properties": {"a": "\xff"}}',
        b'{"properties": {"a": [1, 2,]}}',
    ],
)
def test_a_native_body_is_refused_in_msgspecs_words(body: bytes) -> None:
    with pytest.raises(ApiError) as refused:
        NativeBody(RawSession).decode(body, LIMIT)
    assert refused.value.message == old_native_error(body)


def test_a_native_value_nests_with_the_levels_around_it() -> None:
    native: NativeBody[RawSession] = NativeBody(RawSession)
    deep = b'{"properties": {"p": ' + b"[" * 62 + b"]" * 62 + b"}}"
    value = native.decode(deep, LIMIT).properties["p"]
    assert native.nested_value(value, LIMIT, 2) == b"[" * 62 + b"]" * 62
    deeper = native.decode(deep.replace(b"[", b"[[", 1).replace(b"]", b"]]", 1), LIMIT).properties["p"]
    with pytest.raises(ApiError, match="nested deeper than 64"):
        native.nested_value(deeper, LIMIT, 2)
