"""intercept-addon: a mitmproxy addon that enforces a YAML policy on MCP tool calls.

The policy engine (policy, conditions, engine, state) never imports mitmproxy; the addon
module is the only place that does.
"""

__version__ = "0.1.0"
