// The safetensors format (https://huggingface.co/docs/safetensors): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape,
// data_offsets: [begin, end]}, __metadata__?}, then the raw little-endian data.
// Files are memory-mapped; tensors are views of the mapping (copied only when
// a view would be misaligned for its dtype).
import fs from 'node:fs'
import { native } from '../native.js'
import { Tensor, type DType } from '../tensor.js'
import { openForReading, tempPathFor } from '../util/fs.js'

export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL'

const BYTES: Record<SafetensorsDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 }
const AS_DTYPE: Partial<Record<SafetensorsDType, DType>> = { F32: 'f32', BF16: 'bf16', I32: 'i32', U8: 'u8', BOOL: 'u8' }
const MAX_HEADER = 100 * 2 ** 20

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

  /** Reads and checks the header; the data is mapped on first use. */
  static open(file: string): SafetensorsFile {
    // Never a plain open(): a FIFO would block the main thread, and every signal with it.
    const { fd } = openForReading(file)
    try {
      const size = fs.fstatSync(fd).size
      if (size < 8) throw new Error(`${file}: not a safetensors file (${size} bytes, less than the 8-byte header length)`)
      const lengthBytes = Buffer.alloc(8)
      fs.readSync(fd, lengthBytes, 0, 8, 0)
      const headerLength = Number(lengthBytes.readBigUInt64LE(0))
      if (headerLength > MAX_HEADER || 8 + headerLength > size) {
        throw new Error(`${file}: not a safetensors file, or truncated (header length ${headerLength}, file size ${size})`)
      }
      const headerBytes = Buffer.alloc(headerLength)
      fs.readSync(fd, headerBytes, 0, headerLength, 8)
      let header: Record<string, unknown>
      try {
        header = JSON.parse(headerBytes.toString('utf8'))
      } catch (err) {
        throw new Error(`${file}: the safetensors header is not valid JSON (${(err as Error).message})`)
      }
      const dataStart = 8 + headerLength
      const entries = new Map<string, SafetensorsEntry>()
      let metadata: Record<string, string> = {}
      for (const [name, raw] of Object.entries(header)) {
        if (name === '__metadata__') {
          metadata = (raw ?? {}) as Record<string, string>
          continue
        }
        const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
        const dtype = info?.dtype as SafetensorsDType
        if (!(dtype in BYTES)) throw new Error(`${file}: tensor ${name} has an unknown dtype ${JSON.stringify(info?.dtype)}`)
        const shape = info.shape
        if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
          throw new Error(`${file}: tensor ${name} has an invalid shape ${JSON.stringify(shape)}`)
        }
        const offsets = info.data_offsets
        if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0)) {
          throw new Error(`${file}: tensor ${name} has invalid data_offsets ${JSON.stringify(offsets)}`)
        }
        const bytes = shape.reduce((a: number, b: number) => a * b, 1) * BYTES[dtype]
        const [begin, end] = offsets as number[]
        if (end - begin !== bytes) {
          throw new Error(`${file}: tensor ${name} (${dtype} [${shape.join(', ')}]) needs ${bytes} bytes but its data_offsets span ${end - begin}`)
        }
        if (dataStart + end > size) {
          throw new Error(`${file}: truncated: tensor ${name} ends at byte ${dataStart + end} but the file has ${size} bytes`)
        }
        entries.set(name, { name, dtype, shape: shape as number[], begin: dataStart + begin, end: dataStart + end })
      }
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
  const temp = tempPathFor(file)
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
  } catch (err) {
    fs.closeSync(fd)
    fs.rmSync(temp, { force: true })
    throw err
  }
  fs.closeSync(fd)
  fs.renameSync(temp, file)
}
