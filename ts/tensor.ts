// Tensor: a dtype, a shape and a device over storage owned by the native addon.
// Host tensors show their memory to JavaScript as zero-copy typed arrays, and
// Tensor.from wraps existing memory (an ArrayBuffer or a SharedArrayBuffer)
// without copying, so worker threads can share it.
import { inspect } from 'node:util'
import { native, type DType, type NativeTensorHandle, type NativeTensorMeta, type DeviceInfo, type BackendInfo } from './native.js'
import { checkKeys, describe } from './util/options.js'

export type { DType, DeviceInfo, BackendInfo }
export type Device = 'cpu' | 'cuda' | `cuda:${number}`

/** The typed array that holds each dtype's elements (bf16 as raw 16-bit patterns). */
export interface TypedArrayOf {
  f32: Float32Array
  bf16: Uint16Array
  i32: Int32Array
  u8: Uint8Array
}
export type TensorData = Float32Array | Int32Array | Uint8Array | Uint16Array

export interface TensorOptions {
  device?: Device
  dtype?: DType
}

const DTYPES: readonly DType[] = ['f32', 'bf16', 'i32', 'u8']

function arrayDType(data: ArrayBufferView): DType | undefined {
  if (data instanceof Float32Array) return 'f32'
  if (data instanceof Int32Array) return 'i32'
  if (data instanceof Uint8Array) return 'u8'
  if (data instanceof Uint16Array) return 'bf16'
  return undefined
}

function newArray(dtype: DType, length: number): TensorData {
  switch (dtype) {
    case 'f32': return new Float32Array(length)
    case 'i32': return new Int32Array(length)
    case 'u8': return new Uint8Array(length)
    case 'bf16': return new Uint16Array(length)
  }
}

const F32_MAX = 3.4028234663852886e38
const BF16_MAX = 3.3895313892515355e38
const INT_RANGE: Partial<Record<DType, [number, number]>> = { i32: [-(2 ** 31), 2 ** 31 - 1], u8: [0, 255] }

/**
 * Throws unless `value` is a number that `dtype` holds: for i32 and u8 an
 * integer in range (1.7 is refused, not truncated); for f32 and bf16 any number
 * whose magnitude is not beyond the type's largest finite value (NaN and the
 * infinities are kept). `at` names the value ('data[2]').
 */
function checkFits(where: string, at: string, value: unknown, dtype: DType): number {
  if (typeof value !== 'number') throw new TypeError(`${where}: ${at} is not a number (${describe(value)})`)
  const range = INT_RANGE[dtype]
  if (range) {
    if (!Number.isInteger(value) || value < range[0] || value > range[1]) {
      throw new RangeError(`${where}: ${at} = ${value} does not fit ${dtype}, which holds integers in [${range[0]}, ${range[1]}]`)
    }
  } else if (Number.isFinite(value) && Math.abs(value) > (dtype === 'bf16' ? BF16_MAX : F32_MAX)) {
    throw new RangeError(`${where}: ${at} = ${value} does not fit ${dtype} (its largest magnitude is ${dtype === 'bf16' ? BF16_MAX : F32_MAX})`)
  }
  return value
}

function floatToBf16Bits(x: number): number {
  const f = new Float32Array([x])
  const bits = new Uint32Array(f.buffer)[0]
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff
}

function bf16BitsToFloat(h: number): number {
  const u = new Uint32Array([h << 16])
  return new Float32Array(u.buffer)[0]
}

export class Tensor {
  /** @internal The native tensor. */
  readonly native: NativeTensorHandle
  #view: TensorData | undefined

  /** @internal Use Tensor.from, Tensor.zeros or an op. */
  constructor(handle: NativeTensorHandle) {
    if (!(handle instanceof native.NativeTensor)) {
      throw new TypeError('Tensor: use Tensor.from(), Tensor.zeros() or Tensor.empty() to make a tensor')
    }
    this.native = handle
  }

  /**
   * A tensor over `data`. A typed array is wrapped without copying (Float32Array
   * -> f32, Int32Array -> i32, Uint8Array -> u8, Uint16Array -> bf16 bits), so
   * writes through either side are seen by the other; a plain array of numbers
   * is copied into new storage of `dtype` (default f32), each value of which
   * must fit it: i32 and u8 take integers in their range only (1.7, 300 or -1
   * for u8 are errors naming the index, never truncated or wrapped); f32 and
   * bf16 take any number up to their largest magnitude (NaN and infinities
   * included). With a CUDA device the data is copied there.
   */
  static from(data: TensorData | readonly number[], shape?: readonly number[], options: TensorOptions = {}): Tensor {
    checkKeys('Tensor.from', options, ['device', 'dtype'])
    let handle: NativeTensorHandle
    if (Array.isArray(data)) {
      const dtype = options.dtype ?? 'f32'
      if (!DTYPES.includes(dtype)) throw new TypeError(`Tensor.from: dtype must be one of ${DTYPES.join(', ')}; got ${describe(dtype)}`)
      const array = newArray(dtype, data.length)
      for (let i = 0; i < data.length; i++) {
        const v = checkFits('Tensor.from', `data[${i}]`, data[i], dtype)
        array[i] = dtype === 'bf16' ? floatToBf16Bits(v) : v
      }
      handle = native.NativeTensor.fromTypedArray(array, shapeArg('Tensor.from', shape ?? [data.length]), dtype)
    } else if (ArrayBuffer.isView(data)) {
      const dtype = arrayDType(data)
      if (dtype === undefined) {
        throw new TypeError(
          `Tensor.from: data is a ${data.constructor.name}; expected Float32Array, Int32Array, Uint8Array or Uint16Array (bf16), or an array of numbers`,
        )
      }
      handle = native.NativeTensor.fromTypedArray(data, shapeArg('Tensor.from', shape ?? [(data as TensorData).length]), options.dtype)
    } else {
      throw new TypeError(`Tensor.from: data must be a typed array or an array of numbers; got ${describe(data)}`)
    }
    const t = new Tensor(handle)
    return options.device && options.device !== 'cpu' ? t.to(options.device) : t
  }

  /** A tensor of zeros. */
  static zeros(shape: readonly number[], options: TensorOptions = {}): Tensor {
    checkKeys('Tensor.zeros', options, ['device', 'dtype'])
    return new Tensor(native.NativeTensor.zeros(shapeArg('Tensor.zeros', shape), options.dtype ?? 'f32', options.device ?? 'cpu'))
  }

  /** A tensor whose contents are whatever the memory held: write before reading. */
  static empty(shape: readonly number[], options: TensorOptions = {}): Tensor {
    checkKeys('Tensor.empty', options, ['device', 'dtype'])
    return new Tensor(native.NativeTensor.empty(shapeArg('Tensor.empty', shape), options.dtype ?? 'f32', options.device ?? 'cpu'))
  }

  /** A tensor filled with `value`. */
  static full(shape: readonly number[], value: number, options: TensorOptions = {}): Tensor {
    checkKeys('Tensor.full', options, ['device', 'dtype'])
    const dtype = options.dtype ?? 'f32'
    if (DTYPES.includes(dtype)) checkFits('Tensor.full', 'value', value, dtype)
    const host = new Tensor(native.NativeTensor.empty(shapeArg('Tensor.full', shape), dtype, 'cpu'))
    host.data.fill(dtype === 'bf16' ? floatToBf16Bits(value) : value)
    return options.device && options.device !== 'cpu' ? host.to(options.device) : host
  }

  // The handle's shape, dtype and device never change (reshape, cast and to
  // make new handles): the addon sets them on the handle once, as plain
  // properties, so reading them does not cross into the addon.
  #meta(): NativeTensorMeta {
    const meta = this.native.meta
    if (meta.disposed) throw new Error('this tensor was disposed')
    return meta
  }

  get shape(): number[] {
    return [...this.#meta().shape] // a copy: the caller may change it
  }

  get dtype(): DType {
    return this.#meta().dtype
  }

  /** 'cpu' or 'cuda:N'. */
  get device(): Device {
    return this.#meta().device as Device
  }

  get numel(): number {
    return this.#meta().shape.reduce((a, b) => a * b, 1)
  }

  /**
   * The elements as a typed array over the tensor's own memory (no copy): writes
   * go to the tensor. The view keeps the memory alive after the tensor is gone.
   * Host tensors only.
   */
  get data(): TensorData {
    if (this.#view === undefined || this.native.meta.disposed) {
      const whole = this.native.storageView()
      const start = this.native.meta.byteOffset / whole.BYTES_PER_ELEMENT
      const n = this.numel
      this.#view = start === 0 && whole.length === n ? whole : whole.subarray(start, start + n)
    }
    return this.#view
  }

  /** This tensor on `device` (itself when it is there already). */
  to(device: Device): Tensor {
    const target = device === 'cuda' ? 'cuda:0' : device
    if (target === this.device) return this
    return new Tensor(this.native.to(device))
  }

  clone(): Tensor {
    return new Tensor(this.native.clone())
  }

  /** The same memory under another shape; one dimension may be -1. */
  reshape(shape: readonly number[]): Tensor {
    return new Tensor(this.native.reshape(shapeArg('Tensor.reshape', shape)))
  }

  /**
   * Rows start..end-1 of a [B, ...] tensor, as a view of its memory (no copy,
   * as TypedArray.subarray): e.g. the chosen and the rejected halves of a pair
   * batch's per-row values. `end` defaults to B.
   */
  rows(start: number, end: number = this.shape[0]): Tensor {
    return new Tensor(this.native.rows(start, end))
  }

  /** A copy converted to `dtype` (itself when it has that dtype). */
  cast(dtype: DType): Tensor {
    if (dtype === this.dtype) return this
    return new Tensor(this.native.cast(dtype))
  }

  /**
   * Lets go of the tensor's memory now rather than when it is garbage
   * collected (the collector does not see native memory pressure at once).
   * Typed arrays already taken from `data` stay valid; any other use of the
   * tensor afterwards throws.
   */
  dispose(): void {
    this.#view = undefined
    this.native.dispose()
  }

  get disposed(): boolean {
    return this.native.meta.disposed
  }

  /** Whether both tensors are views of the same memory. */
  sharesMemoryWith(other: Tensor): boolean {
    return this.native.sharesStorage(other.native)
  }

  /** The elements as plain numbers (bf16 decoded), copied to the host if needed. */
  toArray(): number[] {
    const host = this.to('cpu')
    const data = host.data
    if (host.dtype === 'bf16') return Array.from(data, bf16BitsToFloat)
    return Array.from(data)
  }

  /** The value of a one-element tensor. */
  item(): number {
    if (this.numel !== 1) throw new RangeError(`Tensor.item: the tensor has ${this.numel} elements, not 1 (shape [${this.shape.join(', ')}])`)
    return this.toArray()[0]
  }

  toString(): string {
    return `Tensor(${this.dtype} [${this.shape.join(', ')}] on ${this.device})`
  }

  [inspect.custom](): string {
    if (this.device !== 'cpu' || this.numel > 16) return this.toString()
    return `Tensor(${this.dtype} [${this.shape.join(', ')}] on cpu: ${this.toArray().join(', ')})`
  }
}

/** The CPU and each CUDA device present. */
export function devices(): DeviceInfo[] {
  return native.devices()
}

/** How this build runs: CPU threads and vector level, whether CUDA was compiled and found. */
export function backend(): BackendInfo {
  return native.backend()
}

/**
 * Forces the CPU kernels' vector instruction set ('generic', 'avx2', 'avx512');
 * RLFARM_SIMD does the same at start-up. For comparing or ruling one out.
 */
export function setSimdLevel(level: 'generic' | 'avx2' | 'avx512'): void {
  native.setSimdLevel(level)
}

/**
 * Picks the CPU matrix multiply: rlfarm's own kernels ('builtin', the default)
 * or OpenBLAS's cblas_sgemm ('openblas', loaded from libopenblas.so.0 on first
 * use; an error says why when it cannot be). RLFARM_GEMM does the same at
 * start-up. backend().gemmAvailable lists what this machine has.
 */
export function setGemmBackend(name: 'builtin' | 'openblas'): void {
  native.setGemmBackend(name)
}

/**
 * Frees the host memory that rlfarm keeps for reuse after tensors are dropped
 * (bounded by RLFARM_HOST_CACHE_MB, default 2048).
 */
export function emptyCache(): void {
  native.emptyCache()
}

/** Waits for all queued work on a device (a no-op for the CPU). */
export function synchronize(device: Device = 'cuda:0'): void {
  native.synchronize(device)
}

/** A shape argument as a fresh array; its entries are checked natively (each a non-negative integer). */
function shapeArg(where: string, shape: unknown): number[] {
  if (!Array.isArray(shape)) throw new TypeError(`${where}: shape must be an array of dimensions; got ${describe(shape)}`)
  return [...(shape as number[])]
}
