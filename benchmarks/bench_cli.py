"""Time the ``memo`` command on a 100,000-entry cache: ``ls``, ``stats`` and ``prune``.

Run ``python benchmarks/bench_cli.py [DIRECTORY]`` (default: the directory
``make_big_cache.py`` builds, built first if it has fewer than 100,000 entries). Each command
runs in-process through ``memo.cli.main`` and as a subprocess (``python -m memo``, so
interpreter start-up is included). ``prune --max-size <half the total>`` runs on hard-linked
copies of the directory, so the original stays whole for the next run. Bars: ``ls`` and
``stats`` under 3 s, pruning to half under 10 s.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import make_big_cache

import memo
from memo.cli import main as memo_main


def _in_process(argv: list[str]) -> float:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = memo_main(argv)
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"memo {' '.join(argv)} exited {code}")
    return seconds


def _subprocess(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "memo", *argv], check=True, stdout=subprocess.DEVNULL, timeout=600
    )
    return time.perf_counter() - started


def _copy(source: Path, target: Path) -> None:
    """A copy whose files are hard links (atimes included), made quickly."""
    if shutil.which("cp"):
        subprocess.run(["cp", "-al", str(source), str(target)], check=True)
    else:  # pragma: no cover - no coreutils
        shutil.copytree(source, target, copy_function=shutil.copy2)


def main(argv: list[str] | None = None) -> int:
    """Build the cache if needed, time the commands and print them against the bars."""
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0]) if args else make_big_cache.DEFAULT_DIRECTORY
    directory.mkdir(parents=True, exist_ok=True)
    stats = memo.Store(directory).stats()
    if stats.entries < make_big_cache.ENTRIES:
        print(f"building {make_big_cache.ENTRIES:,} entries in {directory} ...", flush=True)
        make_big_cache.build(directory, make_big_cache.ENTRIES)
        stats = memo.Store(directory).stats()
    half = stats.bytes // 2
    print(f"{directory}: {stats.entries:,} entries, {stats.bytes:,} bytes\n")
    rows: list[tuple[str, str, float, float | None]] = []
    runners: dict[str, Callable[[list[str]], float]] = {
        "in-process": _in_process,
        "subprocess": _subprocess,
    }
    one = stats.functions[0].name
    for mode, run in runners.items():
        base = ["--cache-path", str(directory)]
        rows.append(("ls", mode, run([*base, "ls"]), 3.0))
        rows.append(("stats", mode, run([*base, "stats"]), 3.0))
        rows.append((f"ls {one}", mode, run([*base, "ls", one]), None))
        with tempfile.TemporaryDirectory(dir=directory.parent) as scratch:
            copy = Path(scratch) / "copy"
            _copy(directory, copy)
            argv_prune = ["--cache-path", str(copy), "prune", "--max-size", str(half)]
            rows.append((f"prune --max-size {half:,}", mode, run(argv_prune), 10.0))
            left = memo.Store(copy).stats()
            if left.bytes > half:
                raise SystemExit(f"prune left {left.bytes:,} bytes, more than {half:,}")
    print(f"{'command':<34} {'mode':<11} {'seconds':>8}  bar")
    for command, mode, seconds, bar in rows:
        verdict = "" if bar is None else f"< {bar:.0f} s " + ("ok" if seconds < bar else "SLOW")
        print(f"{command:<34} {mode:<11} {seconds:>8.2f}  {verdict}")
    return 0 if all(bar is None or seconds < bar for *_, seconds, bar in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
