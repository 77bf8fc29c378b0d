// Reading JSON Lines data: every error names the file and the line; a bad row
// either stops the read or is skipped and counted, as the caller (the
// config's data.on_bad_row) says. A data path may also be a directory or a
// glob of shards (as the Hub ships them), and JSON Lines may be gzipped.
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import type { Readable } from 'node:stream'
import zlib from 'node:zlib'
import { openForReading } from '../util/fs.js'

export type BadRowPolicy = 'stop' | 'skip'

/** The longest row read by default (data.max_row_bytes): 16 MiB. */
export const DEFAULT_MAX_ROW_BYTES = 16 * 1024 * 1024

export interface ReadLimits {
  /** A longer row (a JSONL line, in bytes) is a bad row; the reader holds no more of it than this. Default 16 MiB. */
  maxRowBytes?: number
  /** Read a FIFO, a device or a socket too. Default false: only regular files. */
  allowSpecialFiles?: boolean
  /** How long reading a Parquet file may take. Default: a minute, and a minute more per 100 MB. */
  parquetTimeoutMs?: number
  /** Refuse NUL characters in text (and, in the row parsers, empty prompts and responses). Default true. */
  checkText?: boolean
}

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
    skipOrStop(result, policy, bad((err as Error).message))
  }
}

function skipOrStop(result: ReadResult<unknown>, policy: BadRowPolicy, error: BadRowError): void {
  if (policy === 'stop') throw error
  result.skipped++
  if (result.skippedReasons.length < 100) result.skippedReasons.push(error.message)
}

const CHAR_NAMES: Record<string, string> = { '\0': 'a NUL character (U+0000)' }
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/**
 * Refuses text no tokenizer should see silently: a lone UTF-16 surrogate
 * (from a "\ud800" escape), and a NUL character unless `nulAllowed`; `where`
 * is the field's path.
 */
export function checkRowText(value: unknown, nulAllowed = false, where = ''): void {
  if (typeof value === 'string') {
    const nul = nulAllowed ? -1 : value.indexOf('\0')
    if (nul >= 0) throw new Error(`${where ? `'${where}' ` : ''}contains ${CHAR_NAMES['\0']} at character ${nul}`)
    const lone = LONE_SURROGATE.exec(value)
    if (lone) {
      const code = lone[0].charCodeAt(0).toString(16).toUpperCase()
      throw new Error(`${where ? `'${where}' ` : ''}contains a lone surrogate (U+${code}, half of a UTF-16 pair: not text) at character ${lone.index}`)
    }
  } else if (Array.isArray(value)) value.forEach((v, i) => checkRowText(v, nulAllowed, `${where}[${i}]`))
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) checkRowText(v, nulAllowed, where ? `${where}.${k}` : k)
}

/**
 * The first key that an object of `text` (valid JSON) gives twice, with its
 * path ('messages[1].content'), or undefined. JSON.parse keeps the last of
 * them, so a row such as {"response": "a", "response": "b"} would be read as
 * the second silently.
 */
export function duplicateKey(text: string): string | undefined {
  // One frame per open object or array: the keys seen, its path, the next array index.
  const frames: { keys?: Set<string>; path: string; index: number }[] = []
  let pendingKey: string | undefined
  const childPath = () => {
    const top = frames[frames.length - 1]
    if (!top) return ''
    if (top.keys) return top.path ? `${top.path}.${pendingKey}` : pendingKey!
    return `${top.path}[${top.index}]`
  }
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22) {
      // A string: find its closing quote (one not escaped by an odd run of backslashes).
      let end = i + 1
      for (;;) {
        end = text.indexOf('"', end)
        let slashes = 0
        while (text.charCodeAt(end - 1 - slashes) === 0x5c) slashes++
        if (slashes % 2 === 0) break
        end++
      }
      const top = frames[frames.length - 1]
      let j = end + 1
      while (j < text.length && (text.charCodeAt(j) === 0x20 || text.charCodeAt(j) === 0x09 || text.charCodeAt(j) === 0x0a || text.charCodeAt(j) === 0x0d)) j++
      if (top?.keys && text.charCodeAt(j) === 0x3a) {
        const raw = text.slice(i + 1, end)
        const key = raw.includes('\\') ? (JSON.parse(`"${raw}"`) as string) : raw
        pendingKey = key
        if (top.keys.has(key)) return childPath()
        top.keys.add(key)
      }
      i = end
    } else if (c === 0x7b || c === 0x5b) {
      const path = childPath()
      frames.push(c === 0x7b ? { keys: new Set(), path, index: 0 } : { path, index: 0 })
    } else if (c === 0x7d || c === 0x5d) {
      frames.pop()
    } else if (c === 0x2c) {
      const top = frames[frames.length - 1]
      if (top && !top.keys) top.index++
    }
  }
  return undefined
}

/**
 * Opens a data file for reading without ever blocking (see openForReading):
 * only regular files unless `allowSpecial`; a FIFO or socket that is allowed
 * is read as a non-blocking stream, which waits for its writer in the event loop.
 */
export function openDataFile(file: string, allowSpecial = false): { stream: Readable } {
  const { fd, stat } = openForReading(file, { allowSpecial, hint: 'data.allow_special_files: true reads one' })
  if (stat.isFIFO() || stat.isSocket()) return { stream: new net.Socket({ fd, readable: true, writable: false }) }
  return { stream: fs.createReadStream('', { fd, highWaterMark: 1 << 16 }) }
}

type Line = { line: number; text: string } | { line: number; tooLong: true } | { line: number; notUtf8: true }

/**
 * The lines of a byte stream (\n or \r\n), decoded as UTF-8. A line over
 * `maxBytes` is reported as soon as it crosses the limit (so a caller that
 * stops there reads no further) and its remaining bytes are dropped, not held.
 */
async function* splitLines(stream: Readable, maxBytes: number): AsyncGenerator<Line> {
  const decoder = new TextDecoder('utf-8', { fatal: true })
  let parts: Buffer[] = []
  let held = 0
  let dropping = false
  let line = 0
  const text = (): Line => {
    let bytes = parts.length === 1 ? parts[0] : Buffer.concat(parts)
    parts = []
    held = 0
    if (bytes.length > 0 && bytes[bytes.length - 1] === 13) bytes = bytes.subarray(0, -1)
    try {
      return { line, text: decoder.decode(bytes) }
    } catch {
      return { line, notUtf8: true }
    }
  }
  /** Adds a piece of the current line; true when it has just crossed the limit. */
  const add = (piece: Buffer): boolean => {
    if (dropping || piece.length === 0) return false
    if (held + piece.length > maxBytes) {
      dropping = true
      parts = []
      held = 0
      return true
    }
    parts.push(piece)
    held += piece.length
    return false
  }
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let start = 0
    for (let nl = chunk.indexOf(10); nl >= 0; nl = chunk.indexOf(10, start)) {
      line++
      if (add(chunk.subarray(start, nl))) yield { line, tooLong: true }
      if (dropping) dropping = false
      else yield text()
      start = nl + 1
    }
    if (add(chunk.subarray(start))) yield { line: line + 1, tooLong: true }
  }
  line++
  if (!dropping && held > 0) yield text()
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
export async function readTable<T>(spec: string, parse: (value: unknown, line: number) => T, policy: BadRowPolicy = 'stop', limits: ReadLimits = {}): Promise<ReadResult<T>> {
  const files = dataFiles(spec)
  if (files.length === 1) return readOneTable(files[0], parse, policy, limits)
  const all: ReadResult<T> = { rows: [], skipped: 0, skippedReasons: [] }
  for (const file of files) {
    const part = await readOneTable(file, parse, policy, limits)
    for (const row of part.rows) all.rows.push(row)
    all.skipped += part.skipped
    all.skippedReasons.push(...part.skippedReasons.slice(0, 100 - all.skippedReasons.length))
  }
  return all
}

async function readOneTable<T>(file: string, parse: (value: unknown, line: number) => T, policy: BadRowPolicy, limits: ReadLimits): Promise<ReadResult<T>> {
  if (!file.toLowerCase().endsWith('.parquet')) return readJsonl(file, parse, policy, limits)
  const rows = await readParquetRows(file, limits.parquetTimeoutMs)
  const result: ReadResult<T> = { rows: [], skipped: 0, skippedReasons: [] }
  rows.forEach((row, i) =>
    collect(
      result,
      policy,
      () => {
        checkRowText(row, limits.checkText === false)
        return parse(row, i + 1)
      },
      (reason) => new BadRowError(file, i + 1, reason, `${file}: row ${i + 1}`),
    ),
  )
  return result
}

/** The default bound on reading a Parquet file: a minute, and a minute more per 100 MB. */
function parquetTimeoutFor(bytes: number): number {
  return 60_000 * (1 + bytes / 100e6)
}

/**
 * A Parquet file's rows (BigInt integers as numbers), read by hyparquet in a
 * worker thread that is stopped after `timeoutMs`: a corrupt file can send
 * the decoder into a loop that never ends (a page header that says 0 bytes).
 */
async function readParquetRows(file: string, timeoutMs?: number): Promise<Record<string, unknown>[]> {
  // Parquet is read by random access: a regular file only.
  const { fd, stat } = openForReading(file)
  fs.closeSync(fd)
  const limit = timeoutMs ?? parquetTimeoutFor(stat.size)
  const worker = new Worker(path.join(__dirname, 'parquet-worker.js'), { workerData: { file } })
  try {
    const reply = await new Promise<{ rows?: Record<string, unknown>[]; error?: string; code?: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`cannot read ${file}: reading it took over ${Math.round(limit / 1000)} s; a corrupt Parquet file can make the decoder loop`)), limit)
      worker.once('message', (m) => {
        clearTimeout(timer)
        resolve(m)
      })
      worker.once('error', (err) => {
        clearTimeout(timer)
        reject(new Error(`cannot read ${file}: the Parquet reader failed (${err.message})`))
      })
    })
    if (reply.error !== undefined) throw new Error(`cannot read ${file}: ${reply.code === 'ENOENT' ? 'no such file' : `not a readable Parquet file (${reply.error})`}`)
    return reply.rows!
  } finally {
    await worker.terminate()
  }
}

const GZIP_MAGIC = [0x1f, 0x8b]

/** Whether a file starts with gzip's magic bytes. */
function isGzip(file: string): boolean {
  const head = Buffer.alloc(2)
  // Non-blocking, and only a regular file is looked at: a stream's first bytes are its reader's.
  const { fd, stat } = openForReading(file, { allowSpecial: true })
  try {
    return stat.isFile() && fs.readSync(fd, head, 0, 2, 0) === 2 && head[0] === GZIP_MAGIC[0] && head[1] === GZIP_MAGIC[1]
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * Reads `file` line by line (gunzipped when it ends in .gz); `parse(value,
 * line)` turns each JSON value into a row or throws (an Error whose message is
 * the reason). Blank lines are ignored. A line longer than
 * `limits.maxRowBytes` (after gunzip), one that is not UTF-8 and a string
 * holding NUL or a lone surrogate are bad rows too.
 */
export async function readJsonl<T>(
  file: string,
  parse: (value: unknown, line: number) => T,
  policy: BadRowPolicy = 'stop',
  limits: ReadLimits = {},
): Promise<ReadResult<T>> {
  const maxBytes = limits.maxRowBytes ?? DEFAULT_MAX_ROW_BYTES
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw new RangeError(`readJsonl: maxRowBytes must be a positive integer; got ${maxBytes}`)
  const gzipped = file.toLowerCase().endsWith('.gz')
  const { stream } = openDataFile(file, limits.allowSpecialFiles)
  if (!gzipped && isGzip(file)) {
    stream.destroy()
    throw new Error(`cannot read ${file}: it is gzip-compressed but not named .gz; rename it (e.g. data.jsonl.gz) so it is read as gzip`)
  }
  // A gunzip error (bad gzip data) reaches the loop below through the iterator.
  const input: Readable = gzipped ? stream.pipe(zlib.createGunzip()) : stream
  let lastLine = 0
  const result: ReadResult<T> = { rows: [], skipped: 0, skippedReasons: [] }
  try {
    for await (const piece of splitLines(input, maxBytes)) {
      const line = piece.line
      lastLine = line
      if ('tooLong' in piece) {
        skipOrStop(result, policy, new BadRowError(file, line, `the row is over ${maxBytes} bytes (data.max_row_bytes)`))
        continue
      }
      if ('notUtf8' in piece) {
        skipOrStop(result, policy, new BadRowError(file, line, 'the row is not valid UTF-8'))
        continue
      }
      const text = piece.text
      if (text.trim() === '') continue
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
          const twice = duplicateKey(text)
          if (twice !== undefined) throw new Error(`the key '${twice}' is given twice; JSON would keep only the last`)
          checkRowText(value, limits.checkText === false)
          return parse(value, line)
        },
        (reason) => new BadRowError(file, line, reason),
      )
    }
  } catch (err) {
    if (err instanceof BadRowError) throw err
    const code = (err as NodeJS.ErrnoException).code
    if (gzipped && typeof code === 'string' && code.startsWith('Z_')) {
      throw new Error(`cannot read ${file}: not valid gzip data (${(err as Error).message}${lastLine > 0 ? `, after line ${lastLine}` : ''})`, { cause: err })
    }
    throw new Error(`cannot read ${file}: ${(err as Error).message}`, { cause: err })
  } finally {
    stream.destroy()
    if (input !== stream) input.destroy()
  }
  return result
}
