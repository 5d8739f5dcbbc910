"""The way mitmproxy users add an addon with dependencies: ``pipx install mitmproxy``, then
``pipx inject --include-apps mitmproxy <wheel>``, then ``mitmdump -s "$(intercept-addon script)"``
run from a directory outside the checkout, so only the installed wheel can be what loads.

The module builds the wheel and the pipx environment once (about 30 s with a warm pip cache)
and its tests share them."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx2
import mcp
import pytest
from mcp.client.streamable_http import streamable_http_client

from conftest import TEST_POLICY
from harness import ROOT, Process, clean_env, free_port, ran, start_mcp_server, wait_for_port

pytestmark = pytest.mark.e2e

MITMPROXY = importlib.metadata.version("mitmproxy")  # the version the checkout is tested with
SETUP_TIMEOUT = 240


@dataclass
class Pipx:
    home: Path  # PIPX_HOME: the venvs
    bin: Path  # PIPX_BIN_DIR: the commands pipx exposes
    outside: Path  # a working directory outside the checkout

    def env(self) -> dict[str, str]:
        """Only pipx's commands on PATH: nothing from the checkout's venv can answer."""
        return clean_env(PATH=f"{self.bin}{os.pathsep}{os.defpath}")


def _run(args: list[str | Path], **kwargs) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=SETUP_TIMEOUT, **kwargs)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _build_wheel(tmp: Path) -> Path:
    # From a copy: an in-tree build would leave build/ in the shared checkout, and a stale
    # build/lib would ship modules the source no longer has.
    src = tmp / "src"
    shutil.copytree(ROOT / "intercept_addon", src / "intercept_addon",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", src])
    (wheel,) = (tmp / "dist").glob("intercept_addon-*.whl")
    return wheel


@pytest.fixture(scope="module")
def pipx(tmp_path_factory: pytest.TempPathFactory) -> Pipx:
    tmp = tmp_path_factory.mktemp("install")
    wheel = _build_wheel(tmp)
    tool = tmp / "pipx-tool"  # pipx itself, in a venv of its own (sys.executable's base Python)
    _run([sys.executable, "-m", "venv", tool])
    _run([tool / "bin/python", "-m", "pip", "install", "-q", "pipx"])
    found = Pipx(home=tmp / "pipx", bin=tmp / "bin", outside=tmp / "outside")
    found.outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PIPX_HOME=str(found.home), PIPX_BIN_DIR=str(found.bin), PIPX_MAN_DIR=str(tmp / "man"))
    _run([tool / "bin/pipx", "install", f"mitmproxy=={MITMPROXY}"], env=env, cwd=found.outside)
    _run([tool / "bin/pipx", "inject", "--include-apps", "mitmproxy", wheel], env=env, cwd=found.outside)
    return found


def test_script_command_prints_the_installed_script(pipx):
    printed = _run(["intercept-addon", "script"], env=pipx.env(), cwd=pipx.outside).strip()
    venv = pipx.home / "venvs" / "mitmproxy"
    assert Path(printed).is_file() and Path(printed).is_relative_to(venv)
    assert Path(printed).parts[-3:] == ("intercept_addon", "script", "intercept.py")
    # --include-apps exposed the command: it links into the mitmproxy venv pipx made
    assert (pipx.bin / "intercept-addon").resolve() == (venv / "bin" / "intercept-addon").resolve()


async def test_installed_script_enforces_the_policy(pipx, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY)
    server, server_port, side = start_mcp_server(tmp_path)
    port = free_port()
    # The user's command line, word for word, through a shell; exec: the PID is mitmdump's.
    command = (f'exec mitmdump -s "$(intercept-addon script)" --listen-host 127.0.0.1 -p {port} '
               f'--set confdir={tmp_path / "mitmproxy"} --set intercept_policy={policy} '
               f'--mode reverse:http://127.0.0.1:{server_port}')
    proxy = Process(["bash", "-c", command], tmp_path / "mitmdump.log", env=pipx.env(), cwd=pipx.outside)
    try:
        wait_for_port(port, proxy.proc)
        http = httpx2.AsyncClient(trust_env=False, timeout=httpx2.Timeout(30, read=60))
        async with http, mcp.Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as c:
            assert (await c.call_tool("echo", {"text": "installed"})).content[0].text == "installed"
            with pytest.raises(mcp.MCPError) as denied:
                await c.call_tool("delete_everything", {})
        assert denied.value.message == "[INTERCEPT POLICY DENIED] Deleting everything is not allowed"
        assert ran(side) == ["echo"]  # the denied tool never reached the server
        assert f"Loading script {pipx.home}" in proxy.output()  # the installed script, not the checkout's
    finally:
        proxy.stop()
        server.stop()
