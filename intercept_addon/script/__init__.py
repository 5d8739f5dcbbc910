"""The mitmproxy script's addons, in one place.

``intercept.py`` beside this file is the script an installed package loads with
``mitmdump -s "$(intercept-addon script)"``; the checkout's root ``intercept_addon.py`` is the
same script for ``mitmdump -s intercept_addon.py``. mitmproxy puts a script's directory first on
sys.path, so this directory holds nothing a module name could be shadowed by.
"""

from intercept_addon.proxy.addon import InterceptAddon
from intercept_addon.proxy.commands import InterceptCommands
from intercept_addon.proxy.contentview import McpViewer
from intercept_addon.proxy.decision_log import DecisionLog
from intercept_addon.proxy.timeline import Timeline
from intercept_addon.proxy.unjudged import UnjudgedTraffic


def addons() -> list:
    """Fresh instances on each call: a script's hot reload gets new addons, not the old ones."""
    intercept = InterceptAddon()
    # McpViewer after InterceptAddon: it wraps the event-stream callables InterceptAddon installs.
    # Timeline after InterceptAddon: it comments on the decisions made.
    return [UnjudgedTraffic(intercept), intercept, intercept.approvals, Timeline(), McpViewer(), DecisionLog(intercept),
            InterceptCommands(intercept)]
