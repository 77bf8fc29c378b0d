// Reading files under the dashboard's folder, and nowhere else: every path a
// request names goes through insideRoot(), which refuses absolute paths, `..`
// that climbs out, NUL bytes and symlinks whose target is outside the folder.
import fs from 'node:fs'
import path from 'node:path'

export class OutsideRootError extends Error {}

/** The real path of `rel` (a path relative to `root`, a real path itself) when it stays inside `root`. */
export function insideRoot(root: string, rel: string): string {
  if (rel.includes('\0')) throw new OutsideRootError(`the path ${JSON.stringify(rel)} has a NUL byte`)
  if (path.isAbsolute(rel) || /^[a-zA-Z]:/.test(rel)) throw new OutsideRootError(`the path ${JSON.stringify(rel)} is absolute; paths are relative to the dashboard's folder`)
  const resolved = path.resolve(root, rel)
  if (!contains(root, resolved)) throw new OutsideRootError(`the path ${JSON.stringify(rel)} is outside the dashboard's folder`)
  let real: string
  try {
    real = fs.realpathSync(resolved)
  } catch {
    return resolved // does not exist (yet): the caller's read fails with ENOENT
  }
  if (!contains(root, real)) throw new OutsideRootError(`the path ${JSON.stringify(rel)} leads outside the dashboard's folder (a symlink)`)
  return real
}

function contains(root: string, p: string): boolean {
  const rel = path.relative(root, p)
  return rel === '' || (!rel.startsWith(`..${path.sep}`) && rel !== '..' && !path.isAbsolute(rel))
}

/** A regular file's text under `root`, at most `maxBytes`; undefined when it is missing or not a regular file. */
export function readSmallFile(root: string, rel: string, maxBytes = 4 << 20): string | undefined {
  const file = insideRoot(root, rel)
  let st: fs.Stats
  try {
    st = fs.statSync(file)
  } catch {
    return undefined
  }
  if (!st.isFile()) return undefined
  if (st.size > maxBytes) throw new Error(`${rel} is ${st.size} bytes; the dashboard reads such files up to ${maxBytes} bytes`)
  return fs.readFileSync(file, 'utf8')
}

/**
 * Follows a growing JSONL file: each read() returns the rows of the lines
 * completed since the last one, reading only the new bytes. A last line
 * without its newline waits for the next read; a file that shrank or was
 * replaced (a resumed run rewrites metrics.jsonl) starts again from the top.
 */
export class JsonlTail {
  #offset = 0
  #ino = -1
  #partial: Buffer = Buffer.alloc(0)
  #line = 0
  /** Lines that were not JSON objects (skipped), with the first one's number. */
  bad = 0
  firstBadLine = 0

  constructor(
    readonly root: string,
    readonly rel: string,
    /** Bytes read at most per read(); the rest comes with the next ones. */
    readonly maxBytesPerRead = 8 << 20,
  ) {}

  read(): { rows: Record<string, unknown>[]; reset: boolean } {
    const file = insideRoot(this.root, this.rel)
    let fd: number
    try {
      fd = fs.openSync(file, 'r')
    } catch {
      return { rows: [], reset: false }
    }
    try {
      const st = fs.fstatSync(fd)
      if (!st.isFile()) return { rows: [], reset: false }
      let reset = false
      if (st.ino !== this.#ino || st.size < this.#offset) {
        reset = this.#ino !== -1
        this.#ino = st.ino
        this.#offset = 0
        this.#partial = Buffer.alloc(0)
        this.#line = 0
        this.bad = 0
        this.firstBadLine = 0
      }
      const length = Math.min(st.size - this.#offset, this.maxBytesPerRead)
      if (length <= 0) return { rows: [], reset }
      const chunk = Buffer.alloc(length)
      const got = fs.readSync(fd, chunk, 0, length, this.#offset)
      this.#offset += got
      const bytes = this.#partial.length ? Buffer.concat([this.#partial, chunk.subarray(0, got)]) : chunk.subarray(0, got)
      const end = bytes.lastIndexOf(0x0a)
      // Bytes after the last newline are a line still being written.
      this.#partial = Buffer.from(bytes.subarray(end + 1))
      const rows: Record<string, unknown>[] = []
      if (end < 0) return { rows, reset }
      for (const line of bytes.subarray(0, end).toString('utf8').split('\n')) {
        this.#line++
        if (!line.trim()) continue
        let row: unknown
        try {
          row = JSON.parse(line)
        } catch {
          row = undefined
        }
        if (row && typeof row === 'object' && !Array.isArray(row)) rows.push(row as Record<string, unknown>)
        else if (this.bad++ === 0) this.firstBadLine = this.#line
      }
      return { rows, reset }
    } finally {
      fs.closeSync(fd)
    }
  }
}

/** The last `limit` rows of a JSONL file, from its last `maxBytes` at most (without reading the rest). */
export function lastJsonlRows(root: string, rel: string, limit: number, maxBytes = 1 << 20): { rows: Record<string, unknown>[]; size: number } {
  const file = insideRoot(root, rel)
  let fd: number
  try {
    fd = fs.openSync(file, 'r')
  } catch {
    return { rows: [], size: 0 }
  }
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile()) return { rows: [], size: 0 }
    const start = Math.max(0, st.size - maxBytes)
    const buf = Buffer.alloc(st.size - start)
    fs.readSync(fd, buf, 0, buf.length, start)
    const lines = buf.toString('utf8').split('\n')
    if (start > 0) lines.shift() // begins mid-line
    lines.pop() // after the last newline: empty, or a line still being written
    const rows: Record<string, unknown>[] = []
    for (let i = lines.length - 1; i >= 0 && rows.length < limit; i--) {
      try {
        const row = JSON.parse(lines[i]) as unknown
        if (row && typeof row === 'object' && !Array.isArray(row)) rows.unshift(row as Record<string, unknown>)
      } catch {
        // a line that is not JSON is not a sample
      }
    }
    return { rows, size: st.size }
  } finally {
    fs.closeSync(fd)
  }
}
