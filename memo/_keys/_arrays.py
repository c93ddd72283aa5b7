"""Encoding rules for numpy arrays, dtypes and scalars, and scipy.sparse matrices.

They apply only once the user has imported the package (``sys.modules`` is checked when a type
is first seen); memo never imports numpy or scipy itself. An array is hashed from its buffer,
copied only to make it contiguous, so equal data gives equal keys whatever its memory layout,
while its dtype (byte order, unit, fields), shape and kind (matrix, masked) count.

- ``ndarray`` and its stateless subclasses (``memmap`` keyed as the equal in-memory array,
  ``matrix``, ``recarray`` by their type); other subclasses are refused, since they may carry
  state (a unit, a mask) that the buffer does not hold.
- ``numpy.ma.MaskedArray``: the data (under masked slots too), the mask, ``hardmask`` and the
  fill value.
- ``numpy.dtype`` objects, and numpy scalars by their dtype and bytes.
- ``scipy.sparse`` matrices and arrays: matrix vs array, shape, dtype, and the canonical CSR form
  (duplicates summed, indices sorted, explicit zeros dropped, index arrays as int64), so COO,
  CSR, CSC, ... of the same matrix give the same key.
"""

from __future__ import annotations

import sys
from typing import Any

from ._bytes import Context, UnencodableError, pack_q, qualified, text
from ._canonical import Handler, _list, _tuple, add_plugin, encode_into

__all__ = ["dtype_text", "raw"]


def raw(array: Any, out: bytearray, ctx: Context) -> None:
    """The bytes of a numpy array in C order, length-prefixed, streamed without a copy."""
    import numpy as np

    contiguous = np.ascontiguousarray(array)
    raw = contiguous.reshape(-1).view(np.uint8)
    out += pack_q(raw.nbytes)
    ctx.feed(out, raw.data)


def dtype_text(dtype: Any) -> bytes:
    """A numpy dtype in full: byte order, kind, size and unit, and for a structured dtype its
    fields with their offsets and the total size (padding and alignment change behaviour)."""
    if dtype.fields is None:
        return text(dtype.str)
    return text(f"{dtype.descr}|{dtype.itemsize}|{dtype.isalignedstruct}")


# ndarray subclasses that hold no state beyond the array, encoded with their type (a matrix
# multiplies differently). A memmap is an ndarray backed by a file: the same data, the same
# behaviour, so it has the same key as the in-memory array.
_PLAIN_ARRAYS = ("numpy:ndarray", "numpy:memmap", "numpy:matrix", "numpy:recarray")


def _array_bytes(obj: Any, out: bytearray, ctx: Context) -> None:
    import numpy as np

    out += dtype_text(obj.dtype)
    _tuple(tuple(obj.shape), out, ctx)
    if obj.dtype.hasobject:
        _list(obj.tolist(), out, ctx)
        return
    plain = np.asarray(obj).view(np.ndarray)
    contiguous = plain if plain.flags.c_contiguous else np.ascontiguousarray(plain)
    raw = contiguous.reshape(-1).view(np.uint8)
    out += pack_q(raw.nbytes)
    ctx.feed(out, raw.data)


def _ndarray(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"A"
    name = type(obj).__qualname__
    out += text("ndarray" if name == "memmap" else name)
    _array_bytes(obj, out, ctx)


def _masked_array(obj: Any, out: bytearray, ctx: Context) -> None:
    # The data under masked slots counts too: `.data` and `.filled()` read it.
    import numpy as np

    out += b"Am"
    out += qualified(type(obj))
    _array_bytes(obj.data, out, ctx)
    mask = obj.mask
    if mask is np.ma.nomask:
        out += b"-"
    else:
        out += b"+"
        _array_bytes(np.asarray(mask), out, ctx)
    out += b"H" if obj.hardmask else b"s"
    encode_into(obj.fill_value, out, ctx)


def _dtype(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"Ad"
    out += dtype_text(obj)


def _unknown_array(obj: Any, out: bytearray, ctx: Context) -> None:
    raise UnencodableError(
        type(obj),
        "it is an ndarray subclass that may carry state besides its data; pass "
        "numpy.asarray(value) or register an encoder for its class",
    )


def _numpy_scalar(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"g"
    dtype = obj.dtype
    out += dtype_text(dtype)
    if dtype.hasobject:
        encode_into(obj.item(), out, ctx)
    else:
        data = obj.tobytes()
        out += pack_q(len(data))
        out += data


def _numpy_rule(numpy: Any, tp: type) -> Handler | None:
    if issubclass(tp, numpy.ndarray):
        masked = sys.modules.get("numpy.ma")
        if masked is not None and issubclass(tp, masked.MaskedArray):
            return _masked_array if tp.__module__.startswith("numpy") else _unknown_array
        name = f"{tp.__module__.split('.')[0]}:{tp.__qualname__}"
        return _ndarray if name in _PLAIN_ARRAYS else _unknown_array
    if issubclass(tp, numpy.generic):
        return _numpy_scalar
    if issubclass(tp, numpy.dtype):
        return _dtype
    return None


def _sparse(obj: Any, out: bytearray, ctx: Context) -> None:
    import numpy as np

    sparse = sys.modules["scipy.sparse"]
    out += b"xS"
    out += b"m" if isinstance(obj, sparse.spmatrix) else b"a"
    out += text(obj.dtype.str)
    _tuple(tuple(int(n) for n in obj.shape), out, ctx)
    if obj.ndim != 2:
        out += b"d"
        raw(obj.toarray(), out, ctx)
        return
    csr = obj.tocsr(copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    csr.sort_indices()
    out += b"c"
    raw(np.asarray(csr.indptr, dtype=np.int64), out, ctx)
    raw(np.asarray(csr.indices, dtype=np.int64), out, ctx)
    raw(csr.data, out, ctx)


def _plugin(tp: type) -> Handler | None:
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        rule = _numpy_rule(numpy, tp)
        if rule is not None:
            return rule
    sparse = sys.modules.get("scipy.sparse")
    if sparse is not None:
        bases = tuple(
            base
            for base in (getattr(sparse, "spmatrix", None), getattr(sparse, "sparray", None))
            if isinstance(base, type)
        )
        if bases and issubclass(tp, bases):
            return _sparse
    return None


add_plugin(_plugin)
