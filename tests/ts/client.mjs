// A TypeScript-SDK MCP client driven by pytest (tests/test_typescript_sdk.py).
//
//   node client.mjs streamable|sse URL 'STEPS'
//
// STEPS is a JSON array run in order on one connection; each step is
//   {"call": "tool", "args": {...}}   tools/call
//   {"list": "tools"|"resources"}      tools/list or resources/list (names / uris only)
// Every outcome is printed as one JSON line: {"connected": ...} first, then one line per step
// with "result" or "error" (an McpError's code, message and data; other errors by name).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";

const STEP_TIMEOUT_MS = 10_000; // a denial that never arrives shows up as a timeout error

const [kind, url, steps = "[]"] = process.argv.slice(2);
const transports = { streamable: StreamableHTTPClientTransport, sse: SSEClientTransport };
if (!transports[kind] || !url) {
  console.error("usage: node client.mjs streamable|sse URL '[steps]'");
  process.exit(2);
}

const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

function describe(err) {
  if (err instanceof McpError) {
    return { type: "McpError", code: err.code, message: err.message, data: err.data ?? null };
  }
  return { type: err?.name ?? typeof err, message: String(err?.message ?? err) };
}

async function run(client, step) {
  const options = { timeout: STEP_TIMEOUT_MS };
  if (step.call !== undefined) {
    return client.callTool({ name: step.call, arguments: step.args ?? {} }, undefined, options);
  }
  if (step.list === "tools") {
    return (await client.listTools(undefined, options)).tools.map((t) => t.name);
  }
  if (step.list === "resources") {
    return (await client.listResources(undefined, options)).resources.map((r) => r.uri);
  }
  throw new Error(`unknown step ${JSON.stringify(step)}`);
}

const client = new Client({ name: "intercept-ts-interop", version: "0.0.1" });
const transport = new transports[kind](new URL(url));
await client.connect(transport);
print({ connected: kind, protocolVersion: transport.protocolVersion ?? null, sessionId: transport.sessionId ?? null });
for (const step of JSON.parse(steps)) {
  try {
    print({ step, result: await run(client, step) });
  } catch (err) {
    print({ step, error: describe(err) });
  }
}
await client.close();
