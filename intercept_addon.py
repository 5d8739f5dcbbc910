"""mitmproxy script: ``mitmdump -s intercept_addon.py --set intercept_policy=policies/mcp-sora.yaml``.

mitmproxy's -s takes a file, not a package; this file loads the package beside it.
"""

from intercept_addon.addon import InterceptAddon

addons = [InterceptAddon()]
