// The fuzz runner: spawns node on each property file (test/fuzz/*.fuzz.ts)
// with a seed and a time budget, so that a native abort, an out-of-memory
// death or a hang is counted against the property that was running rather
// than ending the run. Each round gives every file a new seed derived from
// the run's seed; every failure is reported with the seed to replay it:
//
//   npm run fuzz -- --minutes 30 [--seed S] [--file NAME] [--only PROPERTY] [--json out.json]
//   npm run fuzz -- --seconds 60 --seed 1234 --file data --rounds 1      (replay)
//
// Exit status 1 when any property failed, crashed or hung.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

export interface FuzzFailure {
  file: string
  seed: number
  property?: string
  kind: 'failed' | 'crashed' | 'hung'
  counterexample?: string
  error?: string
  replay: string
}

export interface FuzzReport {
  seed: number
  rounds: number
  seconds: number
  /** Inputs tried, per property. */
  runs: Record<string, number>
  failures: FuzzFailure[]
}

export interface FuzzOptions {
  /** Total wall-clock budget in ms. */
  budgetMs: number
  seed?: number
  /** Property files to run (names without .fuzz.ts); default all. */
  files?: string[]
  only?: string
  /** At most this many rounds (default: as many as the budget allows). */
  rounds?: number
  /** Per child: its budget is the round's share; it is killed as hung after this many ms more. */
  graceMs?: number
  log?: (line: string) => void
}

const DIR = __dirname

export function propertyFiles(): string[] {
  return fs
    .readdirSync(DIR)
    .filter((f) => f.endsWith('.fuzz.ts'))
    .map((f) => f.slice(0, -'.fuzz.ts'.length))
    .sort()
}

/** The seed of a file in a round: a mix of the run's seed, the round and the file's index. */
export function childSeed(seed: number, round: number, index: number): number {
  let h = (seed ^ Math.imul(round + 1, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0
  return (h ^ (h >>> 15)) >>> 0
}

function runChild(file: string, seed: number, budgetMs: number, graceMs: number, only: string | undefined) {
  return new Promise<{ lines: Record<string, unknown>[]; code: number | null; signal: NodeJS.Signals | null; hung: boolean; stderr: string }>((resolve) => {
    const args = ['--import', 'tsx', '--max-old-space-size=1024', path.join(DIR, `${file}.fuzz.ts`), '--seed', String(seed), '--budget-ms', String(budgetMs)]
    if (only) args.push('--only', only)
    const child = spawn(process.execPath, args, { cwd: path.join(DIR, '..', '..'), stdio: ['ignore', 'pipe', 'pipe'] })
    const lines: Record<string, unknown>[] = []
    let pending = ''
    let stderr = ''
    let hung = false
    child.stdout.on('data', (c: Buffer) => {
      pending += c
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
        const text = pending.slice(0, nl)
        pending = pending.slice(nl + 1)
        try {
          lines.push(JSON.parse(text))
        } catch {
          // Not the harness's: output of the code under test.
        }
      }
    })
    child.stderr.on('data', (c: Buffer) => {
      stderr = (stderr + c).slice(-4000)
    })
    const timer = setTimeout(() => {
      hung = true
      child.kill('SIGKILL')
    }, budgetMs + graceMs)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ lines, code, signal, hung, stderr })
    })
  })
}

export async function fuzz(options: FuzzOptions): Promise<FuzzReport> {
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31)
  const files = options.files ?? propertyFiles()
  const graceMs = options.graceMs ?? 60_000
  const log = options.log ?? (() => {})
  const started = Date.now()
  const report: FuzzReport = { seed, rounds: 0, seconds: 0, runs: {}, failures: [] }
  // A round gives each file an equal share; short budgets make one round.
  const perChild = Math.max(3000, Math.min(60_000, Math.floor(options.budgetMs / files.length)))
  for (let round = 0; options.rounds === undefined || round < options.rounds; round++) {
    if (round > 0 && Date.now() - started + perChild > options.budgetMs) break
    for (const [index, file] of files.entries()) {
      const s = childSeed(seed, round, index)
      const replay = `npm run fuzz -- --file ${file} --child-seed ${s} --seconds ${Math.round(perChild / 1000)}`
      const r = await runChild(file, s, perChild, graceMs, options.only)
      let current: string | undefined
      for (const line of r.lines) {
        if (line.start) current = line.property as string
        else if (typeof line.runs === 'number') {
          const key = `${file}:${line.property}`
          report.runs[key] = (report.runs[key] ?? 0) + line.runs
          current = undefined
          if (line.failed) {
            report.failures.push({ file, seed: s, property: line.property as string, kind: 'failed', counterexample: line.counterexample as string, error: line.error as string, replay: `${replay} --only ${JSON.stringify(line.property)}` })
            log(`FAILED ${key} (seed ${s}): ${String(line.error).split('\n')[0]}\n  counterexample: ${String(line.counterexample).slice(0, 300)}`)
          }
        }
      }
      const done = r.lines.some((l) => l.done)
      if (!done) {
        const kind = r.hung ? 'hung' : 'crashed'
        const how = r.hung ? `killed after ${perChild + graceMs} ms` : `exit ${r.code ?? r.signal}`
        report.failures.push({ file, seed: s, property: current, kind, error: `${how}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`, replay: current ? `${replay} --only ${JSON.stringify(current)}` : replay })
        log(`${kind.toUpperCase()} ${file}:${current ?? '?'} (seed ${s}): ${how}`)
      }
    }
    report.rounds = round + 1
    log(`round ${round + 1}: ${Object.values(report.runs).reduce((a, b) => a + b, 0)} inputs, ${report.failures.length} failures, ${((Date.now() - started) / 1000).toFixed(0)} s`)
  }
  report.seconds = (Date.now() - started) / 1000
  return report
}

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`)
  if (i < 0) return undefined
  const v = argv[i + 1]
  if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`)
  return v
}

function positiveNumber(argv: string[], name: string): number | undefined {
  const v = flag(argv, name)
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number; got '${v}'`)
  return n
}

async function main(argv: string[]): Promise<number> {
  const known = ['minutes', 'seconds', 'seed', 'file', 'only', 'rounds', 'json', 'child-seed']
  for (const a of argv) if (a.startsWith('--') && !known.includes(a.slice(2))) throw new Error(`unknown option ${a}; the options are ${known.map((k) => `--${k}`).join(', ')}`)
  const minutes = positiveNumber(argv, 'minutes')
  const seconds = positiveNumber(argv, 'seconds')
  const budgetMs = minutes !== undefined ? minutes * 60_000 : (seconds ?? 120) * 1000
  const seedText = flag(argv, 'seed')
  const seed = seedText === undefined ? undefined : Number(seedText)
  if (seed !== undefined && !Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer; got '${seedText}'`)
  const file = flag(argv, 'file')
  const files = file === undefined ? undefined : file.split(',')
  for (const f of files ?? []) if (!propertyFiles().includes(f)) throw new Error(`--file ${f}: no test/fuzz/${f}.fuzz.ts; the files are ${propertyFiles().join(', ')}`)
  const childSeedText = flag(argv, 'child-seed')
  if (childSeedText !== undefined) {
    // Replay one child exactly as a report printed it.
    if (!files || files.length !== 1) throw new Error('--child-seed replays one file: give --file NAME')
    const r = await runChild(files[0], Number(childSeedText), budgetMs, 60_000, flag(argv, 'only'))
    for (const line of r.lines) process.stdout.write(`${JSON.stringify(line)}\n`)
    if (!r.lines.some((l) => l.done)) process.stdout.write(`${r.hung ? 'hung' : `crashed (exit ${r.code ?? r.signal})`}: ${r.stderr}\n`)
    return r.lines.some((l) => l.failed) || !r.lines.some((l) => l.done) ? 1 : 0
  }
  const rounds = positiveNumber(argv, 'rounds')
  const report = await fuzz({ budgetMs, seed, files, only: flag(argv, 'only'), rounds, log: (l) => process.stderr.write(`${l}\n`) })
  const total = Object.values(report.runs).reduce((a, b) => a + b, 0)
  process.stdout.write(`fuzz: seed ${report.seed}, ${report.rounds} rounds, ${report.seconds.toFixed(0)} s, ${total} inputs over ${Object.keys(report.runs).length} properties, ${report.failures.length} failures\n`)
  for (const [k, n] of Object.entries(report.runs)) process.stdout.write(`  ${k.padEnd(40)} ${n}\n`)
  for (const f of report.failures) process.stdout.write(`${f.kind}: ${f.file}:${f.property ?? '?'}\n  ${f.error?.split('\n')[0]}\n  counterexample: ${f.counterexample ?? '-'}\n  replay: ${f.replay}\n`)
  const json = flag(argv, 'json')
  if (json) fs.writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`)
  return report.failures.length > 0 ? 1 : 0
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code
    },
    (err: Error) => {
      process.stderr.write(`fuzz: ${err.message}\n`)
      process.exitCode = 2
    },
  )
}
