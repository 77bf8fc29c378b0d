// Reading JSON Lines data: every error names the file and the line; a bad row
// either stops the read or is skipped and counted, as the caller (the
// config's data.on_bad_row) says. A data path may also be a directory or a
// glob of shards (as the Hub ships them), and JSON Lines may be gzipped.
import fs from 'node:fs'
import path from 'node:path'
import readline from 'node:readline'
import zlib from 'node:zlib'

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

// What a directory of data holds: Parquet and JSON Lines, plain or gzipped.
const DATA_FILE = /\.(parquet|jsonl|jsonl\.gz)$/i

/**
 * The files a data path names: the file itself; every data file of a
 * directory (.parquet, .jsonl, .jsonl.gz), in name order; or the files a glob
 * in the last part of the path matches (`data/train-*.parquet`: `*`, `?`,
 * `[abc]`), in name order.
 */
export function dataFiles(spec: string): string[] {
  const dir = path.dirname(spec)
  const base = path.basename(spec)
  if (/[*?[]/.test(base)) {
    const pattern = globPattern(base)
    let names: string[]
    try {
      names = fs.readdirSync(dir)
    } catch (err) {
      throw new Error(`cannot read ${spec}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? `no directory ${dir}` : (err as Error).message}`)
    }
    const files = names.filter((n) => pattern.test(n)).sort().map((n) => path.join(dir, n))
    if (files.length === 0) throw new Error(`${spec}: no file in ${dir} matches ${base}`)
    return files
  }
  let stat: fs.Stats | undefined
  try {
    stat = fs.statSync(spec)
  } catch {
    stat = undefined // reading it says why
  }
  if (!stat?.isDirectory()) return [spec]
  const files = fs.readdirSync(spec).filter((n) => DATA_FILE.test(n)).sort().map((n) => path.join(spec, n))
  if (files.length === 0) throw new Error(`${spec}: a directory with no data files (.parquet, .jsonl, .jsonl.gz)`)
  return files
}

/** A glob of one path segment as a RegExp: `*` any run of characters, `?` one, `[...]` a class. */
function globPattern(glob: string): RegExp {
  let re = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]
    if (c === '*') re += '[^/]*'
    else if (c === '?') re += '[^/]'
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1)
      if (end < 0) throw new Error(`${glob}: '[' without its ']'`)
      re += `[${glob.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\')}]`
      i = end
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

/**
 * Reads a table of rows: Parquet (a .parquet file, read with hyparquet) or
 * JSON Lines (gzipped when it ends in .gz); a directory or a glob of shards
 * is read file after file. A bad row is named by its file and line (or
 * Parquet row).
 */
export async function readTable<T>(spec: string, parse: (value: unknown, line: number) => T, policy: BadRowPolicy = 'stop'): Promise<ReadResult<T>> {
  const files = dataFiles(spec)
  if (files.length === 1) return readOneTable(files[0], parse, policy)
  const all: ReadResult<T> = { rows: [], skipped: 0, skippedReasons: [] }
  for (const file of files) {
    const part = await readOneTable(file, parse, policy)
    for (const row of part.rows) all.rows.push(row)
    all.skipped += part.skipped
    all.skippedReasons.push(...part.skippedReasons.slice(0, 100 - all.skippedReasons.length))
  }
  return all
}

async function readOneTable<T>(file: string, parse: (value: unknown, line: number) => T, policy: BadRowPolicy): Promise<ReadResult<T>> {
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

const GZIP_MAGIC = [0x1f, 0x8b]

/** Whether a file starts with gzip's magic bytes. */
function isGzip(file: string): boolean {
  const head = Buffer.alloc(2)
  const fd = fs.openSync(file, 'r')
  try {
    return fs.readSync(fd, head, 0, 2, 0) === 2 && head[0] === GZIP_MAGIC[0] && head[1] === GZIP_MAGIC[1]
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * Reads `file` line by line (gunzipped when it ends in .gz); `parse(value,
 * line)` turns each JSON value into a row or throws (an Error whose message is
 * the reason). Blank lines are ignored.
 */
export async function readJsonl<T>(
  file: string,
  parse: (value: unknown, line: number) => T,
  policy: BadRowPolicy = 'stop',
): Promise<ReadResult<T>> {
  let stream: fs.ReadStream
  const gzipped = file.toLowerCase().endsWith('.gz')
  try {
    await fs.promises.access(file, fs.constants.R_OK)
    if (!gzipped && isGzip(file)) throw new Error('it is gzip-compressed but not named .gz; rename it (e.g. data.jsonl.gz) so it is read as gzip')
    stream = fs.createReadStream(file)
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`)
  }
  // readline passes an error of its input (bad gzip data) to the loop below.
  const input = gzipped ? stream.pipe(zlib.createGunzip()) : stream
  const lines = readline.createInterface({ input, crlfDelay: Infinity })
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
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (gzipped && typeof code === 'string' && code.startsWith('Z_')) throw new Error(`cannot read ${file}: not valid gzip data (${(err as Error).message}${lineNo > 0 ? `, after line ${lineNo}` : ''})`)
    throw err
  } finally {
    lines.close()
    stream.destroy()
  }
  return result
}
