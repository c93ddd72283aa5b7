"""The public Encoder: register and ignore rules, the JSON view, and hash_args."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import memo
from memo._keys._canonical import ignored, registry, reset_rules


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    """Undo registrations made by a test."""
    saved_registry, saved_ignored = dict(registry), set(ignored)
    yield
    registry.clear()
    registry.update(saved_registry)
    ignored.clear()
    ignored.update(saved_ignored)
    reset_rules()


class Money:
    """A user type with two defining fields."""

    def __init__(self, amount: int, currency: str) -> None:
        self.amount = amount
        self.currency = currency


class Handle:
    """A user type that should not affect keys (like a logger or a connection)."""


def test_register_as_decorator() -> None:
    """A registered function makes its type encodable and returns the function itself."""
    with pytest.raises(memo.EncodingError):
        memo.hash_args(Money(1, "EUR"))

    @memo.Encoder.register
    def _money(value: Money) -> tuple[int, str]:
        return (value.amount, value.currency)

    assert callable(_money)
    assert memo.hash_args(Money(1, "EUR")) == memo.hash_args(Money(1, "EUR"))
    assert memo.hash_args(Money(1, "EUR")) != memo.hash_args(Money(2, "EUR"))
    # The registered type is part of the encoding, so it differs from the plain tuple.
    assert memo.hash_args(Money(1, "EUR")) != memo.hash_args((1, "EUR"))


def test_register_with_string_annotation_and_union() -> None:
    """Postponed annotations and unions register every named type."""

    class Other:
        pass

    def encode_both(value: Money | Other) -> str:
        return type(value).__name__

    memo.Encoder.register(encode_both)
    assert memo.hash_args(Other()) != memo.hash_args(Money(1, "x"))


def test_register_needs_an_annotation() -> None:
    """A function without an annotated first parameter is refused with a clear message."""
    with pytest.raises(TypeError, match="annotated"):
        memo.Encoder.register(lambda value: value)


def test_ignore_types_and_class_decorator() -> None:
    """Ignored types do not affect keys; ignore works as a class decorator."""
    memo.Encoder.ignore(Handle)
    assert memo.hash_args(1, Handle()) == memo.hash_args(1, Handle())

    @memo.Encoder.ignore
    class Connection:
        pass

    assert isinstance(Connection(), Connection)
    assert memo.hash_args(Connection()) == memo.hash_args(Connection())
    assert memo.hash_args(Connection()) != memo.hash_args(Handle())


def test_ignore_object_ignores_all_unknown() -> None:
    """Encoder.ignore(object) makes every otherwise unencodable type ignored."""
    assert memo.Encoder.ignore(object, Handle) is None
    assert memo.hash_args(Money(1, "a")) == memo.hash_args(Money(2, "b"))
    assert memo.hash_args(1) != memo.hash_args(2)


def test_ignore_rejects_non_types() -> None:
    """Passing an instance instead of a type is a configuration error."""
    with pytest.raises(TypeError):
        memo.Encoder.ignore(3)  # type: ignore[call-overload]


def test_json_view() -> None:
    """Encoder is a JSONEncoder: paths, sets and registered types get a readable form."""

    @memo.Encoder.register
    def _money(value: Money) -> dict[str, Any]:
        return {"amount": value.amount, "currency": value.currency}

    text = json.dumps(
        {"p": Path("/x"), "s": {3, 1}, "m": Money(5, "USD")}, cls=memo.Encoder, sort_keys=True
    )
    data = json.loads(text)
    assert data["p"] == "/x"
    assert data["m"] == {"amount": 5, "currency": "USD"}
    assert len(data["s"]) == 2
    with pytest.raises(TypeError):
        json.dumps(Handle(), cls=memo.Encoder)


def test_hash_args_properties() -> None:
    """hash_args is a 32-hex-digit digest, keyword-order independent, and type aware."""
    digest = memo.hash_args(1, "a", x=2, y=3)
    assert len(digest) == 32
    int(digest, 16)
    assert digest == memo.hash_args(1, "a", y=3, x=2)
    assert memo.hash_args(1) != memo.hash_args(1.0)
    assert memo.hash_args(1, 2) != memo.hash_args((1, 2))
    assert memo.hash_args(x=1) != memo.hash_args(1)


def test_encoding_error_names_the_fixes() -> None:
    """The error names the type and both fixes (Encoder.register and ignore=)."""
    with pytest.raises(memo.EncodingError) as info:
        memo.hash_args([Handle()])
    message = str(info.value)
    assert "Handle" in message
    assert "Encoder.register" in message
    assert "ignore=" in message
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, memo.MemoError)
