// Reward functions as a Scorer: the config's reward_function and
// reward_functions, each a module's export (run in the main thread or in
// worker threads), a built-in, or a function given to train({ rewards }).
// Each is called once per batch (once per part of it with reward.workers > 1);
// its values are checked (one finite number or null per row) and combined as
// TRL combines them: the weighted sum over functions, a null (TRL's None)
// left out of it. A failure names the
// function, the row and what is wrong; with reward.on_error: skip the row's
// value is 0 for that function and the failures are counted instead.
import path from 'node:path'
import type { RewardFunction, RunConfig } from '../config/types.generated.js'
import { closestKey } from '../util/options.js'
import { BUILTIN_NAMES, makeBuiltin, type BuiltinContext } from './builtin.js'
import { loadRewardExport } from './load.js'
import { CallError, RewardWorkerPool } from './pool.js'
import type { RewardBatch, RewardFn, RewardValues } from './types.js'
import { mean } from '../util/stats.js'

/** A reward function that failed: which one, on which row (when one row is to blame), and what went wrong. */
export class RewardError extends Error {
  constructor(
    readonly reward: string,
    readonly row: number | undefined,
    readonly problem: string,
    readonly step: number,
  ) {
    super(`reward function '${reward}'${row !== undefined ? `, row ${row}` : ''} (step ${step}): ${problem}`)
    this.name = 'RewardError'
  }
}

/** One configured reward function, ready to call. */
export interface RewardCall {
  /** The name it is logged and reported under. */
  name: string
  weight: number
  scale: number
  args: Record<string, unknown>
  /** Calls it once on a batch (raw result, unchecked); a call past reward.timeout rejects with a timeout CallError. */
  call(batch: RewardBatch): Promise<unknown>
  close(): Promise<void>
}

/** reward_function (when set) and reward_functions, each with the config path errors name. */
function rewardSpecs(config: RunConfig): { spec: RewardFunction; where: string }[] {
  const single = config.reward_function
  const specs = config.reward_functions.map((spec, i) => ({ spec, where: `reward_functions[${i}]` }))
  if (single.name !== undefined || single.module !== undefined) specs.unshift({ spec: single, where: 'reward_function' })
  return specs
}

/** Whether a config names any reward function. */
export function hasRewardFunctions(config: RunConfig): boolean {
  return rewardSpecs(config).length > 0
}

/** Settles `p`, or rejects with a timeout CallError after `ms` (a synchronous function cannot be stopped here: use reward.workers). */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CallError(`timed out after ${ms / 1000} s (reward.timeout)`, true)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

/**
 * The reward functions a config names, made ready: modules loaded (or their
 * worker threads started), built-ins built, in-process functions looked up.
 */
export async function makeRewardCalls(config: RunConfig, inProcess: Readonly<Record<string, RewardFn>> = {}): Promise<RewardCall[]> {
  const specs = rewardSpecs(config)
  const run: BuiltinContext = { maxNewTokens: config.generation.max_new_tokens }
  const timeoutMs = config.reward.timeout * 1000
  const calls: RewardCall[] = []
  const used = new Map<string, number>()
  try {
    for (const { spec, where } of specs) {
      if (spec.name !== undefined && spec.module !== undefined) throw new Error(`${where}: give name (a built-in or a train() reward) or module (a file), not both`)
      if (spec.export !== undefined && spec.module === undefined) throw new Error(`${where}.export: names an export of a module; set ${where}.module too`)
      if (!Number.isFinite(spec.weight)) throw new Error(`${where}.weight must be a finite number; got ${spec.weight}`)
      const base = spec.name ?? spec.export ?? path.basename(spec.module!).replace(/\.[^.]+$/, '')
      const seen = used.get(base) ?? 0
      used.set(base, seen + 1)
      const name = seen === 0 ? base : `${base}_${seen + 1}`
      const what = `${where} '${name}'`
      const args = spec.args ?? {}
      let fn: RewardFn | undefined
      let pool: RewardWorkerPool | undefined
      if (spec.module !== undefined) {
        if (config.reward.workers > 0) {
          pool = new RewardWorkerPool(spec.module, spec.export, what, config.reward.workers, timeoutMs)
          try {
            await pool.ready()
          } catch (err) {
            await pool.close()
            throw err
          }
        } else fn = await loadRewardExport(spec.module, spec.export, what)
      } else if (Object.hasOwn(inProcess, spec.name!)) {
        fn = inProcess[spec.name!]
      } else {
        fn = makeBuiltin(spec, what, run)
        if (!fn) {
          const known = [...Object.keys(inProcess), ...BUILTIN_NAMES]
          const near = closestKey(spec.name!, known)
          throw new Error(
            `${where}.name: no reward named '${spec.name}': not one given to train({ rewards }) (${Object.keys(inProcess).join(', ') || 'none given'}) nor a built-in (${BUILTIN_NAMES.join(', ')})${near ? `; did you mean '${near}'?` : ''}`,
          )
        }
      }
      const f = fn
      const p = pool
      calls.push({
        name,
        weight: spec.weight,
        scale: spec.scale,
        args,
        call: (batch) => (p ? p.callSplit(batch, args) : withTimeout(Promise.resolve().then(() => f!(batch, args)), timeoutMs)),
        close: async () => p?.close(),
      })
    }
  } catch (err) {
    await Promise.all(calls.map((c) => c.close()))
    throw err
  }
  return calls
}

/** What is wrong with a function's result for a batch of `n` rows: [row, problem] pairs (row undefined: the whole result). */
export function checkValues(result: unknown, n: number): { values: (number | null)[]; problems: [number | undefined, string][] } {
  if (!Array.isArray(result)) {
    const got = result === null ? 'null' : typeof result === 'object' ? `an object (${Object.prototype.toString.call(result).slice(8, -1)})` : `${typeof result} ${String(result).slice(0, 40)}`
    return { values: [], problems: [[undefined, `returned ${got}; expected an array of ${n} numbers (or nulls), one per completion`]] }
  }
  if (result.length !== n) return { values: [], problems: [[undefined, `returned ${result.length} values for ${n} completions; expected one per completion`]] }
  const problems: [number, string][] = []
  const values = result.map((v, i) => {
    if (v === null || v === undefined) {
      if (v === undefined) problems.push([i, 'returned undefined; expected a number, or null for "not applicable"'])
      return null
    }
    if (typeof v !== 'number') {
      problems.push([i, `returned ${typeof v} ${JSON.stringify(v)?.slice(0, 40)}; expected a number (or null)`])
      return null
    }
    if (!Number.isFinite(v)) problems.push([i, `returned ${v}; expected a finite number (or null)`])
    return v
  })
  return { values, problems }
}

/** Mean and standard deviation of the numbers (nulls left out). */
function stats(values: (number | null)[]): { mean: number; std: number; count: number } {
  const xs = values.filter((v): v is number => v !== null)
  if (xs.length === 0) return { mean: NaN, std: NaN, count: 0 }
  const m = mean(xs)
  return { mean: m, std: Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / xs.length), count: xs.length }
}

export interface RewardScores {
  /** The weighted sum per row (nulls left out; a row every function skipped gets 0, as TRL's nansum). */
  total: Float32Array
  /** Per function: its scaled values (null where not applicable or failed). */
  perFunction: Record<string, RewardValues>
  /** Metrics for the log: rewards/<name>/mean and /std, reward_errors when on_error is skip. */
  metrics: Record<string, number>
}

/** Calls the reward functions on a batch and combines them. */
export class RewardFunctions {
  #closed = false

  constructor(
    readonly calls: RewardCall[],
    readonly onError: 'stop' | 'skip',
    readonly note: (message: string) => void = () => {},
  ) {}

  /** One function on the batch: its checked values, and the rows that failed (with why). */
  async #run(c: RewardCall, batch: RewardBatch): Promise<{ values: (number | null)[]; failures: Map<number, string> }> {
    const n = batch.completions.length
    const failures = new Map<number, string>()
    let result: unknown
    try {
      result = await c.call(batch)
    } catch (err) {
      const problem = failureOf(err)
      if ((err instanceof CallError && err.whole) || n <= 1) {
        for (let i = 0; i < n; i++) failures.set(i, problem)
        return { values: new Array(n).fill(null), failures }
      }
      // Which row? Call it once per row to find the ones that throw.
      const values: (number | null)[] = []
      for (let i = 0; i < n; i++) {
        try {
          const checked = checkValues(await c.call(pick(batch, i)), 1)
          if (checked.problems.length) failures.set(i, checked.problems[0][1])
          values.push(checked.values[0] ?? null)
        } catch (rowErr) {
          failures.set(i, failureOf(rowErr))
          values.push(null)
        }
      }
      if (failures.size === 0) for (let i = 0; i < n; i++) failures.set(i, `${problem} (on the whole batch; every row alone succeeded)`)
      return { values, failures }
    }
    const checked = checkValues(result, n)
    for (const [row, problem] of checked.problems) {
      if (row === undefined) for (let i = 0; i < n; i++) failures.set(i, problem)
      else failures.set(row, problem)
    }
    return { values: checked.values.length === n ? checked.values : new Array(n).fill(null), failures }
  }

  async score(batch: RewardBatch): Promise<RewardScores> {
    if (this.#closed) throw new Error('reward functions: called after close()')
    const n = batch.completions.length
    const results = await Promise.all(this.calls.map((c) => this.#run(c, batch)))
    const total = new Float32Array(n)
    const perFunction: Record<string, RewardValues> = {}
    const metrics: Record<string, number> = {}
    let errors = 0
    results.forEach(({ values, failures }, k) => {
      const c = this.calls[k]
      if (failures.size > 0) {
        const [row, problem] = failures.entries().next().value as [number, string]
        if (this.onError === 'stop') {
          const whole = failures.size === n && n > 1 && new Set(failures.values()).size === 1
          throw new RewardError(c.name, whole ? undefined : row, whole ? `${problem} (all ${n} rows of the batch)` : problem, batch.step)
        }
        errors += failures.size
        this.note(`reward function '${c.name}' (step ${batch.step}): ${failures.size} row(s) scored 0 (reward.on_error: skip); first, row ${row}: ${problem}`)
      }
      const scaled = values.map((v, i) => (failures.has(i) ? 0 : v === null ? null : v * c.scale))
      perFunction[c.name] = scaled
      scaled.forEach((v, i) => {
        if (v !== null) total[i] += c.weight * v
      })
      const s = stats(scaled)
      metrics[`rewards/${c.name}/mean`] = s.mean
      metrics[`rewards/${c.name}/std`] = s.std
    })
    if (this.onError === 'skip') metrics.reward_errors = errors
    return { total, perFunction, metrics }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await Promise.all(this.calls.map((c) => c.close()))
  }
}

/** What a failed call says: a worker's CallError as it is, a throw as "threw: message". */
function failureOf(err: unknown): string {
  if (err instanceof CallError) return err.message
  return `threw: ${err instanceof Error ? err.message : String(err)}`
}

/** Row i of a batch as a batch of one (to find which row a throwing function fails on). */
function pick(batch: RewardBatch, i: number): RewardBatch {
  return { prompts: [batch.prompts[i]], completions: [batch.completions[i]], completionIds: [batch.completionIds[i]], rows: [batch.rows[i]], step: batch.step }
}
