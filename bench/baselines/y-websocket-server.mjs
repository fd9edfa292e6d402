#!/usr/bin/env node
// The stock y-websocket backend (@y/websocket-server, see package.json for the exact
// version) for bench/run.sh's `yjs` scenario, started programmatically so that it can
// listen on port 0 and say where.
//
//   node y-websocket-server.mjs [--port N] [--host 127.0.0.1]
//
// Prints `listening on ws://HOST:PORT` as its first stdout line. Clients connect to
// ws://HOST:PORT/<doc> (the document name is the URL path; a query string is ignored).
//
// This is the package's own src/server.js with only the listen address changed: an HTTP
// server whose upgrades go to a `ws` WebSocketServer in noServer mode, each connection
// handed to setupWSConnection. No persistence (YPERSISTENCE unset), gc on (the default).
// It uses the `ws` 8.x installed beside it (src/server.js would pick up the ws 6.x that
// npm nests under the package as an optional dependency; 8.x is the faster of the two).
import http from 'node:http'
import { WebSocketServer } from 'ws'
import { setupWSConnection } from '@y/websocket-server/utils'

// --port N / --host H, or PORT / HOST from the environment; port 0 picks a free one.
function option (name, fallback) {
  const i = process.argv.indexOf(`--${name}`)
  if (i !== -1 && i + 1 < process.argv.length) return process.argv[i + 1]
  return fallback
}
const host = option('host', process.env.HOST || '127.0.0.1')
const port = Number.parseInt(option('port', process.env.PORT || '0'), 10)

const wss = new WebSocketServer({ noServer: true })
wss.on('connection', setupWSConnection)

const server = http.createServer((_request, response) => {
  response.writeHead(200, { 'Content-Type': 'text/plain' })
  response.end('okay')
})
server.on('upgrade', (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, ws => {
    wss.emit('connection', ws, request)
  })
})

server.listen(port, host, () => {
  const { address, port } = server.address()
  console.log(`listening on ws://${address}:${port}`)
})

// bench/run.sh stops us with SIGTERM; exit at once (there is nothing to save).
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0))
