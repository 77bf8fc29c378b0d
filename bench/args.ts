// The benchmarks' command lines, read one way. Each flag is named by its
// default's key (`genBatch` is --gen-batch) and typed by its default:
// - a number takes `--name N`: a whole number >= 1 unless `min` or `real` say otherwise;
// - a string takes `--name TEXT` (one of `choices[name]` when given);
// - a list of numbers takes `--name 1,4,16` (positive numbers);
// - a boolean is a switch: `--name` turns on one that is off by default,
//   `--no-name` turns off one that is on.
// An unknown flag or a bad value is an error naming it and where the bench
// documents its flags; with `rest`, unknown arguments are returned instead
// (for a bench that passes them on to another).

type Value = number | string | boolean | number[]

export interface BenchArgOptions<T> {
  /** The least value of a number flag (default 1). */
  min?: Partial<Record<keyof T, number>>
  /** Number flags that take fractions. */
  real?: (keyof T)[]
  /** The values a string flag may take. */
  choices?: Partial<Record<keyof T, readonly string[]>>
  /** Return unknown arguments instead of refusing them. */
  rest?: boolean
}

const flagOf = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`

export function benchArgs<T extends Record<string, Value>>(bench: string, argv: readonly string[], defaults: T, options: BenchArgOptions<T> = {}): { args: T; rest: string[] } {
  const args = { ...defaults } as Record<string, Value>
  const rest: string[] = []
  const byFlag = new Map(Object.keys(defaults).map((key) => [flagOf(key), key]))
  const fail = (message: string): never => {
    throw new Error(`${bench}: ${message} (its flags are described at the top of bench/${bench}.ts)`)
  }
  const number = (flag: string, key: string, text: string): number => {
    const n = Number(text)
    const min = options.min?.[key as keyof T] ?? 1
    const real = options.real?.includes(key as keyof T) ?? false
    if (text.trim() === '' || !Number.isFinite(n) || n < min || (!real && !Number.isInteger(n))) fail(`${flag} must be a ${real ? 'number' : 'whole number'} >= ${min}; got '${text}'`)
    return n
  }
  for (let i = 0; i < argv.length; i++) {
    const given = argv[i]
    const [flag, inline] = given.startsWith('--') && given.includes('=') ? [given.slice(0, given.indexOf('=')), given.slice(given.indexOf('=') + 1)] : [given, undefined]
    const negated = flag.startsWith('--no-') ? byFlag.get(`--${flag.slice(5)}`) : undefined
    if (negated !== undefined && typeof defaults[negated] === 'boolean') {
      args[negated] = false
      continue
    }
    const key = byFlag.get(flag)
    if (key === undefined) {
      if (options.rest) rest.push(given)
      else fail(`unknown argument ${given}`)
      continue
    }
    const kind = defaults[key]
    if (typeof kind === 'boolean') {
      if (inline !== undefined) fail(`${flag} is a switch and takes no value`)
      args[key] = true
      continue
    }
    const text = inline ?? argv[++i]
    if (text === undefined) fail(`${flag} needs a value`)
    if (typeof kind === 'number') args[key] = number(flag, key, text)
    else if (Array.isArray(kind)) {
      args[key] = text.split(',').map((part) => {
        const n = Number(part)
        if (part.trim() === '' || !(n > 0) || !Number.isFinite(n)) fail(`${flag} must be positive numbers separated by commas; got '${text}'`)
        return n
      })
    } else {
      const choices = options.choices?.[key as keyof T]
      if (choices && !choices.includes(text)) fail(`${flag} must be one of ${choices.join(', ')}; got '${text}'`)
      args[key] = text
    }
  }
  return { args: args as T, rest }
}

/** Prints rows under a header, each column as wide as its widest cell; with `markdown`, then the same as a markdown table for bench/RESULTS.md. */
export function printTable(header: readonly string[], rows: readonly (readonly string[])[], options: { markdown?: boolean } = {}): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  for (const row of [header, ...rows]) console.log(row.map((c, i) => c.padEnd(widths[i])).join('  '))
  if (!options.markdown) return
  console.log('\nmarkdown:')
  console.log(`| ${header.join(' | ')} |`)
  console.log(`| ${header.map(() => '---').join(' | ')} |`)
  for (const row of rows) console.log(`| ${row.join(' | ')} |`)
}
