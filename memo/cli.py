"""The ``memo`` command: look into a cache directory and maintain it.

``memo ls``, ``show``, ``diff``, ``stats``, ``prune``, ``verify``, ``clear``, ``pull`` and
``push``, on the store at
``--cache-path`` (before or after the command) or the command's first operand (``memo prune
DIR --max-size 10GB``; default: ``MEMO_CACHE_DIR``, else the user cache directory). ``--json``
prints machine-readable output. Exit codes: 0 ok, 1 problems found, 2 bad usage or input; an
error is one line on stderr starting with ``memo:``. Built on the public API (``memo.Store``)
only, so everything here can be done from Python too. ``memo bless`` and ``memo plan`` run
your code instead (a function to bless; a script as a dry run, ``memo.dry_run``), each memoized
function with its own stores.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, NoReturn

import memo
from memo._config import default_location, max_size_from_env, set_default_location
from memo._dry_run import run_script

__all__ = ["main"]

_ARGUMENTS_WIDTH = 60


class _UsageError(Exception):
    """A bad command line; the message is printed after ``memo:``."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage and exits; one line and a pointer to --help is enough.
        raise _UsageError(f"{message} (see 'memo --help')")


def main(argv: list[str] | None = None) -> int:
    """Run the ``memo`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit
    code."""
    try:
        args = _parser().parse_args(argv)
        if args.run in (_bless, _plan):  # (functions' own stores: no cache directory to open)
            if getattr(args, "cache_path", None):
                set_default_location(args.cache_path)  # (for functions given no cache_path)
            ran: int = args.run(args, bool(getattr(args, "json", False)))
            return ran
        path = _cache_path(args)
        if getattr(args, "creates", False):
            _make_directory(path)
        try:
            read_only = bool(getattr(args, "read_only", False))
            store = (
                memo.Store(path, read_only=read_only)
                if path
                else memo.Store.default(read_only=read_only)
            )
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{exc}{_directory_hint(args)}") from None
        code: int = args.run(store, args, getattr(args, "json", False))
        return code
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError:
        # The reader went away (`memo ls | head`): stop quietly, and keep Python from
        # complaining when it flushes stdout at exit.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (_UsageError, memo.MemoError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"memo: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    # The global options are accepted before and after the command; SUPPRESS keeps a
    # subcommand's default from overwriting a value given before it.
    common = _Parser(add_help=False)
    common.add_argument(
        "--cache-path",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="the cache directory (default: $MEMO_CACHE_DIR, else the user cache directory)",
    )
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    common.add_argument(
        "--read-only",
        action="store_true",
        default=argparse.SUPPRESS,
        help="never write to the cache (a team's, say): commands that would fail",
    )
    parser = _Parser(
        prog="memo",
        parents=[common],
        description="Look into a memo cache directory and maintain it.",
        epilog="Exit codes: 0 ok, 1 problems found, 2 bad usage or input.",
    )
    # memo is installed as memo-cache: "memo" on the package index is another project.
    version = f"memo-cache {memo.__version__}"
    parser.add_argument("--version", action="version", version=version)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(
        name: str, run: Callable[..., int], text: str, bare_is_function: bool = False
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=text, description=text)
        sub.set_defaults(run=run, bare_is_function=bare_is_function)
        # The cache directory may come first among the operands (memo prune DIR): always a
        # directory where the operands are counted (show, diff) or there are no others.
        where = _PATH_OR_NAME if bare_is_function else "the cache directory (as --cache-path)"
        sub.add_argument("path", nargs="?", metavar="PATH", help=where)
        return sub

    ls = command("ls", _ls, "list functions, or one function's entries", bare_is_function=True)
    ls.add_argument("function", nargs="?", metavar="FUNCTION", help="a function name")
    show = command("show", _show, "show an entry's metadata")
    show.add_argument("key", metavar="KEY", help="a key or unique key prefix")
    diff = command("diff", _diff, "show what sets two entries' keys apart")
    diff.add_argument("key1", metavar="KEY1")
    diff.add_argument("key2", metavar="KEY2")
    command("stats", _stats, "show totals, size by function and budget use")
    prune = command("prune", _prune, "remove least recently used entries")
    prune.add_argument(
        "--max-size",
        metavar="SIZE",
        help="keep at most this much, e.g. 10GB (default: $MEMO_MAX_SIZE)",
    )
    prune.add_argument("--older-than", metavar="AGE", help="remove entries unused for, e.g. 30d")
    prune.add_argument("--function", metavar="NAME", help="only this function's entries")
    prune.add_argument("--dry-run", action="store_true", help="only show what would go")
    verify = command("verify", _verify, "check every entry; exit 1 if problems remain")
    verify.add_argument("--fix", action="store_true", help="remove damaged entries and orphans")
    clear = command("clear", _clear, "remove all entries, or one function's", True)
    clear.add_argument("function", nargs="?", metavar="FUNCTION", help="a function name")
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    for name, run, text, other in (
        ("pull", _pull, "copy the entries of SRC this cache lacks into it", "SRC"),
        ("push", _push, "copy this cache's entries that DST lacks into DST", "DST"),
    ):
        sub = commands.add_parser(name, parents=[common], help=text, description=text)
        sub.set_defaults(run=run, bare_is_function=False, creates=name == "pull")
        sub.add_argument("other", metavar=other, help="another store: a directory or a URL")
        sub.add_argument("--function", metavar="NAME", help="only this function's entries")
        sub.add_argument("--since", metavar="AGE", help="only entries created since, e.g. 7d")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        if name == "pull":
            sub.add_argument(
                "--signed-only",
                action="store_true",
                help="SRC is written by others: copy its entries only with MEMO_SECRET_KEY set",
            )
    text = "record that a function's current code answers for its earlier entries"
    bless = commands.add_parser("bless", parents=[common], help=text, description=text)
    bless.set_defaults(run=_bless, bare_is_function=False)
    bless.add_argument("target", metavar="MODULE:FUNCTION", help="e.g. pipeline.steps:simulate")
    bless.add_argument(
        "--check",
        metavar="ITEM",
        action="append",
        default=[],
        help="an argument to compute and compare first (a Python literal; repeatable)",
    )
    bless.add_argument(
        "--sample",
        metavar="N",
        type=int,
        help="compute and compare N stored calls first, rebuilt from their recorded arguments",
    )
    text = "run a script with every memoized call answered from the cache or planned"
    plan = commands.add_parser("plan", parents=[common], help=text, description=text)
    plan.set_defaults(run=_plan, bare_is_function=False)
    plan.add_argument("script", metavar="SCRIPT", help="a Python script, e.g. run.py")
    plan.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS", help="its arguments")
    return parser


_PATH_OR_NAME = (
    "the cache directory (as --cache-path); given alone, it is a directory only if it looks "
    "like a path (./cache, ~/cache, /data/cache, s3://...), else the FUNCTION"
)


def _looks_like_path(text: str) -> bool:
    """Whether an operand is a path rather than a function name (which never holds a
    separator and never starts with "." or "~")."""
    separators = {"/", os.sep, os.altsep or "/", "://"}
    return text in (".", "..") or text.startswith("~") or any(s in text for s in separators)


def _cache_path(args: argparse.Namespace) -> str | None:
    """The store's location from --cache-path or the PATH operand (one of them, or both the
    same); moves a lone operand of ls or clear that names no path to ``args.function``."""
    option = getattr(args, "cache_path", None)
    operand = getattr(args, "path", None)
    if (
        operand is not None
        and args.bare_is_function
        and args.function is None
        and not _looks_like_path(operand)
    ):
        # (memo ls NAME and memo clear NAME name a function, as they always have)
        args.function, operand = operand, None
    if operand is not None and option is not None and operand != option:
        raise _UsageError(
            f"the cache directory is given twice ({operand!r} and --cache-path {option!r}); "
            "give one"
        )
    return operand if operand is not None else option


def _directory_hint(args: argparse.Namespace) -> str:
    """For a function name that is also a directory here: how to name the directory."""
    name = getattr(args, "function", None)
    if not args.bare_is_function or not name or not os.path.isdir(name):
        return ""
    return f"; for the store in the directory {name!r}, write ./{name} or --cache-path {name}"


# --- commands --------------------------------------------------------------------------------


def _ls(store: memo.Store, args: argparse.Namespace, as_json: bool) -> int:
    now = time.time()
    if args.function is None:
        functions = store.functions()
        if as_json:
            return _print_json([_record(info) for info in functions])
        if not functions:
            print(f"no entries in {store.root}")
            return 0
        rows = [
            [f.name, f"{f.entries:,}", _size(f.bytes), _ago(f.last_used, now), _ago(f.oldest, now)]
            for f in functions
        ]
        _table(["FUNCTION", "ENTRIES", "SIZE", "LAST USED", "OLDEST"], rows, right={1, 2})
        count, total = sum(f.entries for f in functions), sum(f.bytes for f in functions)
        summary = f"{_n(len(functions), 'function')}, {_n(count, 'entry')}, {_size(total)}"
        print(f"{summary} in {store.root}")
        return 0
    entries = _function_entries(store, args.function, args)
    metadata = [entry.metadata() or {} for entry in entries]
    if as_json:
        return _print_json(
            [
                {
                    **_record(entry),
                    "function": meta.get("function"),
                    "arguments": meta.get("arguments"),
                }
                for entry, meta in zip(entries, metadata, strict=True)
            ]
        )
    rows = [
        [
            entry.key[:12],
            _size(entry.bytes),
            _ago(entry.created, now),
            _ago(entry.last_used, now),
            _arguments(meta),
        ]
        for entry, meta in zip(entries, metadata, strict=True)
    ]
    _table(["KEY", "SIZE", "CREATED", "LAST USED", "ARGUMENTS"], rows, right={1})
    return 0


def _show(store: memo.Store, args: argparse.Namespace, as_json: bool) -> int:
    entry = store.find(args.key)
    metadata = entry.metadata()
    if as_json:
        return _print_json({**_record(entry), "metadata": metadata})
    now = time.time()
    lines = [("path", str(entry.path))]
    if entry.payload is not None:
        lines.append(("value file", str(entry.payload)))  # what np.load, pandas, jq open
    lines += [
        ("size", _size(entry.bytes)),
        ("created", _when(entry.created, now)),
        ("last used", _when(entry.last_used, now)),
    ]
    for field, value in (metadata or {}).items():
        if isinstance(value, dict):
            lines.append((field, ""))
            lines.extend((f"  {name}", _scalar(item)) for name, item in value.items())
        elif field == "created" and isinstance(value, int | float):
            continue  # the file's own time is shown above
        else:
            lines.append((field, _scalar(value)))
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        print(f"{label:<{width}}  {value}".rstrip())
    if metadata is None:
        print("memo: the entry's metadata cannot be read (run memo verify)", file=sys.stderr)
        return 1
    return 0


def _diff(store: memo.Store, args: argparse.Namespace, as_json: bool) -> int:
    first, second = store.find(args.key1), store.find(args.key2)
    differences = store.diff(first.key, second.key)
    if as_json:
        return _print_json(
            [{"component": name, "value1": a, "value2": b} for name, a, b in differences]
        )
    if not differences:
        print("no key component differs")
        return 0
    rows = [[name, _scalar(a), _scalar(b)] for name, a, b in differences]
    _table(["COMPONENT", first.key[:12], second.key[:12]], rows)
    return 0


def _stats(store: memo.Store, args: argparse.Namespace, as_json: bool) -> int:
    stats = store.stats()
    if as_json:
        return _print_json(_record(stats))
    print(f"store    {stats.root}{' (read-only)' if stats.read_only else ''}")
    print(f"entries  {_n(stats.entries, 'entry')} of {_n(len(stats.functions), 'function')}")
    print(f"size     {_size(stats.bytes)}")
    if stats.max_size is None:
        print("budget   none (set MEMO_MAX_SIZE)")
    else:
        share = stats.bytes / stats.max_size if stats.max_size else 1.0
        print(f"budget   {_size(stats.bytes)} of {_size(stats.max_size)} ({share:.0%})")
    if stats.functions:
        print()
        rows = [
            [f.name, f"{f.entries:,}", _size(f.bytes), f"{f.bytes / (stats.bytes or 1):.0%}"]
            for f in stats.functions
        ]
        _table(["FUNCTION", "ENTRIES", "SIZE", "SHARE"], rows, right={1, 2, 3})
    return 0


def _bless(args: argparse.Namespace, as_json: bool) -> int:
    import ast
    import importlib

    module, _, name = args.target.partition(":")
    if not module or not name:
        raise _UsageError(
            f"bless takes MODULE:FUNCTION, e.g. pipeline.steps:simulate, not {args.target!r}"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # (as python -m does: the project's own modules)
    function: Any = importlib.import_module(module)
    for part in name.split("."):
        function = getattr(function, part)
    if not isinstance(function, memo.Memoized):
        raise _UsageError(f"{args.target} is not a memoized function")
    try:
        check = [ast.literal_eval(item) for item in args.check]
    except (ValueError, SyntaxError) as exc:
        raise _UsageError(
            f"--check takes Python literals, e.g. --check 3 --check \"(1, 'a')\": {exc}"
        ) from None
    if args.sample is not None and check:
        raise _UsageError("give --check ITEM or --sample N, not both")
    record = function.bless(check=check if args.sample is None else args.sample)
    if as_json:
        return _print_json(record)
    earlier = ", ".join(code[:12] for code in record["from"])
    print(f"blessed {record['function']}: code {record['to'][:12]} answers for {earlier}")
    return 0


def _plan(args: argparse.Namespace, as_json: bool) -> int:
    if not os.path.isfile(args.script):
        raise _UsageError(f"plan takes a Python script to run: {args.script!r} is not a file")
    # With --json, what the script prints goes to stderr: stdout holds the plan alone.
    with contextlib.redirect_stdout(sys.stderr if as_json else sys.stdout):
        run = run_script(args.script, args.script_args)
    if as_json:
        _print_json(run.summary())
    else:
        print(run)
    return 1 if run.failed else 0


def _make_directory(path: str | None) -> None:
    """Make the local cache directory a pull copies into, if it is missing."""
    where = path or default_location()
    if isinstance(where, str) and "://" in where:
        return
    os.makedirs(os.path.expanduser(str(where)), mode=0o700, exist_ok=True)


def _pull(store: memo.Store, args: argparse.Namespace, as_json: bool) -> int:
    source = memo.Store(args.other, signed_only=args.signed_only)
    return _copied(store.pull(source, **_copy_options(args)), args.other, "from", as_json)


def _push(store: memo.Store, args: argparse.Namespace, as_json: bool) -> int:
    return _copied(store.push(args.other, **_copy_options(args)), args.other, "to", as_json)


def _copy_options(args: argparse.Namespace) -> dict[str, Any]:
    progress = False if args.no_progress or getattr(args, "json", False) else None
    return {"function": args.function, "since": args.since, "progress": progress}


def _copied(entries: list[memo.EntryInfo], other: str, way: str, as_json: bool) -> int:
    total = sum(entry.bytes for entry in entries)
    if as_json:
        return _print_json({"entries": len(entries), "bytes": total, way: other})
    print(f"copied {_n(len(entries), 'entry')} ({_size(total)}) {way} {other}")
    return 0


def _prune(store: memo.Store, args: argparse.Namespace, as_json: bool) -> int:
    if not (args.max_size or args.older_than or max_size_from_env() is not None):
        raise _UsageError(
            "prune needs --max-size SIZE or --older-than AGE (or MEMO_MAX_SIZE set), "
            "e.g. memo prune --max-size 10GB, or memo prune --older-than 30d --dry-run"
        )
    if args.function is not None:
        _function_entries(store, args.function)
    before = store.functions()
    removed = store.prune(
        max_size=args.max_size,
        older_than=args.older_than,
        function=args.function,
        dry_run=args.dry_run,
    )
    total = sum(entry.bytes for entry in removed)
    if as_json:
        return _print_json(
            {
                "dry_run": args.dry_run,
                "entries": len(removed),
                "bytes": total,
                "removed": [_record(entry) for entry in removed],
            }
        )
    left = sum(f.bytes for f in before) - total
    count = sum(f.entries for f in before) - len(removed)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {_n(len(removed), 'entry')} ({_size(total)}); {count:,} ({_size(left)}) remain")
    return 0


def _verify(store: memo.Store, args: argparse.Namespace, as_json: bool) -> int:
    problems = store.verify(fix=args.fix)
    remaining = sum(not problem.fixed for problem in problems)
    if as_json:
        _print_json([_record(problem) for problem in problems])
    elif not problems:
        print(f"no problems found in {store.root}")
    else:
        rows = [
            [p.kind, "fixed" if p.fixed else "open", str(p.path.relative_to(store.root)), p.detail]
            for p in problems
        ]
        _table(["PROBLEM", "STATUS", "PATH", "DETAIL"], rows)
        print(f"{_n(len(problems), 'problem')}, {len(problems) - remaining} fixed")
    return 1 if remaining else 0


def _clear(store: memo.Store, args: argparse.Namespace, as_json: bool) -> int:
    if not args.yes and not sys.stdin.isatty():
        raise _UsageError("clear deletes entries: pass --yes to confirm (stdin is not a terminal)")
    entries = _function_entries(store, args.function, args) if args.function else store.entries()
    if not args.yes and entries:
        what = _n(len(entries), "entry") + (f" of {args.function}" if args.function else "")
        size = _size(sum(entry.bytes for entry in entries))
        # The question goes to stderr, so stdout stays clean for --json.
        print(f"delete {what} ({size}) in {store.root}? [y/N] ", end="", file=sys.stderr)
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in {"y", "yes"}:
            print("nothing deleted", file=sys.stderr)
            return 0
    removed = store.clear(args.function)
    total = sum(entry.bytes for entry in removed)
    if as_json:
        return _print_json({"entries": len(removed), "bytes": total})
    print(f"removed {_n(len(removed), 'entry')} ({_size(total)})")
    return 0


# --- formatting ------------------------------------------------------------------------------


def _function_entries(
    store: memo.Store, function: str, args: argparse.Namespace | None = None
) -> list[memo.EntryInfo]:
    entries = store.entries(function)
    if not entries:
        hint = "" if args is None else _directory_hint(args)
        raise _UsageError(
            f"no entries of a function named {function!r} in {store.root} (see memo ls){hint}"
        )
    return entries


def _record(obj: Any) -> Any:
    """A dataclass as JSON-ready data (paths as strings)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            field.name: _record(getattr(obj, field.name))
            for field in dataclasses.fields(obj)
            if not field.name.startswith("_")  # (an entry's store, kept for reading it)
        }
    if isinstance(obj, list):
        return [_record(item) for item in obj]
    return str(obj) if isinstance(obj, os.PathLike) else obj


def _print_json(data: Any) -> int:
    print(json.dumps(data, indent=2, default=str))
    return 0


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()
) -> None:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def _n(count: int, noun: str) -> str:
    """``1 entry``, ``2,000 entries``."""
    if count == 1:
        return f"1 {noun}"
    return f"{count:,} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"


def _size(count: float) -> str:
    """``512 B``, ``1.2 MB``, ``340 GB`` (powers of 1000, as ``--max-size`` reads them)."""
    if count < 1000:
        return f"{int(count)} B"
    for unit in ("KB", "MB", "GB", "TB"):
        count /= 1000
        if count < 999.5:
            return f"{count:.1f} {unit}" if count < 99.95 else f"{count:.0f} {unit}"
    return f"{count / 1000:.1f} PB"


def _ago(moment: float, now: float) -> str:
    """``45 s ago``, ``3 h ago``, ``12 d ago``."""
    seconds = max(now - moment, 0.0)
    for limit, unit, span in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600)):
        if seconds < limit:
            return f"{int(seconds // span)} {unit} ago"
    days = seconds / 86400
    return f"{int(days)} d ago" if days < 730 else f"{days / 365.25:.0f} y ago"


def _when(moment: float, now: float) -> str:
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(moment))} ({_ago(moment, now)})"


def _scalar(value: Any) -> str:
    return "-" if value is None else value if isinstance(value, str) else json.dumps(value)


def _arguments(metadata: dict[str, Any]) -> str:
    arguments = metadata.get("arguments")
    if not isinstance(arguments, dict):
        return "?"
    text = ", ".join(f"{name}={value}" for name, value in arguments.items())
    return text if len(text) <= _ARGUMENTS_WIDTH else text[: _ARGUMENTS_WIDTH - 3] + "..."
