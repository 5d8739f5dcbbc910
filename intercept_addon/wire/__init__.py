"""The wire: bytes <-> JSON-RPC, event streams, Content-Encodings and MCP's message shapes.

Knows nothing of mitmproxy or of policy; every layer above reads the wire through it.
"""
