// Files the trainer writes: whole files replaced atomically (temp + rename),
// and append-only logs buffered in memory and written a whole record at a time.
import fs from 'node:fs'
import path from 'node:path'

/** What a file that is not a regular file is, for errors: 'a FIFO (named pipe)', 'a directory' ... */
export function describeFileType(stat: fs.Stats): string {
  if (stat.isFile()) return 'a regular file'
  if (stat.isDirectory()) return 'a directory'
  if (stat.isFIFO()) return 'a FIFO (named pipe)'
  if (stat.isCharacterDevice()) return 'a character device'
  if (stat.isBlockDevice()) return 'a block device'
  if (stat.isSocket()) return 'a socket'
  return 'not a regular file'
}

/**
 * Opens `file` read-only without ever blocking: O_NONBLOCK, then fstat. A
 * plain open() of a FIFO with no writer blocks the thread that makes it for
 * good (on the main thread, signals are never handled again; in the thread
 * pool, even process.exit waits for it). Anything but a regular file is
 * refused unless `allowSpecial` (a directory always); `hint` ends the error
 * (how to allow one). Returns the descriptor and its stat; the caller closes it.
 */
export function openForReading(file: string, options: { allowSpecial?: boolean; hint?: string } = {}): { fd: number; stat: fs.Stats } {
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, { cause: err })
  }
  const stat = fs.fstatSync(fd)
  if (!stat.isFile() && (!options.allowSpecial || stat.isDirectory())) {
    fs.closeSync(fd)
    throw new Error(`cannot read ${file}: it is ${describeFileType(stat)}, not a regular file${stat.isDirectory() || !options.hint ? '' : ` (${options.hint})`}`)
  }
  return { fd, stat }
}

/** fs.readFileSync for a file that must be a regular file (see openForReading). */
export function readRegularFileSync(file: string): Buffer
export function readRegularFileSync(file: string, encoding: 'utf8'): string
export function readRegularFileSync(file: string, encoding?: 'utf8'): Buffer | string {
  const { fd } = openForReading(file)
  try {
    return encoding ? fs.readFileSync(fd, encoding) : fs.readFileSync(fd)
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as Error).message}`, { cause: err })
  } finally {
    fs.closeSync(fd)
  }
}

/** Whether `file` is a directory (following links); false when there is nothing there. */
export function isDirectory(file: string): boolean {
  try {
    return fs.statSync(file).isDirectory()
  } catch {
    return false
  }
}

/** A path for a temporary file or directory next to `target` (same file system, so rename is atomic). */
export function tempPathFor(target: string, tag = 'tmp'): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${tag}-${process.pid}`)
}

/** Writes `data` to `file` atomically: a flushed temporary file in the same directory, renamed over the target. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const temp = tempPathFor(file)
  try {
    const fd = fs.openSync(temp, 'w')
    try {
      fs.writeFileSync(fd, data)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(temp, file)
  } catch (err) {
    fs.rmSync(temp, { force: true })
    throw new Error(`cannot write ${file}: ${(err as Error).message}`, { cause: err })
  }
}

export interface AppendFileOptions {
  /** Write out once this many bytes are waiting. Default 64 KiB. */
  flushBytes?: number
  /** Write out when a record arrives this long (ms) after the last write. Default 2000. */
  flushMs?: number
  /** Clock in ms (tests). Default Date.now. */
  now?: () => number
  /** 'a' appends to an existing file; 'wx' refuses one. Default 'a'. */
  flag?: 'a' | 'wx'
}

/**
 * An append-only file written in whole records: append() only buffers (cheap),
 * flush() writes everything waiting in one call, so a crash loses at most the
 * unflushed tail and never leaves half a record behind from a buffered one.
 * No timers: flushing happens in append(), flush() and close().
 */
export class AppendFile {
  readonly path: string
  #fd: number | undefined
  #pending: Buffer[] = []
  #pendingBytes = 0
  #lastWrite: number
  readonly #flushBytes: number
  readonly #flushMs: number
  readonly #now: () => number

  constructor(file: string, options: AppendFileOptions = {}) {
    this.path = file
    this.#flushBytes = options.flushBytes ?? 64 * 1024
    this.#flushMs = options.flushMs ?? 2000
    this.#now = options.now ?? Date.now
    try {
      this.#fd = fs.openSync(file, options.flag ?? 'a')
    } catch (err) {
      throw new Error(`cannot open ${file} for writing: ${(err as Error).message}`, { cause: err })
    }
    this.#lastWrite = this.#now()
  }

  append(record: string | Uint8Array): void {
    if (this.#fd === undefined) throw new Error(`${this.path}: append after close()`)
    const bytes = typeof record === 'string' ? Buffer.from(record, 'utf8') : Buffer.from(record.buffer, record.byteOffset, record.byteLength)
    this.#pending.push(bytes)
    this.#pendingBytes += bytes.length
    if (this.#pendingBytes >= this.#flushBytes || this.#now() - this.#lastWrite >= this.#flushMs) this.flush()
  }

  /** Writes every buffered record. */
  flush(): void {
    if (this.#fd === undefined || this.#pending.length === 0) return
    const data = Buffer.concat(this.#pending)
    this.#pending = []
    this.#pendingBytes = 0
    try {
      fs.writeFileSync(this.#fd, data) // loops until all of it is written
    } catch (err) {
      throw new Error(`cannot write ${this.path}: ${(err as Error).message}`, { cause: err })
    }
    this.#lastWrite = this.#now()
  }

  /** Flushes and closes; later calls do nothing. */
  close(): void {
    if (this.#fd === undefined) return
    try {
      this.flush()
    } finally {
      fs.closeSync(this.#fd)
      this.#fd = undefined
    }
  }
}

/** Whether `target` is `root` or lies under it (both absolute and normalised). */
function isUnder(root: string, target: string): boolean {
  const rel = path.relative(root, target)
  return rel === '' || (!rel.startsWith(`..${path.sep}`) && rel !== '..' && !path.isAbsolute(rel))
}

/** The real path of `p`, or of its nearest existing ancestor joined with the rest when `p` does not exist yet. */
function realPathOf(p: string): string {
  try {
    return fs.realpathSync(p)
  } catch {
    const parent = path.dirname(p)
    return parent === p ? p : path.join(realPathOf(parent), path.basename(p))
  }
}

/**
 * Resolves `name`, a path that a file in `root` gives for another file (a
 * shard of a weight index, a tokenizer file, a stage's output, a base config),
 * and refuses it unless it stays inside `root`: it must be relative, may use
 * `..` only within root, and following symbolic links must not lead out of
 * root. The name is taken relative to `from` (default: root itself), a
 * directory inside root. One exception: a model directory in the Hugging Face hub cache
 * (`…/snapshots/<revision>`) holds links into its repository's `blobs`
 * folder, which are allowed. `what` names the file that gave the name; errors
 * show the name and the directory, never a file's contents.
 */
export function resolveInside(root: string, name: unknown, what: string, from: string = root): string {
  const refuse = (why: string): never => {
    throw new Error(`${what}: ${JSON.stringify(name)} ${why}; a file may only name files inside ${root}`)
  }
  if (typeof name !== 'string' || name === '') return refuse('is not a file name')
  if (name.includes('\0')) refuse('holds a NUL character')
  if (path.isAbsolute(name) || path.win32.isAbsolute(name)) refuse('is an absolute path')
  const base = path.resolve(root)
  // `from` may be relative to the working directory, as `root` may.
  const target = path.resolve(path.resolve(from), name)
  if (!isUnder(base, target)) refuse(`leads out of the directory (to ${target})`)
  const realBase = realPathOf(base)
  const realTarget = realPathOf(target)
  if (!isUnder(realBase, realTarget)) {
    const snapshots = path.dirname(realBase)
    const hubBlobs = path.basename(snapshots) === 'snapshots' ? path.join(path.dirname(snapshots), 'blobs') : undefined
    if (hubBlobs === undefined || !isUnder(hubBlobs, realTarget)) refuse(`is a symbolic link (or lies under one) that leads out of the directory, to ${realTarget}`)
  }
  return target
}
