// The fuzz properties' side of the runner (test/fuzz/run.ts): a property file
// calls runProperties(), which runs each property with fast-check for its
// share of the time budget, from the seed it was given, and prints one JSON
// line per property (and one before each starts, so a hang or an abort is
// pinned on it). The property holds when every input gives a valid result or
// a clear Error: an Error instance whose message names the thing, not one of
// JavaScript's own "Cannot read properties of null" failures.
import fc from 'fast-check'

/** Messages that mean the code under test fell over, not that it refused the input. */
const UNCLEAR = [
  /Cannot read propert/,
  /Cannot set propert/,
  /is not a function/,
  /is not iterable/,
  /is not a constructor/,
  /\b(undefined|null) is not (a function|an object|iterable)/,
  /Maximum call stack/,
  /Invalid array length/,
  /Array buffer allocation failed/,
  /Invalid typed array length/,
  /Invalid string length/,
]

/** Throws unless `err` is a clear Error; `names` are words at least one of which its message must contain (the thing it is about). */
export function assertClearError(err: unknown, names: readonly (string | RegExp)[] = []): void {
  if (!(err instanceof Error)) throw new Error(`threw a non-Error: ${String(err)}`)
  if (err.message.trim() === '') throw new Error(`threw ${err.name} without a message`)
  // A raw engine error (TypeError, RangeError...) or one that starts with an engine message fell through; a message
  // that wraps one after naming the thing ("cannot read x.parquet: not a readable Parquet file (...)") is clear.
  const raw = ['TypeError', 'RangeError', 'ReferenceError', 'SyntaxError'].includes(err.constructor.name)
  const unclear = UNCLEAR.find((re) => (raw ? re.test(err.message) : new RegExp(`^(${re.source})`).test(err.message)))
  if (unclear) throw new Error(`unclear error (${err.name}): ${err.message}\n${err.stack}`)
  if (names.length > 0 && !names.some((n) => (typeof n === 'string' ? err.message.includes(n) : n.test(err.message)))) {
    throw new Error(`the error does not name ${names.map(String).join(' or ')}: ${err.message}`)
  }
}

/** Runs `f`: a result passes `check` (when given); a throw must be a clear Error naming one of `names`. */
export function resultOrClearError<T>(f: () => T, names: readonly (string | RegExp)[] = [], check?: (r: T) => void): void {
  let result: T
  try {
    result = f()
  } catch (err) {
    assertClearError(err, names)
    return
  }
  check?.(result)
}

export async function resultOrClearErrorAsync<T>(f: () => Promise<T>, names: readonly (string | RegExp)[] = [], check?: (r: T) => void | Promise<void>): Promise<void> {
  let result: T
  try {
    result = await f()
  } catch (err) {
    assertClearError(err, names)
    return
  }
  await check?.(result)
}

export type AnyProperty = fc.IProperty<never> | fc.IAsyncProperty<never>

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : fallback
}

/**
 * Runs `properties` (name -> property): --seed S, --budget-ms N (shared
 * evenly), --only NAME. Prints {property, seed, start: true} then {property,
 * seed, runs, failed, counterexample, error} per property.
 */
export async function runProperties(properties: Record<string, AnyProperty>): Promise<void> {
  const seed = Number(arg('seed', '1'))
  const budget = Number(arg('budget-ms', '10000'))
  const only = arg('only', '')
  const names = Object.keys(properties).filter((n) => !only || n === only)
  for (const name of names) {
    process.stdout.write(`${JSON.stringify({ property: name, seed, start: true })}\n`)
    const started = Date.now()
    const details = await fc.check(properties[name] as fc.IAsyncProperty<unknown>, {
      seed,
      numRuns: 1_000_000,
      interruptAfterTimeLimit: Math.max(200, Math.floor(budget / names.length)),
      markInterruptAsFailure: false,
      // Shrinking a slow counterexample can take long: a bounded number of steps keeps the run inside its budget.
      endOnFailure: false,
      skipAllAfterTimeLimit: Math.max(200, Math.floor(budget / names.length)) * 2,
    })
    const error = details.errorInstance instanceof Error ? details.errorInstance.message : details.errorInstance === undefined ? undefined : String(details.errorInstance)
    process.stdout.write(
      `${JSON.stringify({
        property: name,
        seed,
        runs: details.numRuns,
        failed: details.failed,
        ms: Date.now() - started,
        counterexample: details.failed ? fc.stringify(details.counterexample).slice(0, 2000) : undefined,
        path: details.failed ? details.counterexamplePath : undefined,
        error: details.failed ? error?.slice(0, 2000) : undefined,
      })}\n`,
    )
  }
  process.stdout.write(`${JSON.stringify({ done: true })}\n`)
}
