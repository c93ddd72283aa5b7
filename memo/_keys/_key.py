"""Cache keys for calls of one function: bind the arguments, encode them, hash with the rest.

key = xxh3_128 over: key-format version, Python implementation and major.minor, the function's
module and qualified name, its code fingerprint, ``version``, the bound arguments (defaults
applied, ignored names removed) or the user's ``key`` callable's result, and
``_extra_cache_key``. Nothing here does I/O.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii as json_string
from typing import Any

import xxhash
from xxhash import xxh3_128_hexdigest

from .._exceptions import ConfigError, EncodingError
from . import _frames as _frames  # the polars and xarray rules,
from . import _pydata as _pydata  # the pandas, pyarrow, numpy and scipy rules
from . import _types as _types  # and the standard library's: a key encodes by them all
from ._bytes import UnencodableError, text
from ._canonical import encode, encoding_error
from ._code import Bindings, code_details, forget_fingerprint, rebound, watched_fingerprint
from ._digest import stream_digest, value_digest
from ._summary import SHOWN_HEAD, SHOWN_TAIL, exactly, summarize
from ._written import atoms_describer, atoms_encoder

__all__ = ["EXTRA", "KEY_FORMAT", "NO_EXTRA", "KeyMaker", "named_function"]

KEY_FORMAT = 1
EXTRA = "_extra_cache_key"
PYTHON = f"{sys.implementation.name}-{sys.version_info.major}.{sys.version_info.minor}"
_MISSING: Any = object()
NO_EXTRA: Any = _MISSING  # "no _extra_cache_key was passed"
_P = inspect.Parameter


class KeyMaker:
    """Computes keys for one function; everything that can be decided once is decided here."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        ignore: Sequence[str] = (),
        version: Any = None,
        key: Callable[[inspect.BoundArguments], Any] | None = None,
    ) -> None:
        self.func = func
        named = named_function(func)
        self.qualname = f"{named.__module__}:{named.__qualname__}"
        self.signature = inspect.signature(func)
        params = list(self.signature.parameters.values())
        names = [p.name for p in params]
        self.declares_extra = EXTRA in names
        self.var_keyword = any(p.kind is _P.VAR_KEYWORD for p in params)
        self.ignore = frozenset(ignore)
        unknown = self.ignore - set(names)
        if unknown and not self.var_keyword:
            raise ConfigError(
                f"ignore={sorted(unknown)!r}: {self.qualname} has no such parameter; "
                f"its parameters are {names!r}"
            )
        if EXTRA in self.ignore:
            raise ConfigError(f"{EXTRA} is always part of the key and cannot be ignored")
        try:
            self.version_bytes = encode(version)
        except UnencodableError as exc:
            raise ConfigError(
                f"version={version!r} cannot be encoded ({exc.value_type.__qualname__}); "
                "use a number, string or tuple of them"
            ) from None
        self.key_fn = key
        self._ignored_extra = self.ignore - set(names)  # names hidden inside **kwargs
        self.names = names
        self.labels = [text(name) for name in names]
        self._json_names = [json_string(name) + ":" for name in names]  # for describe()
        self.index = {p.name: i for i, p in enumerate(params) if p.kind is not _P.POSITIONAL_ONLY}
        self.required = [i for i, p in enumerate(params) if p.default is _P.empty]
        self.defaults = [p.default if p.default is not _P.empty else _MISSING for p in params]
        self.kept = [i for i, name in enumerate(names) if name not in self.ignore]
        self.all_kept = len(self.kept) == len(names)
        self.kept_labels = [self.labels[i] for i in self.kept]
        self.n_params = len(names)
        self.n_positional = sum(
            p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD) for p in params
        )
        self.fast = key is None and all(
            p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY)
            for p in params
        )
        # For a call with no keywords, by how many positional arguments it has: the defaults
        # that complete it, or None if that leaves a required parameter out.
        self._fill: dict[int, tuple[Any, ...] | None] = {}
        if self.fast and self.all_kept:
            for given in range(self.n_positional + 1):
                rest = self.defaults[given:]
                self._fill[given] = None if _MISSING in rest else tuple(rest)
        self._prefix: bytes | None = None
        self.code_fingerprint = ""
        # The globals the code read, with what they were bound to when it was fingerprinted:
        # every call checks them (a few dict lookups), so a rebound global is seen at once.
        self._watched: Bindings = ()
        # Written out for the kinds of the first call's numbers and strings (bind decides).
        self._atoms: Callable[[bytes, Sequence[Any]], bytes | None] | None = None
        self._atoms_shown: Callable[[Sequence[Any]], str | None] | None = None
        self._atoms_tried = False
        # The labels bind gives when its written-out encoder took the values (of a call with no
        # _extra_cache_key): equal to self.labels, but a distinct object, so describe knows
        # those values are of the kinds its written-out describer is for.
        self._atom_labels: Sequence[bytes] = tuple(self.labels)

    @property
    def prefix(self) -> bytes:
        """Everything in the key but the arguments; computed at the first call, then kept."""
        if self._prefix is None:
            # Not at decoration time: helpers may be defined below the decorated function.
            if isinstance(self.func, functools.partial):
                _check_bound(self.func, self.qualname)
            self.code_fingerprint, self._watched = watched_fingerprint(self.func)
            self._prefix = self._prefix_for(self.code_fingerprint)
        return self._prefix

    def _prefix_for(self, code_fingerprint: str) -> bytes:
        return b"".join(
            (
                b"memo-key",
                text(str(KEY_FORMAT)),
                text(PYTHON),
                text(self.qualname),
                text(code_fingerprint),
                self.version_bytes,
                b"K" if self.key_fn is not None else b"A",
            )
        )

    def key_under(
        self, code_fingerprint: str, labels: Sequence[bytes], values: Sequence[Any], extra: Any
    ) -> str:
        """The key this call had under another code fingerprint (one a blessing answers for);
        ``labels`` and ``values`` as ``bind`` gave them."""
        return _digest(self._prefix_for(code_fingerprint), labels, values, extra)

    def refresh_code(self) -> None:
        """Take the code fingerprint anew at the next key (a global it read was rebound)."""
        forget_fingerprint(self.func)
        self._prefix = None
        self._watched = ()

    def split_extra(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """Remove an undeclared ``_extra_cache_key`` from the call's keywords."""
        if not self.declares_extra and EXTRA in kwargs:
            kwargs = dict(kwargs)
            return kwargs, kwargs.pop(EXTRA)
        return kwargs, _MISSING

    def labelled(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Sequence[bytes], Sequence[Any]]:
        """The labels and values that make up the argument part of the key."""
        if self.fast:
            if not kwargs and len(args) == self.n_params:
                values: Any = args
            else:
                values = self._bind_fast(args, kwargs)
            if values is not None:
                if self.all_kept:
                    return self.labels, values
                return self.kept_labels, [values[i] for i in self.kept]
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.qualname.partition(':')[2]}() {exc}") from None
        bound.apply_defaults()
        if self.key_fn is not None:
            return (b"key=",), (self.key_fn(bound),)
        labels, kept = [], []
        for name, value in bound.arguments.items():
            if name in self.ignore:
                continue
            if self._ignored_extra and self.signature.parameters[name].kind is _P.VAR_KEYWORD:
                value = {k: v for k, v in value.items() if k not in self._ignored_extra}
            labels.append(text(name))
            kept.append(value)
        return labels, kept

    def _bind_fast(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
        if len(args) > self.n_positional:
            return None
        values = list(args)
        values.extend(self.defaults[len(args) :])
        for name, value in kwargs.items():
            position = self.index.get(name)
            if position is None or position < len(args):
                return None  # let Signature.bind raise Python's own TypeError
            values[position] = value
        for position in self.required:
            if values[position] is _MISSING:
                return None
        return values

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any], extra: Any = NO_EXTRA) -> str:
        """The hex key of a call; raises ``EncodingError`` naming the failing argument."""
        return self.bind(args, kwargs, extra)[0]

    def bind(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], extra: Any = NO_EXTRA
    ) -> tuple[str, Sequence[bytes], Sequence[Any]]:
        """The hex key of a call, and the labels and values (``labelled``'s) it was made of,
        which ``describe`` takes. Raises ``EncodingError`` naming the failing argument."""
        if self._watched and rebound(self._watched):
            self.refresh_code()  # a global the code reads was rebound: take it anew
        # The hit path: positional arguments, completed by the defaults, need no binding.
        fill = None if kwargs else self._fill.get(len(args))
        if fill is not None:
            labels: Sequence[bytes] = self.labels
            values: Sequence[Any] = args + fill if fill else args
            if extra is NO_EXTRA:
                # Numbers and strings (of the kinds the first call had) skip stream_digest.
                atoms = self._atoms
                if atoms is None and not self._atoms_tried:
                    self._atoms_tried = True
                    kinds = [type(v) for v in values]
                    atoms = self._atoms = atoms_encoder(labels, kinds, self.defaults)
                    if atoms is not None:  # describe takes the values this encoder took
                        self._atoms_shown = atoms_describer(self._json_names, kinds, self.defaults)
                if atoms is not None:
                    data = atoms(self._prefix or self.prefix, values)
                    if data is not None:
                        return xxh3_128_hexdigest(data), self._atom_labels, values
        else:
            labels, values = self.labelled(args, kwargs)
        try:
            return _digest(self._prefix or self.prefix, labels, values, extra), labels, values
        except UnencodableError as exc:
            raise self._error(exc, [*labels, _EXTRA_LABEL]) from None

    def describe(self, labels: Sequence[bytes], values: Sequence[Any], extra: Any) -> str:
        """A call's part of an entry's metadata, as JSON object members (no braces):
        ``"arguments"`` (a short summary of each), ``"argument_digests"`` and ``"extra"``
        (the digest of ``_extra_cache_key``, or null). ``labels`` and ``values`` are what
        ``bind`` or ``labelled`` gave.

        Digests let a later call say which argument changed without storing the arguments. A
        number, ``None`` or a short string is shown whole (its repr tells every value apart,
        as its key encoding does), so it needs no digest and gets none. JSON text, not a dict:
        this runs on every miss, and ``json`` costs more than the rest of the metadata.
        """
        if labels is self._atom_labels:
            # Values bind's written-out encoder took (so of the kinds the describer is for).
            # (Called as a local: an attribute holding a function, called as a method, is
            # looked up generically.)
            describer = self._atoms_shown
            assert describer is not None
            described = describer(values)
            if described is not None:
                return described
            names = self._json_names
        elif labels is self.labels:
            names = self._json_names
        else:
            names = [json_string(_label_name(label)) + ":" for label in labels]
        shown, digests = [], []
        for name, value in zip(names, values, strict=True):
            kind = type(value)
            text = exactly(value, kind)
            if text is None:
                text = json_string(summarize(value, kind))
                digests.append(f'{name}"{value_digest(value)}"')
            shown.append(name + text)
        if not digests and extra is NO_EXTRA:  # the usual case: numbers and short strings
            return SHOWN_HEAD + ",".join(shown) + SHOWN_TAIL
        extra_digest = "null" if extra is NO_EXTRA else f'"{value_digest(extra)}"'
        return (
            f'"arguments":{{{",".join(shown)}}},'
            f'"argument_digests":{{{",".join(digests)}}},"extra":{extra_digest}'
        )

    def components(self) -> dict[str, Any]:
        """The key components shared by every call (known after the first call), with what the
        code fingerprint is made of, so a later miss can say which function changed."""
        self.prefix  # noqa: B018 - settles the code fingerprint
        return {
            "key_format": KEY_FORMAT,
            "python": PYTHON,
            "function": self.qualname,
            "code": self.code_fingerprint,
            "code_details": code_details(self.func),
            "version": xxhash.xxh3_64_hexdigest(self.version_bytes),
        }

    def _error(self, exc: UnencodableError, labels: Sequence[bytes]) -> EncodingError:
        parameter = _label_name(labels[exc.index]) if 0 <= exc.index < len(labels) else None
        return encoding_error(exc, self.qualname, parameter)


_EXTRA_LABEL = b"\0" + text(EXTRA)


def _digest(prefix: bytes, labels: Sequence[bytes], values: Sequence[Any], extra: Any) -> str:
    """A key: ``prefix``, each labelled value, and ``_extra_cache_key`` if one was given."""
    if extra is NO_EXTRA:
        return stream_digest(prefix, labels, values)
    return stream_digest(prefix, [*labels, _EXTRA_LABEL], [*values, extra])


def named_function(func: Callable[..., Any]) -> Any:
    """What a callable is named after: itself, or for a ``functools.partial`` the function it
    wraps (a partial has no name of its own)."""
    while isinstance(func, functools.partial):
        func = func.func
    return func


def _check_bound(func: Any, qualname: str) -> None:
    # A partial's bound arguments enter the key through its code fingerprint, which counts a
    # value it cannot encode by its type alone. Held to the rule for arguments instead, two
    # partials of one function can never share results.
    try:
        while isinstance(func, functools.partial):
            encode((func.args, func.keywords))
            func = func.func
    except UnencodableError as exc:
        tp = exc.value_type
        raise EncodingError(
            f"{qualname}: cannot encode an argument bound by functools.partial, of type "
            f"{tp.__module__}.{tp.__qualname__}, for the cache key. Pass it at each call "
            "instead, or memoize the function itself and take a partial of the memoized one."
        ) from None


def _label_name(label: bytes) -> str:
    if label == b"key=":
        return "key"
    if label == _EXTRA_LABEL:
        return EXTRA
    return label[8:].decode("utf-8", "surrogatepass")
