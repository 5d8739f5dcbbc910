"""intercept_gc_freeze: start-up's objects are left out of garbage collections, and a policy
change thaws, collects and freezes again, so replaced policies do not stay frozen forever."""

from __future__ import annotations

import gc
import time
import weakref

import pytest

from harness import ROOT, start_mitmdump
from intercept_addon.proxy.heap import Heap

POLICY = 'version: "1"\ndefault: allow\ntools:\n  echo:\n    rules:\n      - {name: "v%d", action: allow}\n'


class Cyclic:
    def __init__(self) -> None:
        self.me = self  # freed only by the collector, never by reference counting alone


@pytest.fixture(autouse=True)
def thawed():
    yield
    gc.unfreeze()  # the test process's own objects are collected again


def test_start_freezes_what_is_alive():
    heap = Heap()
    heap.freeze()
    assert gc.get_freeze_count() == 0  # not running yet: configure runs before running
    heap.start()
    assert gc.get_freeze_count() > 10_000


def test_a_policy_change_collects_what_was_frozen_and_is_garbage_now():
    heap = Heap()
    old = Cyclic()
    gone = weakref.ref(old)
    heap.start()
    del old
    gc.collect()
    assert gone() is not None  # frozen: a plain collection never sees it
    heap.freeze()  # what InterceptAddon does after a policy change
    assert gone() is None


def test_off_leaves_the_collector_alone():
    heap = Heap()
    heap.start()
    heap.configure(False)
    assert gc.get_freeze_count() == 0
    heap.freeze()
    assert gc.get_freeze_count() == 0
    heap.configure(True)  # on again, while running: frozen at once
    assert gc.get_freeze_count() > 10_000


def wait_for(condition, proxy, seconds: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, proxy.output()[-2000:]
        time.sleep(0.1)


@pytest.mark.parametrize("freeze", [True, False])
def test_mitmdump_freezes_once_running_and_after_a_policy_change(tmp_path, freeze):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY % 1)
    proxy, _ = start_mitmdump(tmp_path, 9, f"intercept_gc_freeze={str(freeze).lower()}", "termlog_verbosity=debug",
                              policy=policy, scripts=[ROOT / "bench" / "gc_cost.py"])
    try:
        wait_for(lambda: proxy.output().count("loaded (1 tools") == 1, proxy)
        policy.write_text(POLICY % 2)  # the change: applied once settled (two equal reads)
        wait_for(lambda: proxy.output().count("loaded (1 tools") == 2, proxy)
    finally:
        proxy.stop()
    out = proxy.log_path.read_text()
    frozen = int(out.rsplit("frozen ", 1)[1].split()[0])
    if freeze:
        assert out.count("objects frozen out of the garbage collector") == 2  # running, then the change
        assert frozen > 10_000
    else:
        assert "objects frozen" not in out and frozen == 0
