"""Values as shell words and env vars, checked by a real bash; outputs parsed back by type."""

from __future__ import annotations

import enum
import subprocess
from pathlib import Path
from typing import Annotated, Any

import pytest

from taskfabric import Directory, File
from taskfabric.types import Format
from taskfabric_shell._values import (
    env_text,
    input_supported,
    output_kind,
    parse_scalar,
    shell_words,
)


class Color(enum.Enum):
    RED = "red"


def bash_argv(words: str) -> list[str]:
    """The arguments bash sees when `words` is pasted into a command line."""
    proc = subprocess.run(
        ["bash", "-c", f'set -- {words}; for a in "$@"; do printf "%s\\0" "$a"; done'],
        capture_output=True,
        check=True,
    )
    return proc.stdout.decode().split("\0")[:-1]


@pytest.mark.parametrize(
    "text",
    ["plain", "two words", "it's", 'say "hi"', "$(touch /tmp/pwned) `id` $HOME", "*", "a\nb", ""],
)
def test_strings_reach_the_script_verbatim(text: str) -> None:
    assert bash_argv(shell_words(text)) == [text]


@pytest.mark.parametrize(
    ("value", "word"),
    [(True, "true"), (False, "false"), (3, "3"), (-1.5, "-1.5"), (Color.RED, "red"), (None, "")],
)
def test_scalars(value: Any, word: str) -> None:
    assert bash_argv(shell_words(value)) == [word]
    assert env_text(value) == word


def test_files_directories_and_paths_are_local_paths(tmp_path: Path) -> None:
    spaced = tmp_path / "my data.csv"
    spaced.write_text("x\n")
    assert bash_argv(shell_words(File(spaced))) == [str(spaced)]
    assert bash_argv(shell_words(Directory(tmp_path))) == [str(tmp_path)]
    assert bash_argv(shell_words(spaced)) == [str(spaced)]


def test_a_list_is_one_word_per_item() -> None:
    items = ["a b", "c", "it's"]
    assert bash_argv(shell_words(items)) == items
    assert bash_argv(shell_words([1, 2])) == ["1", "2"]
    assert bash_argv(shell_words([])) == []
    assert env_text(items) == "a b\nc\nit's"


def test_unsupported_values_are_refused() -> None:
    with pytest.raises(TypeError, match="dict"):
        shell_words({"a": 1})


@pytest.mark.parametrize(
    ("py_type", "ok"),
    [
        (str, True),
        (bool, True),
        (File, True),
        (Annotated[File, Format("csv")], True),
        (Directory, True),
        (Path, True),
        (Color, True),
        (list[int], True),
        (list[File], True),
        (int | None, True),
        (list[str] | None, True),
        (dict[str, int], False),
        (list[list[int]], False),
        (bytes, False),
        (int | str, False),
    ],
)
def test_input_types(py_type: Any, ok: bool) -> None:
    assert input_supported(py_type) is ok


@pytest.mark.parametrize(
    ("py_type", "kind"),
    [
        (File, "file"),
        (Annotated[File, Format("csv")], "file"),
        (Directory, "directory"),
        (Path, "path"),
        (bool, "bool"),
        (int, "int"),
        (float, "float"),
        (str, "str"),
        (list[int], None),
        (dict[str, str], None),
        (int | None, None),
    ],
)
def test_output_kinds(py_type: Any, kind: str | None) -> None:
    assert output_kind(py_type) == kind


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("42\n", "int", 42),
        ("  -7 ", "int", -7),
        ("2.5\n", "float", 2.5),
        ("1e3", "float", 1000.0),
        ("true\n", "bool", True),
        ("No", "bool", False),
        ("0", "bool", False),
        ("  hello world \n", "str", "hello world"),
        ("", "str", ""),
    ],
)
def test_scalar_outputs_are_parsed_by_type(text: str, kind: str, value: Any) -> None:
    assert parse_scalar(text, kind) == value


@pytest.mark.parametrize(
    ("text", "kind"), [("4.5", "int"), ("", "int"), ("x", "float"), ("maybe", "bool")]
)
def test_unparseable_scalar_outputs_raise(text: str, kind: str) -> None:
    with pytest.raises(ValueError):
        parse_scalar(text, kind)
