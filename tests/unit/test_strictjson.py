"""platform/strictjson.py: one reading of the bytes or a one-line reason (property-based)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drkit.platform import strictjson
from drkit.platform.strictjson import StrictJSONError

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(10**15), 10**15),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=30)
OBJECTS = st.dictionaries(st.text(max_size=8), VALUES, max_size=6)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_give_an_object_or_a_one_line_refusal(data: bytes) -> None:
    try:
        value = strictjson.loads(data)
    except StrictJSONError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(value, dict)


@settings(max_examples=300, deadline=None)
@given(OBJECTS)
def test_every_plain_json_object_reads_back_as_python_reads_it(value: dict[str, Any]) -> None:
    data = json.dumps(value).encode()
    assert strictjson.loads(data) == json.loads(data)


@settings(max_examples=200, deadline=None)
@given(OBJECTS.filter(bool), st.data())
def test_a_repeated_key_is_refused_at_any_depth(value: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(value)))
    text = json.dumps(value)
    doubled = "{" + json.dumps(key) + ": 0, " + text[1:]
    nested = '{"outer": [' + doubled + "]}"
    for body in (doubled, nested):
        with pytest.raises(StrictJSONError, match="duplicate key"):
            strictjson.loads(body.encode())


@pytest.mark.parametrize("body, reason", [
    (b"\xef\xbb\xbf{}", "byte-order mark"),
    (b'{"a": NaN}', "NaN"),
    (b'{"a": -Infinity}', "-Infinity"),
    (b'{"a": "\\udc00"}', "lone surrogate"),
    (b'{"\\ud800": 1}', "lone surrogate"),
    (b'{"a": "\xc3"}', "not valid UTF-8"),
    (b"[" * 33 + b"]" * 33, "nested deeper than 32"),
    (b'{"a": "' + b"[" * 100 + b'"}', None),  # brackets inside a string are text, not nesting
    (b'{"a": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', None),
    (b'"text"', "not str"),
    (b"{" * 200_000, "nested deeper"),
    (b'{"n": ' + b"9" * 5000 + b"}", "not acceptable JSON"),
])
def test_each_leniency_of_json_loads_is_refused(body: bytes, reason: str | None) -> None:
    if reason is None:
        assert isinstance(strictjson.loads(body), dict)
        return
    with pytest.raises(StrictJSONError, match=reason):
        strictjson.loads(body)
