// Segment's Node library (@segment/analytics-node), unchanged but for host and write key:
// identify, track, page, screen, group and alias, then closeAndFlush(). Prints one JSON line:
// the message id of each call by type, the requests the library made, the responses it got,
// and the status of the library's last request sent once more as it was.
//
// usage: node segment_calls.mjs <gateway url> <write key>
import { Analytics } from '@segment/analytics-node'

const [host, writeKey] = process.argv.slice(2)
const analytics = new Analytics({ writeKey, host, flushAt: 6, maxRetries: 1 })
const ids = {}
const errors = []
const requests = []
const responses = []
analytics.on('http_request', (request) => requests.push(request))
analytics.on('http_response', (response) => responses.push(response.status))
analytics.on('error', (error) => errors.push(String(error.code || error.message || error)))

const done = (type) => (err, ctx) => {
  if (err) errors.push(`${type}: ${err}`)
  else ids[type] = ctx.event.messageId
}
analytics.identify({ userId: 'node-1', traits: { email: 'ada@example.com', plan: 'pro' } }, done('identify'))
analytics.track({ userId: 'node-1', event: 'Order Completed', properties: { revenue: 42.5 } }, done('track'))
analytics.page({ userId: 'node-1', category: 'Docs', name: 'Getting Started', properties: { path: '/docs' } }, done('page'))
analytics.screen({ userId: 'node-1', category: 'Settings', name: 'Profile' }, done('screen'))
analytics.group({ userId: 'node-1', groupId: 'acme', traits: { name: 'Acme Inc' } }, done('group'))
analytics.alias({ previousId: 'anon-7', userId: 'node-1' }, done('alias'))
await analytics.closeAndFlush({ timeout: 20000 })

// The same batch again, byte for byte, as a retry after a lost answer would send it.
let resent = null
const last = requests.at(-1)
if (last) {
  const again = await fetch(last.url, { method: last.method, headers: last.headers, body: last.body })
  resent = { status: again.status, body: await again.json() }
}
console.log(JSON.stringify({
  ids,
  errors,
  responses,
  requests: requests.map((r) => ({ url: r.url, headers: r.headers, body: JSON.parse(r.body) })),
  resent,
}))
