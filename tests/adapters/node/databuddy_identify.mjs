// The official Databuddy Node SDK (@databuddy/sdk/node), unchanged, pointed at the gateway.
//
// Usage: node databuddy_identify.mjs <gateway base URL> <API key> <website id>
// Calls identify() as the SDK documents it and prints one JSON line: what identify() returned,
// and the request the SDK sent (recorded by wrapping fetch; the SDK itself is not touched).
import { Databuddy } from "@databuddy/sdk/node";

const [apiUrl, apiKey, websiteId] = process.argv.slice(2);
if (!apiUrl || !apiKey || !websiteId) {
  console.error("usage: node databuddy_identify.mjs <apiUrl> <apiKey> <websiteId>");
  process.exit(2);
}

const wire = [];
const realFetch = globalThis.fetch;
globalThis.fetch = async (url, init = {}) => {
  const response = await realFetch(url, init);
  wire.push({
    method: init.method ?? "GET",
    url: String(url),
    body: init.body === undefined ? null : JSON.parse(init.body),
    status: response.status,
    response: await response.clone().json().catch(() => null),
  });
  return response;
};

const client = new Databuddy({ apiKey, websiteId, apiUrl });
const identified = await client.identify({
  profileId: "user-42",
  anonymousId: "anon_1",
  traits: { plan: "pro" },
});
console.log(JSON.stringify({ identified, wire }));
process.exit(identified.success ? 0 : 1);
