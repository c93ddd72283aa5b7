"""The memo command: in-process through memo.cli.main, and as `python -m memo` and `memo`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import memo
from memo.cli import main
from tests.stores import entry_store


def _fill(cache_dir: Path) -> tuple[Any, Any]:
    """Store three entries of ``simulate`` (one of 1.5 MB) and one of ``load``."""

    @memo.cache(cache_path=cache_dir)
    def simulate(n: int, scale: float = 1.0) -> bytes:
        return b"x" * (1_500_000 if n == 2 else 100)

    @memo.cache(cache_path=cache_dir)
    def load(name: str) -> str:
        return name

    for n in range(3):
        simulate(n)
    load("a")
    return simulate, load


def _area(w: int, h: int) -> int:
    return w * h


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(err: str) -> None:
    assert err.startswith("memo: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_ls_functions_table(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`memo ls` shows one aligned row per function with sizes and ages."""
    simulate, _ = _fill(cache_dir)
    for n in range(3):
        path = Path(entry_store(simulate).path("simulate", simulate.key(n)))
        os.utime(path, (time.time() - 3 * 3600 - 60, path.stat().st_mtime))
    code, out, _ = _run(capsys, "--cache-path", str(cache_dir), "ls")
    assert code == 0
    header, load_row, simulate_row, total = out.splitlines()
    assert header.split() == ["FUNCTION", "ENTRIES", "SIZE", "LAST", "USED", "OLDEST"]
    assert simulate_row.startswith("simulate")
    assert "1.5 MB" in simulate_row
    assert "3 h ago" in simulate_row
    assert header.index("SIZE") + 4 == simulate_row.index("1.5 MB") + 6  # right-aligned
    assert load_row.split()[1] == "1"
    assert total.startswith("2 functions, 4 entries, 1.5 MB")


def test_ls_one_function_and_json(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`memo ls FUNCTION` lists entries with their arguments; --json parses, in any position."""
    simulate, _ = _fill(cache_dir)
    code, out, _ = _run(capsys, "ls", "simulate", "--cache-path", str(cache_dir))
    assert code == 0
    assert simulate.key(1)[:12] in out
    assert "n=1, scale=1.0" in out
    code, out, _ = _run(capsys, "--json", "--cache-path", str(cache_dir), "ls", "simulate")
    entries = json.loads(out)
    assert {entry["key"] for entry in entries} == {simulate.key(n) for n in range(3)}
    assert all(entry["arguments"]["scale"] == "1.0" for entry in entries)
    code, out, _ = _run(capsys, "ls", "--json", "--cache-path", str(cache_dir))
    assert [(info["name"], info["entries"]) for info in json.loads(out)] == [
        ("load", 1),
        ("simulate", 3),
    ]


def test_show_and_diff(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`memo show` prints an entry's metadata; `memo diff` names the changed argument."""
    simulate, _ = _fill(cache_dir)
    key0, key1 = simulate.key(0), simulate.key(1)
    code, out, _ = _run(capsys, "--cache-path", str(cache_dir), "show", key0[:10])
    assert code == 0
    assert key0 in out
    assert "compute_seconds" in out
    code, out, _ = _run(capsys, "--cache-path", str(cache_dir), "--json", "show", key0)
    assert json.loads(out)["metadata"]["arguments"] == {"n": "0", "scale": "1.0"}
    code, out, _ = _run(capsys, "--cache-path", str(cache_dir), "diff", key0[:8], key1[:8])
    assert code == 0
    assert out.splitlines()[1].split() == ["argument", "n", "0", "1"]
    code, out, _ = _run(capsys, "--cache-path", str(cache_dir), "--json", "diff", key0, key1)
    assert json.loads(out) == [{"component": "argument n", "value1": "0", "value2": "1"}]


def test_stats_with_budget(
    cache_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`memo stats` shows totals, sizes by function and the MEMO_MAX_SIZE budget's use."""
    _fill(cache_dir)
    monkeypatch.setenv("MEMO_MAX_SIZE", "3MB")
    code, out, _ = _run(capsys, "--cache-path", str(cache_dir), "stats")
    assert code == 0
    assert "4 entries of 2 functions" in out
    assert "of 3.0 MB (50%)" in out
    code, out, _ = _run(capsys, "--cache-path", str(cache_dir), "stats", "--json")
    stats = json.loads(out)
    assert stats["entries"] == 4
    assert stats["max_size"] == 3_000_000
    assert stats["functions"][0]["name"] == "simulate"


def test_prune(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`memo prune --dry-run` removes nothing; `memo prune --max-size` removes LRU entries."""
    simulate, load = _fill(cache_dir)
    code, out, _ = _run(
        capsys, "--cache-path", str(cache_dir), "prune", "--max-size", "1MB", "--dry-run"
    )
    assert code == 0
    assert out.startswith("would remove ")
    assert simulate.is_cached(2)
    code, out, _ = _run(
        capsys, "--cache-path", str(cache_dir), "--json", "prune", "--older-than", "0s",
        "--function", "load",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["entries"] == 1
    assert not load.is_cached("a")
    assert simulate.is_cached(0)
    code, out, _ = _run(capsys, "--cache-path", str(cache_dir), "prune", "--max-size", "1MB")
    assert code == 0
    assert not simulate.is_cached(2)


def test_verify_exit_codes(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`memo verify` exits 1 on a damaged entry; --fix removes it, and then it exits 0."""
    simulate, _ = _fill(cache_dir)
    assert _run(capsys, "--cache-path", str(cache_dir), "verify")[0] == 0
    path = Path(entry_store(simulate).path("simulate", simulate.key(1)))
    path.write_bytes(path.read_bytes()[:-1])
    code, out, _ = _run(capsys, "--cache-path", str(cache_dir), "verify")
    assert code == 1
    assert "damaged" in out
    assert path.name in out
    code, out, _ = _run(capsys, "--cache-path", str(cache_dir), "verify", "--fix", "--json")
    assert code == 0
    assert [(problem["kind"], problem["fixed"]) for problem in json.loads(out)] == [
        ("damaged", True)
    ]
    assert _run(capsys, "--cache-path", str(cache_dir), "verify")[0] == 0


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_clear_confirmation(
    cache_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`memo clear` refuses without --yes off a terminal, asks on one, and obeys --yes."""
    simulate, load = _fill(cache_dir)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = _run(capsys, "--cache-path", str(cache_dir), "clear")
    assert code == 2
    _assert_one_line_error(err)
    assert simulate.is_cached(0)
    monkeypatch.setattr(sys, "stdin", _Terminal("n\n"))
    code, _, err = _run(capsys, "--cache-path", str(cache_dir), "clear", "load")
    assert code == 0
    assert "delete 1 entry of load" in err
    assert load.is_cached("a")
    monkeypatch.setattr(sys, "stdin", _Terminal("y\n"))
    assert _run(capsys, "--cache-path", str(cache_dir), "clear", "load")[0] == 0
    assert not load.is_cached("a")
    assert simulate.is_cached(0)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, out, _ = _run(capsys, "--cache-path", str(cache_dir), "clear", "--yes", "--json")
    assert json.loads(out)["entries"] == 3
    assert not simulate.is_cached(0)


@pytest.mark.parametrize(
    "argv",
    [
        ["show", "ffff"],
        ["show", "zz"],
        ["diff", "0", "1"],
        ["ls", "nothing"],
        ["prune", "--max-size", "10XB"],
        ["prune", "--older-than", "soon"],
        ["frobnicate"],
        ["ls", "--no-such-option"],
    ],
)
def test_errors_are_one_line(
    argv: list[str], cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad input exits 2 with one line on stderr starting with 'memo: ' and no traceback."""
    _fill(cache_dir)
    code, out, err = _run(capsys, "--cache-path", str(cache_dir), *argv)
    assert code == 2
    assert out == ""
    _assert_one_line_error(err)


def test_ambiguous_prefix_and_missing_directory(
    cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ambiguous key prefix and a missing cache directory are one-line errors."""
    _fill(cache_dir)
    code, _, err = _run(capsys, "--cache-path", str(cache_dir), "show", "")
    assert code == 2
    _assert_one_line_error(err)
    code, _, err = _run(capsys, "--cache-path", str(tmp_path / "missing"), "ls")
    assert code == 2
    assert "no cache directory" in err
    _assert_one_line_error(err)
    _, load = _fill(cache_dir)
    for name in "bcdefghijklmnopqr":
        load(name)  # 20 keys: some first hex digit is shared
    firsts = [entry.key[0] for entry in memo.Store(cache_dir).entries()]
    shared = next(digit for digit in firsts if firsts.count(digit) > 1)
    code, _, err = _run(capsys, "--cache-path", str(cache_dir), "show", shared)
    assert code == 2
    assert "matches" in err
    _assert_one_line_error(err)


def _command(*argv: str, cache_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMO_CACHE_DIR": str(cache_dir)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


def test_python_dash_m(cache_dir: Path) -> None:
    """`python -m memo` lists a real cache directory (MEMO_CACHE_DIR) and emits JSON."""
    simulate, _ = _fill(cache_dir)
    result = _command(sys.executable, "-m", "memo", "ls", "simulate", "--json", cache_dir=cache_dir)
    assert result.returncode == 0, result.stderr
    assert {entry["key"] for entry in json.loads(result.stdout)} == {
        simulate.key(n) for n in range(3)
    }
    result = _command(sys.executable, "-m", "memo", "show", "0" * 32, cache_dir=cache_dir)
    assert result.returncode == 2
    _assert_one_line_error(result.stderr)


def test_console_script(cache_dir: Path) -> None:
    """The installed `memo` script runs stats and verify against a real directory."""
    _fill(cache_dir)
    script = Path(sys.executable).with_name("memo")
    if not script.exists():
        pytest.skip("the memo console script is not installed (pip install -e .)")
    result = _command(str(script), "--cache-path", str(cache_dir), "stats", cache_dir=cache_dir)
    assert result.returncode == 0, result.stderr
    assert "4 entries of 2 functions" in result.stdout
    result = _command(str(script), "verify", cache_dir=cache_dir)
    assert result.returncode == 0
    assert "no problems" in result.stdout


def test_prune_without_budget_names_its_flags(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`memo prune` with no budget names --max-size and --older-than and gives an example."""
    _fill(cache_dir)
    code, out, err = _run(capsys, "prune", "--cache-path", str(cache_dir))
    assert code == 2
    assert out == ""
    _assert_one_line_error(err)
    assert "--max-size" in err
    assert "--older-than" in err
    assert "e.g. memo prune" in err
    assert "max_size or older_than" not in err


def test_cache_path_after_every_command(
    cache_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command takes --cache-path after its name, with its other arguments around it."""
    simulate, _ = _fill(cache_dir)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    where = ["--cache-path", str(cache_dir)]
    first, second = simulate.key(0)[:12], simulate.key(1)[:12]
    for argv in (
        ["ls", *where],
        ["ls", "simulate", *where],
        ["show", first, *where],
        ["diff", *where, first, second],
        ["stats", *where],
        ["prune", *where, "--max-size", "10MB", "--dry-run"],
        ["verify", *where],
        ["clear", "load", *where, "--yes"],
    ):
        assert _run(capsys, *argv)[0] == 0, argv
    assert not memo.Store(cache_dir).entries("load")


def test_positional_cache_directory(
    cache_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`memo prune DIR --max-size 1MB`, `memo ls DIR`, `stats DIR`, `verify DIR`, `clear DIR`."""
    simulate, _ = _fill(cache_dir)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    relative = "./cache"
    code, out, _ = _run(capsys, "ls", relative)
    assert code == 0
    assert out.splitlines()[-1].startswith("2 functions, 4 entries")
    code, out, _ = _run(capsys, "ls", "cache", "simulate", "--json")
    assert {entry["key"] for entry in json.loads(out)} == {simulate.key(n) for n in range(3)}
    code, out, _ = _run(capsys, "stats", str(cache_dir))
    assert code == 0
    assert "4 entries of 2 functions" in out
    assert _run(capsys, "verify", relative)[0] == 0
    key = simulate.key(0)
    assert key[:12] in _run(capsys, "show", "cache", key[:12])[1]
    assert _run(capsys, "diff", "cache", key[:12], simulate.key(1)[:12])[0] == 0
    code, out, _ = _run(capsys, "prune", str(cache_dir), "--max-size", "1MB")
    assert code == 0
    assert out.startswith("removed ")
    assert not simulate.is_cached(2)
    code, out, _ = _run(capsys, "clear", relative, "--yes")
    assert code == 0
    assert memo.Store(cache_dir).entries() == []


def test_positional_function_names_still_work(
    cache_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bare name after ls or clear is still a function; a directory of that name gets a hint."""
    simulate, load = _fill(cache_dir)
    monkeypatch.setenv("MEMO_CACHE_DIR", str(cache_dir))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, out, _ = _run(capsys, "ls", "simulate")
    assert code == 0
    assert simulate.key(1)[:12] in out
    assert _run(capsys, "clear", "load", "--yes")[0] == 0
    assert not load.is_cached("a")
    assert simulate.is_cached(0)
    code, _, err = _run(capsys, "ls", "cache")  # a directory here, and no such function
    assert code == 2
    _assert_one_line_error(err)
    assert "./cache" in err
    code, _, err = _run(capsys, "ls", "./cache", "--cache-path", str(tmp_path / "elsewhere"))
    assert code == 2
    _assert_one_line_error(err)


def test_pull_signed_only_copies_only_with_the_key(
    tmp_path: Path, s3_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``memo pull SRC --signed-only``: SRC is written by others, so nothing is copied until
    MEMO_SECRET_KEY is set (then every load checks the signatures); without the flag the
    same bucket is copied as any."""
    secret = "a team secret of enough length"
    memo.decorate(_area, cache_path=s3_url, secret_key=secret)(2, 3)
    laptop = tmp_path / "laptop"
    code, out, _ = _run(capsys, "pull", s3_url, "--signed-only", "--cache-path", str(laptop))
    assert (code, out.split()[:2]) == (0, ["copied", "0"])
    monkeypatch.setenv("MEMO_SECRET_KEY", secret)
    code, out, _ = _run(capsys, "pull", s3_url, "--signed-only", "--cache-path", str(laptop))
    assert (code, out.split()[:3]) == (0, ["copied", "1", "entry"])


def test_push_then_pull_copies_verified_entries_and_resumes(
    tmp_path: Path, s3_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``memo push DST`` copies a cache's entries to a bucket and ``memo pull SRC`` into a new
    laptop cache (made if missing): byte for byte, hits without computing; run again, each
    copies nothing; ``--function`` and ``--since`` choose what is copied."""
    ci = tmp_path / "ci"
    simulate, _ = _fill(ci)
    code, out, _ = _run(capsys, "push", s3_url, "--cache-path", str(ci), "--no-progress")
    assert code == 0
    assert out.startswith("copied 4 entries")
    again = json.loads(_run(capsys, "push", s3_url, "--cache-path", str(ci), "--json")[1])
    assert again == {"entries": 0, "bytes": 0, "to": s3_url}
    laptop = tmp_path / "laptop" / "memo"
    code, out, _ = _run(capsys, "pull", s3_url, "--cache-path", str(laptop), "--function", "load")
    assert (code, out.split()[:3]) == (0, ["copied", "1", "entry"])
    code, out, _ = _run(capsys, "--cache-path", str(laptop), "pull", s3_url, "--since", "1h")
    assert out.startswith("copied 3 entries")
    assert _run(capsys, "pull", s3_url, "--cache-path", str(laptop))[1].startswith("copied 0")
    assert memo.Store(laptop).verify() == []
    copies = {entry.key: entry for entry in memo.Store(laptop).entries()}
    for entry in memo.Store(ci).entries():
        assert copies[entry.key].path.read_bytes() == entry.path.read_bytes()
    offline = memo.decorate(simulate.__wrapped__, cache_path=laptop)
    assert offline(2) == b"x" * 1_500_000
    assert offline.cache_info().misses == 0
    (tmp_path / "none").mkdir()
    assert memo.Store(tmp_path / "none").pull(s3_url, since="0s", progress=False) == []
    with pytest.raises(memo.ReadOnlyError):
        memo.Store(laptop, read_only=True).pull(s3_url)


def test_read_only_cache_is_said_and_refuses_writes(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``memo --read-only`` opens the cache read-only: ``stats`` says so, and ``clear`` and
    ``prune`` exit 2 with one line saying why, removing nothing."""
    _fill(cache_dir)
    code, out, _ = _run(capsys, "--read-only", "stats", str(cache_dir))
    assert code == 0
    assert out.splitlines()[0].endswith("(read-only)")
    assert json.loads(_run(capsys, "stats", str(cache_dir), "--json")[1])["read_only"] is False
    for command in (["clear", "--yes"], ["prune", "--older-than", "0s"]):
        code, _, err = _run(capsys, "--read-only", *command, "--cache-path", str(cache_dir))
        assert code == 2
        _assert_one_line_error(err)
        assert "read-only" in err
    assert len(memo.Store(cache_dir).entries()) == 4
