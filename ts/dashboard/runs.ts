// What the dashboard shows, kept up to date by polling: the runs under its
// folder (directories with a run.json, at any depth: a pipeline's stages are
// subfolders), the rows of each run's metrics.jsonl (tailed, new bytes only),
// and the compare results (directories with a leaderboard.json).
import { EventEmitter } from 'node:events'
import fs from 'node:fs'
import path from 'node:path'
import { makeLeaderboard, winRateChart, type Leaderboard } from '../farm/report.js'
import type { PipelineSummary } from '../run/session.js'
import { insideRoot, JsonlTail, OutsideRootError, readSmallFile } from './files.js'

export interface RunSummary {
  /** The run's directory relative to the folder, with '/' ('.' for the folder itself). */
  id: string
  name: string
  state: string
  algorithm: string
  step: number
  startedAt?: string
  updatedAt?: string
  error?: string
  /** The numeric fields metrics.jsonl has had, in order of first appearance. */
  metrics: string[]
  rows: number
  hasOutputs: boolean
  hasConfig: boolean
  /** A problem reading this run's files (unreadable lines, a symlink out of the folder). */
  problem?: string
}

export interface CompareSummary {
  id: string
  name: string
  leaderboard: Leaderboard
  /** The vega-lite spec of the report's win-rate chart. */
  winRateSpec: Record<string, unknown>
  hasReport: boolean
}

/** A metrics.jsonl row as the page gets it: the step and the finite numbers. */
export type MetricRow = Record<string, number>

/** Directories that hold no runs and can be large. */
const SKIP_DIRS = new Set(['checkpoints', 'model', 'node_modules'])

interface Tracked {
  summary: RunSummary
  statusKey: string
  tail: JsonlTail
  rows: MetricRow[]
}

export interface RunWatcherOptions {
  /** Milliseconds between polls. Default 1000. */
  intervalMs?: number
  /** Directories visited at most per scan (a bound on a huge folder). Default 20000. */
  maxDirs?: number
  /** Directory depth at most. Default 8. */
  maxDepth?: number
}

/**
 * Polls the folder; emits 'change' (runs or compare results changed) and
 * 'metrics' ({ run, rows, reset }) with the rows appended since the last poll.
 */
export class RunWatcher extends EventEmitter {
  readonly root: string
  readonly #runs = new Map<string, Tracked>()
  readonly #compares = new Map<string, { key: string; summary: CompareSummary }>()
  readonly #options: Required<RunWatcherOptions>
  #timer: NodeJS.Timeout | undefined

  /** `root` must be a real path (fs.realpathSync) of a directory. */
  constructor(root: string, options: RunWatcherOptions = {}) {
    super()
    this.root = root
    this.#options = { intervalMs: options.intervalMs ?? 1000, maxDirs: options.maxDirs ?? 20000, maxDepth: options.maxDepth ?? 8 }
    this.poll()
  }

  start(): void {
    if (this.#timer) return
    this.#timer = setInterval(() => this.poll(), this.#options.intervalMs)
    this.#timer.unref()
  }

  stop(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  runs(): RunSummary[] {
    return [...this.#runs.values()].map((t) => t.summary).sort((a, b) => a.id.localeCompare(b.id))
  }

  compares(): CompareSummary[] {
    return [...this.#compares.values()].map((c) => c.summary).sort((a, b) => a.id.localeCompare(b.id))
  }

  /** The rows of a run's metrics.jsonl read so far; undefined for an unknown run. */
  rows(id: string): MetricRow[] | undefined {
    return this.#runs.get(id)?.rows
  }

  has(id: string): boolean {
    return this.#runs.has(id)
  }

  /** One poll: finds runs and compare results, reads changed run.json files and new metrics lines. */
  poll(): void {
    const found = this.#scan()
    let changed = false
    for (const id of [...this.#runs.keys()]) if (!found.runs.has(id)) (this.#runs.delete(id), (changed = true))
    for (const id of [...this.#compares.keys()]) if (!found.compares.has(id)) (this.#compares.delete(id), (changed = true))
    for (const id of found.runs) if (this.#pollRun(id)) changed = true
    for (const id of found.compares) if (this.#pollCompare(id)) changed = true
    if (changed) this.emit('change')
  }

  #scan(): { runs: Set<string>; compares: Set<string> } {
    const runs = new Set<string>()
    const compares = new Set<string>()
    let visited = 0
    const visit = (rel: string, depth: number) => {
      if (++visited > this.#options.maxDirs) return
      let entries: fs.Dirent[]
      try {
        entries = fs.readdirSync(path.join(this.root, rel), { withFileTypes: true })
      } catch {
        return
      }
      const id = rel === '' ? '.' : rel.split(path.sep).join('/')
      // Dirent types come from lstat: a symlink is neither a file nor a directory here, so none is followed.
      for (const e of entries) {
        if (e.isFile() && e.name === 'run.json') runs.add(id)
        if (e.isFile() && (e.name === 'leaderboard.json' || e.name === 'summary.json')) compares.add(id)
      }
      if (depth >= this.#options.maxDepth) return
      for (const e of entries) {
        if (e.isDirectory() && !e.name.startsWith('.') && !SKIP_DIRS.has(e.name)) visit(path.join(rel, e.name), depth + 1)
      }
    }
    visit('', 0)
    return { runs, compares }
  }

  #file(id: string, name: string): string {
    return id === '.' ? name : `${id}/${name}`
  }

  #pollRun(id: string): boolean {
    let tracked = this.#runs.get(id)
    let changed = false
    if (!tracked) {
      const summary: RunSummary = { id, name: id === '.' ? path.basename(this.root) : path.posix.basename(id), state: 'unknown', algorithm: '', step: 0, metrics: [], rows: 0, hasOutputs: false, hasConfig: false }
      tracked = { summary, statusKey: '', tail: new JsonlTail(this.root, this.#file(id, 'metrics.jsonl')), rows: [] }
      this.#runs.set(id, tracked)
      changed = true
    }
    const s = tracked.summary
    const problems: string[] = []
    try {
      const statusFile = insideRoot(this.root, this.#file(id, 'run.json'))
      const st = fs.statSync(statusFile)
      const key = `${st.mtimeMs}:${st.size}`
      if (key !== tracked.statusKey) {
        tracked.statusKey = key
        const status = JSON.parse(readSmallFile(this.root, this.#file(id, 'run.json'), 1 << 20) ?? '{}') as Record<string, unknown>
        s.name = typeof status.name === 'string' ? status.name : s.name
        s.state = typeof status.state === 'string' ? status.state : 'unknown'
        s.algorithm = typeof status.algorithm === 'string' ? status.algorithm : ''
        s.step = typeof status.step === 'number' ? status.step : 0
        for (const k of ['startedAt', 'updatedAt', 'error'] as const) s[k] = typeof status[k] === 'string' ? status[k] : undefined
        changed = true
      }
    } catch (err) {
      // run.json mid-rename or not JSON: keep what was read last, say why.
      problems.push(err instanceof OutsideRootError ? err.message : `run.json: ${(err as Error).message}`)
    }
    const exists = (name: string) => {
      try {
        return fs.statSync(insideRoot(this.root, this.#file(id, name))).isFile()
      } catch {
        return false
      }
    }
    const hasOutputs = exists('outputs.jsonl')
    const hasConfig = exists('config.yaml')
    if (hasOutputs !== s.hasOutputs || hasConfig !== s.hasConfig) ((s.hasOutputs = hasOutputs), (s.hasConfig = hasConfig), (changed = true))
    try {
      const { rows, reset } = tracked.tail.read()
      if (reset) {
        tracked.rows = []
        s.metrics = []
      }
      const added = rows.map(metricRow).filter((r): r is MetricRow => r !== undefined)
      if (added.length || reset) {
        const known = new Set(s.metrics)
        for (const r of added) for (const k of Object.keys(r)) if (k !== 'step' && !known.has(k)) (known.add(k), s.metrics.push(k))
        tracked.rows.push(...added)
        s.rows = tracked.rows.length
        this.emit('metrics', { run: id, rows: added, reset })
        changed = true
      }
      if (tracked.tail.bad) problems.push(`metrics.jsonl: ${tracked.tail.bad} line(s) are not JSON objects (first: line ${tracked.tail.firstBadLine}); skipped`)
    } catch (err) {
      problems.push((err as Error).message)
    }
    const problem = problems.length ? problems.join('; ') : undefined
    if (problem !== s.problem) ((s.problem = problem), (changed = true))
    return changed
  }

  // A compare's leaderboard.json, or else the leaderboard of a pipeline's summary.json (the quickstart's win-rates).
  #pollCompare(id: string): boolean {
    const file = ['leaderboard.json', 'summary.json'].map((name) => this.#file(id, name)).find((rel) => {
      try {
        return fs.statSync(insideRoot(this.root, rel)).isFile()
      } catch {
        return false
      }
    })
    if (!file) return false
    const st = fs.statSync(insideRoot(this.root, file))
    const key = `${file}:${st.mtimeMs}:${st.size}`
    if (this.#compares.get(id)?.key === key) return false
    try {
      const json = JSON.parse(readSmallFile(this.root, file) ?? 'null') as (Leaderboard & { stages?: undefined }) | PipelineSummary
      const leaderboard = json && Array.isArray(json.stages) ? makeLeaderboard(json.name, json.stages) : (json as Leaderboard)
      if (!leaderboard || !Array.isArray(leaderboard.entries)) return false
      if (leaderboard.entries.length === 0) {
        // A pipeline without eval stages: no comparison to show.
        return this.#compares.delete(id)
      }
      const hasReport = fs.existsSync(insideRoot(this.root, this.#file(id, 'report.html')))
      this.#compares.set(id, { key, summary: { id, name: leaderboard.name ?? id, leaderboard, winRateSpec: winRateChart(leaderboard.entries), hasReport } })
      return true
    } catch {
      return false // being written: the next poll reads it
    }
  }
}

/** The step and the finite numbers of a metrics.jsonl record (`time` and `nonfinite` are not curves). */
function metricRow(row: Record<string, unknown>): MetricRow | undefined {
  if (typeof row.step !== 'number' || !Number.isFinite(row.step)) return undefined
  const out: MetricRow = { step: row.step }
  for (const [k, v] of Object.entries(row)) if (k !== 'time' && k !== 'step' && typeof v === 'number' && Number.isFinite(v)) out[k] = v
  return out
}
