"""The JSON merge patch (RFC 7396) that turns one set of properties into
another, for ``update``: only what changed is sent, so the properties left
alone keep their own TTLs and their stored text, and the change event names
only the properties that changed."""

from __future__ import annotations

from typing import Any

import msgspec

from ._models import ENCODER


class NotExpressible(Exception):
    """A merge patch cannot set a value to null (null deletes): send the whole session."""


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The patch that turns ``old`` into ``new``: ``{}`` when they are the same."""
    patch: dict[str, Any] = {name: None for name in old if name not in new}
    for name, value in new.items():
        if name not in old:
            patch[name] = literal(value)
        elif not same(old[name], value):
            patch[name] = difference(old[name], value)
    return patch


def difference(old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        return merge_patch(old, new)
    return literal(new)


def literal(value: Any) -> Any:
    """``value`` as a patch member that sets it; applied to anything but an
    object, an object patch replaces it, its null members left out: none may be null."""
    if value is None:
        raise NotExpressible
    if isinstance(value, dict):
        for member in value.values():
            literal(member)
    return value


def same(a: Any, b: Any) -> bool:
    """Equal as JSON (1 and 1.0 and True are not)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    try:
        return ENCODER.encode(a) == ENCODER.encode(b)
    except (TypeError, msgspec.EncodeError):
        return False
