"""Why a call hits or misses: compare its key components with the nearest stored entry.

Entries record digests of every key component (each argument, the code and the user
functions it reaches, ``version``, ``_extra_cache_key``, Python), never the values (but numbers
and short strings, shown whole instead), so a miss can be explained without keeping arguments
around.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import time
from typing import Any

__all__ = ["ABSENT", "Plan", "PlannedCall", "changed_arguments", "differences", "explain_text"]


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()  # in place of the summary of an argument one call does not have


def changed_arguments(first: dict[str, Any], second: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(name, summary in first, summary in second)`` of each argument that differs between
    two entries' (or calls') metadata; a summary is ``ABSENT`` where that side lacks it.

    Arguments are compared by digest; one recorded without a digest (a number or short
    string, shown whole) by its summary.
    """
    digests1, digests2 = first.get("argument_digests") or {}, second.get("argument_digests") or {}
    shown1, shown2 = first.get("arguments") or {}, second.get("arguments") or {}
    changed = []
    for name in dict.fromkeys([*shown1, *digests1, *shown2, *digests2]):
        in1, in2 = name in shown1 or name in digests1, name in shown2 or name in digests2
        digest1, digest2 = digests1.get(name), digests2.get(name)
        if in1 and in2:
            if digest1 is not None and digest2 is not None:
                same = digest1 == digest2
            else:
                same = shown1.get(name) == shown2.get(name)
            if same:
                continue
        changed.append(
            (name, shown1.get(name) if in1 else ABSENT, shown2.get(name) if in2 else ABSENT)
        )
    return changed


def differences(call: dict[str, Any], entry: dict[str, Any]) -> list[str]:
    """Human-readable differences between a call's components and a stored entry's."""
    found: list[str] = []
    mine, theirs = call.get("components", {}), entry.get("components", {})
    if mine.get("python") != theirs.get("python"):
        found.append(f"the Python version ({theirs.get('python')} -> {mine.get('python')})")
    if mine.get("key_format") != theirs.get("key_format"):
        found.append("memo's key format (a memo upgrade)")
    if mine.get("code") != theirs.get("code"):
        found.append(
            _code_change(
                str(mine.get("function")),
                mine.get("code_details") or {},
                theirs.get("code_details") or {},
            )
        )
    if mine.get("version") != theirs.get("version"):
        found.append("version")
    for name, was, now in changed_arguments(entry, call):
        if now is ABSENT:
            found.append(f"argument {name!r} (only in the stored call)")
        elif was is ABSENT:
            found.append(f"argument {name!r} (not in the stored call)")
        else:
            found.append(f"argument {name!r}" + (f" (stored call had {was})" if was else ""))
    if call.get("extra") != entry.get("extra"):
        found.append("_extra_cache_key")
    return found


def _code_change(function: str, now: dict[str, Any], then: dict[str, Any]) -> str:
    code_now, code_then = now.get("user_code", {}), then.get("user_code", {})
    # The function's own full digest changes with any helper; name the helpers instead.
    changed = sorted(
        name
        for name in code_now
        if name != function and name in code_then and code_now[name] != code_then[name]
    )
    parts = []
    if now.get("own") != then.get("own"):
        parts.append(f"{function} itself changed")
    if changed:
        parts.append("changed: " + ", ".join(changed))
    added = sorted(set(code_now) - set(code_then))
    if added:
        parts.append("now also uses: " + ", ".join(added))
    removed = sorted(set(code_then) - set(code_now))
    if removed:
        parts.append("no longer uses: " + ", ".join(removed))
    return "the code fingerprint" + (f" ({'; '.join(parts)})" if parts else "")


def explain_text(
    qualname: str, key: str, call: dict[str, Any], entries: list[dict[str, Any]], hit: bool
) -> str:
    """The explanation for one call, given its components and the function's entries."""
    if hit:
        entry = next((e for e in entries if e.get("key") == key), None)
        when = _when(entry.get("created")) if entry else "earlier"
        return f"hit: {qualname} has a stored result for this call (key {key[:12]}, {when})"
    head = f"miss: {qualname} has no stored result for this call (key {key[:12]})"
    if not entries:
        return head + "; it has no stored entries at all"
    ranked = sorted(entries, key=lambda e: (len(differences(call, e)), -e.get("created", 0)))
    nearest = ranked[0]
    found = differences(call, nearest)
    if not found:
        return head + f"; the nearest entry {nearest.get('key', '?')[:12]} records the same parts"
    return (
        head
        + f"; the nearest stored entry ({nearest.get('key', '?')[:12]}, "
        + f"{_when(nearest.get('created'))}) differs in: "
        + "; ".join(found)
    )


def _when(created: Any) -> str:
    if not isinstance(created, int | float):
        return "at an unknown time"
    moment = datetime.datetime.fromtimestamp(created).astimezone()
    return "stored " + moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def described_call(maker: Any, labels: Any, values: Any, extra: Any) -> dict[str, Any]:
    """A bound call (``KeyMaker.bind``'s ``labels`` and ``values``) as its entry's metadata
    would describe it, with the key's components: what is compared with stored entries."""
    call: dict[str, Any] = json.loads("{" + maker.describe(labels, values, extra) + "}")
    call["components"] = maker.components()
    return call


def miss_reason(
    key: str, call: dict[str, Any], entries: list[dict[str, Any]], max_age: float | None
) -> str:
    """Why a call misses, in words a plan groups by: what sets it apart from the nearest stored
    entry (its code, ``version``, ..., the content of an argument shown alike, such as an
    input file's, or else its arguments: "new arguments"), or why its own entry cannot be
    used."""
    own = next((entry for entry in entries if entry.get("key") == key), None)
    if own is not None:
        created = own.get("created")
        old = isinstance(created, int | float) and time.time() - created > (max_age or 0)
        if max_age is not None and old:
            return "expired by max_age"
        return "its entry cannot be used (damaged, or not trusted)"
    if not entries:
        return "no stored entries"
    ranked = sorted(entries, key=lambda e: (len(differences(call, e)), -e.get("created", 0)))
    found = differences(call, ranked[0])
    besides = [part for part in found if not part.startswith("argument ")]
    if besides:
        return "; ".join(besides)
    changed = changed_arguments(ranked[0], call)
    if changed and all(was is not ABSENT and was == now for _, was, now in changed):
        # Shown alike, digests apart: the same file (memo.File) or array shape, other content.
        return "the content of " + ", ".join(f"argument {name!r}" for name, _, _ in changed)
    return "new arguments"


@dataclasses.dataclass(frozen=True)
class PlannedCall:
    """One item of a plan: its position in the batch, its key, whether it would hit, and
    (a miss) why it would compute."""

    index: int
    key: str
    hit: bool
    reason: str | None


@dataclasses.dataclass(frozen=True)
class Plan:
    """What ``f.plan(items)`` found, running nothing: how many calls would hit and how many
    would compute, the reasons for the misses with their counts (``reasons``), and each
    item's ``calls``. ``str(plan)`` says it in a few lines. Identical items count once."""

    function: str
    calls: list[PlannedCall]

    @property
    def hits(self) -> int:
        """Calls that would load a stored result."""
        return sum(call.hit for call in self.calls)

    @property
    def computes(self) -> int:
        """Calls that would compute."""
        return len(self.calls) - self.hits

    @property
    def reasons(self) -> dict[str, int]:
        """Why the misses would compute, each reason with its count, most common first."""
        counted = collections.Counter(call.reason for call in self.calls if call.reason)
        return dict(counted.most_common())

    def __str__(self) -> str:
        lines = [f"{self.function}: {self.hits} would hit, {self.computes} would compute"]
        lines += [f"  {count} {reason}" for reason, count in self.reasons.items()]
        return "\n".join(lines)
