// mcp_client.mjs - drives `ds mcp` with the official MCP TypeScript SDK
// (Client + StdioClientTransport), as Claude Code and other clients do:
// initialize, list tools, call each tool, and check that bad calls fail
// the way the protocol says.  Run by tests/cli/test_mcp_sdk.sh:
//
//   node mcp_client.mjs SDK_DIR DS HOME PROJECT PREFILLED_ID
//
// SDK_DIR is the installed @modelcontextprotocol/sdk package directory,
// DS the ds binary, HOME the DS_HOME to use (pre-filled with one note
// whose id is PREFILLED_ID), PROJECT the (canonical) directory the server
// is started in.  Prints one line per failed check and, last,
// "N passed, M failed"; exits 1 on any failure.
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const [sdkDir, ds, home, project, prefilledId] = process.argv.slice(2);
if (!prefilledId) {
  console.error('usage: node mcp_client.mjs SDK_DIR DS HOME PROJECT PREFILLED_ID');
  process.exit(2);
}
const sdk = (p) => import(pathToFileURL(path.join(sdkDir, 'dist/esm', p)).href);
const { Client } = await sdk('client/index.js');
const { StdioClientTransport } = await sdk('client/stdio.js');
const { McpError } = await sdk('types.js');

let passed = 0;
let failed = 0;
function check(desc, cond, detail) {
  if (cond) {
    passed++;
  } else {
    failed++;
    console.error(`FAIL: ${desc}${detail === undefined ? '' : ': ' + JSON.stringify(detail)}`);
  }
}

// Runs |fn| and returns {result} or {error}.
async function attempt(fn) {
  try {
    return { result: await fn() };
  } catch (error) {
    return { error };
  }
}

const transport = new StdioClientTransport({
  command: ds,
  args: ['mcp'],
  env: { DS_HOME: home },
  cwd: project,
  stderr: 'pipe',
});
let serverLog = '';
transport.stderr?.on('data', (d) => { serverLog += d; });
const client = new Client({ name: 'ds-mcp-sdk-test', version: '1.0.0' });

try {
  await client.connect(transport); // initialize + notifications/initialized
  const info = client.getServerVersion();
  check('serverInfo.name is datasphere', info?.name === 'datasphere', info);
  check('server offers tools', client.getServerCapabilities()?.tools !== undefined,
        client.getServerCapabilities());

  const pong = await attempt(() => client.ping());
  check('ping answers', !pong.error, String(pong.error));

  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name).sort();
  check('three tools listed', JSON.stringify(names) ===
        JSON.stringify(['datasphere_add', 'datasphere_query', 'datasphere_related']), names);
  for (const t of tools) {
    check(`${t.name} has a description`, typeof t.description === 'string' &&
          t.description.length > 20, t.description);
    check(`${t.name} has an object inputSchema`, t.inputSchema?.type === 'object', t.inputSchema);
  }

  // datasphere_add (the SDK validates structuredContent against outputSchema)
  const add = await client.callTool({
    name: 'datasphere_add',
    arguments: {
      content: 'sdk test: quokka retries use exponential backoff with jitter',
      source: 'sdk-test',
      namespace: 'work',
    },
  });
  const added = add.structuredContent ?? {};
  check('add succeeds', add.isError !== true, add);
  check('add returns an id', /^[0-9a-f-]{36}$/.test(added.id ?? ''), added);
  check('add source is the label', (added.source ?? '').startsWith('sdk-test:'), added);
  check('add project is the server cwd', added.project === project, added);
  check('add namespace', added.namespace === 'work', added);
  check('add text content is the same JSON',
        JSON.stringify(JSON.parse(add.content?.[0]?.text ?? 'null')) === JSON.stringify(added),
        add.content);

  // datasphere_query finds both the added note and the pre-filled one
  const q = await client.callTool({
    name: 'datasphere_query',
    arguments: { query: 'quokka backoff', limit: 5 },
  });
  const hits = q.structuredContent?.results ?? [];
  check('query succeeds', q.isError !== true, q);
  const hit = hits.find((h) => h.id === added.id);
  check('query finds the added node', hit !== undefined, hits);
  check('hit store is local', hit?.store === 'local', hit);
  check('hit project', hit?.project === project, hit);
  check('hit has content and score', typeof hit?.content === 'string' &&
        hit.content.includes('quokka') && typeof hit?.score === 'number' && hit.score > 0, hit);
  check('hit has namespace, source and timestamp', hit?.namespace === 'work' &&
        typeof hit?.source === 'string' && typeof hit?.timestamp === 'string', hit);
  check('query finds the pre-filled node', hits.some((h) => h.id === prefilledId), hits);

  const qn = await client.callTool({
    name: 'datasphere_query',
    arguments: { query: 'quokka', namespace: 'work' },
  });
  const nsHits = qn.structuredContent?.results ?? [];
  check('namespace filter', nsHits.length === 1 && nsHits[0].id === added.id, nsHits);

  // datasphere_related on the added node finds the pre-filled one
  const r = await client.callTool({
    name: 'datasphere_related',
    arguments: { node_id: added.id, limit: 5 },
  });
  check('related succeeds', r.isError !== true, r);
  check('related origin', r.structuredContent?.origin?.id === added.id, r.structuredContent);
  check('related finds the pre-filled node',
        (r.structuredContent?.results ?? []).some((h) => h.id === prefilledId && h.store === 'local'),
        r.structuredContent);

  // Failures: a tool-level failure is isError, bad arguments a protocol error.
  const empty = await attempt(() => client.callTool({
    name: 'datasphere_query', arguments: { query: '   ' },
  }));
  check('empty query gives isError', empty.result?.isError === true, empty.result ?? String(empty.error));
  const unknownId = await attempt(() => client.callTool({
    name: 'datasphere_related', arguments: { node_id: 'ffffffff' },
  }));
  check('unknown node id gives isError', unknownId.result?.isError === true,
        unknownId.result ?? String(unknownId.error));
  const missing = await attempt(() => client.callTool({ name: 'datasphere_query', arguments: {} }));
  check('missing query gives an McpError or isError',
        (missing.error instanceof McpError && missing.error.code === -32602) ||
        missing.result?.isError === true, String(missing.error ?? JSON.stringify(missing.result)));
  const badLimit = await attempt(() => client.callTool({
    name: 'datasphere_query', arguments: { query: 'x', limit: 0 },
  }));
  check('limit 0 gives an McpError or isError',
        (badLimit.error instanceof McpError && badLimit.error.code === -32602) ||
        badLimit.result?.isError === true, String(badLimit.error ?? JSON.stringify(badLimit.result)));
  const unknownTool = await attempt(() => client.callTool({ name: 'no_such_tool', arguments: {} }));
  check('unknown tool gives an McpError or isError',
        unknownTool.error instanceof McpError || unknownTool.result?.isError === true,
        String(unknownTool.error ?? JSON.stringify(unknownTool.result)));

  // The server survives all of that.
  const again = await attempt(() => client.ping());
  check('server still answers', !again.error, String(again.error));
} catch (e) {
  check('session ran without exceptions', false, String(e?.stack ?? e));
} finally {
  await client.close().catch(() => {});
}

if (failed && serverLog)
  console.error(`server stderr:\n${serverLog}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
