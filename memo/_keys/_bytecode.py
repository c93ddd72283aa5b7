"""Which instructions of a code object count in its fingerprint.

Not the bookkeeping ones (``CACHE``, ``NOP``, ``EXTENDED_ARG``), and not those that compute a
nested function's annotations: annotations do not change what code computes, so editing
``def inner(y: int)`` to ``def inner(y: float)`` must not recompute (the decorated function's
own annotations are not in its code at all). Also: the modules a code object imports, since a
function-local ``from .helpers import scale`` reaches code as surely as a global does.
"""

from __future__ import annotations

import dis
import types
from typing import Any, NamedTuple

__all__ = ["Op", "counted", "imports"]

_BOOKKEEPING = frozenset({"CACHE", "NOP", "EXTENDED_ARG"})
# Flags of MAKE_FUNCTION (3.11, 3.12) and SET_FUNCTION_ATTRIBUTE (3.13 on): annotations, and
# the __annotate__ function of 3.14; the closure, which sits above them on the stack.
_ANNOTATIONS = 0x04 | 0x10
_CLOSURE = 0x08


class Op(NamedTuple):
    """One instruction as the fingerprint sees it."""

    name: str
    value: Any


def counted(code: types.CodeType) -> list[Op]:
    """The instructions of ``code`` that count, in order (without nested annotations)."""
    instructions = [i for i in dis.get_instructions(code) if i.opname not in _BOOKKEEPING]
    dropped: set[int] = set()
    ops = []
    for index, instruction in enumerate(instructions):
        name, value = instruction.opname, instruction.argval
        if name == "MAKE_FUNCTION":
            flags = _flags(instructions, index)
            if flags & _ANNOTATIONS:
                dropped.update(_annotation_span(instructions, index, flags))
            if isinstance(value, int):  # (3.11, 3.12: the flags are its argument)
                value &= ~_ANNOTATIONS
        elif name == "SET_FUNCTION_ATTRIBUTE" and (instruction.arg or 0) & _ANNOTATIONS:
            dropped.add(index)
        ops.append(Op(name, value))
    return [op for index, op in enumerate(ops) if index not in dropped]


def imports(ops: list[Op]) -> list[tuple[str, int]]:
    """The modules the instructions import: ``(name, level)`` (a level above 0: relative)."""
    found = []
    for index, op in enumerate(ops):
        if op.name == "IMPORT_NAME" and index >= 2 and ops[index - 2].name == "LOAD_CONST":
            level = ops[index - 2].value
            found.append((str(op.value), level if isinstance(level, int) else 0))
    return found


def _flags(instructions: list[dis.Instruction], index: int) -> int:
    arg = instructions[index].arg
    if arg:
        return arg
    flags = 0  # 3.13 on: one SET_FUNCTION_ATTRIBUTE per attribute follows
    for following in instructions[index + 1 :]:
        if following.opname != "SET_FUNCTION_ATTRIBUTE":
            break
        flags |= following.arg or 0
    return flags


def _annotation_span(instructions: list[dis.Instruction], index: int, flags: int) -> range:
    """The instructions that push a nested function's annotations: on the stack below its
    code object (and its closure), found by walking back over their stack effects. Empty
    when the walk is not plain straight-line code (then the annotations count: a recompute
    too many, never a stale result)."""
    above = 1 + (1 if flags & _CLOSURE else 0)
    end = _walk_back(instructions, index - 1, above)
    start = _walk_back(instructions, end, 1)
    if start is None or end is None:
        return range(0)
    return range(start + 1, end + 1)


def _walk_back(instructions: list[dis.Instruction], last: int | None, values: int) -> int | None:
    """The index just before the instructions ending at ``last`` that push ``values`` values."""
    if last is None:
        return None
    total, index = 0, last
    while total < values:
        if index < 0:
            return None
        instruction = instructions[index]
        if instruction.is_jump_target or "JUMP" in instruction.opname:
            return None
        try:
            total += dis.stack_effect(instruction.opcode, instruction.arg, jump=False)
        except (ValueError, TypeError):
            return None
        index -= 1
    return index if total == values else None
