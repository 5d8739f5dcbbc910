"""What a forwarded request, or a legacy stream, still waits for from the server.

Answers are matched by ``jsonrpc.id_key``: every spelling of an id a lenient client would take
for the same request (``3``, ``"3"``, ``3.0``) finds the same entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from intercept_addon.state.ledger import Ticket
from intercept_addon.wire.jsonrpc import id_key


@dataclass(slots=True)
class OwedCall:
    id: str | int  # as the client sent it
    identity: str
    tool: str
    ticket: Ticket | None  # None: a retry judged without counting, watched for a further round
    progress: Any = None  # id_key of its progressToken: progress for it means it began
    arguments: Any = None  # the call's arguments: an interim answer's credit is for these only (hashed then)
    section: str = ""  # "" for tools/call; resources or prompts for a read or a get (answers: rules)
    ruled: bool = False  # the policy has answers: rules for it, so its answer must be read


@dataclass(slots=True)
class Pending:
    caller: Any = None  # the Who of the request (tools/list answers are filtered for it)
    calls: dict[Any, OwedCall] = field(default_factory=dict)
    lists: dict[Any, str | int] = field(default_factory=dict)  # tools/list requests
    denials: dict[Any, dict[str, Any]] = field(default_factory=dict)  # legacy: replies for the pings sent instead

    @property
    def size(self) -> int:
        return len(self.calls) + len(self.lists) + len(self.denials)

    def __bool__(self) -> bool:
        return self.size > 0

    def owes(self, msg_id: Any) -> bool:
        key = id_key(msg_id)
        return key in self.calls or key in self.lists or key in self.denials

    def owed_ids(self) -> list[str | int]:
        """Ids still unanswered, as the client sent them (for the error events of a cut stream)."""
        ids = [c.id for c in self.calls.values()] + list(self.lists.values())
        ids += [d.get("id") for d in self.denials.values()]
        return list(dict.fromkeys(i for i in ids if i is not None))

    def tickets(self) -> list[Ticket]:
        return [c.ticket for c in self.calls.values() if c.ticket is not None]

    def began(self, progress_token: Any = None) -> None:
        """Something of a call came back: progress for ``progress_token``, or (None) anything
        that may belong to any of them (a server request, a notification on its stream)."""
        key = None if progress_token is None else id_key(progress_token)
        for call in self.calls.values():
            if call.ticket is not None and (key is None or call.progress == key):
                call.ticket.began = True

    def merge(self, other: Pending) -> None:
        self.calls.update(other.calls)
        self.lists.update(other.lists)
        self.denials.update(other.denials)

    def clear(self) -> None:
        self.calls.clear()
        self.lists.clear()
        self.denials.clear()
