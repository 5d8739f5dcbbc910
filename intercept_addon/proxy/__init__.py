"""Everything that knows mitmproxy: the addon and its components, the MCP content view,
the ``intercept.*`` commands and the decision log. The only layer that imports mitmproxy."""
