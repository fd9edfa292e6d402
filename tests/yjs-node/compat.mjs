// Drives the stock npm `y-websocket` client (with `yjs` and `ws`) against collab's
// `GET /yjs/{name}` endpoint. Run by tests/yjs_node.rs; usable by hand:
//
//   node compat.mjs converge           <base-url> <doc> <token-a> [<token-b> [<token-c>]]
//   node compat.mjs awareness          <base-url> <doc> <token-a> [<token-b>]
//   node compat.mjs readonly           <base-url> <doc> <write-token> <read-token> [<fresh-token>]
//   node compat.mjs write              <base-url> <doc> <token> <content>
//   node compat.mjs read-after-restart <base-url> <doc> <token> <content>
//   node compat.mjs refused            <base-url> <doc> <token> <expected-http-status>
//
// <base-url> is like ws://127.0.0.1:PORT/yjs; the client connects to <base-url>/<doc>
// with `?token=`. A missing optional token is the previous one.
//
// Output: one JSON object per line on stdout, each with `scenario`; the last line is
// `{"scenario":…,"ok":true}` or `{"scenario":…,"ok":false,"error":…}`. Exit status 0 on
// success, 1 on failure, 2 on bad usage. Every wait is bounded (COMPAT_STEP_TIMEOUT_MS,
// default 10 s) and the whole run too (COMPAT_TOTAL_TIMEOUT_MS, default 60 s).

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const STEP_TIMEOUT_MS = Number(process.env.COMPAT_STEP_TIMEOUT_MS || 10000)
const TOTAL_TIMEOUT_MS = Number(process.env.COMPAT_TOTAL_TIMEOUT_MS || 60000)
/** How long "nothing happens" is watched for where an absence is checked. */
const QUIET_MS = Number(process.env.COMPAT_QUIET_MS || 500)

const [scenario, baseUrl, docName, ...rest] = process.argv.slice(2)

const emit = (fields) => {
  process.stdout.write(JSON.stringify({ scenario, ...fields }) + '\n')
}

let finished = false
const finish = (ok, error) => {
  if (finished) return
  finished = true
  for (const client of clients) {
    try {
      client.provider.destroy()
      client.doc.destroy()
    } catch (_) {}
  }
  if (ok) {
    emit({ ok: true })
  } else {
    emit({ ok: false, error: String(error && error.stack ? error.stack : error) })
  }
  process.exit(ok ? 0 : 1)
}

const usage = (message) => {
  process.stderr.write(`usage error: ${message}\n(see the header of compat.mjs)\n`)
  process.exit(2)
}

process.on('unhandledRejection', (error) => finish(false, error))
process.on('uncaughtException', (error) => finish(false, error))
setTimeout(
  () => finish(false, `the whole run took longer than ${TOTAL_TIMEOUT_MS} ms`),
  TOTAL_TIMEOUT_MS
)

// y-websocket reports a permission-denied auth message with console.warn only; keep the
// reasons (without the URL, which carries the token) and stay quiet otherwise.
const permissionWarnings = []
const originalWarn = console.warn
console.warn = (...args) => {
  const message = args.map(String).join(' ')
  if (message.startsWith('Permission denied to access')) {
    permissionWarnings.push(message.split('\n').slice(1).join('\n'))
  } else {
    originalWarn(...args)
  }
}

/** @type {Array<ReturnType<typeof connect>>} */
const clients = []

/**
 * A Y.Doc with a stock WebsocketProvider on <baseUrl>/<docName>, plus what the test
 * observes of it: its first sync, closes it did not initiate, connection errors, and the
 * permission-denied messages it received.
 */
function connect (label, token) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(baseUrl, docName, doc, {
    WebSocketPolyfill: WebSocket,
    disableBc: true,
    params: { token }
  })
  const client = {
    label,
    doc,
    provider,
    text: doc.getText('text'),
    map: doc.getMap('meta'),
    /** The document at the moment of the first `sync` event. */
    firstSync: null,
    /** Closes this client did not initiate (code and reason). */
    closes: [],
    errors: [],
    denials: 0
  }
  provider.on('sync', (synced) => {
    if (synced && client.firstSync === null) {
      client.firstSync = { text: client.text.toString(), map: client.map.toJSON() }
    }
  })
  provider.on('connection-close', (event) => {
    if (event) client.closes.push({ code: event.code, reason: String(event.reason || '') })
  })
  provider.on('connection-error', (event) => {
    client.errors.push(String((event && (event.message || (event.error && event.error.message))) || 'error'))
  })
  // Count auth messages on this provider, then let the stock handler run.
  const stockAuthHandler = provider.messageHandlers[2]
  provider.messageHandlers[2] = (...args) => {
    client.denials++
    stockAuthHandler(...args)
  }
  clients.push(client)
  return client
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `predicate` until it holds; fails after STEP_TIMEOUT_MS, saying what it waited for. */
async function waitFor (what, predicate, timeoutMs = STEP_TIMEOUT_MS) {
  const start = Date.now()
  while (!predicate()) {
    if (Date.now() - start > timeoutMs) {
      const state = clients.map((c) => ({
        client: c.label,
        connected: c.provider.wsconnected,
        synced: c.provider.synced,
        errors: c.errors.slice(-3),
        closes: c.closes.slice(-3)
      }))
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; clients: ${JSON.stringify(state)}`)
    }
    await sleep(5)
  }
  return Date.now() - start
}

const synced = (client) => waitFor(`${client.label} to sync`, () => client.firstSync !== null)

const check = (condition, message) => {
  if (!condition) throw new Error(message)
}

const tokensOf = (text) => text.split(';').filter((t) => t.length > 0).sort()

/** Inserts `token;` at a token boundary of `client`'s current text (never inside one). */
function insertToken (client, token, random) {
  const text = client.text.toString()
  const boundaries = [0]
  for (let i = 0; i < text.length; i++) if (text[i] === ';') boundaries.push(i + 1)
  const at = boundaries[Math.floor(random() * boundaries.length)]
  client.text.insert(at, token + ';')
}

/** A small deterministic PRNG, so a failing run can be repeated. */
function mulberry32 (seed) {
  return () => {
    seed |= 0
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const scenarios = {
  // Two clients insert concurrently and converge; a late joiner has it all at its first sync.
  async converge ([tokenA, tokenB = tokenA, tokenC = tokenB]) {
    if (!tokenA) usage('converge needs at least one token')
    const a = connect('a', tokenA)
    const b = connect('b', tokenB)
    await Promise.all([synced(a), synced(b)])
    check(a.firstSync.text === '' && b.firstSync.text === '', `the document is not new: ${JSON.stringify(a.firstSync.text)}`)
    emit({ event: 'synced', clients: ['a', 'b'] })

    const rounds = 25
    const random = mulberry32(Number(process.env.COMPAT_SEED || 1))
    const expected = []
    for (let round = 0; round < rounds; round++) {
      // Both insert in the same tick, before either can see the other's insert.
      insertToken(a, `a${round}`, random)
      insertToken(b, `b${round}`, random)
      expected.push(`a${round}`, `b${round}`)
      if (round % 5 === 4) await sleep(Math.floor(random() * 5))
    }
    // Concurrent writes to one map key: both must settle on the same winner.
    a.map.set('winner', 'a')
    b.map.set('winner', 'b')
    expected.sort()

    const elapsed = await waitFor('a and b to converge', () => {
      const text = a.text.toString()
      return text === b.text.toString() &&
        text.length === expected.join(';').length + 1 &&
        a.map.get('winner') === b.map.get('winner')
    })
    const text = a.text.toString()
    check(JSON.stringify(tokensOf(text)) === JSON.stringify(expected),
      `the converged text lost or duplicated inserts: ${text}`)
    emit({ event: 'converged', text, length: text.length, inserts: expected.length, winner: a.map.get('winner'), elapsed_ms: elapsed })

    const c = connect('c', tokenC)
    await synced(c)
    check(c.firstSync.text === text, `the late joiner's first sync lacks content: ${JSON.stringify(c.firstSync.text)} != ${JSON.stringify(text)}`)
    check(c.firstSync.map.winner === a.map.get('winner'), `the late joiner's map differs: ${JSON.stringify(c.firstSync.map)}`)
    emit({ event: 'late-joiner', text: c.firstSync.text, winner: c.firstSync.map.winner })

    for (const client of [a, b, c]) {
      check(client.closes.length === 0, `${client.label} was disconnected: ${JSON.stringify(client.closes)}`)
    }
  },

  // A's awareness state reaches B and a late joiner; when A's socket dies without a
  // goodbye, the server removes A's state at once. A second client that leaves with
  // provider.destroy() (which says goodbye) disappears too.
  async awareness ([tokenA, tokenB = tokenA]) {
    if (!tokenA) usage('awareness needs at least one token')
    const a = connect('a', tokenA)
    const b = connect('b', tokenB)
    await Promise.all([synced(a), synced(b)])
    const nonce = Math.random().toString(36).slice(2)
    a.provider.awareness.setLocalStateField('user', { name: 'alice', nonce })
    const idA = a.doc.clientID
    const seen = await waitFor("b to see a's awareness state",
      () => b.provider.awareness.getStates().get(idA)?.user?.nonce === nonce)
    emit({ event: 'seen', client: 'b', of: 'a', elapsed_ms: seen })

    // A late joiner gets the states the server knows in its hello, without a resend.
    const late = connect('late', tokenB)
    await synced(late)
    const seenLate = await waitFor("the late joiner to see a's awareness state",
      () => late.provider.awareness.getStates().get(idA)?.user?.nonce === nonce)
    emit({ event: 'seen', client: 'late', of: 'a', elapsed_ms: seenLate })

    // Kill A's socket: no awareness goodbye, no close frame. Clients drop silent peers
    // only after 30 s, so a removal within the step timeout is the server's doing.
    a.provider.shouldConnect = false
    a.provider.ws.terminate()
    const removed = await waitFor("b to see a's state removed after a's socket died",
      () => !b.provider.awareness.getStates().has(idA))
    await waitFor("the late joiner to see a's state removed",
      () => !late.provider.awareness.getStates().has(idA))
    emit({ event: 'removed', how: 'socket-terminated', elapsed_ms: removed })

    // A second client leaves the ordinary way.
    const a2 = connect('a2', tokenA)
    await synced(a2)
    a2.provider.awareness.setLocalStateField('user', { name: 'alice-again', nonce })
    const idA2 = a2.doc.clientID
    await waitFor("b to see a2's awareness state",
      () => b.provider.awareness.getStates().get(idA2)?.user?.name === 'alice-again')
    a2.provider.destroy()
    const removed2 = await waitFor("b to see a2's state removed after provider.destroy()",
      () => !b.provider.awareness.getStates().has(idA2))
    emit({ event: 'removed', how: 'provider-destroy', elapsed_ms: removed2 })

    check(b.provider.wsconnected && late.provider.wsconnected, 'b or the late joiner lost its connection')
    for (const client of [b, late]) {
      check(client.closes.length === 0, `${client.label} was disconnected: ${JSON.stringify(client.closes)}`)
    }
  },

  // A read-only client's edits are refused (permission denied), reach nobody and change
  // nothing on the server; the read-only client stays connected and keeps receiving.
  async readonly ([writeToken, readToken, freshToken = writeToken]) {
    if (!writeToken || !readToken) usage('readonly needs a write token and a read token')
    const w = connect('writer', writeToken)
    await synced(w)
    check(w.firstSync.text === '', `the document is not new: ${JSON.stringify(w.firstSync.text)}`)
    let writerSawEvil = false
    w.text.observe(() => { if (w.text.toString().includes('evil')) writerSawEvil = true })
    w.map.observe(() => { if (w.map.has('evil')) writerSawEvil = true })
    w.text.insert(0, 'base;')

    const r = connect('reader', readToken)
    await synced(r)
    await waitFor('the reader to receive the base text', () => r.text.toString() === 'base;')
    // The stock client answers the server's Step1 with a Step2 even when it has nothing
    // (an empty update): that is no edit, and must not be refused.
    await sleep(QUIET_MS)
    check(r.denials === 0, `the reader was told permission denied before it edited anything: ${JSON.stringify(permissionWarnings)}`)
    emit({ event: 'reader-synced', text: r.text.toString() })

    r.text.insert(r.text.length, 'evil;')
    r.map.set('evil', true)
    await waitFor('the reader to be told permission denied', () => r.denials > 0)
    emit({ event: 'denied', denials: r.denials, reasons: permissionWarnings })

    // The writer goes on; the reader, still connected, receives it.
    w.text.insert(w.text.length, 'after;')
    await waitFor("the reader to receive the writer's later edit",
      () => r.text.toString().includes('after;'))
    // Give a wrongly relayed edit time to arrive at the writer.
    await sleep(QUIET_MS)
    check(r.provider.wsconnected, 'the reader was disconnected')
    check(r.closes.length === 0, `the reader was disconnected: ${JSON.stringify(r.closes)}`)
    check(!writerSawEvil, `the writer received the read-only edit: ${w.text.toString()} ${JSON.stringify(w.map.toJSON())}`)
    check(w.text.toString() === 'base;after;', `the writer's text is ${JSON.stringify(w.text.toString())}`)
    check(w.denials === 0, 'the writer was denied')
    emit({ event: 'reader-connected', reader_text: r.text.toString(), writer_text: w.text.toString() })

    // What the server holds: a fresh client's first sync.
    const f = connect('fresh', freshToken)
    await synced(f)
    check(f.firstSync.text === 'base;after;', `the server's document is ${JSON.stringify(f.firstSync.text)}`)
    check(!('evil' in f.firstSync.map), `the server's map is ${JSON.stringify(f.firstSync.map)}`)
    emit({ event: 'server-state', text: f.firstSync.text, map: f.firstSync.map })
  },

  // Phase 1 of the restart story: write `content`, and wait until another client has
  // received it (the server relays an update only once it is committed).
  async write ([token, content]) {
    if (!token || content === undefined) usage('write needs a token and the content')
    const observer = connect('observer', token)
    const w = connect('writer', token)
    await Promise.all([synced(observer), synced(w)])
    check(w.firstSync.text === '', `the document is not new: ${JSON.stringify(w.firstSync.text)}`)
    w.doc.transact(() => {
      w.text.insert(0, content)
      w.map.set('content', content)
    })
    const elapsed = await waitFor('the observer to receive the content',
      () => observer.text.toString() === content && observer.map.get('content') === content)
    emit({ event: 'acknowledged', text: observer.text.toString(), elapsed_ms: elapsed })
  },

  // Phase 2, against the restarted server: the content is there at the first sync, and
  // the document takes new edits.
  async 'read-after-restart' ([token, content]) {
    if (!token || content === undefined) usage('read-after-restart needs a token and the content')
    const f = connect('fresh', token)
    await synced(f)
    check(f.firstSync.text === content,
      `at the first sync the text is ${JSON.stringify(f.firstSync.text)}, expected ${JSON.stringify(content)}`)
    check(f.firstSync.map.content === content, `at the first sync the map is ${JSON.stringify(f.firstSync.map)}`)
    emit({ event: 'first-sync', text: f.firstSync.text })

    const more = '+after-restart'
    f.text.insert(f.text.length, more)
    const g = connect('second', token)
    await synced(g)
    await waitFor('a second client to have the edit made after the restart',
      () => g.text.toString() === content + more)
    emit({ event: 'edited', text: g.text.toString() })
  },

  // The server refuses the upgrade with an HTTP status; the stock client never connects.
  async refused ([token, status]) {
    if (token === undefined || !status) usage('refused needs a token and the expected HTTP status')
    const client = connect('refused', token)
    await waitFor(`a connection error with HTTP ${status}`,
      () => client.errors.some((e) => e.includes(`Unexpected server response: ${status}`)))
    check(client.firstSync === null && !client.provider.wsconnected, 'the refused client connected')
    emit({ event: 'refused', errors: [...new Set(client.errors)] })
  }
}

if (!scenarios[scenario]) usage(`unknown scenario ${JSON.stringify(scenario)}; one of ${Object.keys(scenarios).join(', ')}`)
if (!baseUrl || !docName) usage('a base URL and a document name are required')

scenarios[scenario](rest).then(() => finish(true), (error) => finish(false, error))
