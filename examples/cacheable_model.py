"""A result that stores itself: a small model implementing ``memo.Cacheable``.

Some results are better saved in their own formats than pickled: model weights as ``.npy``
files other tools can open, a configuration as readable JSON. A class that implements

    def to_cache(self, directory: Path) -> None: ...      # write any files into directory
    @classmethod
    def from_cache(cls, directory: Path) -> Self: ...     # rebuild from those files

is stored by memo in a directory of its own, ``<function>-<key>.d/``, next to the entry file
``<function>-<key>.memo``. The entry records every file's size and digest, so a file that was
edited, removed or added makes the entry a miss (warned about once, recomputed), and
``from_cache`` never sees a directory memo did not write.

memo finds the class again by ``module:qualname``, so in real code define it at module level
in an importable module (here it lives in this script, ``__main__``, which works while the
script runs). The script uses a temporary cache directory and removes it at the end.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import memo

WORKDIR = Path(tempfile.mkdtemp(prefix="memo-model-"))


@dataclass
class LinearModel:
    """Ridge regression weights plus the settings that produced them."""

    weights: np.ndarray[Any, np.dtype[np.float64]]
    bias: float
    config: dict[str, Any]

    def predict(self, x: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, Any]:
        """Predictions for the rows of ``x``."""
        return x @ self.weights + self.bias

    def to_cache(self, directory: Path) -> None:
        """Weights as a standard .npy file, everything else as JSON."""
        np.save(directory / "weights.npy", self.weights)
        (directory / "config.json").write_text(
            json.dumps({"bias": self.bias, **self.config}, indent=2)
        )

    @classmethod
    def from_cache(cls, directory: Path) -> LinearModel:
        """Read the files ``to_cache`` wrote."""
        config = json.loads((directory / "config.json").read_text())
        bias = config.pop("bias")
        return cls(np.load(directory / "weights.npy"), bias, config)


def make_data(rows: int, features: int, seed: int = 0) -> tuple[np.ndarray[Any, Any], ...]:
    """A synthetic regression problem with known true weights."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features))
    true_weights = np.linspace(-2.0, 2.0, features)
    y = x @ true_weights + 0.5 + rng.normal(0.0, 0.1, rows)
    return x, y


@memo.cache(cache_path=WORKDIR / "cache")
def train(rows: int, features: int, ridge: float = 1e-3, epochs: int = 300) -> LinearModel:
    """Fit a ridge regression by gradient descent (deliberately slow-ish)."""
    x, y = make_data(rows, features)
    weights = np.zeros(features)
    bias = 0.0
    rate = 0.1
    for _ in range(epochs):
        error = x @ weights + bias - y
        weights -= rate * (x.T @ error / rows + ridge * weights)
        bias -= rate * float(error.mean())
    return LinearModel(weights, bias, {"rows": rows, "ridge": ridge, "epochs": epochs})


def main() -> None:
    """Train twice (the second comes from the directory), then show damage being caught."""
    try:
        for attempt in ("first call", "second call"):
            started = time.perf_counter()
            model = train(5_000, 50)
            elapsed = (time.perf_counter() - started) * 1000
            print(f"{attempt:>12}: {elapsed:8.2f} ms  bias={model.bias:.3f}")

        entry = train.store.find(train.key(5_000, 50))
        directory = entry.directory
        assert directory is not None  # (a Cacheable result is a directory)
        print(f"entry file:      {entry.path}")
        print(f"model directory: {directory}")
        for path in sorted(directory.iterdir()):
            print(f"  {path.name:<12} {path.stat().st_size:6d} bytes")
        print(f"serializer recorded: {train.entries()[0]['serializer']}")

        x, _ = make_data(3, 50, seed=1)
        print("predictions:", np.round(model.predict(x), 3))

        # Someone edits the stored weights by hand: memo notices and retrains.
        np.save(directory / "weights.npy", np.zeros(50))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", memo.MemoWarning)
            retrained = train(5_000, 50)
        print(f"after editing weights.npy: {len(caught)} warning, retrained: {train.misses == 2}")
        message = str(caught[0].message)
        print("  warning: the entry", message[message.find("is damaged") :])
        assert np.allclose(retrained.weights, model.weights)
        assert train.is_cached(5_000, 50)
    finally:
        shutil.rmtree(WORKDIR, ignore_errors=True)


if __name__ == "__main__":
    main()
