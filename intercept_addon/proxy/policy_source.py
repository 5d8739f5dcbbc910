"""The policy file as the addon sees it: loaded at start, then watched and reloaded.

Changes are found by content, not by modification time: a SHA-256 of the bytes and the
resolved path (``os.path.realpath``). An atomic symlink swap, ``cp -p`` or a Nix store path
can bring new content with the old mtime, and would otherwise never apply.

A changed file is applied only once it has settled: two consecutive reads, one poll apart,
gave the same resolved path and digest. An editor rewriting the file in place passes through
valid prefixes of it (a policy missing its last deny rules, say); none of them is applied
unless the writer pauses for a whole poll period (POLL_SECONDS) mid-write. A settled change
is applied between one and two poll periods after the last write. Replacing the file by a
rename (write a temporary file, then ``mv`` it over the policy) is never seen half-written.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable

from mitmproxy import exceptions

from intercept_addon.policy.file import PolicyError, PolicyIssue, parse_policy_bytes
from intercept_addon.policy.model import Policy

log = logging.getLogger("intercept")

POLL_SECONDS = 1.0
Seen = tuple[str, str]  # (resolved path, SHA-256 of the bytes)


class PolicySource:
    """One policy file: loaded once at start, then reloaded when its content changes and has
    settled (``poll``, called every ``poll_seconds`` by PolicySources).

    ``apply(policy)`` puts a policy in force; ``apply(None)`` means no policy (inspect only).
    ``apply`` may refuse a policy by raising PolicyError (it does not fit with the others in
    force): the file's previous policy then stays, as for an invalid file."""

    def __init__(self, apply: Callable[[Policy | None], None], *, poll_seconds: float = POLL_SECONDS) -> None:
        self._apply = apply
        self.poll_seconds = poll_seconds
        self.path = ""  # as configured
        self.digest: str | None = None  # SHA-256 of the policy in force
        self._resolved: str | None = None  # where the policy in force was read from
        self._waiting: Seen | None = None  # a change seen once, applied if the next poll sees it again
        self._refused: Seen | None = None  # an invalid content already reported
        self._unreadable = False  # an unreadable file already reported

    # -- called by the addon -----------------------------------------------------------------

    def configure(self, path: str) -> None:
        """Load ``path`` now (at start, or when the option changes); "" means no policy.
        Raise OptionsError with every FILE:LINE:COL problem if it cannot be used."""
        self._waiting = self._refused = None
        self._unreadable = False
        if not path:
            self._apply(None)
            self.path, self.digest, self._resolved = "", None, None
            log.warning("intercept: NO POLICY (intercept_policy unset): inspect only, nothing is blocked")
            return
        try:
            seen, raw = self._read(path)
            self._put_in_force(path, seen, parse_policy_bytes(raw, path))
        except PolicyError as exc:
            raise exceptions.OptionsError(f"intercept: invalid policy, not started:\n{exc}") from None

    def watch(self, path: str) -> None:
        """Watch ``path`` without a policy in force yet (a new file in a policy directory): it is
        put in force once it is valid and has settled."""
        self.path, self.digest, self._resolved = path, None, None

    def reload(self) -> bool:
        """Load the file again now (the intercept.reload command), settled or not: True if it
        was applied; False if it is invalid (logged), and then the previous policy stays."""
        if not self.path:
            return True
        self._waiting = None
        try:
            seen, raw = self._read(self.path)
        except PolicyError as exc:
            self._refuse(exc)
            return False
        return self._load(seen, raw)

    # -- watching (PolicySources polls every file) --------------------------------------------

    def poll(self) -> None:
        """One look at the file: note a change, or apply one that has settled since the last look."""
        if not self.path:
            return
        try:
            seen, raw = self._read(self.path)
        except PolicyError as exc:  # gone for a moment (a non-atomic replace) or unreadable
            self._waiting = None
            if not self._unreadable:
                self._unreadable = True
                log.warning(f"intercept: policy {self.path} NOT reloaded, the previous policy stays in force:\n{exc}")
            return
        self._unreadable = False
        if seen == (self._resolved, self.digest) or seen == self._refused:
            self._waiting = None  # back to what is in force, or already reported as invalid
            return
        if seen != self._waiting:
            self._waiting = seen
            log.debug(f"intercept: policy {self.path} changed (sha256 {seen[1][:12]}); applied once it has "
                      f"stayed the same for {self.poll_seconds:g} s")
            return
        self._waiting = None
        self._load(seen, raw)

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _read(path: str) -> tuple[Seen, bytes]:
        resolved = os.path.realpath(path)
        try:
            with open(resolved, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise PolicyError([PolicyIssue(path, 1, 1, "", f"cannot read policy: {exc.strerror}")]) from None
        return (resolved, hashlib.sha256(raw).hexdigest()), raw

    def _load(self, seen: Seen, raw: bytes) -> bool:
        try:
            self._put_in_force(self.path, seen, parse_policy_bytes(raw, self.path))
        except PolicyError as exc:
            self._refused = seen  # reported once, not at every poll
            self._refuse(exc)
            return False
        return True

    def _put_in_force(self, path: str, seen: Seen, policy: Policy) -> None:
        self._apply(policy)
        self.path, (self._resolved, self.digest) = path, seen
        self._refused = None
        rules = sum(len(t.rules) for t in policy.tools.values())
        log.info(f"intercept: policy {path} loaded ({len(policy.tools)} tools, {rules} rules, "
                 f"default {policy.default}, sha256 {seen[1][:12]})")

    def _refuse(self, exc: PolicyError) -> None:
        log.error(f"intercept: policy {self.path} NOT reloaded, the previous policy stays in force:\n{exc}")
