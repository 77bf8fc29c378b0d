// The HTTP judge against hostile servers on 127.0.0.1: a reply that stalls
// mid-body, a 400 MB body, Retry-After, one garbage reply among good ones.
// Each is bounded (a timeout or size error the retry loop handles) and never
// stops an evaluation for one bad reply.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { HttpJudge, judgeWinRate } from 'rlfarm'
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { retryAfterMs } = require('../dist/farm/judges.js') as typeof import('../ts/farm/judges')

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number, body: string) => void

async function server(t: { teardown(fn: () => void | Promise<void>): void }, handle: Handler) {
  let n = 0
  const sockets = new Set<import('node:net').Socket>()
  const s = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => handle(req, res, n++, body))
  })
  s.on('connection', (c) => {
    sockets.add(c)
    c.on('close', () => sockets.delete(c))
  })
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const c of sockets) c.destroy()
    return new Promise<void>((resolve) => s.close(() => resolve()))
  })
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}/v1`, count: () => n }
}

const answer = (content: string) => JSON.stringify({ choices: [{ message: { role: 'assistant', content } }] })
const pair = [{ prompt: 'add 2 and 3', a: ' 5', b: ' 6' }]

t.test('a server that stalls mid-body: a bounded timeout, retried, then one clear error', async (t) => {
  const s = await server(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' })
    res.write('{"choices": [')
    // ... and never more.
  })
  const started = Date.now()
  const err = await new HttpJudge({ url: s.url, model: 'm', timeoutMs: 300, retries: 1 }).compare(pair).catch((e: Error) => e)
  t.ok(err instanceof Error)
  t.match((err as Error).message, /^http judge: http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions failed after 2 tries: no complete reply within 300 ms \(timeoutMs\)$/)
  t.equal(s.count(), 2, 'the stalled try was retried')
  t.ok(Date.now() - started < 30_000, 'bounded')
})

t.test('a stall once, then an answer: the retry gets it', async (t) => {
  const s = await server(t, (_req, res, n) => {
    if (n === 0) {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write('{"choi')
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(answer('Output (a)'))
  })
  const judge = new HttpJudge({ url: s.url, model: 'm', timeoutMs: 300, retries: 2, seed: 0 })
  const [v] = await judge.compare(pair)
  t.ok(v === 0 || v === 1, `a verdict (${v})`)
})

t.test('a 400 MB body: refused at the size limit without reading it all, and the pair is left out', async (t) => {
  let sent = 0
  const chunk = Buffer.alloc(1 << 20, 0x61)
  const s = await server(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    // Chunked, no content-length: the reader must count. Stop writing when the client goes.
    const pump = () => {
      while (sent < 400 * (1 << 20) && !res.destroyed) {
        sent += chunk.length
        if (!res.write(chunk)) return void res.once('drain', pump)
      }
      res.end()
    }
    pump()
  })
  const judge = new HttpJudge({ url: s.url, model: 'm', retries: 0, maxReplyBytes: 4 << 20 })
  t.same(await judge.compare(pair), [null])
  t.same(judge.skipped.reasons, ['the reply is over the 4194304-byte limit (maxReplyBytes)'])
  t.ok(sent < 100 * (1 << 20), `the server was cut off early (${(sent / (1 << 20)).toFixed(0)} MB sent)`)
  const declared = await server(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(400 * (1 << 20)) })
    res.write('{')
  })
  const j2 = new HttpJudge({ url: declared.url, model: 'm', retries: 0 })
  t.same(await j2.compare(pair), [null])
  t.same(j2.skipped.reasons, ['the reply is 419430400 bytes, over the 1048576-byte limit (maxReplyBytes)'])
})

t.test('Retry-After is honoured, up to maxRetryAfterMs', async (t) => {
  t.equal(retryAfterMs('2'), 2000)
  t.equal(retryAfterMs(null), undefined)
  t.equal(retryAfterMs('soon'), undefined)
  t.equal(retryAfterMs(new Date(10_000).toUTCString(), 4_000), 6000, 'an HTTP date')
  const times: number[] = []
  const s = await server(t, (_req, res, n) => {
    times.push(Date.now())
    if (n === 0) return void res.writeHead(429, { 'retry-after': '1' }).end('slow down')
    if (n === 1) return void res.writeHead(503, { 'retry-after': '3600' }).end('maintenance')
    res.writeHead(200, { 'content-type': 'application/json' }).end(answer('b'))
  })
  const judge = new HttpJudge({ url: s.url, model: 'm', retries: 2, maxRetryAfterMs: 1500 })
  const [v] = await judge.compare(pair)
  t.ok(v === 0 || v === 1)
  t.ok(times[1] - times[0] >= 950, `waited the second asked for (${times[1] - times[0]} ms; the backoff alone is 400 ms)`)
  t.ok(times[2] - times[1] >= 1450 && times[2] - times[1] < 60_000, `an hour's ask waits the bound (${times[2] - times[1]} ms)`)
})

t.test('one garbage reply among good ones: retried, then counted and skipped; the evaluation goes on', async (t) => {
  const s = await server(t, (_req, res, _n, body) => {
    const user = JSON.parse(body).messages[1].content as string
    if (user.includes('item 3')) return void res.writeHead(200, { 'content-type': 'application/json' }).end('<html>oops</html>')
    if (user.includes('item 5')) return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"choices": []}')
    res.writeHead(200, { 'content-type': 'application/json' }).end(answer('Output (a)'))
  })
  const items = Array.from({ length: 8 }, (_, i) => ({ prompt: `item ${i}`, response: `r${i}`, reference: `f${i}` }))
  const judge = new HttpJudge({ url: s.url, model: 'm', retries: 1, concurrency: 2 })
  const w = await judgeWinRate(judge, items)
  t.equal(w.skipped, 2)
  t.equal(w.n, 6, 'the win-rate is over the pairs the judge decided')
  t.equal(s.count(), 6 + 2 * 2, 'each garbage reply was tried twice')
  t.match(judge.skipped.reasons.join('\n'), /not JSON: "<html>oops<\/html>"/)
  t.match(judge.skipped.reasons.join('\n'), /no choices\[0\]\.message\.content string/)
  const all = await server(t, (_req, res) => void res.writeHead(200).end('garbage'))
  await t.rejects(judgeWinRate(new HttpJudge({ url: all.url, model: 'm', retries: 0 }), items.slice(0, 2)), { message: 'the http judge gave no usable answer for any of the 2 pairs (first: not JSON: "garbage")' })
})
