"""Hypothesis strategies shared by the tests of data-frame keys (pandas, pyarrow, polars)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import pandas as hpd

FAST = settings(max_examples=25, deadline=None)


def mixed_frames(min_rows: int) -> st.SearchStrategy[Any]:
    """pandas DataFrames with int, float, bool, text and datetime columns."""
    return hpd.data_frames(
        columns=[
            hpd.column("ints", dtype=np.int64),
            hpd.column("floats", dtype=np.float64),
            hpd.column("flags", dtype=bool),
            hpd.column("text", elements=st.text(max_size=5), dtype=object),
            hpd.column("when", dtype="datetime64[ns]"),
        ],
        index=hpd.range_indexes(min_size=min_rows, max_size=20),
    )
