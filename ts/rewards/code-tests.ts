// The `code_tests` reward: the completion's JavaScript (its last ```js block,
// else the whole text) run against the row's tests (`tests`: one string of
// assertions, or a list of them, each throwing on failure); the reward is the
// share of tests passed. Each row runs in a child `node` process:
//   - Node's permission model with no --allow-* flag: no file reads or
//     writes, no child processes, no worker threads, no native addons,
//     no process.binding;
//   - before the code runs, the child removes what the permission model
//     leaves: sockets (net, tls, dgram, http(s), fetch, WebSocket), DNS,
//     signals to other processes (process.kill) and exiting early does not
//     forge results (each test's result is written as it finishes, behind a
//     random nonce the code cannot see);
//   - the code runs in a fresh vm context without require or process, each
//     test with a time limit (vm's timeout stops synchronous loops);
//   - --max-old-space-size bounds the heap, the parent kills the child when
//     its resident memory passes the limit (Linux /proc) or its time is up.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import type { Args } from './args.js'
import type { RewardFn } from './types.js'

export interface CodeTestOptions {
  /** Per test, milliseconds. */
  timeoutMs: number
  /** Heap and resident-memory limit of the child, MB. */
  memoryMb: number
}

// The start of the child's program: it takes away what the permission model
// leaves (sockets, DNS, signals, fetch, require). Exported for the tests,
// which probe it beneath the vm context.
export const LOCKDOWN = String.raw`
'use strict'
const vm = require('node:vm')
const write = process.stdout.write.bind(process.stdout)
const deny = (what) => () => { throw new Error(what + ' is not allowed in code_tests') }
// Every module loaded first (tls subclasses net.Socket), then their functions
// replaced; classes stay (internals extend them) but cannot connect or listen.
const netModules = ['net', 'tls', 'dgram', 'http', 'https', 'http2', 'dns', 'dns/promises'].map((name) => [name, require('node:' + name)])
for (const [name, m] of netModules) {
  for (const key of Object.keys(m)) if (typeof m[key] === 'function' && /^[a-z]/.test(key)) { try { m[key] = deny(name + '.' + key) } catch {} }
}
const net = require('node:net')
net.Socket.prototype.connect = deny('net.Socket.connect')
net.Server.prototype.listen = deny('net.Server.listen')
require('node:dgram').Socket.prototype.bind = deny('dgram bind')
require('node:dgram').Socket.prototype.send = deny('dgram send')
for (const key of ['fetch', 'WebSocket', 'EventSource', 'require', 'module', 'exports', '__filename', '__dirname']) { try { delete globalThis[key] } catch {} }
process.kill = deny('process.kill')
process._kill = deny('process._kill')
process.dlopen = deny('process.dlopen')
`

// The child's program (node -e): the lockdown, then it reads {nonce, code,
// tests, timeoutMs} from stdin and runs each test in a fresh context.
const RUNNER = LOCKDOWN + String.raw`
let input = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', (c) => { input += c })
process.stdin.on('end', () => {
  const { nonce, code, tests, timeoutMs } = JSON.parse(input)
  input = ''
  tests.forEach((test, i) => {
    let ok = false
    try {
      const context = vm.createContext(Object.create(null), { codeGeneration: { strings: false, wasm: false } })
      vm.runInContext('delete globalThis.WebAssembly; delete globalThis.SharedArrayBuffer; delete globalThis.Atomics', context)
      vm.runInContext(code + '\n;\n' + test, context, { timeout: timeoutMs, filename: 'completion.js' })
      ok = true
    } catch {}
    write(nonce + ' ' + i + ' ' + (ok ? 1 : 0) + '\n')
  })
})
`

const PERMISSION_FLAG = process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission'

/** The code of a completion: its last fenced ```js / ```javascript block (or any fenced block), else the whole text. */
export function codeOf(completion: string): string {
  const blocks = [...completion.matchAll(/```[ \t]*([A-Za-z]*)[^\n]*\n([\s\S]*?)```/g)]
  const js = blocks.filter((b) => ['', 'js', 'javascript', 'mjs', 'node'].includes(b[1].toLowerCase()))
  const chosen = js.at(-1) ?? blocks.at(-1)
  return chosen ? chosen[2] : completion
}

function residentMb(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : undefined
  } catch {
    return undefined
  }
}

/** Runs `code` against `tests` in a locked-down child node; resolves to each test's pass (true) or failure. */
export function runCodeTests(code: string, tests: readonly string[], o: CodeTestOptions): Promise<boolean[]> {
  const nonce = randomBytes(16).toString('hex')
  const passed = tests.map(() => false)
  return new Promise((resolve) => {
    const node = [process.execPath, PERMISSION_FLAG, `--max-old-space-size=${o.memoryMb}`, '--no-warnings', '-e', RUNNER]
    // Through sh, which drops a NODE_OPTIONS that a wrapper of child_process
    // may add (a test runner's loader, which the child may not read); exec
    // keeps the child's pid, so the kill below reaches node itself.
    const [command, ...args] = process.platform === 'win32' ? node : ['/bin/sh', '-c', 'unset NODE_OPTIONS; exec "$@"', 'sh', ...node]
    const child = spawn(command, args, {
      stdio: ['pipe', 'pipe', 'ignore'],
      env: {},
      cwd: os.tmpdir(),
    })
    let out = ''
    let finished = false
    const finish = () => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      clearInterval(watch)
      child.kill('SIGKILL')
      resolve(passed)
    }
    // Whole-run limit: every test's time, plus the child's start-up.
    const timer = setTimeout(finish, o.timeoutMs * (tests.length + 1) + 5000)
    const watch = setInterval(() => {
      const rss = child.pid !== undefined ? residentMb(child.pid) : undefined
      // The heap limit plus room for the runtime itself.
      if (rss !== undefined && rss > o.memoryMb + 128) finish()
    }, 50)
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      out += chunk
      if (out.length > 1 << 20) return finish()
      let nl: number
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl)
        out = out.slice(nl + 1)
        const m = new RegExp(`^${nonce} (\\d+) ([01])$`).exec(line)
        if (m && Number(m[1]) < passed.length) passed[Number(m[1])] = m[2] === '1'
      }
    })
    child.on('error', finish)
    child.on('close', finish)
    child.stdin.on('error', () => {})
    child.stdin.end(JSON.stringify({ nonce, code, tests, timeoutMs: o.timeoutMs }))
  })
}

/** Runs `tasks` with at most `limit` at a time, keeping their order. */
async function limited<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const out: T[] = new Array(tasks.length)
  let next = 0
  const lane = async () => {
    while (next < tasks.length) {
      const i = next++
      out[i] = await tasks[i]()
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, lane))
  return out
}

export function codeTestsReward(a: Args, what: string): RewardFn {
  const key = a.string('tests_key', 'tests')
  const o = { timeoutMs: a.number('timeout_ms', 2000, { min: 1, integer: true }), memoryMb: a.number('memory_mb', 64, { min: 8, integer: true }) }
  const concurrency = a.number('concurrency', Math.max(1, os.availableParallelism?.() ?? os.cpus().length), { min: 1, integer: true })
  return async ({ completions, rows }) =>
    limited(
      completions.map((c, i) => async () => {
        const raw = (rows[i] ?? {})[key]
        if (raw === undefined || raw === null) return null
        const tests = typeof raw === 'string' ? [raw] : raw
        if (!Array.isArray(tests) || tests.length === 0 || tests.some((t) => typeof t !== 'string')) {
          throw new Error(`${what}: row ${i}: '${key}' must be a string of test code or a non-empty list of them; got ${JSON.stringify(raw)?.slice(0, 80)}`)
        }
        const passed = await runCodeTests(codeOf(c), tests as string[], o)
        return passed.filter(Boolean).length / passed.length
      }),
      concurrency,
    )
}
