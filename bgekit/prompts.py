"""Instruction templates and ICL few-shot prefixes."""
from __future__ import annotations

from typing import Any


def apply_instruction(fmt: str, instruction: Any, text: str) -> str:
    """Fill ``fmt`` (two ``{}``: instruction, text). A literal backslash-n in ``fmt`` becomes a newline.

    Example:
        >>> apply_instruction("Instruct: {}\\\\nQuery: {}", "Find it", "cats")
        'Instruct: Find it\\nQuery: cats'
    """
    return fmt.replace("\\n", "\n").format(instruction, text)


def icl_prefix(examples: list[dict] | None, fmt: str, default_instruction: Any) -> str:
    """The few-shot prefix of ICL queries: examples joined by blank lines, ending in a blank line.

    An example without "instruct" uses ``default_instruction``; like the reference, a None default is
    rendered as the text "None".

    Raises:
        TypeError: ``examples`` is not a list of dicts (naming the bad item).
    """
    if not examples:
        return ""
    if not isinstance(examples, (list, tuple)):
        raise TypeError(f"examples_for_task must be a list of dicts, got {type(examples).__name__}")
    parts = []
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict):
            raise TypeError(f"examples_for_task[{i}] must be a dict with 'instruct', 'query', 'response', got {type(ex).__name__}")
        unknown = set(ex) - {"instruct", "query", "response"}
        if unknown:
            raise ValueError(f"examples_for_task[{i}] has unknown keys {sorted(unknown)}; valid: instruct, query, response")
        parts.append(fmt.replace("\\n", "\n").format(ex.get("instruct", default_instruction), ex.get("query", ""), ex.get("response", "")))
    return "\n\n".join(parts) + "\n\n"
