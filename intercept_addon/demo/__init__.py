"""Demo fixtures: a fake AceData API and a loopback launcher for the real mcp-sora."""
