"""Calls a person approves: a decision of kind ``ask`` holds its flow with mitmproxy's intercept.

The flow waits, marked ✋, in mitmweb's and the console's flow list until someone answers:
the viewer's own resume (approve) or kill (reject), the commands ``intercept.approve`` and
``intercept.reject`` (the ``intercept-addon approvals`` terminal command calls them through
mitmweb's API), or nobody before ``intercept_ask_timeout`` (denied). The call's counters were
reserved before the hold and its ticket stays open while it waits, so held calls together cannot
pass a limit; a rejection releases the ticket (the ``finally`` of ``CallJudge.judge``).

``approve --for 10m`` lets the same agent's calls of the same tool with the same arguments
through for that long, without asking. With no interactive viewer (mitmdump) nobody could
answer, so ``intercept_ask_fallback`` decides, and start-up says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mitmproxy import command, ctx, exceptions, flow, hooks, http

from intercept_addon.policy.engine import Decision
from intercept_addon.policy.values import parse_duration
from intercept_addon.proxy.decision_log import args_digest
from intercept_addon.wire.text import escaped, shown

log = logging.getLogger("intercept")

FALLBACKS = ("deny", "allow")
DEFAULT_TIMEOUT = 50  # under the TypeScript SDK's 60 s request timeout (the Python SDK waits 300 s)
POLL_SECONDS = 0.2  # Flow.kill() wakes no waiter: a held flow is looked at this often
MARK = ":raised_hand:"
VIEWERS = {"WebMaster": "mitmweb", "ConsoleMaster": "console"}  # masters a person answers in

GrantKey = tuple[str, str, str, str]  # (agent, server, tool, arguments' sha256)


@dataclass(frozen=True, slots=True)
class Answer:
    approved: bool
    by: str  # who answered: the viewer, a command, the CLI's user, or the deadline
    reason: str | None = None  # what a rejected agent is told
    grant: int = 0  # seconds the same call is approved for again without asking


@dataclass(slots=True)
class Held:
    flow: http.HTTPFlow
    key: GrantKey
    since: float
    deadline: float
    answer: Answer | None = None  # set by a command before it resumes the flow


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S UTC")


def describe(ask: Mapping[str, Any], now: float | None = None) -> str:
    """One line for the MCP view: what is asked, and the time left or the answer."""
    if ask.get("state") == "waiting":
        left = max(0, round(ask["deadline"] - (now or time.time())))
        return f"waiting for a person, {left} s left (until {_clock(ask['deadline'])}): resume approves, kill rejects"
    return f"{ask.get('state')} by {ask.get('by')} after {ask.get('waited_s')} s"


def _changed(f: flow.Flow) -> None:
    """Show the flow's new state in the viewers."""
    ctx.master.addons.trigger(hooks.UpdateHook([f]))


class Approvals:
    name = "intercept_approvals"

    def __init__(self) -> None:
        self.timeout = DEFAULT_TIMEOUT
        self.fallback = "deny"
        self.viewer: str | None = None  # the interactive viewer, once running
        self.held: dict[str, Held] = {}  # flow id -> the call waiting in it
        self.grants: dict[GrantKey, tuple[float, str]] = {}  # -> (until, who approved)

    def load(self, loader: Any) -> None:
        loader.add_option("intercept_ask_timeout", int, DEFAULT_TIMEOUT,
                          "Seconds a call of an ask rule waits for a person before it is denied. Keep it under "
                          "the agents' request timeouts (TypeScript SDK: 60 s, Python SDK: 300 s).")
        loader.add_option("intercept_ask_fallback", str, "deny",
                          "What ask rules do with no interactive viewer to answer (mitmdump): deny or allow.",
                          choices=FALLBACKS)

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if opts.intercept_ask_fallback not in FALLBACKS:  # --set does not check choices
            raise exceptions.OptionsError(f"intercept_ask_fallback must be deny or allow, got {opts.intercept_ask_fallback!r}")
        if opts.intercept_ask_timeout <= 0:
            raise exceptions.OptionsError("intercept_ask_timeout must be a positive number of seconds")
        self.timeout, self.fallback = opts.intercept_ask_timeout, opts.intercept_ask_fallback

    def running(self) -> None:
        self.viewer = VIEWERS.get(type(ctx.master).__name__)
        if self.viewer is None:
            done = "denied" if self.fallback == "deny" else "allowed"
            log.info(f"intercept: no interactive viewer: calls of ask rules are {done} "
                     "(intercept_ask_fallback); run mitmweb or mitmproxy to answer them")
        else:
            log.info(f"intercept: calls of ask rules wait up to {self.timeout} s for an answer in {self.viewer}")

    # -- the request path ------------------------------------------------------------------

    async def ask(self, f: http.HTTPFlow, decision: Decision, agent: str, server: str,
                  arguments: Mapping[str, Any]) -> Decision:
        """The decision once answered: ``decision`` itself if approved, a denial if not."""
        now = time.time()
        key = (agent, server, decision.tool, args_digest(arguments))
        until, by = self.grants.get(key, (0.0, ""))
        if until > now:
            return self._answered(f, decision, Answer(True, f"{by} (earlier, until {_clock(until)})"), now)
        self.grants.pop(key, None)
        if self.viewer is None:
            return self._answered(f, decision, Answer(
                self.fallback == "allow", "intercept_ask_fallback (no interactive viewer)",
                f"{decision.tool} needs a person's approval, and nobody can answer here "
                "(no interactive viewer; intercept_ask_fallback is deny)"), now)
        held = Held(f, key, now, now + self.timeout)
        self.held[f.id] = held
        f.metadata.update({"mcp.decision": "ask", "mcp.rule": decision.rule,  # the viewers show them meanwhile
                           "mcp.ask": {"state": "waiting", "deadline": held.deadline}})
        f.marked = MARK
        f.comment = f"ASK {decision.tool} [{decision.rule}] agent {escaped(agent)}: until {_clock(held.deadline)}"
        f.intercept()
        _changed(f)
        log.info(f"intercept: ask tool={decision.tool} agent={shown(agent)} rule={decision.rule} flow={f.id}: "
                 f"held for up to {self.timeout} s")
        try:
            answer = await self._wait(held)
        finally:
            del self.held[f.id]
            f.resume()  # a no-op once resumed; mitmproxy waits for it after the hook otherwise
        if answer.approved and answer.grant:
            self.grants[key] = (time.time() + answer.grant, answer.by)
        result = self._answered(f, decision, answer, held.since)
        _changed(f)
        return result

    async def _wait(self, held: Held) -> Answer:
        f = held.flow
        while True:
            if held.answer is not None:
                return held.answer
            if f.error is not None and f.error.msg == flow.Error.KILLED_MESSAGE:
                f.error, f.live = None, True  # the kill becomes a rejection the agent can read
                return Answer(False, self.viewer or "viewer", f"{f.metadata.get('mcp.tool')} was rejected by a person")
            if not f.intercepted:
                return Answer(True, self.viewer or "viewer")
            if not f.client_conn.connected:
                return Answer(False, "the agent (it disconnected)", "the agent disconnected while waiting")
            left = held.deadline - time.time()
            if left <= 0:
                return Answer(False, "nobody (timeout)",
                              f"Nobody approved this call of {f.metadata.get('mcp.tool')} within "
                              f"{self.timeout} s (intercept_ask_timeout)")
            resumed = asyncio.ensure_future(f.wait_for_resume())
            await asyncio.wait([resumed], timeout=min(POLL_SECONDS, left))
            resumed.cancel()

    def _answered(self, f: http.HTTPFlow, decision: Decision, answer: Answer, since: float) -> Decision:
        waited = round(time.time() - since, 3)
        state = "approved" if answer.approved else "rejected"
        f.metadata["mcp.ask"] = {"state": state, "by": answer.by, "waited_s": waited,
                                 "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                                 **({"for_s": answer.grant} if answer.grant else {})}
        if f.marked == MARK:
            f.marked = ""  # a rejection is marked as a denial by Verdicts.annotate
        log.info(f"intercept: ask tool={decision.tool} flow={f.id}: {state} by {shown(answer.by)} after {waited} s")
        if answer.approved:
            f.comment = f"ASK {decision.tool} [{decision.rule}]: approved by {answer.by} after {round(waited)} s"
            return decision
        return dataclasses.replace(decision, allowed=False, message=answer.reason or f"rejected by {answer.by}")

    # -- commands --------------------------------------------------------------------------

    def _held(self, flows: Sequence[flow.Flow]) -> list[Held]:
        held = [self.held[f.id] for f in flows if f.id in self.held]
        if not held:
            raise exceptions.CommandError("no call waiting for approval among these flows")
        return held

    @command.command("intercept.approve")
    def approve(self, flows: Sequence[flow.Flow], duration: str = "", by: str = "") -> str:
        """Approve held calls; with a duration (e.g. 10m), the same agent's calls of the same tool
        with the same arguments pass without asking for that long. ``by``: who approves."""
        try:
            grant = parse_duration(duration) if duration else 0
        except ValueError as exc:
            raise exceptions.CommandError(f"intercept.approve: {exc}") from None
        held = self._held(flows)
        for h in held:
            h.answer = Answer(True, by or "intercept.approve", grant=grant)
            h.flow.resume()
        return f"approved {len(held)} call(s)" + (f" and their repeats for {duration}" if grant else "")

    @command.command("intercept.reject")
    def reject(self, flows: Sequence[flow.Flow], reason: str = "", by: str = "") -> str:
        """Reject held calls; the agent is told ``reason``. ``by``: who rejects."""
        held = self._held(flows)
        for h in held:
            h.answer = Answer(False, by or "intercept.reject", reason or f"{h.key[2]} was rejected by a person")
            h.flow.resume()
        return f"rejected {len(held)} call(s)"

    @command.command("intercept.pending")
    def pending(self) -> Sequence[str]:
        """Calls waiting for approval: flow id, agent, tool, rule, seconds left."""
        now = time.time()
        return [f"{h.flow.id}  {h.key[0]}  {h.key[2]}  {h.flow.metadata.get('mcp.rule', '-')}  "
                f"{max(0, round(h.deadline - now))} s left" for h in self.held.values()] or ["no call waiting"]
