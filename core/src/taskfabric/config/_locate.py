"""Find the line of a key path in TOML text.

tomllib returns plain dicts with no positions, so error messages would lose the line. This is a
small scanner over already-valid TOML that records where each key path is first written: table
headers (``[a.b]``), arrays of tables (``[[a]]``, indexed like pydantic's ``loc``), dotted keys
(``a.b = 1``) and quoted keys. Values are skipped (strings, multi-line strings, nested arrays and
inline tables), so a ``[`` inside a value is never taken for a header. It never raises: on text it
does not understand it returns what it found so far.
"""

from __future__ import annotations

import re
import tomllib

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self.table_counts: dict[KeyPath, int] = {}

    # -- low-level -----------------------------------------------------------------------------

    def _peek(self, ahead: int = 0) -> str:
        index = self.pos + ahead
        return self.text[index] if index < len(self.text) else ""

    def _advance(self, count: int = 1) -> None:
        end = min(self.pos + count, len(self.text))
        self.line += self.text.count("\n", self.pos, end)
        self.pos = end

    def _skip_inline_space(self) -> None:
        while self._peek() in (" ", "\t"):
            self.pos += 1

    def _skip_blank_and_comments(self) -> None:
        while self.pos < len(self.text):
            char = self._peek()
            if char in (" ", "\t", "\r", "\n"):
                self._advance()
            elif char == "#":
                self._skip_to_eol()
            else:
                return

    def _skip_to_eol(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def _skip_string(self) -> None:
        """Skip a string starting at the current position (any of the four kinds)."""
        quote = self._peek()
        if self.text.startswith(quote * 3, self.pos):
            delimiter = quote * 3
            self._advance(3)
            while self.pos < len(self.text):
                if quote == '"' and self._peek() == "\\":
                    self._advance(2)
                elif self.text.startswith(delimiter, self.pos):
                    self._advance(3)
                    # Up to two more quotes may close the string ("""a"""" is legal).
                    while self._peek() == quote:
                        self._advance()
                    return
                else:
                    self._advance()
            return
        self.pos += 1
        while self.pos < len(self.text):
            char = self._peek()
            if quote == '"' and char == "\\":
                self.pos += 2
            elif char == quote:
                self.pos += 1
                return
            elif char == "\n":  # not valid TOML; stop rather than run on
                return
            else:
                self.pos += 1

    def _skip_value(self) -> None:
        """Skip a value up to the end of its (last) line, through nested brackets."""
        depth = 0
        while self.pos < len(self.text):
            char = self._peek()
            if char in ('"', "'"):
                self._skip_string()
                continue
            if char == "#":
                self._skip_to_eol()
                continue
            if char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
            elif char == "\n" and depth <= 0:
                return
            self._advance()

    # -- keys ----------------------------------------------------------------------------------

    def _key_part(self) -> str | None:
        char = self._peek()
        if char in ('"', "'"):
            start = self.pos
            self._skip_string()
            raw = self.text[start : self.pos]
            try:
                value = tomllib.loads(f"k = {raw}")["k"]
            except tomllib.TOMLDecodeError:
                return None
            return value if isinstance(value, str) else None
        match = _BARE_KEY.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group()

    def _dotted_key(self) -> tuple[str, ...] | None:
        parts: list[str] = []
        while True:
            self._skip_inline_space()
            part = self._key_part()
            if part is None:
                return None
            parts.append(part)
            self._skip_inline_space()
            if self._peek() != ".":
                return tuple(parts)
            self.pos += 1

    def _record(self, path: KeyPath, line: int) -> None:
        # Every prefix of a path is "written" here too unless seen earlier (``a.b.c = 1`` defines
        # table ``a.b``), so a lookup of a table made only by dotted keys still finds a line.
        for end in range(1, len(path) + 1):
            self.lines.setdefault(path[:end], line)

    # -- document ------------------------------------------------------------------------------

    def scan(self) -> dict[KeyPath, int]:
        prefix: KeyPath = ()
        while True:
            self._skip_blank_and_comments()
            if self.pos >= len(self.text):
                return self.lines
            line = self.line
            if self._peek() == "[":
                is_array = self._peek(1) == "["
                self.pos += 2 if is_array else 1
                key = self._dotted_key()
                if key is None:
                    return self.lines
                if is_array:
                    index = self.table_counts.get(key, 0)
                    self.table_counts[key] = index + 1
                    prefix = (*key, index)
                else:
                    prefix = key
                self._record(prefix, line)
                self._skip_to_eol()
                continue
            key = self._dotted_key()
            if key is None or self._peek() != "=":
                return self.lines
            self.pos += 1
            self._record((*prefix, *key), line)
            self._skip_inline_space()
            self._skip_value()


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map each key path written in ``text`` (valid TOML) to the 1-based line it is first on."""
    return _Scanner(text).scan()


def find_line(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, or of its longest written prefix (the enclosing table or key)."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None
