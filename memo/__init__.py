"""memo: persistent function memoization you can trust with a week of compute.

Put ``@memo.cache`` on a slow function: its results are stored on disk, shared by every process
and later run, and recomputed exactly when the arguments, the code (including helpers it calls),
an input file or a declared version change.
"""

from ._decorator import Memoized, cache, decorate
from ._exceptions import ConfigError, EncodingError, MemoError, MemoWarning
from ._keys._code import hash_code
from ._keys._contents import File, hash_contents
from ._keys._encoder import Encoder, hash_args
from ._version import __version__

__all__ = [
    "ConfigError",
    "Encoder",
    "EncodingError",
    "File",
    "MemoError",
    "MemoWarning",
    "Memoized",
    "__version__",
    "cache",
    "decorate",
    "hash_args",
    "hash_code",
    "hash_contents",
]
