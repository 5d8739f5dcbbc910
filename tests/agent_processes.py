"""Agents as real processes (tests/agents/): the proxy must tell them apart by the connection.

``langchain_python`` gives the interpreter of .venv-langchain (scripts/setup-langchain-venv makes
it: langchain-mcp-adapters needs mcp<2); ``run_agents`` runs agents side by side, bounded in time,
and reads what each printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import ROOT, clean_env
from raw_mcp import DENIED_PREFIX

AGENTS = ROOT / "tests" / "agents"
SETUP_LANGCHAIN = ROOT / "scripts" / "setup-langchain-venv"
SETUP_UNREACHABLE = 75  # the setup script: the package index is unreachable


@dataclass
class AgentRun:
    pid: int
    outcomes: list[dict]  # per call: {"ok": text} or {"error": message}

    @property
    def ok(self) -> list[str]:
        return [o["ok"] for o in self.outcomes if "ok" in o]

    @property
    def denied(self) -> list[str]:
        return [o["error"] for o in self.outcomes if str(o.get("error", "")).startswith(DENIED_PREFIX)]


def langchain_python() -> Path:
    """.venv-langchain's python, made if missing; skips (fails under CI) when PyPI is unreachable."""
    venv = Path(os.environ.get("VENV_LANGCHAIN") or ROOT / ".venv-langchain")
    try:
        done = subprocess.run([str(SETUP_LANGCHAIN)], env=clean_env(VENV_LANGCHAIN=str(venv)),
                              capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail("scripts/setup-langchain-venv took more than 15 minutes")
    if done.returncode == SETUP_UNREACHABLE and not os.environ.get("CI"):
        pytest.skip(f"cannot install langchain-mcp-adapters:\n{done.stderr[-2000:]}")
    assert done.returncode == 0, f"scripts/setup-langchain-venv failed:\n{done.stderr[-3000:]}"
    return venv / "bin" / "python"


def langchain_agent(python: Path, url: str, tool: str, count: int) -> list[str]:
    return [str(python), str(AGENTS / "langchain_agent.py"), url, tool, str(count)]


def sdk_agent(url: str, tool: str, count: int, *options: str) -> list[str]:
    return [sys.executable, str(AGENTS / "sdk_agent.py"), url, tool, str(count), *options]


async def run_agents(*commands: list[str], timeout: float = 120) -> list[AgentRun]:
    """Run the agents at once; each must exit 0 within ``timeout``."""
    procs = [await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE,
                                                  stderr=subprocess.PIPE) for cmd in commands]
    try:
        async with asyncio.timeout(timeout):
            outputs = await asyncio.gather(*(p.communicate() for p in procs))
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    runs = []
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, f"agent exited with {proc.returncode}:\n{err.decode()[-3000:]}"
        lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        runs.append(AgentRun(lines[0]["pid"], lines[1:]))
    return runs
