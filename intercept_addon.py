"""mitmproxy script: ``mitmdump -s intercept_addon.py --set intercept_policy=policies/mcp-sora.yaml``.

mitmproxy's -s takes a file, not a package; this file loads the package beside it. The addons
are listed in ``intercept_addon/script/``, whose ``intercept.py`` is the same script installed.
"""

from intercept_addon import script

addons = script.addons()
