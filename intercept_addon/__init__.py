"""intercept-addon: a mitmproxy addon that enforces a YAML policy on MCP tool calls.

Layers, each importing only those below it:
``wire`` (bytes <-> JSON-RPC and MCP messages), ``state`` (counter stores and the ledger),
``policy`` (format, loader, engine), ``proxy`` (mitmproxy: the addon and its parts);
``cli``, ``scan`` and ``demo`` sit on top.
"""

__version__ = "0.1.0"
