"""mitmproxy script: ``mitmdump -s intercept_addon.py --set intercept_policy=policies/mcp-sora.yaml``.

mitmproxy's -s takes a file, not a package; this file loads the package beside it.
"""

from intercept_addon.proxy.addon import InterceptAddon
from intercept_addon.proxy.commands import InterceptCommands
from intercept_addon.proxy.contentview import McpViewer
from intercept_addon.proxy.decision_log import DecisionLog
from intercept_addon.proxy.unjudged import UnjudgedTraffic

intercept = InterceptAddon()
# McpViewer after InterceptAddon: it wraps the event-stream callables InterceptAddon installs.
addons = [UnjudgedTraffic(intercept), intercept, McpViewer(), DecisionLog(intercept), InterceptCommands(intercept)]
