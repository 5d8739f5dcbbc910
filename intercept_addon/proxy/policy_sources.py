"""``intercept_policy`` as a set of files: one file, a comma-separated list, or directories of
``*.yaml``/``*.yml``, each file watched and reloaded on its own (proxy/policy_source.py).

A bad edit of one file keeps that file's previous policy and leaves the others alone; so does
an edit that would make two files name the same server. A file that disappears keeps its
policy too (it may be mid-replace): ``intercept.reload`` reads the directories again and drops
it. A file that appears in a directory is put in force once it is valid and has settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Callable

from mitmproxy import exceptions

from intercept_addon.policy.file import PolicyError, PolicyIssue, files_of, in_dir
from intercept_addon.policy.model import Policy
from intercept_addon.policy.servers import Named, check_set
from intercept_addon.proxy.policy_source import POLL_SECONDS, PolicySource

log = logging.getLogger("intercept")

PolicyMap = dict[str, Policy]  # file as configured (or found in a directory) -> its policy in force


class PolicySources:
    """``apply(policies)`` puts a set in force (file -> policy, in configured order); ``apply(None)``
    means no policy (inspect only)."""

    def __init__(self, apply: Callable[[PolicyMap | None], None], *, poll_seconds: float = POLL_SECONDS) -> None:
        self._apply = apply
        self.poll_seconds = poll_seconds
        self.spec = ""
        self.files: dict[str, PolicySource] = {}
        self.dirs: list[str] = []
        self.in_force: PolicyMap = {}
        self._starting = False
        self._task: asyncio.Task[None] | None = None

    def configure(self, spec: str) -> None:
        """Load every file now; raise OptionsError listing every problem if the set cannot be used."""
        self.spec = spec
        files, self.dirs = files_of(spec)
        self.files, self.in_force = {}, {}
        if not files:
            if spec.strip():
                raise exceptions.OptionsError(f"intercept: no policy files in {spec} (looked for *.yaml, *.yml)")
            self._apply(None)
            log.warning("intercept: NO POLICY (intercept_policy unset): inspect only, nothing is blocked")
            return
        problems = []
        self._starting = True
        try:
            for path in files:
                source = self.files[path] = self._source(path)
                try:
                    source.configure(path)
                except exceptions.OptionsError as exc:
                    problems.append(str(exc).removeprefix("intercept: invalid policy, not started:\n"))
            problems += check_set(self._named(self.in_force))
        finally:
            self._starting = False
        if problems:
            raise exceptions.OptionsError("intercept: invalid policy, not started:\n" + "\n".join(problems))
        try:
            self._apply(dict(self.in_force))
        except PolicyError as exc:
            raise exceptions.OptionsError(f"intercept: invalid policy, not started:\n{exc}") from None

    def reload(self) -> bool:
        """Read every file (and directory) again now: True if all of them are in force."""
        if not self.spec:
            return True
        files, self.dirs = files_of(self.spec)
        for gone in [p for p in self.files if p not in files]:
            self._drop(gone)
        ok = True
        for path in files:
            if path not in self.files:
                self.files[path] = self._source(path)
                self.files[path].watch(path)
            ok = self.files[path].reload() and ok
        return ok

    def start(self) -> None:
        if self._task is None and self.files:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def poll(self) -> None:
        """One look at every file, and at the directories for new files."""
        for directory in self.dirs:
            for path in in_dir(directory):
                if path not in self.files:
                    log.info(f"intercept: new policy file {path}: put in force once valid and settled")
                    self.files[path] = self._source(path)
                    self.files[path].watch(path)
        for source in list(self.files.values()):
            source.poll()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                self.poll()
            except Exception:  # a watcher that died would leave an edited policy silently unapplied
                log.error(f"intercept: error while watching policies {self.spec}, still watching:\n"
                          f"{traceback.format_exc()}")

    # -- helpers -----------------------------------------------------------------------------

    def _source(self, path: str) -> PolicySource:
        return PolicySource(lambda policy: self._file_changed(path, policy), poll_seconds=self.poll_seconds)

    def _file_changed(self, path: str, policy: Policy | None) -> None:
        """One file's new policy; refused (PolicyError) if the set would not hold together."""
        if policy is None:
            return
        candidate = {**self.in_force, path: policy}
        if not self._starting:
            problems = check_set(self._named(candidate))
            if problems:
                raise PolicyError([PolicyIssue(path, 1, 1, "servers", p) for p in problems])
        ordered = self._ordered(candidate)
        if not self._starting:
            self._apply(dict(ordered))  # may refuse it (PolicyError): then nothing changes
        self.in_force = ordered

    def _drop(self, path: str) -> None:
        self.files.pop(path, None)
        if self.in_force.pop(path, None) is not None:
            log.warning(f"intercept: policy file {path} is gone: its policy is no longer in force")
            self._apply(dict(self.in_force))

    def _ordered(self, policies: PolicyMap) -> PolicyMap:
        order = {p: i for i, p in enumerate(self.files)}
        return dict(sorted(policies.items(), key=lambda item: order.get(item[0], len(order))))

    @staticmethod
    def _named(policies: PolicyMap) -> list[Named]:
        return [Named(path, tuple(p.servers) if p.servers is not None else None) for path, p in policies.items()]
