// rlfarm dashboard, server side: the runs it finds (recursively), metrics.jsonl
// followed incrementally (partial last lines, rewritten files), the event
// stream, reads confined to the folder (.., %2e%2e, absolute paths, symlinks),
// the Host check, and clear errors for a bad folder and a port in use.
import t from 'tap'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { RunDirectory, startDashboard, type Dashboard, type PipelineSummary } from 'rlfarm'
import { tempDir } from './helpers/common'
import { JsonlTail } from '../dist/dashboard/files.js'
import { makeLeaderboard, writeReport } from '../dist/farm/report.js'

const BIN = path.join(__dirname, '..', 'bin', 'rlfarm.js')

/** A run made by the trainer's own RunDirectory and MetricsLogger. */
function makeRun(parent: string, name: string, algorithm: string, steps: number, state: 'running' | 'finished' | 'failed', metric = 'loss') {
  const run = RunDirectory.create(parent, { name, algorithm })
  run.writeConfig(`algorithm: ${algorithm}\n`)
  const logger = run.metrics({ tensorboard: false })
  for (let s = 1; s <= steps; s++) logger.log(s, { [metric]: 1 / s, lr: 0.001 })
  logger.close()
  run.update({ state, step: steps, error: state === 'failed' ? new Error('out of memory') : undefined })
  return run
}

/** A GET with the path sent exactly as given (no URL normalisation). */
function get(d: Dashboard, rawPath: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  const { port } = d.server.address() as net.AddressInfo
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: rawPath, headers: { host: `127.0.0.1:${port}`, ...headers } }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** The events of /api/events as they come. */
function events(d: Dashboard): { list: { event: string; data: any }[]; close(): void; waitFor(pred: (e: { event: string; data: any }) => boolean, ms?: number): Promise<{ event: string; data: any }> } {
  const { port } = d.server.address() as net.AddressInfo
  const list: { event: string; data: any }[] = []
  const waiters: (() => void)[] = []
  let buffer = ''
  const req = http.get({ host: '127.0.0.1', port, path: '/api/events' }, (res) => {
    res.setEncoding('utf8')
    res.on('data', (chunk: string) => {
      buffer += chunk
      let at: number
      while ((at = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, at)
        buffer = buffer.slice(at + 2)
        const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message'
        const data = JSON.parse(/^data: (.*)$/m.exec(block)![1])
        list.push({ event, data })
        for (const w of waiters.splice(0)) w()
      }
    })
  })
  req.on('error', () => {})
  return {
    list,
    close: () => req.destroy(),
    waitFor(pred, ms = 60_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no such event in ${ms} ms; got ${JSON.stringify(list.map((e) => e.event))}`)), ms)
        const check = () => {
          const hit = list.find(pred)
          if (hit) (clearTimeout(timer), resolve(hit))
          else waiters.push(check)
        }
        check()
      })
    },
  }
}

t.test('lists every run under the folder, pipelines stages included, and compare results', async (t) => {
  const root = tempDir(t, 'dash')
  makeRun(path.join(root, 'pipe'), 'sft', 'sft', 5, 'finished')
  makeRun(path.join(root, 'pipe'), 'ppo', 'ppo', 3, 'running', 'score').appendOutputs([{ prompt: 'copy: a', response: 'a', reward: 1 }])
  makeRun(root, 'dpo-1', 'dpo', 2, 'failed')
  // A run's checkpoints and model folders are not searched.
  fs.mkdirSync(path.join(root, 'pipe', 'sft', 'checkpoints', 'step-1', 'x'), { recursive: true })
  fs.writeFileSync(path.join(root, 'pipe', 'sft', 'checkpoints', 'step-1', 'x', 'run.json'), '{}')
  const board = makeLeaderboard('pipe', [
    { name: 'eval_sft', metrics: { win_rate: 0.4, win_rate_stderr: 0.02, n: 100 } },
    { name: 'eval_ppo', metrics: { win_rate: 0.6, win_rate_stderr: 0.02, n: 100 } },
  ])
  await writeReport(path.join(root, 'pipe'), board, [])
  const d = await startDashboard({ dir: root, port: 0, intervalMs: 100 })
  t.teardown(() => d.close())
  t.equal((d.server.address() as net.AddressInfo).address, '127.0.0.1', 'binds to 127.0.0.1 by default')
  const { runs, compares } = JSON.parse((await get(d, '/api/runs')).body)
  t.same(
    runs.map((r: any) => [r.id, r.algorithm, r.state, r.step, r.rows, r.hasOutputs]),
    [
      ['dpo-1', 'dpo', 'failed', 2, 2, false],
      ['pipe/ppo', 'ppo', 'running', 3, 3, true],
      ['pipe/sft', 'sft', 'finished', 5, 5, false],
    ],
  )
  t.match(runs[0].error, /out of memory/, "a failed run's error")
  t.same(runs[1].metrics, ['score', 'lr'], 'metric names in order, time left out')
  t.equal(compares.length, 1)
  t.equal(compares[0].id, 'pipe')
  t.same(compares[0].leaderboard.entries.map((e: any) => e.method), ['ppo', 'sft'])
  t.equal(compares[0].winRateSpec.title, 'Win-rate against the reference outputs (95% intervals)', "the report's own win-rate chart")
  t.ok(compares[0].hasReport)

  const metrics = JSON.parse((await get(d, '/api/metrics?run=pipe/ppo')).body)
  t.same(metrics.rows, [1, 2, 3].map((s) => ({ step: s, score: 1 / s, lr: 0.001 })))
  const outputs = JSON.parse((await get(d, '/api/outputs?run=pipe%2Fppo')).body)
  t.same(outputs.rows, [{ prompt: 'copy: a', response: 'a', reward: 1 }])
  t.equal((await get(d, '/api/metrics?run=nope')).status, 404, 'an unknown run')
  t.equal((await get(d, '/api/metrics')).status, 400, 'no run named')

  const page = await get(d, '/')
  t.equal(page.status, 200)
  t.match(page.body, /<script src="\/vendor\/vega.js"><\/script>/)
  for (const asset of ['/app.js', '/style.css', '/vendor/vega.js', '/vendor/vega-lite.js']) {
    const r = await get(d, asset)
    t.equal(r.status, 200, asset)
    t.ok(r.body.length > 1000, `${asset} has content`)
  }
  t.match((await get(d, '/vendor/vega-lite.js')).body, /vegaLite/, "vega-lite's browser bundle, from node_modules")
  const report = await get(d, '/files/pipe/report.html')
  t.equal(report.status, 200)
  t.match(report.body, /<svg/)
  t.match(report.headers['content-security-policy'], /sandbox/, 'a served HTML file runs no script')
  t.equal((await get(d, '/api/runs', { host: 'attacker.example:6006' })).status, 403, 'a Host that is not this machine (DNS rebinding)')
})

t.test("a pipeline's summary.json with win-rates (the quickstart's) shows as a comparison; one without does not", async (t) => {
  const root = tempDir(t, 'dash')
  const summary = (name: string, stages: PipelineSummary['stages']): PipelineSummary => ({ name, dir: path.join(root, name), stages, policies: [] })
  const stage = (name: string, metrics: Record<string, number>) => ({ name, metrics, runDir: path.join(root, name), seconds: 1 })
  fs.mkdirSync(path.join(root, 'quickstart'))
  fs.writeFileSync(path.join(root, 'quickstart', 'summary.json'), JSON.stringify(summary('quickstart', [
    stage('sft', { loss: 1 }),
    stage('eval_sft', { win_rate: 0.45, win_rate_stderr: 0.02, n: 500, pool_win_rate: 0.49, pool_win_rate_stderr: 0.02 }),
    stage('eval_ppo', { win_rate: 0.65, win_rate_stderr: 0.02, n: 500, pool_win_rate: 0.53, pool_win_rate_stderr: 0.02 }),
  ])))
  fs.mkdirSync(path.join(root, 'pipeline'))
  fs.writeFileSync(path.join(root, 'pipeline', 'summary.json'), JSON.stringify(summary('pipeline', [stage('sft', { loss: 1 }), stage('eval', { reward: 2 })])))
  const d = await startDashboard({ dir: root, port: 0 })
  t.teardown(() => d.close())
  const { compares } = JSON.parse((await get(d, '/api/runs')).body)
  t.same(compares.map((c: any) => c.id), ['quickstart'])
  t.same(compares[0].leaderboard.entries.map((e: any) => [e.method, e.winRate, e.poolWinRate]), [['ppo', 0.65, 0.53], ['sft', 0.45, 0.49]])
  t.same(compares[0].leaderboard.aboveBaseline, ['ppo'])
  t.notOk(compares[0].hasReport)
})

t.test('follows metrics.jsonl as it grows: partial last lines wait, rewritten files start over; the event stream carries it', async (t) => {
  const root = tempDir(t, 'dash')
  const run = makeRun(root, 'ppo', 'ppo', 2, 'running')
  const d = await startDashboard({ dir: root, port: 0, intervalMs: 100 })
  t.teardown(() => d.close())
  const stream = events(d)
  t.teardown(() => stream.close())
  await stream.waitFor((e) => e.event === 'metrics' && e.data.run === 'ppo' && e.data.reset && e.data.rows.length === 2)
  t.equal(stream.list[0].event, 'runs', 'the stream starts with the runs')

  fs.appendFileSync(run.metricsFile, '{"step":3,"loss":0.3')
  await new Promise((r) => setTimeout(r, 500))
  t.same(JSON.parse((await get(d, '/api/metrics?run=ppo')).body).rows.length, 2, 'a line without its newline is not read yet')
  fs.appendFileSync(run.metricsFile, '3}\n{"step":4,"loss":0.25}\n')
  const added = await stream.waitFor((e) => e.event === 'metrics' && !e.data.reset)
  t.same(added.data.rows, [{ step: 3, loss: 0.33 }, { step: 4, loss: 0.25 }], 'the completed line and the next, once each')
  run.update({ step: 4 })
  const status = await stream.waitFor((e) => e.event === 'runs' && e.data.runs[0]?.step === 4)
  t.equal(status.data.runs[0].rows, 4)

  fs.appendFileSync(run.metricsFile, 'not json\n')
  await stream.waitFor((e) => e.event === 'runs' && /1 line\(s\) are not JSON objects \(first: line 5\)/.test(e.data.runs[0]?.problem ?? ''))
  t.pass('a bad line is skipped and named')

  // A resumed run rewrites metrics.jsonl (records after its checkpoint dropped).
  fs.writeFileSync(`${run.metricsFile}.tmp`, '{"step":1,"loss":9}\n')
  fs.renameSync(`${run.metricsFile}.tmp`, run.metricsFile)
  const reset = await stream.waitFor((e) => e.event === 'metrics' && e.data.reset && e.data.rows[0]?.loss === 9)
  t.same(reset.data.rows, [{ step: 1, loss: 9 }])
  t.same(JSON.parse((await get(d, '/api/metrics?run=ppo')).body).rows, [{ step: 1, loss: 9 }])

  // A run that starts while the dashboard is open.
  makeRun(root, 'late', 'dpo', 1, 'running')
  await stream.waitFor((e) => e.event === 'runs' && e.data.runs.some((r: any) => r.id === 'late'))
})

t.test('JsonlTail reads only the bytes added since its last read', async (t) => {
  const dir = tempDir(t, 'tail')
  const file = path.join(dir, 'm.jsonl')
  fs.writeFileSync(file, '{"step":1}\n{"step":2}\n')
  const tail = new JsonlTail(dir, 'm.jsonl', 16)
  t.same(tail.read().rows, [{ step: 1 }], 'at most maxBytesPerRead (16) bytes per read')
  t.same(tail.read().rows, [{ step: 2 }], 'the rest with the next read')
  // Bytes already read are not read again: overwrite them in place (same size, same file).
  const fd = fs.openSync(file, 'r+')
  fs.writeSync(fd, '{"step":7}', 0)
  fs.closeSync(fd)
  fs.appendFileSync(file, '{"step":3}\n')
  t.same(tail.read().rows, [{ step: 3 }], 'only the new line')
  t.same(tail.read(), { rows: [], reset: false }, 'nothing new')
  fs.appendFileSync(file, '{"text":"caf')
  t.same(tail.read().rows, [])
  fs.appendFileSync(file, 'é ☕"}\n')
  t.same(tail.read().rows, [{ text: 'café ☕' }], 'a multi-byte character split across reads')
})

t.test('reads nothing outside its folder', async (t) => {
  const base = tempDir(t, 'dash')
  const root = path.join(base, 'runs')
  fs.mkdirSync(root)
  const outside = path.join(base, 'secret')
  fs.mkdirSync(outside)
  fs.writeFileSync(path.join(outside, 'secret.txt'), 'SECRET')
  makeRun(outside, 'hidden', 'ppo', 2, 'running')
  makeRun(root, 'ok', 'ppo', 2, 'running')
  fs.writeFileSync(path.join(root, 'ok', 'notes.txt'), 'fine')
  fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'link.txt'))
  fs.symlinkSync(path.join(outside, 'hidden'), path.join(root, 'linked-run'))
  // A run whose metrics.jsonl is a symlink out of the folder.
  const sneaky = makeRun(root, 'sneaky', 'ppo', 1, 'running')
  fs.rmSync(sneaky.metricsFile)
  fs.symlinkSync(path.join(outside, 'hidden', 'metrics.jsonl'), sneaky.metricsFile)
  const d = await startDashboard({ dir: root, port: 0, intervalMs: 100 })
  t.teardown(() => d.close())

  t.equal((await get(d, '/files/ok/notes.txt')).body, 'fine', 'a file under the folder')
  const attempts = [
    '/files/../secret/secret.txt',
    '/files/..%2fsecret%2fsecret.txt',
    '/files/%2e%2e%2fsecret%2fsecret.txt',
    '/files/%2E%2E/secret/secret.txt',
    '/files/ok/..%2f..%2fsecret%2fsecret.txt',
    `/files/${encodeURIComponent(path.join(outside, 'secret.txt'))}`,
    `/files/${path.join(outside, 'secret.txt')}`,
    '/files/link.txt',
    '/files/linked-run/metrics.jsonl',
    '/files/ok%00/notes.txt',
    '/files/%E0%A4%A',
    '/api/outputs?run=..%2Fsecret',
    '/api/metrics?run=%2Fetc',
    '/api/metrics?run=linked-run',
  ]
  for (const attempt of attempts) {
    const r = await get(d, attempt)
    t.not(r.status, 200, `${attempt} is refused (${r.status}: ${r.body.trim()})`)
    t.notMatch(r.body, /SECRET|"step"/, `${attempt} shows nothing of the file`)
  }
  t.equal((await get(d, '/files/..%2fsecret%2fsecret.txt')).status, 403)
  t.match((await get(d, '/files/link.txt')).body, /outside the dashboard's folder \(a symlink\)/)
  t.equal((await get(d, `/files/${encodeURIComponent(path.join(outside, 'secret.txt'))}`)).status, 403, 'an absolute path')

  const { runs } = JSON.parse((await get(d, '/api/runs')).body)
  t.same(runs.map((r: any) => r.id), ['ok', 'sneaky'], 'a symlinked run folder is not followed')
  t.equal(runs[1].rows, 0, "the symlinked metrics.jsonl is not read")
  t.match(runs[1].problem, /leads outside the dashboard's folder/)
  t.equal((await get(d, '/api/runs', { host: 'localhost:1' })).status, 200, 'localhost is this machine')
})

t.test('a bad folder, a file, a port in use, a bad port: clear errors', async (t) => {
  const root = tempDir(t, 'dash')
  await t.rejects(startDashboard({ dir: path.join(root, 'missing'), port: 0 }), /the folder .*missing does not exist/)
  fs.writeFileSync(path.join(root, 'file.txt'), 'x')
  await t.rejects(startDashboard({ dir: path.join(root, 'file.txt'), port: 0 }), /file\.txt is not a folder/)
  await t.rejects(startDashboard({ dir: root, port: 70000 }), /port must be an integer from 0 to 65535; got 70000/)
  const first = await startDashboard({ dir: root, port: 0 })
  t.teardown(() => first.close())
  const { port } = first.server.address() as net.AddressInfo
  await t.rejects(startDashboard({ dir: root, port }), new RegExp(`port ${port} on 127.0.0.1 is in use .*--port`))

  const cli = (args: string[]) => spawnSync(process.execPath, [BIN, 'dashboard', ...args], { encoding: 'utf8', timeout: 60_000 })
  const missing = cli([path.join(root, 'missing')])
  t.equal(missing.status, 1)
  t.match(missing.stderr, /rlfarm dashboard: the folder .*missing does not exist/)
  const busy = cli([root, '--port', String(port)])
  t.equal(busy.status, 1)
  t.match(busy.stderr, new RegExp(`port ${port} on 127.0.0.1 is in use`))
  const bad = cli([root, '--port', 'abc'])
  t.equal(bad.status, 2)
  t.match(bad.stderr, /--port must be an integer from 0 to 65535; got 'abc'/)
  t.equal(cli([root, '--prot', '1']).status, 2, 'an unknown flag')
  const help = cli(['--help'])
  t.equal(help.status, 0)
  t.match(help.stdout, /^Usage: rlfarm dashboard \[runs\/\] \[--port 6006\]/)
  t.match(help.stdout, /Examples:\n  rlfarm dashboard\n/)
})

t.test('rlfarm dashboard serves until Ctrl-C', async (t) => {
  const root = tempDir(t, 'dash')
  makeRun(root, 'sft', 'sft', 2, 'finished')
  const child = spawn(process.execPath, [BIN, 'dashboard', root, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => child.kill())
  let out = ''
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (c) => {
      out += c
      const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out)
      if (m) resolve(m[1])
    })
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${out}`)))
  })
  t.match(out, `runs under ${fs.realpathSync(root)}`)
  const runs = await (await fetch(`${url}api/runs`)).json()
  t.same(runs.runs.map((r: any) => r.id), ['sft'])
  const code = await new Promise((resolve) => {
    child.removeAllListeners('exit')
    child.on('exit', resolve)
    child.kill('SIGINT')
  })
  t.equal(code, 0, 'Ctrl-C stops it with exit code 0')
})
