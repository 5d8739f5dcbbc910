"""PolicySource on real files: changes found by content and resolved path (not mtime), applied
only once settled, invalid edits reported once, and a watcher that outlives its errors. Each
``poll()`` call stands for one tick of the watcher; the e2e tests are in test_policy_reload_e2e.py."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest
from mitmproxy import exceptions

from conftest import TEST_POLICY
from intercept_addon.policy.model import Policy
from intercept_addon.proxy.policy_source import PolicySource
from intercept_addon.proxy.policy_sources import PolicySources

DENY_ECHO = TEST_POLICY + "  echo:\n    rules:\n      - {name: no echo, action: deny}\n"
BAD = TEST_POLICY.replace("op: lte", "op: lessthan")
# A policy whose valid prefix ALLOWS_DELETE lets delete_everything run (default allow).
ALLOWS_DELETE = 'version: "1"\ntools:\n  echo:\n    rules:\n      - {name: echo ok, action: allow}\n'
GUARDED = ALLOWS_DELETE + "  delete_everything:\n    rules:\n      - {name: no deletes, action: deny}\n"


class Applied(list[Policy | None]):
    """Every policy the source put in force, in order."""

    def tools(self) -> list[set[str] | None]:
        return [None if p is None else set(p.tools) for p in self]


@pytest.fixture
def applied() -> Applied:
    return Applied()


@pytest.fixture
def source(applied: Applied) -> PolicySource:
    return PolicySource(applied.append)


def write_same_mtime(path: Path, text: str) -> None:
    """Rewrite ``path`` and give it back its old mtime (as ``cp -p`` or a Nix store would)."""
    stat = path.stat()
    path.write_text(text)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_configure_loads_at_once(source: PolicySource, applied: Applied, policy_file: Path,
                                 caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="intercept"):
        source.configure(str(policy_file))
    assert len(applied) == 1 and "delete_everything" in applied[0].tools
    assert source.path == str(policy_file) and source.digest is not None and len(source.digest) == 64
    assert f"intercept: policy {policy_file} loaded (4 tools, 4 rules, default allow" in caplog.text


def test_an_invalid_policy_at_start_names_file_line_and_column(source: PolicySource, applied: Applied,
                                                               tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    with pytest.raises(exceptions.OptionsError, match=rf"{bad}:\d+:\d+: .*lessthan"):
        source.configure(str(bad))
    with pytest.raises(exceptions.OptionsError, match="cannot read policy"):
        source.configure(str(tmp_path / "missing.yaml"))
    assert applied == [] and source.digest is None


def test_no_policy(source: PolicySource, applied: Applied, caplog: pytest.LogCaptureFixture):
    source.configure("")
    assert applied == [None] and source.digest is None
    assert "NO POLICY" in caplog.text
    source.poll()
    assert source.reload() and applied == [None]


def test_a_change_with_the_same_mtime_applies_once_settled(source: PolicySource, applied: Applied,
                                                           policy_file: Path):
    source.configure(str(policy_file))
    before = source.digest
    write_same_mtime(policy_file, DENY_ECHO)
    source.poll()  # seen once: waits
    assert len(applied) == 1 and source.digest == before
    source.poll()  # the same again one poll later: settled
    assert "echo" in applied[-1].tools and source.digest != before
    source.poll()
    assert len(applied) == 2  # nothing new


def test_a_file_still_being_written_is_not_applied(source: PolicySource, applied: Applied, policy_file: Path):
    """Each poll sees a longer prefix (the first one valid, and allowing delete_everything):
    nothing applies until two polls in a row see the same bytes."""
    source.configure(str(policy_file))
    with policy_file.open("w") as f:
        for end in (len(ALLOWS_DELETE), len(ALLOWS_DELETE) + 10, len(GUARDED)):
            f.write(GUARDED[f.tell():end])
            f.flush()
            source.poll()
    assert len(applied) == 1
    source.poll()
    assert applied.tools() == [set(applied[0].tools), {"echo", "delete_everything"}]


def test_a_prefix_that_settles_is_applied(source: PolicySource, applied: Applied, tmp_path: Path):
    """The bound: a writer that pauses a whole poll period mid-write has its prefix applied."""
    path = tmp_path / "p.yaml"
    path.write_text(TEST_POLICY)
    source.configure(str(path))
    path.write_text('version: "1"\ntools: {}\n')
    source.poll()
    source.poll()
    assert applied.tools()[-1] == set()


def test_going_back_to_the_policy_in_force_cancels_a_pending_change(source: PolicySource, applied: Applied,
                                                                    policy_file: Path):
    source.configure(str(policy_file))
    policy_file.write_text(DENY_ECHO)
    source.poll()
    policy_file.write_text(TEST_POLICY)
    source.poll()
    policy_file.write_text(DENY_ECHO)
    source.poll()  # seen once again: still waiting
    assert len(applied) == 1


def test_a_symlink_swap_to_a_file_with_the_same_mtime(source: PolicySource, applied: Applied, tmp_path: Path):
    old, new, link = tmp_path / "old.yaml", tmp_path / "new.yaml", tmp_path / "policy.yaml"
    old.write_text(TEST_POLICY)
    new.write_text(DENY_ECHO)
    stat = old.stat()
    os.utime(new, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    link.symlink_to(old)
    source.configure(str(link))
    tmp_link = tmp_path / "policy.yaml.tmp"
    tmp_link.symlink_to(new)
    os.replace(tmp_link, link)  # atomic
    source.poll()
    source.poll()
    assert "echo" in applied[-1].tools and len(applied) == 2


def test_the_same_content_at_a_new_path_is_applied_again(source: PolicySource, applied: Applied,
                                                        tmp_path: Path):
    """What is in force includes where it came from (a new Nix store path, say)."""
    a, b, link = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "policy.yaml"
    a.write_text(TEST_POLICY)
    b.write_text(TEST_POLICY)
    link.symlink_to(a)
    source.configure(str(link))
    digest = source.digest
    link.unlink()
    link.symlink_to(b)
    source.poll()
    source.poll()
    assert len(applied) == 2 and source.digest == digest


def test_an_invalid_edit_is_reported_once_and_the_old_policy_stays(source: PolicySource, applied: Applied,
                                                                   policy_file: Path,
                                                                   caplog: pytest.LogCaptureFixture):
    source.configure(str(policy_file))
    digest = source.digest
    policy_file.write_text(BAD)
    for _ in range(5):
        source.poll()
    assert caplog.text.count("NOT reloaded, the previous policy stays in force") == 1
    assert 'unknown operator "lessthan"' in caplog.text
    assert len(applied) == 1 and source.digest == digest
    policy_file.write_text(DENY_ECHO)  # fixed
    source.poll()
    source.poll()
    assert "echo" in applied[-1].tools


def test_a_vanished_file_keeps_the_policy_and_is_reported_once(source: PolicySource, applied: Applied,
                                                               policy_file: Path,
                                                               caplog: pytest.LogCaptureFixture):
    source.configure(str(policy_file))
    policy_file.unlink()
    for _ in range(3):
        source.poll()
    assert caplog.text.count("cannot read policy") == 1 and len(applied) == 1
    policy_file.write_text(DENY_ECHO)
    source.poll()
    source.poll()
    assert "echo" in applied[-1].tools


def test_reload_applies_now(source: PolicySource, applied: Applied, policy_file: Path,
                            caplog: pytest.LogCaptureFixture):
    source.configure(str(policy_file))
    policy_file.write_text(DENY_ECHO)
    assert source.reload() and "echo" in applied[-1].tools
    policy_file.write_text(BAD)
    assert not source.reload() and len(applied) == 2
    assert "NOT reloaded" in caplog.text
    source.poll()
    source.poll()
    assert caplog.text.count("NOT reloaded") == 1  # the watcher does not report it again


async def test_the_watcher_applies_changes_and_survives_errors(policy_file: Path,
                                                               caplog: pytest.LogCaptureFixture):
    """The watch loop (PolicySources, over every file) keeps going when applying a change fails."""
    applied: list[Policy | None] = []
    failures = [RuntimeError("apply failed once")]

    def apply(policies: dict[str, Policy] | None) -> None:
        policy = next(iter(policies.values())) if policies else None
        if failures and policy is not None and "echo" in policy.tools:
            raise failures.pop()
        applied.append(policy)

    source = PolicySources(apply, poll_seconds=0.01)
    source.configure(str(policy_file))
    source.start()
    try:
        write_same_mtime(policy_file, DENY_ECHO)
        for _ in range(200):
            if len(applied) == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        await source.stop()
    assert "apply failed once" in caplog.text and "still watching" in caplog.text
    assert "echo" in applied[-1].tools  # applied on a later tick, after the error
    assert source._task is None
