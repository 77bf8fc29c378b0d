// Reading JSON Lines data: every error names the file and the line; a bad row
// either stops the read or is skipped and counted, as the caller (the
// config's data.on_bad_row) says.
import fs from 'node:fs'
import readline from 'node:readline'

export type BadRowPolicy = 'stop' | 'skip'

/** A row that could not be used; `message` says where (file:line, or a Parquet file's row) and why. */
export class BadRowError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly reason: string,
    where = `${file}:${line}`,
  ) {
    super(`${where}: ${reason}`)
    this.name = 'BadRowError'
  }
}

export interface ReadResult<T> {
  rows: T[]
  /** Rows skipped under the 'skip' policy, with the reason of each (the first 100 kept). */
  skipped: number
  skippedReasons: string[]
}

/** Adds the row `make` returns, or, when it throws, stops the read or skips and counts the row, as `policy` says. */
function collect<T>(result: ReadResult<T>, policy: BadRowPolicy, make: () => T, bad: (reason: string) => BadRowError): void {
  try {
    result.rows.push(make())
  } catch (err) {
    const error = bad((err as Error).message)
    if (policy === 'stop') throw error
    result.skipped++
    if (result.skippedReasons.length < 100) result.skippedReasons.push(error.message)
  }
}

/**
 * Reads a table of rows: Parquet (a .parquet file, read with hyparquet) or
 * JSON Lines; a bad row is named by its file and line (or Parquet row).
 */
export async function readTable<T>(file: string, parse: (value: unknown, line: number) => T, policy: BadRowPolicy = 'stop'): Promise<ReadResult<T>> {
  if (!file.toLowerCase().endsWith('.parquet')) return readJsonl(file, parse, policy)
  const { asyncBufferFromFile, parquetReadObjects } = await import('hyparquet')
  let rows: Record<string, unknown>[]
  try {
    rows = await parquetReadObjects({ file: await asyncBufferFromFile(file) })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new Error(`cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : `not a readable Parquet file (${(err as Error).message})`}`)
  }
  const result: ReadResult<T> = { rows: [], skipped: 0, skippedReasons: [] }
  rows.forEach((value, i) =>
    collect(
      result,
      policy,
      () => parse(toPlain(value), i + 1),
      (reason) => new BadRowError(file, i + 1, reason, `${file}: row ${i + 1}`),
    ),
  )
  return result
}

/** Parquet values as JSON would give them (BigInt integers become numbers). */
function toPlain(value: unknown): unknown {
  if (typeof value === 'bigint') return Number(value)
  if (Array.isArray(value)) return value.map(toPlain)
  if (value && typeof value === 'object' && !(value instanceof Date)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toPlain(v)]))
  return value
}

/**
 * Reads `file` line by line; `parse(value, line)` turns each JSON value into a
 * row or throws (an Error whose message is the reason). Blank lines are ignored.
 */
export async function readJsonl<T>(
  file: string,
  parse: (value: unknown, line: number) => T,
  policy: BadRowPolicy = 'stop',
): Promise<ReadResult<T>> {
  let stream: fs.ReadStream
  try {
    await fs.promises.access(file, fs.constants.R_OK)
    stream = fs.createReadStream(file, { encoding: 'utf8' })
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`)
  }
  const lines = readline.createInterface({ input: stream, crlfDelay: Infinity })
  const result: ReadResult<T> = { rows: [], skipped: 0, skippedReasons: [] }
  let lineNo = 0
  try {
    for await (const text of lines) {
      lineNo++
      if (text.trim() === '') continue
      const line = lineNo
      collect(
        result,
        policy,
        () => {
          let value: unknown
          try {
            value = JSON.parse(text)
          } catch (err) {
            throw new Error(`not valid JSON (${(err as Error).message})`)
          }
          return parse(value, line)
        },
        (reason) => new BadRowError(file, line, reason),
      )
    }
  } finally {
    lines.close()
    stream.destroy()
  }
  return result
}
