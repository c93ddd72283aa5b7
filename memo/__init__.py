"""memo: persistent function memoization you can trust with a week of compute.

Put ``@memo.cache`` on a slow function: its results are stored on disk, shared by every process
and later run, and recomputed exactly when the arguments, the code (including helpers it calls),
an input file or a declared version change.
"""

from ._catalog import EntryInfo, EntryNotFoundError, FunctionInfo, Problem, Store, StoreStats
from ._decorator import cache, decorate
from ._dry_run import DryRun, Unknown, dry_run
from ._exceptions import ConfigError, EncodingError, MemoError, MemoWarning, ReadOnlyError
from ._explain import Plan, PlannedCall
from ._keys._code import hash_code
from ._keys._contents import File, hash_contents
from ._keys._encoder import Encoder, hash_args
from ._lazy import Lazy, add_metadata
from ._map import Args, MapError
from ._memoized import CacheInfo, Memoized
from ._storage._cacheable import Cacheable
from ._storage._serializers import NpySerializer, Serializer
from ._version import __version__

__all__ = [
    "Args",
    "CacheInfo",
    "Cacheable",
    "ConfigError",
    "DryRun",
    "Encoder",
    "EncodingError",
    "EntryInfo",
    "EntryNotFoundError",
    "File",
    "FunctionInfo",
    "Lazy",
    "MapError",
    "MemoError",
    "MemoWarning",
    "Memoized",
    "NpySerializer",
    "Plan",
    "PlannedCall",
    "Problem",
    "ReadOnlyError",
    "Serializer",
    "Store",
    "StoreStats",
    "Unknown",
    "__version__",
    "add_metadata",
    "cache",
    "decorate",
    "dry_run",
    "hash_args",
    "hash_code",
    "hash_contents",
]
