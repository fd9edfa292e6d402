#!/usr/bin/env node
// Hocuspocus (@hocuspocus/server, see package.json for the exact version) for
// bench/run.sh's `yjs` scenario, started programmatically so that it can listen on port 0
// and say where.
//
//   node hocuspocus.mjs [--port N] [--host 127.0.0.1]
//
// Prints `listening on ws://HOST:PORT` as its first stdout line (Hocuspocus' own start
// screen is turned off with `quiet`).
//
// The configuration is the README's minimal server: no extensions, so no persistence and
// no onAuthenticate hook. Note for clients: Hocuspocus still expects, per document, an
// Auth message (any token is accepted when no hook is configured) before it answers that
// document's sync messages; every message is prefixed with the document name as a
// varstring, and the URL path is not used for the document name.
import { Server } from '@hocuspocus/server'

// --port N / --host H, or PORT / HOST from the environment; port 0 picks a free one.
function option (name, fallback) {
  const i = process.argv.indexOf(`--${name}`)
  if (i !== -1 && i + 1 < process.argv.length) return process.argv[i + 1]
  return fallback
}
const address = option('host', process.env.HOST || '127.0.0.1')
const port = Number.parseInt(option('port', process.env.PORT || '0'), 10)

const server = new Server({
  // Passed here rather than to listen(): listen(0) would fall back to the default port 80.
  port,
  address,
  quiet: true,
  // SIGINT/SIGTERM: Hocuspocus closes its connections and exits (its default).
  stopOnSignals: true
})

await server.listen()
const bound = server.httpServer.address()
console.log(`listening on ws://${bound.address}:${bound.port}`)
