"""The TOML key locator: the line of each key path, whatever the TOML syntax around it."""

from __future__ import annotations

import json
import tomllib

from hypothesis import given
from hypothesis import strategies as st

from taskfabric.config._locate import find_line, key_lines

DOCUMENT = '''\
# a comment with [brackets] and key = "value"
title = "x"  # trailing comment
[engine]
parallelism = 4

[storage]   # header comment
"data_root" = "/d"
'quoted.key' = 1
multi = """
[not.a.table]
fake = 1
"""
literal_multi = \'\'\'
[also.not]
\'\'\'
nested = [
  [1, 2],
  ["[x]", "]"],
]
after = true

[ backends . "my.spark" ]
driver = "spark"
conf.master = "local"
inline = { a = 1, b = [1, 2] }

[[jobs]]
name = "a"
[[jobs]]
name = "b"
[jobs.extra]
k = 1

[a.b.c]
d = 1
site."google.com" = true
escaped = "tab\\t \\" [quote]"
last = 1
'''


def test_document_is_valid_toml() -> None:
    tomllib.loads(DOCUMENT)


def test_lines_of_keys_tables_and_quoted_keys() -> None:
    lines = key_lines(DOCUMENT)
    assert lines[("title",)] == 2
    assert lines[("engine",)] == 3
    assert lines[("engine", "parallelism")] == 4
    assert lines[("storage",)] == 6
    assert lines[("storage", "data_root")] == 7
    assert lines[("storage", "quoted.key")] == 8
    assert lines[("storage", "multi")] == 9
    assert lines[("storage", "literal_multi")] == 13
    assert lines[("storage", "nested")] == 16
    assert lines[("storage", "after")] == 20
    assert lines[("backends", "my.spark")] == 22
    assert lines[("backends", "my.spark", "driver")] == 23
    assert lines[("backends", "my.spark", "conf", "master")] == 24
    assert lines[("backends", "my.spark", "inline")] == 25
    assert lines[("jobs", 0, "name")] == 28
    assert lines[("jobs", 1)] == 29
    assert lines[("jobs", 1, "name")] == 30
    assert lines[("jobs", "extra", "k")] == 32
    assert lines[("a", "b", "c", "d")] == 35
    assert lines[("a", "b", "c", "site", "google.com")] == 36
    assert lines[("a", "b", "c", "escaped")] == 37
    assert lines[("a", "b", "c", "last")] == 38


def test_values_that_look_like_tables_are_not_tables() -> None:
    lines = key_lines(DOCUMENT)
    for fake in (("not",), ("not", "a", "table"), ("also",), ("fake",), ("x",)):
        assert fake not in lines


def test_dotted_keys_define_their_tables() -> None:
    lines = key_lines("x = 1\n\nengine.parallelism = 3\nengine.heartbeat_seconds = 1.0\n")
    assert lines[("engine",)] == 3
    assert lines[("engine", "heartbeat_seconds")] == 4


def test_find_line_falls_back_to_the_closest_written_prefix() -> None:
    lines = key_lines("[backends.spark]\ndriver = 1\nconf = { a = 1 }\n")
    assert find_line(lines, ("backends", "spark", "conf", "a")) == 3
    assert find_line(lines, ("backends", "spark", "missing")) == 1
    assert find_line(lines, ("nothing", "here")) is None


def test_crlf_line_endings() -> None:
    lines = key_lines("[engine]\r\nparallelism = 0\r\n\r\n[storage]\r\ndurable = 1\r\n")
    assert lines[("engine", "parallelism")] == 2
    assert lines[("storage", "durable")] == 5


def test_garbage_does_not_raise() -> None:
    assert key_lines("a = 1\n= oops\n") == {("a",): 1}
    assert key_lines("[unclosed\n") == {("unclosed",): 1}


_names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True) | st.text(
    alphabet="ab .[]=#'\"\\é", min_size=1, max_size=6
)
_values = st.sampled_from(
    ["1", '"s"', '"[x]"', '"""\n[t]\nk = 1\n"""', "'''\n]]\n'''", "[\n  [1],\n  2,\n]", "{ a = 1 }"]
)


def _key(name: str) -> str:
    return name if name.replace("_", "").isalnum() and name.isascii() else json.dumps(name)


@given(
    st.dictionaries(
        _names,
        st.dictionaries(_names, _values, min_size=1, max_size=4),
        min_size=1,
        max_size=4,
    )
)
def test_generated_documents(tables: dict[str, dict[str, str]]) -> None:
    text = ""
    expected: dict[tuple[str, ...], int] = {}

    def add(line: str) -> int:
        nonlocal text
        number = text.count("\n") + 1
        text += line + "\n"
        return number

    for table, entries in tables.items():
        expected[(table,)] = add(f"[{_key(table)}]  # table")
        for key, value in entries.items():
            expected[(table, key)] = add(f"{_key(key)} = {value}")
            add("\n# gap")
    parsed = tomllib.loads(text)
    assert set(parsed) == set(tables)
    lines = key_lines(text)
    for path, line in expected.items():
        assert lines[path] == line, (path, text)
