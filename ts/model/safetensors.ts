// The safetensors format (https://huggingface.co/docs/safetensors): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape,
// data_offsets: [begin, end]}, __metadata__?}, then the raw little-endian data.
// Files are memory-mapped; tensors are views of the mapping (copied only when
// a view would be misaligned for its dtype).
import fs from 'node:fs'
import { native } from '../native.js'
import { Tensor, type DType } from '../tensor.js'
import { isDirectory, openForReading, tempPathFor } from '../util/fs.js'
import { describe } from '../util/options.js'

export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL'

const BYTES: Record<SafetensorsDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 }
const AS_DTYPE: Partial<Record<SafetensorsDType, DType>> = { F32: 'f32', BF16: 'bf16', I32: 'i32', U8: 'u8', BOOL: 'u8' }
/** The reference implementation's limit on the header length. */
const MAX_HEADER = 100_000_000

export interface SafetensorsEntry {
  name: string
  dtype: SafetensorsDType
  shape: number[]
  /** Byte range in the file. */
  begin: number
  end: number
}

export class SafetensorsFile {
  readonly path: string
  readonly entries: ReadonlyMap<string, SafetensorsEntry>
  readonly metadata: Record<string, string>
  #bytes: Tensor | undefined

  private constructor(file: string, entries: Map<string, SafetensorsEntry>, metadata: Record<string, string>) {
    this.path = file
    this.entries = entries
    this.metadata = metadata
  }

  /**
   * Reads and checks the header as the reference implementation
   * (huggingface/safetensors) does; the data is mapped on first use. The
   * header is a JSON object (starting with '{', padded at the end with spaces
   * only) of at most 100,000,000 bytes inside the file, with no key given
   * twice; each tensor's dtype and shape give exactly its byte count; sorted
   * by offset, the tensors start at 0 and follow each other without a gap or
   * overlap, and the last one ends where the file ends; __metadata__, when
   * present, maps strings to strings. Errors name the file and never quote
   * its bytes.
   */
  static open(file: string): SafetensorsFile {
    // Never a plain open(): a FIFO would block the main thread, and every signal with it.
    const { fd } = openForReading(file)
    try {
      const size = fs.fstatSync(fd).size
      if (size < 8) throw new Error(`${file}: not a safetensors file (${size} bytes, less than the 8-byte header length)`)
      const lengthBytes = Buffer.alloc(8)
      readFully(fd, lengthBytes, 0)
      const headerLength = lengthBytes.readBigUInt64LE(0)
      if (headerLength > BigInt(MAX_HEADER)) {
        throw new Error(`${file}: not a safetensors file: its header length ${headerLength} is over the format's limit of ${MAX_HEADER} bytes`)
      }
      const n = Number(headerLength)
      if (n < 2 || 8 + n > size) {
        throw new Error(`${file}: not a safetensors file, or truncated: header length ${n}, but the file has ${size} bytes (a header is 2 to ${size - 8} bytes here)`)
      }
      const headerBytes = Buffer.alloc(n)
      readFully(fd, headerBytes, 8)
      const { entries, metadata } = parseHeader(file, headerBytes, size)
      return new SafetensorsFile(file, entries, metadata)
    } finally {
      fs.closeSync(fd)
    }
  }

  /** The whole file as u8, memory-mapped (copy-on-write). */
  bytes(): Tensor {
    this.#bytes ??= new Tensor(native.mapFile(this.path))
    return this.#bytes
  }

  entry(name: string): SafetensorsEntry {
    const entry = this.entries.get(name)
    if (!entry) throw new Error(`${this.path}: tensor ${name} is missing`)
    return entry
  }

  /** The raw bytes of one tensor (a view of the mapping). */
  rawBytes(name: string): Tensor {
    const e = this.entry(name)
    return new Tensor(native.view(this.bytes().native, e.begin, [e.end - e.begin]))
  }

  /** One tensor as an rlfarm Tensor (F32, BF16, I32, U8, BOOL; F16 is widened to f32). */
  tensor(name: string): Tensor {
    const e = this.entry(name)
    if (e.dtype === 'F16') {
      const raw = Tensor.empty(e.shape)
      const bits = new Uint16Array(this.rawBytes(name).data.slice().buffer)
      const out = raw.data as Float32Array
      for (let i = 0; i < bits.length; i++) out[i] = halfToFloat(bits[i])
      return raw
    }
    const dtype = AS_DTYPE[e.dtype]
    if (!dtype) throw new Error(`${this.path}: tensor ${name} has dtype ${e.dtype}, which rlfarm cannot hold (F32, F16, BF16, I32, U8, BOOL)`)
    return new Tensor(native.viewBytes(this.bytes().native, e.begin, dtype, e.shape))
  }
}

function readFully(fd: number, into: Buffer, position: number): void {
  let done = 0
  while (done < into.length) {
    const n = fs.readSync(fd, into, done, into.length - done, position + done)
    if (n === 0) throw new Error('the file ended early')
    done += n
  }
}

/**
 * The first key that an object of a JSON text (known to be valid) gives twice,
 * with the path of its object: JSON.parse keeps the last one silently, the
 * reference implementation refuses the file.
 */
function duplicateKey(text: string): string | undefined {
  interface Level {
    keys?: Set<string> // objects only
    path: string
    key?: string
    expectKey: boolean
  }
  const stack: Level[] = []
  const childPath = (parent: Level | undefined) => (parent === undefined ? '' : parent.keys ? `${parent.path}${parent.path ? '.' : ''}${parent.key}` : `${parent.path}[]`)
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    const top = stack.at(-1)
    if (c === '"') {
      let j = i + 1
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1
      if (top?.keys && top.expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string
        if (top.keys.has(key)) return `${top.path}${top.path ? '.' : ''}${key}`
        top.keys.add(key)
        top.key = key
        top.expectKey = false
      }
      i = j
    } else if (c === '{') stack.push({ keys: new Set(), path: childPath(top), expectKey: true })
    else if (c === '[') stack.push({ path: childPath(top), expectKey: false })
    else if (c === '}' || c === ']') stack.pop()
    else if (c === ',' && top?.keys) top.expectKey = true
  }
  return undefined
}

/** Reads the header (the bytes after the length) of a safetensors file of `size` bytes. */
function parseHeader(file: string, headerBytes: Buffer, size: number): { entries: Map<string, SafetensorsEntry>; metadata: Record<string, string> } {
  const fail = (message: string): never => {
    throw new Error(`${file}: ${message}`)
  }
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes)
  } catch {
    return fail('the safetensors header is not valid UTF-8')
  }
  if (text[0] !== '{') fail("not a safetensors file: the header does not start with '{'")
  // The format pads the header to a multiple of 8 bytes with spaces, and with nothing else.
  let end = text.length
  while (end > 0 && text.charCodeAt(end - 1) === 0x20) end--
  if (text[end - 1] !== '}') {
    fail(`the safetensors header does not end with '}' before its padding (byte ${8 + end - 1} is neither '}' nor a space): the header length is wrong or the header is damaged`)
  }
  let header: unknown
  try {
    header = JSON.parse(text.slice(0, end))
  } catch (err) {
    // Never the parser's message: it quotes the file's bytes.
    const at = /position (\d+)/.exec((err as Error).message)?.[1]
    return fail(`the safetensors header is not valid JSON${at === undefined ? '' : ` (at byte ${8 + Number(at)})`}`)
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('the safetensors header is not a JSON object')
  const twice = duplicateKey(text.slice(0, end))
  if (twice !== undefined) fail(`the safetensors header gives the key '${twice}' twice`)

  const dataStart = 8 + headerBytes.length
  const dataLength = size - dataStart
  let metadata: Record<string, string> = {}
  const tensors: SafetensorsEntry[] = []
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null) continue
      if (typeof raw !== 'object' || Array.isArray(raw)) fail('__metadata__ must be an object of strings')
      for (const [key, value] of Object.entries(raw as object)) {
        if (typeof value !== 'string') fail(`__metadata__.${key} must be a string; got ${typeof value === 'object' ? (value === null ? 'null' : Array.isArray(value) ? 'an array' : 'an object') : typeof value}`)
      }
      metadata = raw as Record<string, string>
      continue
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail(`tensor ${name} must be an object { dtype, shape, data_offsets }`)
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
    const dtype = info.dtype as SafetensorsDType
    if (typeof dtype !== 'string' || !Object.hasOwn(BYTES, dtype)) fail(`tensor ${name} has an unknown dtype ${JSON.stringify(info.dtype)}`)
    const shape = info.shape
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor ${name} has an invalid shape ${JSON.stringify(shape)}`)
    }
    const offsets = info.data_offsets
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`tensor ${name} has invalid data_offsets ${JSON.stringify(offsets)}`)
    }
    const [begin, end] = offsets as number[]
    if (end < begin) fail(`tensor ${name} has data_offsets [${begin}, ${end}] that end before they begin`)
    // In BigInt: a shape's product can pass 2^53 where the byte count cannot be exact.
    const bytes = (shape as number[]).reduce((a, d) => a * BigInt(d), 1n) * BigInt(BYTES[dtype])
    if (bytes !== BigInt(end - begin)) {
      fail(`tensor ${name} (${dtype} [${(shape as number[]).join(', ')}]) needs ${bytes} bytes but its data_offsets span ${end - begin}`)
    }
    if (end > dataLength) {
      fail(`truncated: tensor ${name} ends at byte ${dataStart + end} but the file has ${size} bytes`)
    }
    tensors.push({ name, dtype, shape: shape as number[], begin, end })
  }
  // As the reference: in offset order, the tensors tile the data region exactly.
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end)
  let covered = 0
  for (const t of tensors) {
    if (t.begin !== covered) {
      fail(
        t.begin < covered
          ? `tensor ${t.name}'s data_offsets [${t.begin}, ${t.end}] overlap the tensor before it, which ends at ${covered}`
          : `bytes ${covered} to ${t.begin} of the data lie between tensors, which no tensor covers (tensor ${t.name} starts at ${t.begin})`,
      )
    }
    covered = t.end
  }
  if (covered !== dataLength) {
    fail(`the tensors cover ${covered} bytes of data but the file holds ${dataLength} after its ${headerBytes.length}-byte header: the header length or the file size is wrong`)
  }
  const entries = new Map<string, SafetensorsEntry>()
  for (const t of tensors) entries.set(t.name, { ...t, begin: dataStart + t.begin, end: dataStart + t.end })
  return { entries, metadata }
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exponent = (h >> 10) & 0x1f
  const mantissa = h & 0x3ff
  if (exponent === 0) return sign * 2 ** -14 * (mantissa / 1024)
  if (exponent === 31) return mantissa ? NaN : sign * Infinity
  return sign * 2 ** (exponent - 15) * (1 + mantissa / 1024)
}

export interface TensorToWrite {
  name: string
  tensor: Tensor
}

const DTYPE_NAME: Record<DType, SafetensorsDType> = { f32: 'F32', bf16: 'BF16', i32: 'I32', u8: 'U8' }

/**
 * Writes tensors (host, any dtype) to a safetensors file atomically: a temporary
 * file in the same directory, flushed, then renamed over the target.
 */
export function writeSafetensors(file: string, tensors: readonly TensorToWrite[], metadata: Record<string, string> = { format: 'pt' }): void {
  // What the reader (here and in huggingface/safetensors) refuses is not written: a file that could not be read back.
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) throw new TypeError(`writeSafetensors: metadata must be an object of strings; got ${describe(metadata)}`)
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== 'string') throw new TypeError(`writeSafetensors: metadata.${key} must be a string; got ${describe(value)}`)
  }
  if (!Array.isArray(tensors as unknown)) throw new TypeError(`writeSafetensors: tensors must be an array of { name, tensor }; got ${describe(tensors)}`)
  tensors.forEach((entry, i) => {
    if (entry === null || typeof entry !== 'object' || typeof entry.name !== 'string' || entry.name === '' || !(entry.tensor instanceof Tensor)) {
      throw new TypeError(`writeSafetensors: tensors[${i}] must be { name: a non-empty string, tensor: a Tensor }; got ${describe(entry)}`)
    }
    if (entry.tensor.disposed) throw new Error(`writeSafetensors: tensor ${entry.name} was disposed`)
    if (entry.name === '__metadata__') throw new Error(`writeSafetensors: '__metadata__' is the header's metadata key, not a tensor name`)
  })
  const header: Record<string, unknown> = { __metadata__: metadata }
  let offset = 0
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  for (const { name, tensor } of sorted) {
    if (name in header) throw new Error(`writeSafetensors: tensor ${name} is given twice`)
    const bytes = tensor.numel * BYTES[DTYPE_NAME[tensor.dtype]]
    header[name] = { dtype: DTYPE_NAME[tensor.dtype], shape: tensor.shape, data_offsets: [offset, offset + bytes] }
    offset += bytes
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8')
  const padded = Math.ceil(json.length / 8) * 8 // data starts 8-byte aligned
  json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)])
  const length = Buffer.alloc(8)
  length.writeBigUInt64LE(BigInt(json.length))
  if (isDirectory(file)) throw new Error(`writeSafetensors: cannot write ${file}: it is a directory`)
  // Written beside the file, then renamed over it: a failure leaves the old file, and no partial one.
  const temp = tempPathFor(file)
  try {
    const fd = fs.openSync(temp, 'w')
    try {
      fs.writeSync(fd, length)
      fs.writeSync(fd, json)
      for (const { tensor } of sorted) {
        const host = tensor.to('cpu')
        const data = host.data
        fs.writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
      }
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(temp, file)
  } catch (err) {
    fs.rmSync(temp, { force: true })
    throw new Error(`writeSafetensors: cannot write ${file}: ${(err as Error).message}`, { cause: err })
  }
}
