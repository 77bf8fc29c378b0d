// Reading option objects the way the whole project does: unknown keys are
// errors that suggest the closest known key, wrong types name the option.

/** Edit distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1)
  for (let j = 0; j <= b.length; j++) prev[j] = j
  for (let i = 1; i <= a.length; i++) {
    let diagonal = prev[0]
    prev[0] = i
    for (let j = 1; j <= b.length; j++) {
      const above = prev[j]
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1))
      diagonal = above
    }
  }
  return prev[b.length]
}

/** The known key closest to `key`, if it is close enough to be a likely typo. */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase())
    if (d < bestDistance) {
      bestDistance = d
      best = candidate
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined
}

/** Throws when `given` has a key outside `known`, naming the closest known key. */
export function checkKeys(where: string, given: object | undefined, known: readonly string[]): void {
  if (given === undefined) return
  // null too: reading an option of it would fail with "Cannot read properties of null".
  if (given === null || typeof given !== 'object' || Array.isArray(given)) {
    throw new TypeError(`${where}: options must be an object; got ${describe(given)}`)
  }
  for (const key of Object.keys(given)) {
    if (known.includes(key)) continue
    const near = closestKey(key, known)
    const hint = near ? ` Did you mean '${near}'?` : ''
    throw new TypeError(`${where}: unknown option '${key}'.${hint} Known options: ${known.join(', ')}`)
  }
}

/** An object literal's kind of value (not an array, a class instance or null). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/**
 * A value in words, for "got ...": in JavaScript's terms for API errors
 * ('an array', 'Float32Array'), or in YAML's for config errors ('a list', 'a
 * mapping', "the string 'x'").
 */
export function describe(value: unknown, terms: 'js' | 'yaml' = 'js'): string {
  const yaml = terms === 'yaml'
  if (value === null) return 'null'
  if (Array.isArray(value)) return yaml ? 'a list' : 'an array'
  if (typeof value === 'string') return yaml ? `the string '${JSON.stringify(value).slice(1, -1)}'` : `'${value}'`
  if (!yaml) return typeof value === 'object' ? ((value as object).constructor?.name ?? 'an object') : String(value)
  if (value === undefined) return 'nothing'
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  if (typeof value === 'bigint') return `${value}n`
  if (isPlainObject(value)) return 'a mapping'
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'object') return `a ${(value as object).constructor?.name ?? 'object'}`
  return typeof value
}

export function numberOption(where: string, name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number') throw new TypeError(`${where}: ${name} must be a number; got ${describe(value)}`)
  return value
}

export interface NumberRange {
  min?: number
  max?: number
  /** The minimum itself is not allowed. */
  minExclusive?: boolean
  integer?: boolean
}

function describeRange(r: NumberRange): string {
  const low = r.min === undefined ? undefined : `${r.minExclusive ? '(' : '['}${r.min}`
  if (low !== undefined && r.max !== undefined) return ` in ${low}, ${r.max}]`
  if (low !== undefined) return ` ${r.minExclusive ? '>' : '>='} ${r.min}`
  if (r.max !== undefined) return ` <= ${r.max}`
  return ''
}

/**
 * A number option that must be finite (an integer with `integer`) and within
 * `range`: NaN, Infinity and out-of-range values are errors naming the option.
 */
export function rangedOption(where: string, name: string, value: unknown, fallback: number, range: NumberRange = {}): number {
  if (value === undefined) return fallback
  const v = numberOption(where, name, value, fallback)
  const ok =
    (range.integer ? Number.isSafeInteger(v) : Number.isFinite(v)) &&
    (range.min === undefined || (range.minExclusive ? v > range.min : v >= range.min)) &&
    (range.max === undefined || v <= range.max)
  if (!ok) throw new RangeError(`${where}: ${name} must be ${range.integer ? 'an integer' : 'a finite number'}${describeRange(range)}; got ${v}`)
  return v
}

export function booleanOption(where: string, name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw new TypeError(`${where}: ${name} must be true or false; got ${describe(value)}`)
  return value
}

export function choiceOption<T extends string>(where: string, name: string, value: unknown, choices: readonly T[], fallback: T): T {
  if (value === undefined) return fallback
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    const near = typeof value === 'string' ? closestKey(value, choices) : undefined
    const hint = near ? ` Did you mean '${near}'?` : ''
    throw new TypeError(`${where}: ${name} must be one of ${choices.map((c) => `'${c}'`).join(', ')}; got ${describe(value)}.${hint}`)
  }
  return value as T
}
