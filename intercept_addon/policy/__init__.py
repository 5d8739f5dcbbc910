"""The policy: the file format (pydantic models), its loader, conditions and the rule engine.

Imports only the wire and the state stores below it, never mitmproxy.
"""
