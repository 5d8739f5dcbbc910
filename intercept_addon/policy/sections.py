"""Rules for requests other than tools/call, in the same rule language (our extension).

A policy's ``tools:`` keeps its meaning; each other kind of request has a section of its own,
absent unless written, so an existing policy means what it always meant::

    resources:                 # resources/read, keyed by URI (exact or glob); args.uri
      default: deny            # only URIs under match may be read
      hide: ["secret://*"]     # dropped from resources/list and resources/templates/list
      match:
        "docs://*": {rules: [{action: allow}]}
    prompts:                   # prompts/get, keyed by prompt name; args.<prompt argument>
      hide: [admin_prompt]
    completion:                # completion/complete: rules for every request; args.ref, args.argument
      rules: [{action: allow, rate_limit: {max: 60, window: 60}}]
    sampling:                  # the server's sampling/createMessage (it spends the user's tokens)
      rules: [{action: allow, rate_limit: {max: 5, window: 60}}]   # args.maxTokens, args.messages
    elicitation:               # the server's elicitation/create; args.message, args.requestedSchema
      rules: [{action: deny, reason: "no forms from this server"}]

``rules`` apply to every request of the section (like a ``"*"`` key), ``match`` keys to some.
Each section is compiled into a policy of its own for the engine, with its counters in a
namespace of their own (``resources:<key>``), so a resource key never shares a counter with a
tool of the same name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PrivateAttr, StrictStr, ValidationError, model_validator

from intercept_addon.policy.rules import Rule
from intercept_addon.policy.validation import StrictModel, raise_errors, reraise

SECTIONS = ("resources", "prompts", "completion", "sampling", "elicitation")
NOUNS = {"resources": "resource", "prompts": "prompt", "completion": "completion",
         "sampling": "sampling request", "elicitation": "elicitation request"}


class Section(StrictModel):
    default: Literal["allow", "deny"] = "allow"
    hide: list[StrictStr] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    match: dict[StrictStr, Any] = Field(default_factory=dict)  # key -> a tool entry's shape: {rules: [...]}
    _policy: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _as_policy(self) -> Section:
        """The section as a policy for the engine; its errors placed where they were written."""
        from intercept_addon.policy.model import Policy  # the policy contains sections

        if any(rule.action == "ask" for rule in self.rules) or any(
                isinstance(t, dict) and any(isinstance(r, dict) and r.get("action") == "ask" for r in t.get("rules") or [])
                for t in self.match.values()):
            raise ValueError("action: ask holds tools/call only")
        tools: dict[str, Any] = dict(self.match)
        if self.rules:
            if "*" in tools:
                raise ValueError('use rules or match["*"], not both')
            tools["*"] = {"rules": self.rules}
        try:
            self._policy = Policy.model_validate({"default": self.default, "hide": self.hide, "tools": tools})
        except ValidationError as exc:
            raise_errors("Section", [dict(e, loc=_placed(e["loc"])) for e in reraise(exc)])  # type: ignore[misc]
        return self

    @property
    def policy(self) -> Any:
        return self._policy


def _placed(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``tools.<key>...`` of the compiled policy -> ``match.<key>...`` (``rules`` for "*")."""
    if len(loc) >= 2 and loc[0] == "tools":
        return ("rules", *loc[3:]) if loc[1] == "*" and len(loc) > 2 and loc[2] == "rules" else ("match", *loc[1:])
    return loc
