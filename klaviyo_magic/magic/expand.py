"""``{expression}`` and ``$name`` in a magic line, expanded by us instead of by IPython.

IPython would turn ``{customers[customers.ltv > 500]}`` into the DataFrame's printed text before the magic sees
it. Here an expression in braces that stands alone where a DataFrame goes is evaluated in the notebook and used
as the segment itself; anywhere else (``--list {list_id}``) its value is put in as text, as IPython does.
``$name`` puts in a variable's value; ``{{`` and ``$$`` are a literal ``{`` and ``$``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import UsageError

_PLACEHOLDER = "__klaviyo_expression_{}__"
_PLACEHOLDER_RE = re.compile(r"__klaviyo_expression_(\d+)__")
_NAME = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Expanded:
    """The line's words, with each ``{expression}`` standing as a placeholder, and the expressions' values."""

    words: list[str]
    expressions: list[str] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def value(self, word: str) -> tuple[bool, Any]:
        """``(True, value)`` when ``word`` is exactly one expression (a segment given as an expression)."""
        match = _PLACEHOLDER_RE.fullmatch(word)
        return (True, self.values[int(match.group(1))]) if match else (False, None)

    def expression(self, word: str) -> str | None:
        match = _PLACEHOLDER_RE.fullmatch(word)
        return self.expressions[int(match.group(1))] if match else None

    def text(self, word: str) -> str:
        """``word`` with its expressions put in as text (``--list {list_id}``)."""
        return _PLACEHOLDER_RE.sub(lambda m: str(self.values[int(m.group(1))]), word)


def expand(
    line: str, evaluate: Callable[[str], Any], namespace: Mapping[str, Any], *, dollars: bool = True
) -> Expanded:
    """Split ``line`` into words, evaluating each ``{expression}`` with ``evaluate`` (and ``$name`` from
    ``namespace`` when ``dollars``). A mistake in an expression is a one-line ``UsageError``."""
    expressions: list[str] = []
    out: list[str] = []
    position = 0
    while position < len(line):
        char = line[position]
        if line.startswith("{{", position):
            out.append("{")
            position += 2
        elif char == "{":
            end = _closing_brace(line, position)
            expressions.append(line[position + 1 : end].strip())
            out.append(_PLACEHOLDER.format(len(expressions) - 1))
            position = end + 1
        else:
            out.append(char)
            position += 1
    text = "".join(out)
    if dollars:
        text = _dollars(text, namespace)
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"Cannot parse the line ({exc}); check its quotes.") from None
    values = []
    for expression in expressions:
        if not expression:
            raise UsageError("Empty braces {} in the line: put a Python expression in them, e.g. {vip}")
        try:
            values.append(evaluate(expression))
        except Exception as exc:
            raise UsageError(f"{{{expression}}} could not be evaluated: {type(exc).__name__}: {exc}") from None
    return Expanded(words, expressions, values)


def _closing_brace(line: str, start: int) -> int:
    """The position of the ``}`` closing the ``{`` at ``start``, skipping nested brackets and quoted strings."""
    depth = 0
    quote: str | None = None
    position = start
    while position < len(line):
        char = line[position]
        if quote:
            if char == "\\":
                position += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
            if depth == 0:
                if char != "}":
                    raise UsageError(f"Unbalanced brackets in {line[start : position + 1]!r}: close them before '}}'")
                return position
        position += 1
    raise UsageError(f"The '{{' at {line[start : start + 30]!r} is never closed: add the closing '}}'")


def _dollars(text: str, namespace: Mapping[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in namespace:
            raise UsageError(f"${name} is not defined in this notebook")
        return str(namespace[name])

    parts = text.split("$$")
    return "$".join(_NAME.sub(value, part) for part in parts)


def bare_expression_hint(line: str, word: str) -> str | None:
    """For a segment typed as a bare expression (``customers[customers.ltv > 500]``, which the shell splits into
    pieces), the line with it in braces, which is how to export an expression."""
    if word.isidentifier():
        return None
    before_options = re.split(r"\s--?[A-Za-z]", " " + line, maxsplit=1)[0].strip()
    return f"{{{before_options}}}"
