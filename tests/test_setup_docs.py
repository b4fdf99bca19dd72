"""The README's two set-up commands are what CI runs: the first makes `.venv` with tox (as
.ci/run does) and runs the `example` env on the embedded defaults, the second is `.venv/bin/tox`
alone, every env of tox.ini's env_list, which .ci/run calls; the README says what each of those
envs needs besides Python."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
CI_RUN = (REPO / ".ci" / "run").read_text(encoding="utf-8")


def tox_ini() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "tox.ini", encoding="utf-8")
    return parser


def setup_commands() -> list[str]:
    section = README[README.index("## Set-up: two commands") :]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "the README's set-up section has no bash block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_the_readmes_two_commands_are_what_ci_runs() -> None:
    first, second = setup_commands()
    make_venv, _, run_example = first.rpartition(" && ")
    # a virtual environment of its own: never the system's (externally managed) Python
    assert make_venv.startswith("python3 -m venv .venv && .venv/bin/python -m pip install ")
    assert make_venv in CI_RUN, ".ci/run must make .venv the way the README says"
    assert run_example == ".venv/bin/tox -e example"
    example = tox_ini()["testenv:example"]
    assert "TASKFABRIC_DATA_ROOT" in example["set_env"]  # a throwaway data root, no config
    ref = example["commands"].split()[2]
    assert (REPO / ref.partition(":")[0]).is_file(), ref
    assert second == ".venv/bin/tox"  # every env of env_list
    assert re.search(r"^\.venv/bin/tox \|\| status=\$\?$", CI_RUN, re.MULTILINE), (
        ".ci/run must call the README's second command as it is"
    )


def test_the_readme_says_what_every_env_needs() -> None:
    envs = [e.strip() for e in tox_ini()["tox"]["env_list"].split(",")]
    table = README[README.index("What the full run needs besides Python:") :]
    table = table[: table.index("\n\n", table.index("| env |"))]
    named = set(
        re.findall(r"`([a-z]+)`", "\n".join(r.split("|")[1] for r in table.splitlines()[3:]))
    )
    assert named == set(envs), f"README's table names {sorted(named)}, env_list is {envs}"
    subset = re.search(r"run the envs it has: `\.venv/bin/tox -e ([a-z,]+)`", README)
    assert subset is not None
    assert set(subset.group(1).split(",")) < set(envs)
