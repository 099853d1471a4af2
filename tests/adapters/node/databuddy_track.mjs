// The official Databuddy Node SDK (@databuddy/sdk/node), unchanged, pointed at the gateway.
//
// Usage: node databuddy_track.mjs <gateway base URL> <API key> <website id>
// Tracks three events with batching on (they queue), flushes them in one request, and prints
// one JSON line: what track() and flush() returned, and every request the SDK sent (recorded by
// wrapping fetch, which the SDK calls; the SDK itself is not touched).
import { Databuddy } from "@databuddy/sdk/node";

const [apiUrl, apiKey, websiteId] = process.argv.slice(2);
if (!apiUrl || !apiKey || !websiteId) {
  console.error("usage: node databuddy_track.mjs <apiUrl> <apiKey> <websiteId>");
  process.exit(2);
}

const wire = [];
const realFetch = globalThis.fetch;
globalThis.fetch = async (url, init = {}) => {
  const response = await realFetch(url, init);
  wire.push({
    method: init.method ?? "GET",
    url: String(url),
    headers: init.headers ?? {},
    body: init.body === undefined ? null : JSON.parse(init.body),
    status: response.status,
    response: await response.clone().json().catch(() => null),
  });
  return response;
};

const client = new Databuddy({
  apiKey,
  websiteId,
  apiUrl,
  namespace: "compat",
  source: "node-sdk",
  enableBatching: true,
  batchSize: 10, // more than we send: nothing leaves before flush()
  batchTimeout: 60_000,
});

const tracked = [];
const names = ["signup", "upgrade", "export"];
for (const [index, name] of names.entries()) {
  tracked.push(
    await client.track({
      name,
      anonymousId: "anon-node",
      sessionId: "sess-node",
      profileId: index === 2 ? "user-node" : undefined,
      timestamp: 1709251200000 + index * 1000,
      properties: { index, plan: "pro" },
    }),
  );
}
const queuedBeforeFlush = wire.length;
const flushed = await client.flush();

console.log(JSON.stringify({ tracked, queuedBeforeFlush, flushed, wire }));
process.exit(flushed.success ? 0 : 1);
