"""The fixtures of tests/conftest.py: isolation from the user's files, and the Postgres gate."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from taskfabric.config import Config, load_config

CONFTEST = Path(__file__).parents[1] / "conftest.py"


def test_tests_never_see_the_users_config_or_data(taskfabric_home: Path) -> None:
    config = load_config()
    assert config.source == taskfabric_home / "config.toml"
    assert config.data_root == taskfabric_home / "data"
    assert config.model_dump() == Config().model_dump() | {
        "storage": Config().storage.model_dump() | {"data_root": taskfabric_home / "data"}
    }
    assert os.environ["XDG_CONFIG_HOME"].startswith(str(taskfabric_home))


def run_postgres_test(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_db.py").write_text(
        "def test_db(postgres_url):\n    assert postgres_url.startswith('postgresql')\n",
        encoding="utf-8",
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "TASKFABRIC_TEST_POSTGRES_URL")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "-m", "postgres"],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_postgres_tests_skip_outside_ci(tmp_path: Path) -> None:
    result = run_postgres_test(tmp_path, CI="false")
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "needs PostgreSQL: set TASKFABRIC_TEST_POSTGRES_URL=" in result.stdout


def test_postgres_tests_fail_in_ci_without_a_database(tmp_path: Path) -> None:
    result = run_postgres_test(tmp_path, CI="true")
    assert result.returncode == 1, result.stdout
    assert "CI=true but TASKFABRIC_TEST_POSTGRES_URL is not set" in result.stdout
    assert "1 error" in result.stdout


def test_postgres_tests_run_with_a_url(tmp_path: Path) -> None:
    result = run_postgres_test(
        tmp_path, CI="true", TASKFABRIC_TEST_POSTGRES_URL="postgresql+psycopg://u:p@127.0.0.1/db"
    )
    assert result.returncode == 0, result.stdout
    assert "1 passed" in result.stdout


ROOT_CONFTEST = Path(__file__).parents[2] / "conftest.py"


def run_skipping_test(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT_CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\n"
        "def test_needs_an_engine():\n    pytest.skip('no engine here')\n\n"
        "@pytest.mark.xfail(reason='known')\ndef test_known_bug():\n    assert False\n",
        encoding="utf-8",
    )
    clean = {k: v for k, v in os.environ.items() if k != "CI"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env={**clean, "CI": ci},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_skip_fails_under_ci(tmp_path: Path) -> None:
    result = run_skipping_test(tmp_path, "true")
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 xfailed" in result.stdout
    assert "skipped under CI=true, where every suite must run: no engine here" in result.stdout


def test_a_skip_stays_a_skip_outside_ci(tmp_path: Path) -> None:
    result = run_skipping_test(tmp_path, "false")
    assert result.returncode == 0, result.stdout
    assert "1 skipped, 1 xfailed" in result.stdout
