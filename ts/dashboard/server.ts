// `rlfarm dashboard`: a local web page of the runs under a folder, served by
// node:http. The page (static/) talks to a small JSON API and follows the
// runs through Server-Sent Events; vega and vega-lite's browser bundles come
// from node_modules, so nothing is fetched from the internet.
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { insideRoot, lastJsonlRows, OutsideRootError } from './files.js'
import { RunWatcher } from './runs.js'

export interface DashboardOptions {
  /** The folder of runs. */
  dir: string
  /** Default 6006; 0 picks a free port. */
  port?: number
  /** Default 127.0.0.1 (this machine only). */
  host?: string
  /** Milliseconds between polls of the folder. Default 1000. */
  intervalMs?: number
}

export interface Dashboard {
  url: string
  root: string
  server: http.Server
  close(): Promise<void>
}

const STATIC = path.join(__dirname, '..', '..', 'ts', 'dashboard', 'static')
const STATIC_FILES: Record<string, string> = { '/': 'index.html', '/app.js': 'app.js', '/style.css': 'style.css' }

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.jsonl': 'text/plain; charset=utf-8',
  '.yaml': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
}

/** The browser bundle a package names in its `unpkg` field (vega, vega-lite). */
function browserBundle(pkg: string): string {
  let dir = path.dirname(require.resolve(pkg))
  for (;;) {
    const manifest = path.join(dir, 'package.json')
    if (fs.existsSync(manifest)) {
      const json = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { name?: string; unpkg?: string }
      if (json.name === pkg && json.unpkg) return path.join(dir, json.unpkg)
    }
    const up = path.dirname(dir)
    if (up === dir) throw new Error(`rlfarm dashboard: cannot find ${pkg}'s browser bundle (its package.json's unpkg field) above ${require.resolve(pkg)}`)
    dir = up
  }
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

/** Starts the dashboard; resolves once it listens. */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const host = options.host ?? '127.0.0.1'
  const port = options.port ?? 6006
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`rlfarm dashboard: the port must be an integer from 0 to 65535; got ${port}`)
  const given = path.resolve(options.dir)
  let st: fs.Stats
  try {
    st = fs.statSync(given)
  } catch {
    throw new Error(`rlfarm dashboard: the folder ${given} does not exist (runs go into runs/ by default; give the folder of your runs)`)
  }
  if (!st.isDirectory()) throw new Error(`rlfarm dashboard: ${given} is not a folder (give the folder of your runs, e.g. runs/)`)
  const root = fs.realpathSync(given)
  const vendor: Record<string, string> = { '/vendor/vega.js': browserBundle('vega'), '/vendor/vega-lite.js': browserBundle('vega-lite') }

  const watcher = new RunWatcher(root, { intervalMs: options.intervalMs })
  const clients = new Set<http.ServerResponse>()
  const send = (res: http.ServerResponse, event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
  const snapshot = () => ({ root, runs: watcher.runs(), compares: watcher.compares() })
  watcher.on('change', () => {
    const data = snapshot()
    for (const c of clients) send(c, 'runs', data)
  })
  watcher.on('metrics', (update) => {
    for (const c of clients) send(c, 'metrics', update)
  })

  const runParam = (url: URL): string => {
    const id = url.searchParams.get('run')
    if (id === null) throw new HttpError(400, 'the query needs run=<run id>')
    insideRoot(root, id)
    if (!watcher.has(id)) throw new HttpError(404, `no run ${JSON.stringify(id)} under ${root}`)
    return id
  }

  const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `${req.method} is not served; the dashboard only reads`)
    const url = new URL(req.url ?? '/', 'http://dashboard')
    const route = url.pathname
    const json = (data: unknown) => {
      res.writeHead(200, { 'content-type': TYPES['.json'], 'cache-control': 'no-store' })
      res.end(JSON.stringify(data))
    }
    if (STATIC_FILES[route]) return serveFile(res, path.join(STATIC, STATIC_FILES[route]))
    if (route === '/favicon.ico') return void res.writeHead(204).end()
    if (vendor[route]) return serveFile(res, vendor[route], 'public, max-age=3600')
    if (route === '/api/runs') return json(snapshot())
    if (route === '/api/metrics') {
      const id = runParam(url)
      return json({ run: id, rows: watcher.rows(id) })
    }
    if (route === '/api/outputs') {
      const id = runParam(url)
      const limit = Math.min(Math.max(Number(url.searchParams.get('limit') ?? 20) || 20, 1), 500)
      return json({ run: id, ...lastJsonlRows(root, id === '.' ? 'outputs.jsonl' : `${id}/outputs.jsonl`, limit) })
    }
    if (route === '/api/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' })
      clients.add(res)
      req.on('close', () => clients.delete(res))
      send(res, 'runs', snapshot())
      for (const run of watcher.runs()) if (run.rows) send(res, 'metrics', { run: run.id, rows: watcher.rows(run.id), reset: true })
      return
    }
    if (route.startsWith('/files/')) {
      let rel: string
      try {
        rel = decodeURIComponent(route.slice('/files/'.length))
      } catch {
        throw new HttpError(400, `the path ${route} is not valid percent-encoding`)
      }
      const file = insideRoot(root, rel)
      // A file from a run may be HTML (report.html): it is shown, never run as a script of this page.
      return serveFile(res, file, 'no-store', { 'content-security-policy': "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'" })
    }
    throw new HttpError(404, `nothing at ${route}`)
  }

  const server = http.createServer((req, res) => {
    try {
      checkHost(req, host)
      handle(req, res)
    } catch (err) {
      const status = err instanceof HttpError ? err.status : err instanceof OutsideRootError ? 403 : 500
      if (!res.headersSent) res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' })
      res.end(`${(err as Error).message}\n`)
    }
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      watcher.stop()
      if (err.code === 'EADDRINUSE') reject(new Error(`rlfarm dashboard: port ${port} on ${host} is in use (another dashboard or TensorBoard?); choose another with --port`))
      else if (err.code === 'EACCES') reject(new Error(`rlfarm dashboard: not allowed to listen on port ${port} of ${host} (ports below 1024 need privileges); choose another with --port`))
      else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') reject(new Error(`rlfarm dashboard: cannot listen on host ${host} (${err.code}); --host takes an address of this machine`))
      else reject(new Error(`rlfarm dashboard: cannot listen on ${host}:${port}: ${err.message}`))
    })
    server.listen(port, host, () => resolve())
  })
  watcher.start()
  const address = server.address() as { port: number; address: string; family: string }
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `http://${shown}:${address.port}/`,
    root,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        watcher.stop()
        for (const c of clients) c.end()
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

function serveFile(res: http.ServerResponse, file: string, cache = 'no-store', headers: Record<string, string> = {}): void {
  let st: fs.Stats
  try {
    st = fs.statSync(file)
  } catch {
    throw new HttpError(404, `no file ${path.basename(file)}`)
  }
  if (!st.isFile()) throw new HttpError(404, `${path.basename(file)} is not a file`)
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'content-length': st.size, 'cache-control': cache, 'x-content-type-options': 'nosniff', ...headers })
  fs.createReadStream(file).pipe(res)
}

/** On a loopback address, only requests that name this machine (a web page elsewhere cannot read the runs through DNS rebinding). */
function checkHost(req: http.IncomingMessage, host: string): void {
  if (!['127.0.0.1', '::1', 'localhost'].includes(host)) return
  const name = (req.headers.host ?? '').replace(/:\d+$/, '')
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(name)) throw new HttpError(403, `the Host header ${JSON.stringify(req.headers.host)} is not this machine`)
}
