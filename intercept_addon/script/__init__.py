"""The mitmproxy script's addons, in one place.

``intercept.py`` beside this file is the script an installed package loads with
``mitmdump -s "$(intercept-addon script)"``; the checkout's root ``intercept_addon.py`` is the
same script for ``mitmdump -s intercept_addon.py``. mitmproxy puts a script's directory first on
sys.path, so this directory holds nothing a module name could be shadowed by.
"""

from intercept_addon.proxy.addon import InterceptAddon
from intercept_addon.proxy.commands import InterceptCommands
from intercept_addon.proxy.decision_log import DecisionLog


def addons() -> list:
    """Fresh instances on each call: a script's hot reload gets new addons, not the old ones."""
    intercept = InterceptAddon()
    # Only InterceptAddon has per-flow hooks; it calls the transport guard, the viewer and the
    # timeline itself. The others declare options and commands (and the guard's raw layers).
    return [intercept.unjudged, intercept, intercept.approvals, intercept.viewer, DecisionLog(intercept),
            InterceptCommands(intercept)]
