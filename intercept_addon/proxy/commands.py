"""mitmproxy commands: ``intercept.reload``, ``intercept.status``, ``intercept.reset``.

Usable wherever mitmproxy takes commands: the console's command prompt (``:``), mitmweb (its
API at ``POST /commands/<name>``), and scripts (``ctx.master.commands.call``).

mitmproxy calls commands synchronously, while counter stores are async. The local stores
(memory, SQLite) never suspend, so their answer is ready at once; a network store (Redis) does,
and then the command says so and its result goes to the event log when it arrives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from mitmproxy import command, ctx, exceptions, http

from intercept_addon.policy.engine import KEY_SEP, SERVER_SEP, Decision
from intercept_addon.proxy.table import format_table

if TYPE_CHECKING:
    from intercept_addon.proxy.addon import InterceptAddon

log = logging.getLogger("intercept")
T = TypeVar("T")


def _counter_rows(intercept: InterceptAddon, counters: list[tuple[str, Decimal]]) -> list[str]:
    if not counters:
        return ["counters: none in their current window"]
    rows = []
    for key, total in sorted(counters):
        namespace, name, counted = key.split(KEY_SEP, 2)
        server, _, session = counted.rpartition(SERVER_SEP)
        spec = intercept.toollists.counter(server, namespace, name)
        rows.append((server or "(every server)", namespace, name, session or "(all)", total,
                     spec.describe if spec else "(not in the policy)"))
    if not any(row[0] != "(every server)" for row in rows):
        return ["counters (current window):",
                *format_table(["tool", "counter", "counted for", "value", "limit"], [row[1:] for row in rows])]
    return ["counters (current window):",
            *format_table(["server", "tool", "counter", "counted for", "value", "limit"], rows)]


class InterceptCommands:
    name = "intercept_commands"

    def __init__(self, intercept: InterceptAddon) -> None:
        self.intercept = intercept
        self.by_rule: Counter[tuple[str, str]] = Counter()  # (rule, allow|deny) since start
        # Store calls still waiting: the loop keeps only weak references to tasks, so an
        # unreferenced one could be garbage-collected before it answers.
        self._pending: set[asyncio.Task[Any]] = set()
        intercept.decision_hooks.append(self._tally)

    def _tally(self, flow: http.HTTPFlow, decision: Decision | None, arguments: Mapping[str, Any] | None) -> None:
        if decision is not None:  # rule names come from the policy: a bounded set
            self.by_rule[(decision.rule or "-", "allow" if decision.allowed else "deny")] += 1

    def _store_call(self, work: Callable[[], Awaitable[T]], what: str,
                    show: Callable[[T], Sequence[str]]) -> Sequence[str]:
        """Run a store coroutine; its lines now if it finishes without waiting, else in the event log."""
        if self.intercept.store is None:
            return [f"{what}: no counter store (not configured yet)"]
        task = asyncio.eager_task_factory(asyncio.get_running_loop(), work())
        if not task.done():
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

            def later(done: asyncio.Task[T]) -> None:
                if done.exception() is not None:
                    log.error(f"intercept: {what} failed: {done.exception()}")
                else:
                    log.info("\n".join([f"intercept: {what}:", *show(done.result())]))
            task.add_done_callback(later)
            return [f"{what}: waiting for the counter store; the answer goes to the event log"]
        if task.exception() is not None:
            raise exceptions.CommandError(f"{what} failed: {task.exception()}")
        return show(task.result())

    @command.command("intercept.reload")
    def reload(self) -> str:
        """Reload the policy file now (it is also reloaded when it changes); counters are kept."""
        path = ctx.options.intercept_policy
        if not path:
            return "no policy configured (intercept_policy is unset): nothing to reload"
        if self.intercept.reload_policy():
            return f"policy {path} reloaded"
        raise exceptions.CommandError(f"policy {path} NOT reloaded, the previous one stays in force (see the event log)")

    @command.command("intercept.status")
    def status(self) -> Sequence[str]:
        """The policy in force, decisions since start (per rule), policy keys the servers do not
        have, and live counters per session."""
        opts = ctx.options
        d: Counter[str] = Counter()
        for (_, verdict), n in self.by_rule.items():
            d[verdict] += n
        lines = [
            f"policy: {opts.intercept_policy or '(none: inspect only)'}  mode: {opts.intercept_mode}  "
            f"state: {opts.intercept_state}",
            f"decisions since start: {d['allow'] + d['deny']} (allow {d['allow']}, deny {d['deny']})",
        ]
        rules = sorted({rule for rule, _ in self.by_rule})
        if rules:
            lines += format_table(["rule", "allow", "deny"],
                                  [(r, self.by_rule[(r, "allow")], self.by_rule[(r, "deny")]) for r in rules])
        lines += self.intercept.toollists.servers.status()
        lines += self.intercept.toollists.coverage.status()
        counters = self._store_call(lambda: self.intercept.store.snapshot(time.time()),  # type: ignore[union-attr]
                                    "counters", lambda c: _counter_rows(self.intercept, c))
        return [*lines, *counters]

    @command.command("intercept.reset")
    def reset(self, tool: str, counter: str = "") -> str:
        """Reset counters: `*` all of them, `<tool>` every counter of a policy key (`_global` for
        global ones), `<tool> <counter>` one counter for every session."""
        if tool == "*":
            prefix, what = "", "every counter"
        elif counter:
            prefix, what = f"{tool}{KEY_SEP}{counter}{KEY_SEP}", f"counter {counter} of {tool}"
        else:
            prefix, what = f"{tool}{KEY_SEP}", f"the counters of {tool}"
        done = self._store_call(lambda: self.intercept.store.reset(prefix),  # type: ignore[union-attr]
                                f"reset {what}", lambda n: [f"reset {what}: {n} entries removed"])
        log.info(f"intercept: {done[0]}")
        return done[0]
