// Properties of the safetensors reader: a valid file truncated, with bytes
// flipped, or with its JSON header edited opens with every tensor inside the
// data region and the size its dtype and shape say, or fails with a clear
// Error naming the file; never shifted garbage, an abort or a hang.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import { SafetensorsFile, Tensor, writeSafetensors } from 'rlfarm'
import { resultOrClearError, runProperties } from './harness'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rlfarm-fuzz-st-'))
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
const good = path.join(dir, 'good.safetensors')
writeSafetensors(good, [
  { name: 'a', tensor: Tensor.from(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]) },
  { name: 'b', tensor: Tensor.from(new Int32Array([7, 8]), [2]) },
  { name: 'c', tensor: Tensor.from(new Uint8Array([9, 10, 11]), [3]) },
])
const original = fs.readFileSync(good)
const headerLength = Number(original.readBigUInt64LE(0))
const header = JSON.parse(original.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>
const BYTES: Record<string, number> = { F32: 4, I32: 4, U8: 1, BOOL: 1, BF16: 2, F16: 2, F64: 8, I64: 8 }

let n = 0
function check(bytes: Buffer): void {
  const file = path.join(dir, `case-${n++ % 4}.safetensors`)
  fs.writeFileSync(file, bytes)
  resultOrClearError(() => {
    const f = SafetensorsFile.open(file)
    for (const name of f.entries.keys()) f.tensor(name)
    return f
  }, [file], (f) => {
    const dataStart = 8 + Number(bytes.readBigUInt64LE(0))
    for (const e of f.entries.values()) {
      const count = e.shape.reduce((a, b) => a * b, 1)
      if (e.end - e.begin !== count * (BYTES[e.dtype] ?? NaN)) throw new Error(`${e.name}: ${e.end - e.begin} bytes for ${e.dtype} [${e.shape}]`)
      if (e.begin < dataStart || e.end > bytes.length) throw new Error(`${e.name}: bytes ${e.begin}..${e.end} outside the data region ${dataStart}..${bytes.length}`)
    }
  })
}

function withHeader(h: unknown, lengthDelta = 0, pad = ''): Buffer {
  const json = Buffer.from(JSON.stringify(h) + pad)
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(Math.max(0, json.length + lengthDelta)))
  return Buffer.concat([len, json, original.subarray(8 + headerLength)])
}

const originalValues = (() => {
  const f = SafetensorsFile.open(good)
  return Object.fromEntries([...f.entries.keys()].map((name) => [name, Array.from(f.tensor(name).data as ArrayLike<number>)]))
})()

export const properties = {
  'header length off by a few bytes, padding varied: an error or the same values, never shifted ones': fc.property(fc.integer({ min: -3, max: 3 }), fc.constantFrom('', ' ', '   ', '\t', '\0'), (lengthDelta, pad) => {
    const file = path.join(dir, `case-${n++ % 4}.safetensors`)
    fs.writeFileSync(file, withHeader(header, lengthDelta, pad))
    resultOrClearError(() => SafetensorsFile.open(file), [file], (f) => {
      for (const name of f.entries.keys()) {
        const values = Array.from(f.tensor(name).data as ArrayLike<number>)
        if (JSON.stringify(values) !== JSON.stringify(originalValues[name])) throw new Error(`${name} loaded as ${JSON.stringify(values)}, not ${JSON.stringify(originalValues[name])} (header length ${lengthDelta >= 0 ? '+' : ''}${lengthDelta}, padding ${JSON.stringify(pad)})`)
      }
    })
  }),
  truncations: fc.property(fc.integer({ min: 0, max: original.length - 1 }), (cut) => check(original.subarray(0, cut))),
  'byte flips': fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: original.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), (flips) => {
    const bytes = Buffer.from(original)
    for (const [at, v] of flips) bytes[at] = v
    check(bytes)
  }),
  'header edits': fc.property(
    fc.constantFrom('a', 'b', 'c'),
    fc.constantFrom('dtype', 'shape', 'data_offsets', 'drop', 'dup'),
    fc.oneof(fc.integer({ min: -3, max: 40 }), fc.array(fc.integer({ min: -2, max: 40 }), { maxLength: 3 }), fc.constantFrom('F32', 'I32', 'U8', 'F64', 'BF16', 'F16', 'X', null)),
    fc.integer({ min: -2, max: 2 }),
    fc.constantFrom('', ' ', '  ', '\0', '\n'),
    (name, field, value, lengthDelta, pad) => {
      const h: Record<string, unknown> = JSON.parse(JSON.stringify(header))
      if (field === 'drop') delete h[name]
      else if (field === 'dup') h[`${name}2`] = h[name]
      else (h[name] as Record<string, unknown>)[field] = value
      check(withHeader(h, lengthDelta, pad))
    },
  ),
}

if (require.main === module) void runProperties(properties)
