"""``intercept-addon stdio -- COMMAND``: a stdio MCP server behind the proxy (see run.py)."""
