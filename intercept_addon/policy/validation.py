"""How the format's models report errors: unknown keys are errors, and every error is
located at the offending field and reported together with the others, never one at a time."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


class StrictModel(BaseModel):
    # Unknown keys (typos like `on_deney`) are errors, never silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


def error_at(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("policy", message), loc=loc, input=value
    )


def raise_errors(title: str, errors: list[InitErrorDetails]) -> None:
    if errors:
        raise ValidationError.from_exception_data(title, errors)


def reraise(exc: ValidationError) -> list[InitErrorDetails]:
    """Turn a child's errors back into error details, keeping their locations."""
    out = []
    for err in exc.errors():
        if err["type"] == "policy":
            kind: Any = PydanticCustomError("policy", err["msg"])
            out.append(InitErrorDetails(type=kind, loc=err["loc"], input=err.get("input")))
        else:
            details = InitErrorDetails(type=err["type"], loc=err["loc"], input=err.get("input"))
            if "ctx" in err:
                details["ctx"] = err["ctx"]
            out.append(details)
    return out
