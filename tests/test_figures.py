"""The README's figures are what bench/bench_engine.py prints (its format, the machine, ratios
to the baseline of the same run), docs/caching.md quotes the same run, and the benchmark checks
issue 20's targets: it exits 1 when one is missed."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import bench_engine  # noqa: E402

# The lines bench_engine prints, as patterns (one per line, in order).
LINES = [
    r"taskfabric engine benchmark, median of \d+",
    r"machine: .+, \d+ cores, .+, Python [\d.]+, load average [\d.]+, [\d.]+, [\d.]+",
    r"B0 durable record floor: +[\d.]+ ms/record \(.+\); plain Python call [\d.]+ us",
    r"W1 chain of 100: +([\d.]+) ms/task = +([\d.]+)x B0  \(target <= 0.3 ms: (met|missed)\)",
    r"W2 fan-out of 500: +([\d.]+) ms/task = +([\d.]+)x B0  \(target <= 0.1 ms: (met|missed); .+\)",
    r"W3 chain of 100 cached: +([\d.]+) ms/task = +([\d.]+)x B0 all hits, ([\d.]+)x a computed "
    r"run \([\d.]+ ms/task\), ([\d.]+) ms/task in a fresh engine  \(target <= 0.05 ms: "
    r"(met|missed)\)",
    r"W4 fan-out of \d+: +[\d.]+ s wall, [\d.]+ ms/task = +[\d.]+x B0, peak RSS \d+ MB "
    r"\(after imports \d+ MB\)  \(target < 30 s and < 300 MB: (met|missed)\)",
]


def readme_figures() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Figures") :]
    block = re.search(r"```text\n(.*?)```", section, re.DOTALL)
    assert block, "README's Figures section quotes no benchmark output"
    return block.group(1).splitlines()


def test_the_readme_quotes_the_benchmarks_output() -> None:
    lines = readme_figures()
    assert len(lines) == len(LINES), lines
    for line, pattern in zip(lines, LINES, strict=True):
        assert re.fullmatch(pattern, line), f"{line!r} is not what bench_engine prints"


def test_the_readme_and_caching_doc_agree() -> None:
    w3 = next(line for line in readme_figures() if line.startswith("W3"))
    found = re.fullmatch(LINES[5], w3)
    assert found is not None
    hit, ratio, of_computed, fresh = found.group(1, 2, 3, 4)
    caching = (REPO / "docs" / "caching.md").read_text(encoding="utf-8")
    assert f"{hit} ms per task" in caching
    assert f"{ratio}x B0" in caching and f"{of_computed}x a computed" in caching
    assert f"{fresh} ms per task" in caching
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for stale in ("0.7 ms of engine overhead", "0.3 ms per task in a fan-out", "about 3 s"):
        assert stale not in readme


def test_missed_targets_print_ratios_and_fail(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A clock where every reading is 10 s after the last: a slow machine, every target missed.
    now = [0.0]

    def slow_clock() -> float:
        now[0] += 10.0
        return now[0]

    monkeypatch.setattr(bench_engine.time, "perf_counter", slow_clock)
    assert bench_engine.main(["--only", "W1,W2,W3", "--repeat", "1"]) == 1
    printed = capsys.readouterr().out.splitlines()
    for line, pattern in zip(printed, LINES[:6], strict=False):
        assert re.fullmatch(pattern, line), line
    assert len(printed) == 7
    assert sum("missed" in line for line in printed[:-1]) == 3
    assert printed[-1] == "missed 3 target(s): W1 <= 0.3 ms, W2 <= 0.1 ms, W3 <= 0.05 ms"


def test_each_ratio_is_to_the_b0_measured_just_before_its_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A disk whose speed moves from one run to the next (0.1, 1, 10 ms per record, again and
    # again), and an engine that costs 3 records per task whatever the speed: every ratio is 3.
    speeds = iter([0.1, 1.0, 10.0] * 10)
    last = [0.0]

    def baseline_ms(root: object, n: int = 300) -> float:
        last[0] = next(speeds)
        return last[0]

    def timed(wf: object, inputs: dict[str, int], root: object) -> float:
        tasks = 100 if wf is bench_engine.w1 else 502
        return 3 * last[0] * tasks / 1000  # seconds

    monkeypatch.setattr(bench_engine, "baseline_ms", baseline_ms)
    monkeypatch.setattr(bench_engine, "_timed", timed)
    assert bench_engine.main(["--only", "W1,W2", "--repeat", "3"]) == 1  # 3 ms per task
    printed = capsys.readouterr().out.splitlines()
    assert re.fullmatch(LINES[2], printed[2]), printed[2]
    assert "0.100 to 10.000 over 6 measures" in printed[2]
    w1 = re.fullmatch(LINES[3], printed[3])
    w2 = re.fullmatch(LINES[4], printed[4])
    assert w1 is not None and w2 is not None, printed
    assert w1.group(2) == "3.0" and w2.group(2) == "3.0", printed
