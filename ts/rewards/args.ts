// What every built-in reward reads: its args (checked, naming the reward and
// the key), and a row's reference answer.

/** Reads args.<key> as a string/number/..., naming the reward and the key when it is wrong. */
export class Args {
  constructor(
    readonly args: Record<string, unknown>,
    readonly what: string,
    known: readonly string[],
  ) {
    for (const key of Object.keys(args)) {
      if (!known.includes(key)) throw new Error(`${what}: unknown args key '${key}'; ${known.length ? `it takes ${known.join(', ')}` : 'it takes no args'}`)
    }
  }

  string(key: string, fallback?: string): string {
    const v = this.args[key] ?? fallback
    if (typeof v !== 'string') throw new Error(`${this.what}: args.${key} must be a string; got ${JSON.stringify(v)}`)
    return v
  }

  number(key: string, fallback: number | undefined, check: { min?: number; integer?: boolean } = {}): number {
    const v = this.args[key] ?? fallback
    const expected = `${check.integer ? 'an integer' : 'a number'}${check.min !== undefined ? ` >= ${check.min}` : ''}`
    if (typeof v !== 'number' || !Number.isFinite(v) || (check.integer && !Number.isInteger(v)) || (check.min !== undefined && v < check.min)) {
      throw new Error(`${this.what}: args.${key} must be ${expected}; got ${JSON.stringify(v)}`)
    }
    return v
  }

  strings(key: string, fallback: string[]): string[] {
    const v = this.args[key] ?? fallback
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new Error(`${this.what}: args.${key} must be a list of strings; got ${JSON.stringify(v)}`)
    return v as string[]
  }
}

/** The reference answer of a row: the first of `keys` it has as a string (or number); undefined when none. */
export function referenceOf(row: Record<string, unknown>, keys: readonly string[]): string | undefined {
  for (const k of keys) {
    const v = row[k]
    if (typeof v === 'string') return v
    if (typeof v === 'number' && Number.isFinite(v)) return String(v)
  }
  return undefined
}

/** The columns a row's reference answer may be in, in the order they are tried. */
export const REFERENCE_KEYS = ['answer', 'reference', 'solution']
