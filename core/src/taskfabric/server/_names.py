"""The one rule for the projects, domains, versions and names that requests carry.

Every route reads them through parameters annotated with these patterns (path, query and body
fields alike: the app's `ProjectPath`, `NamePath`, ...), so a value such as `..`, `.`, `a/b` or
a 300-character name is refused with a 422 JSON answer before any route runs, and never
reaches a blob path or a database query. The rules are those
the rest of taskfabric applies: projects, domains and versions as registration checks them
(`taskfabric.registry.SCOPE_PATTERN`), names as one path segment that cannot walk up.
"""

from __future__ import annotations

import re

#: Projects, domains and versions: 1-255 letters, digits, '_', '.', '+' or '-', starting with
#: a letter or digit (so never '.' or '..').
SCOPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}$"
#: Names of entities, launch plans, executions and uploads: 1-255 letters, digits, '_', '.',
#: ':', '+' or '-', starting with a letter, digit or '_' (so never '.' or '..').
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,254}$"

SCOPE_RULE = "1-255 letters, digits, '_', '.', '+' or '-', starting with a letter or digit"
NAME_RULE = "1-255 letters, digits, '_', '.', ':', '+' or '-', starting with a letter, digit or '_'"

_SCOPE = re.compile(SCOPE_PATTERN.removesuffix("$") + r"\Z")
_NAME = re.compile(NAME_PATTERN.removesuffix("$") + r"\Z")

#: Parameter name -> the rule it follows, for the error messages of refused values.
RULES: dict[str, str] = {
    "project": SCOPE_RULE,
    "domain": SCOPE_RULE,
    "version": SCOPE_RULE,
    "name": NAME_RULE,
    "workflow": NAME_RULE,
    "launch_plan": NAME_RULE,
    "ref": NAME_RULE,
}


def is_scope(value: str) -> bool:
    return bool(_SCOPE.match(value))


def is_name(value: str) -> bool:
    return bool(_NAME.match(value))


def rule_message(what: str, value: object) -> str | None:
    """What a refused `what` (a parameter's name) must look like, or None for other fields."""
    rule = RULES.get(what)
    if rule is None:
        return None
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return f"{what.replace('_', ' ')} {shown} is not valid: use {rule}"


__all__ = [
    "NAME_PATTERN",
    "NAME_RULE",
    "RULES",
    "SCOPE_PATTERN",
    "SCOPE_RULE",
    "is_name",
    "is_scope",
    "rule_message",
]
