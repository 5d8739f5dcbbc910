"""Options given on the command line that mitmproxy never applied, and why.

A script's ``--set`` values wait in ``options.deferred`` until the script registers its options;
``AddonManager.register`` then calls ``options.process_deferred()``. If one value fails to parse
(``intercept_max_body=abc``, or one option given twice), that raises OptionsError, which
``Script.loadscript`` re-raises into its watcher task, where nobody reads it: no option of the
batch is applied, the script's addons are never added to the chain, and nothing is logged. The
proxy runs with no policy.

``unapplied`` names each such option with the reason, found by parsing its value again with the
option's own type and mitmproxy's own parser, in a scratch OptManager.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import exceptions, optmanager


def why_rejected(options: optmanager.OptManager, name: str, value: Any) -> str | None:
    """What mitmproxy says about setting registered option ``name`` to its deferred ``value``
    (strings from --set, or a typed value from config.yaml); None if it takes it."""
    spec = dict(options.items())[name]
    scratch = optmanager.OptManager()
    scratch.add_option(name, spec.typespec, spec.default, spec.help, spec.choices)
    strings = getattr(value, "val", None)  # --set values wait unparsed, as a list of strings
    try:
        if isinstance(strings, list):
            scratch.set(*([f"{name}={s}" for s in strings] or [name]))
        else:
            scratch.update(**{name: value})
    except (exceptions.OptionsError, TypeError, ValueError) as exc:
        return str(exc)
    return None


def unapplied(options: optmanager.OptManager, prefix: str) -> list[str]:
    """One line per registered option named ``prefix``* still waiting in ``options.deferred``
    (empty when all were applied)."""
    pending = [name for name in options.deferred if name.startswith(prefix) and name in options]
    lines = []
    for name in pending:
        reason = why_rejected(options, name, options.deferred[name])
        if reason is not None:
            lines.append(f"{name} was not applied: {reason}")
    if pending and not lines:  # each value is fine: another deferred option failed the batch
        culprits = [f"{name}: {reason}" for name in options.deferred if name in options
                    and (reason := why_rejected(options, name, options.deferred[name])) is not None]
        cause = "; ".join(culprits) or "mitmproxy's process_deferred failed"
        lines = [f"{name} was not applied, because another option of the batch failed ({cause})"
                 for name in pending]
    return lines


def unknown(options: optmanager.OptManager, prefix: str) -> list[str]:
    """``--set`` names starting with ``prefix`` that no addon registered (typos: never applied)."""
    return [f"{name} is not an option of this addon (a typo?); it was never applied"
            for name in options.deferred if name.startswith(prefix) and name not in options]
