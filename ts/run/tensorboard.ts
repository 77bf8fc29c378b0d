// TensorBoard event files: `Event` messages (proto/tensorboard.proto) encoded
// with protobufjs, each framed as a TFRecord:
//   uint64 length (LE) · uint32 masked CRC32C of those 8 bytes · data · uint32 masked CRC32C of data
// with mask(crc) = ((crc >>> 15) | (crc << 17)) + 0xa282ead8. The first
// record is the file_version event "brain.Event:2"; the file is named
// events.out.tfevents.<seconds>.<hostname>, as TensorFlow's writers name theirs.
import os from 'node:os'
import path from 'node:path'
import protobuf from 'protobufjs'
import { AppendFile } from '../util/fs.js'
import { checkKeys, describe } from '../util/options.js'

// CRC-32C (Castagnoli), reflected polynomial 0x82f63b78, one table lookup per byte.
const CRC_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    table[n] = c >>> 0
  }
  return table
})()

/** CRC-32C of `bytes` (crc32c("123456789") = 0xe3069283). */
export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8)
  return (crc ^ 0xffffffff) >>> 0
}

/** The TFRecord checksum: a rotated CRC-32C plus a constant, so CRCs of CRCs do not look like data. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const crc = crc32c(bytes)
  return (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0
}

/** One TFRecord around `data`. */
function tfRecord(data: Uint8Array): Buffer {
  const record = Buffer.alloc(8 + 4 + data.length + 4)
  record.writeBigUInt64LE(BigInt(data.length), 0)
  record.writeUInt32LE(maskedCrc32c(record.subarray(0, 8)), 8)
  record.set(data, 12)
  record.writeUInt32LE(maskedCrc32c(data), 12 + data.length)
  return record
}

let eventType: protobuf.Type | undefined

/** The tensorflow.Event message type, loaded from the shipped proto on first use. */
function tensorBoardEventType(): protobuf.Type {
  eventType ??= protobuf.loadSync(path.resolve(__dirname, '../../proto/tensorboard.proto')).lookupType('tensorflow.Event')
  return eventType
}

export interface TensorBoardWriterOptions {
  /** Clock in ms since the epoch, for wall_time and the file name (tests). Default Date.now. */
  now?: () => number
  /** Write buffered events when a new one comes this long (ms) after the last write. Default 2000. */
  flushMs?: number
}

/** Writes scalar summaries to a new events.out.tfevents.* file in `dir`. */
export class TensorBoardWriter {
  /** The event file. */
  readonly path: string
  readonly #file: AppendFile
  readonly #now: () => number

  constructor(dir: string, options: TensorBoardWriterOptions = {}) {
    checkKeys('TensorBoardWriter', options, ['now', 'flushMs'])
    this.#now = options.now ?? Date.now
    const base = path.join(dir, `events.out.tfevents.${Math.floor(this.#now() / 1000)}.${os.hostname()}`)
    // A resumed run started within the same second gets a numbered file rather than reusing one.
    let file: AppendFile | undefined
    for (let n = 0; !file; n++) {
      try {
        file = new AppendFile(n === 0 ? base : `${base}.${n}`, { flag: 'wx', flushMs: options.flushMs, now: this.#now })
      } catch (err) {
        if (((err as Error).cause as NodeJS.ErrnoException)?.code !== 'EEXIST' || n >= 100) throw err
      }
    }
    this.#file = file
    this.path = file.path
    this.#write({ fileVersion: 'brain.Event:2' }, 0)
    this.flush()
  }

  /** Adds one scalar at `step` (buffered until flush(), close() or the flush interval). */
  scalar(tag: string, value: number, step: number): void {
    this.scalars({ [tag]: value }, step)
  }

  /** Adds several scalars at `step` as one event. */
  scalars(values: Readonly<Record<string, number>>, step: number): void {
    if (!Number.isSafeInteger(step) || step < 0) throw new TypeError(`TensorBoardWriter: step must be a non-negative integer; got ${describe(step)}`)
    const value = Object.entries(values).map(([tag, v]) => {
      if (typeof v !== 'number') throw new TypeError(`TensorBoardWriter: the value of '${tag}' must be a number; got ${describe(v)}`)
      return { tag, simpleValue: v }
    })
    if (value.length > 0) this.#write({ summary: { value } }, step)
  }

  #write(what: Record<string, unknown>, step: number): void {
    const type = tensorBoardEventType()
    const event = type.fromObject({ wallTime: this.#now() / 1000, step, ...what })
    this.#file.append(tfRecord(type.encode(event).finish()))
  }

  flush(): void {
    this.#file.flush()
  }

  close(): void {
    this.#file.close()
  }
}
