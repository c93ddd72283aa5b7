"""Code written out once per kind of call, for calls whose arguments are all numbers and
strings (the usual call): its key's encoding and its metadata's argument text in a few
operations instead of the general loops, as ``dataclasses`` writes ``__init__``.

Measured (callgrind, ``f(i, "abc", 2.5)`` and ``f(i, "abc")``): about 8-11% fewer
instructions per hit and 13-17% per miss than the general path, which gives the same bytes
(property tests compare the two). In ``benchmarks/bench_core.py`` it buys about 5% on a hit
(1.05x of the floor against 1.10x) and keeps miss+store within its bar (1.44x against 1.53x,
over the 1.5x bar, without it): keying a miss takes 1.07 us instead of 1.52, describing its
arguments 0.38 us instead of 1.44. A plain loop specialised to numbers and strings (tried)
gives back less than a third of that, so the code written out stays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii as json_string
from typing import Any

from ._bytes import tag_d, tag_i, tag_q
from ._summary import SHORT, SHOWN_HEAD, SHOWN_TAIL, exactly

__all__ = ["atom_default", "atoms_describer", "atoms_encoder", "written_out"]


# For code written out per kind of call: the source testing that value ``v{i}`` is of a kind
# that stream_digest encodes inline, and the parts of its encoding there (a string's bytes are
# named as they are made, so the length before them can use them).
_ATOM_SOURCE = {
    int: (f"type(v{{i}}) is int and -{1 << 63} <= v{{i}} < {1 << 63}", ("_tag_i(b'i', v{i})",)),
    float: ("type(v{i}) is float and v{i} == v{i}", ("_tag_d(b'f', v{i})",)),
    str: (
        "type(v{i}) is str",
        ("_tag_q(b's', len(d{i} := v{i}.encode('utf-8', 'surrogatepass')))", "d{i}"),
    ),
}
_ATOM_NAMESPACE: dict[str, Any] = {"_tag_i": tag_i, "_tag_d": tag_d, "_tag_q": tag_q}


def atoms_encoder(
    labels: Sequence[bytes], kinds: Sequence[type], defaults: Sequence[Any] = ()
) -> Callable[[bytes, Sequence[Any]], bytes | None] | None:
    """For calls whose values are ints (of 64 bits), floats (not NaN) and strings of ``kinds``,
    in order: a function giving exactly what ``stream_digest`` hashes (``prefix``, then each
    label and encoded value), or None when the values are not of those kinds. None if a kind
    is not one of those. Written out for the kinds: a typical call's key then takes a few
    operations instead of ``stream_digest``'s loop.

    ``defaults`` (by position; ``atom_default`` says which can be used) are encoded once: a
    value that is the default object itself (binding filled it in) takes its encoding as is.
    """
    guards = _atom_guards(kinds)
    if guards is None:
        return None
    parts = ["prefix"]
    namespace = dict(_ATOM_NAMESPACE)
    namespace.update((f"L{i}", label) for i, label in enumerate(labels))
    for i, kind in enumerate(kinds):
        source = [part.format(i=i) for part in _ATOM_SOURCE[kind][1]]
        if i < len(defaults) and atom_default(kind, defaults[i]):
            namespace[f"D{i}"], namespace[f"E{i}"] = defaults[i], _atom_bytes(kind, defaults[i])
            guards[i] = f"(v{i} is D{i} or {guards[i]})"
            # The first part makes what later ones use (a string's bytes): all test the same.
            source = [f"(E{i} if v{i} is D{i} else {source[0]})"] + [
                f"(b'' if v{i} is D{i} else {part})" for part in source[1:]
            ]
        parts += [f"L{i}", *source]
    body = [f"return b''.join(({', '.join(parts)},))"]
    encoder: Callable[[bytes, Sequence[Any]], bytes | None] = written_out(
        "prefix, values", len(kinds), guards, body, namespace
    )
    return encoder


def atom_default(kind: type, default: Any) -> bool:
    """Whether a parameter's default is of ``kind`` and encoded inline (an int of 64 bits, a
    float not NaN, a string), so code written out for ``kind`` can encode it once."""
    source = _ATOM_SOURCE.get(kind)
    if source is None:
        return False
    test = written_out("values", 1, [source[0].format(i=0)], ["return True"], {})
    return test([default]) is True


def _atom_bytes(kind: type, value: Any) -> bytes:
    """The inline encoding of one value of ``kind``, by the same source the encoder runs."""
    parts = ", ".join(part.format(i=0) for part in _ATOM_SOURCE[kind][1])
    encode = written_out("values", 1, [], [f"return b''.join(({parts},))"], dict(_ATOM_NAMESPACE))
    encoded: bytes = encode([value])
    return encoded


def _atom_guards(kinds: Sequence[type]) -> list[str] | None:
    """The source of each value's test that it is of its kind in ``kinds`` and encoded by
    ``stream_digest``'s inline cases (an int of 64 bits, a float not NaN, a string). None if a
    kind is not int, float or str, or none given."""
    if not kinds or any(kind not in _ATOM_SOURCE for kind in kinds):
        return None
    return [_ATOM_SOURCE[kind][0].format(i=i) for i, kind in enumerate(kinds)]


def written_out(
    params: str, count: int, guards: Sequence[str], body: Sequence[str], namespace: dict[str, Any]
) -> Any:
    """A function of ``params``, whose last, ``values``, is unpacked into ``v0`` ...
    ``v{count-1}``: it returns None unless every guard holds (if any), else it runs ``body``.

    For code on every call, written out once per kind of call (as ``dataclasses`` writes
    ``__init__``). Its source is made from positions and kinds only: anything else (labels,
    names) reaches it through ``namespace``, never as text.
    """
    test = [f"    if not ({' and '.join(guards)}):", "        return None"] if guards else []
    source = "\n".join(
        [
            f"def written({params}):",
            f"    {', '.join(f'v{i}' for i in range(count))}, = values",
            *test,
            *(f"    {line}" for line in body),
        ]
    )
    exec(source, namespace)
    return namespace["written"]


def atoms_describer(
    json_names: Sequence[str], kinds: Sequence[type], defaults: Sequence[Any] = ()
) -> Callable[[Sequence[Any]], str | None]:
    """``describe``'s text for calls of numbers and short strings of ``kinds``, written out as
    ``atoms_encoder`` writes the key's encoding (made only when that encoder is). It is given
    only values that encoder took (so of those kinds: it does not test them again) and gives
    None when a string is too long to show whole (the general path then describes the call).
    A value that is its parameter's default object (of ``defaults``) is shown by its text made
    once (as the encoder encodes it once)."""
    namespace: dict[str, Any] = {
        "_HEAD": SHOWN_HEAD,
        "_TAIL": SHOWN_TAIL,
        "_json": json_string,
        "_QUOTED": '"%r"',
    }
    shown, guards = [], []
    for i, kind in enumerate(kinds):
        default = defaults[i] if i < len(defaults) else None
        text = exactly(default, kind) if atom_default(kind, default) else None
        if text is not None:
            namespace[f"D{i}"], namespace[f"T{i}"] = default, text
            other = f"_json(repr(v{i}))" if kind is str else f"_QUOTED % v{i}"
            if kind is str:
                guards.append(f"(v{i} is D{i} or len(v{i}) <= {SHORT})")
            shown.append(f"{{N{i}}}{{T{i} if v{i} is D{i} else {other}}}")
        elif kind is str:
            guards.append(f"len(v{i}) <= {SHORT}")
            shown.append(f"{{N{i}}}{{_json(repr(v{i}))}}")
        else:
            shown.append(f'{{N{i}}}"{{v{i}!r}}"')
    namespace.update((f"N{i}", name) for i, name in enumerate(json_names))
    body = [f"return _HEAD + f'{','.join(shown)}' + _TAIL"]
    describer: Callable[[Sequence[Any]], str | None] = written_out(
        "values", len(kinds), guards, body, namespace
    )
    return describer
