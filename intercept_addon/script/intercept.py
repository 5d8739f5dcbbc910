"""mitmproxy script of the installed package: ``mitmdump -s "$(intercept-addon script)"``
(``intercept-addon script`` prints this file's path)."""

from intercept_addon import script

addons = script.addons()
