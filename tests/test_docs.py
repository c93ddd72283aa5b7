"""The documentation cannot rot: every code block in docs/ runs, and the site builds strictly.

Conventions for the fenced code blocks of ``docs/*.md``:

- ``python``: run. A page's Python blocks run in order in one fresh interpreter (a later block
  sees what earlier ones defined), with the working directory and ``MEMO_CACHE_DIR`` in a
  temporary directory. A failing block fails the page; the traceback names the page and line.
- ``bash`` and ``console``: run after the page's Python blocks, in the same directory and with
  the same cache, by ``bash -e -o pipefail``; ``memo`` and ``python`` are this interpreter's.
  In a ``console`` block only the lines starting with ``$ `` run; the other lines are output
  shown for reading and are not compared.
- ``text``: output or a picture for reading, not code; never run.
- Any block preceded by ``<!-- docs: no-run REASON -->`` is not run (a Python one is still
  compiled); the reason is required.
- Any other language, or none, fails the test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
PYTHON = frozenset({"python"})
SHELL = frozenset({"bash", "console"})
NOT_CODE = frozenset({"text"})
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_NO_RUN = re.compile(r"^\s*<!--\s*docs:\s*no-run\b(?P<reason>.*?)-->\s*$")
_MARKER_LIKE = re.compile(r"<!--\s*docs:")

# Runs a page's Python blocks in __main__, each compiled under the page's name and with its own
# line numbers, so a traceback points at the Markdown source.
_DRIVER = """
import __main__, json, sys

def _run_docs_blocks(path):
    with open(path, encoding="utf-8") as handle:
        blocks = json.load(handle)
    for block in blocks:
        padded = "\\n" * (block["line"] - 1) + block["source"]
        exec(compile(padded, block["page"], "exec"), __main__.__dict__)

_run_docs_blocks(sys.argv[1])
"""


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, its text and why it is not run."""

    page: str
    line: int  # line number of the block's first line of code
    language: str
    source: str
    no_run: str | None

    @property
    def runs(self) -> bool:
        """Whether the runner executes this block."""
        return self.no_run is None and self.language in PYTHON | SHELL


class DocsFormatError(ValueError):
    """A page breaks the conventions above (a marker without a reason or without a block)."""


def parse(text: str, name: str) -> list[Block]:
    """The fenced code blocks of one page's text, with their no-run markers."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    marker: str | None = None
    marker_line = 0
    while index < len(lines):
        line = lines[index]
        found = _NO_RUN.match(line)
        if found:
            marker, marker_line = found["reason"].strip(), index + 1
            if not marker:
                raise DocsFormatError(f"{name}:{index + 1}: a no-run marker needs a reason")
            index += 1
            continue
        if _MARKER_LIKE.search(line):
            raise DocsFormatError(f"{name}:{index + 1}: malformed docs marker")
        fence = _FENCE.match(line)
        if fence is None:
            if line.strip() and marker is not None:
                raise DocsFormatError(f"{name}:{marker_line}: a no-run marker must precede a block")
            index += 1
            continue
        indent, chars = len(fence["indent"]), fence["fence"]
        language = fence["info"].split()[0] if fence["info"].strip() else ""
        body: list[str] = []
        index += 1
        start = index + 1
        while index < len(lines) and not (
            lines[index].strip().startswith(chars) and not lines[index].strip().strip(chars[0])
        ):
            body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index])
            index += 1
        if index == len(lines):
            raise DocsFormatError(f"{name}:{start - 1}: unclosed code block")
        index += 1
        blocks.append(Block(name, start, language, "\n".join(body) + "\n", marker))
        marker = None
    if marker is not None:
        raise DocsFormatError(f"{name}:{marker_line}: a no-run marker must precede a block")
    return blocks


ALL_BLOCKS = {
    page.name: parse(page.read_text(encoding="utf-8"), f"docs/{page.name}") for page in PAGES
}


def _environment(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no inherited MEMO_* settings, a temporary cache, this interpreter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, command in (("memo", '-m memo "$@"'), ("python", '"$@"')):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" {command}\n')
        script.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MEMO_")}
    env["MEMO_CACHE_DIR"] = str(tmp_path / "cache")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["NO_MKDOCS_2_WARNING"] = "1"
    # A local test server (moto) must not be reached through a proxy.
    env["NO_PROXY"] = ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    return env


def _shell_source(block: Block) -> str:
    if block.language == "console":
        return "\n".join(line[2:] for line in block.source.splitlines() if line.startswith("$ "))
    return block.source


def test_parser_follows_the_conventions() -> None:
    """Languages, markers, indented fences and line numbers are read as documented."""
    page = (
        "# Title\n"
        "```python\n"
        "x = 1\n"
        "```\n"
        "<!-- docs: no-run needs the network -->\n"
        "\n"
        "```bash\n"
        "pip install memo\n"
        "```\n"
        "- a list item:\n"
        "\n"
        "    ```text\n"
        "    output\n"
        "    ```\n"
        "````markdown\n"
        "```python\n"
        "````\n"
    )
    blocks = parse(page, "page.md")
    assert [(b.language, b.line, b.no_run, b.runs) for b in blocks] == [
        ("python", 3, None, True),
        ("bash", 8, "needs the network", False),
        ("text", 13, None, False),
        ("markdown", 16, None, False),
    ]
    assert blocks[0].source == "x = 1\n"
    assert blocks[2].source == "output\n"
    for broken in (
        "<!-- docs: no-run -->\n```python\nx\n```\n",  # no reason
        "<!-- docs: no-run why -->\ntext\n```python\nx\n```\n",  # not before a block
        "<!-- docs: no-run why -->\n",  # at the end
        "<!-- docs: skip -->\n```python\nx\n```\n",  # unknown marker
        "```python\nx\n",  # unclosed
    ):
        with pytest.raises(DocsFormatError):
            parse(broken, "page.md")


def test_every_block_is_run_or_marked(capsys: pytest.CaptureFixture[str]) -> None:
    """Every block has a known language or a no-run reason; the totals are printed."""
    counts: Counter[str] = Counter()
    for blocks in ALL_BLOCKS.values():
        for block in blocks:
            where = f"{block.page}:{block.line}"
            known = PYTHON | SHELL | NOT_CODE
            assert block.language in known, (
                f"{where}: code block language {block.language!r} is not one the docs runner "
                f"knows ({', '.join(sorted(known))}); mark it or use one of those"
            )
            if block.runs:
                counts[f"run ({block.language})"] += 1
            elif block.no_run is not None:
                counts[f"not run, marked ({block.language})"] += 1
                if block.language in PYTHON:
                    compile(block.source, where, "exec")  # skipped, but at least valid Python
            else:
                counts["not run, text (output, not code)"] += 1
    assert counts["run (python)"] > 0
    with capsys.disabled():
        summary = ", ".join(f"{kind}: {count}" for kind, count in sorted(counts.items()))
        print(f"\ndocs code blocks: {summary}")


@pytest.mark.parametrize("page", sorted(ALL_BLOCKS), ids=lambda name: name.removesuffix(".md"))
def test_page_code_runs(page: str, tmp_path: Path) -> None:
    """The page's Python blocks run in one interpreter, then its shell blocks, all exiting 0."""
    blocks = [block for block in ALL_BLOCKS[page] if block.runs]
    if not blocks:
        pytest.skip(f"docs/{page} has no code to run")
    work = tmp_path / "work"
    work.mkdir()
    env = _environment(tmp_path)
    python = [block for block in blocks if block.language in PYTHON]
    if python:
        source_file = tmp_path / "blocks.json"
        source_file.write_text(
            json.dumps([{"page": b.page, "line": b.line, "source": b.source} for b in python])
        )
        result = subprocess.run(
            [sys.executable, "-c", _DRIVER, str(source_file)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"docs/{page}:\n{result.stdout}\n{result.stderr}"
    for block in blocks:
        if block.language not in SHELL:
            continue
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", _shell_source(block)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (
            f"{block.page}:{block.line}:\n{result.stdout}\n{result.stderr}"
        )


# What a theme or plugin prints, or puts on every page, about its own end of life.
_BANNERS = re.compile(
    r"end of life|Zensical|MkDocs 2\.0|ProperDocs|NO_MKDOCS_2_WARNING|maintenance mode", re.I
)


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict`` succeeds, prints no theme banner (as a user runs it, with no
    switch to silence one) and puts none on the site's pages."""
    site = tmp_path / "site"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("NO_MKDOCS_2_WARNING", "DISABLE_MKDOCS_2_WARNING")
    }
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout + result.stderr
    assert not _BANNERS.search(printed), printed
    assert [line for line in printed.splitlines() if not line.startswith("INFO")] == []
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert "md-banner" not in html, page
        assert not _BANNERS.search(html), page
    reference = (site / "reference" / "index.html").read_text(encoding="utf-8")
    assert "memo.cache" in reference
    assert "memo.Memoized" in reference
    for page in PAGES:
        if page.name != "index.md":
            assert (site / page.stem / "index.html").is_file(), page.name


# `pip install memo` installs another project: memo is installed as memo-cache (and imported
# as memo). Quoted, with options or extras: "memo[remote]" is as wrong as memo.
_BARE_INSTALL = re.compile(r"pip3?\s+install(?:\s+-\S+)*\s+[\"']?memo(?![\w-])")
_SCANNED = [ROOT / "memo", DOCS, ROOT / "README.md", ROOT / "examples"]
_TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".txt", ".toml", ".yml", ".yaml", ".cfg", ".rst"}


def _bare_installs(roots: list[Path]) -> list[str]:
    """``file:line: text`` for each bare ``pip install memo`` under ``roots``."""
    found = []
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in files:
            if path.suffix not in _TEXT_SUFFIXES or "__pycache__" in path.parts:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if _BARE_INSTALL.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_install_hints_say_memo_cache() -> None:
    """No install hint, error message or page says a bare ``pip install memo``."""
    for wrong in (
        "pip install memo",
        'pip install "memo[remote]"',
        "python -m pip install -U memo",
    ):
        assert _BARE_INSTALL.search(wrong), wrong
    for right in ("pip install memo-cache", 'pip install "memo-cache[dask]"', "pip install -e ."):
        assert not _BARE_INSTALL.search(right), right
    assert _bare_installs(_SCANNED) == []
