"""A short coverage-guided fuzz run (atheris) on every `make test`: fixed run count and seed.

Longer runs: `make fuzz`, or `bench/fuzz.py TARGET -max_total_time=SECONDS` (see its docstring).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness import ROOT, clean_env

pytestmark = pytest.mark.fuzz

# Runs per target: about 10 s each on the 2-core CI machine; the time cap only guards a slow one.
BUDGET = {"request": 400_000, "sse": 50_000}
TIME_CAP_SECONDS = 40


@pytest.mark.parametrize("target", BUDGET)
def test_fuzz_target_finds_nothing(target, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench/fuzz.py"), target, f"--artifacts={tmp_path}",
         f"-runs={BUDGET[target]}", "-seed=1", f"-max_total_time={TIME_CAP_SECONDS}"],
        capture_output=True, text=True, env=clean_env(), timeout=TIME_CAP_SECONDS + 60)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"fuzz {target} failed; the input is in {tmp_path}:\n{report[-4000:]}"
    assert "Done " in report and "INITED" in report, report[-2000:]
    assert not list(tmp_path.glob("crash-*"))
