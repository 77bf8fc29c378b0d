// Shared test helpers: seeded random inputs, the devices to run on, and
// element-wise comparison against float64 references.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { devices, Tensor } from 'rlfarm'

import type { Test } from 'tap'

/** Seeded generator (mulberry32), so a failure can be replayed. */
export class Rng {
  #state: number
  constructor(seed: number) {
    this.#state = seed >>> 0
  }
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0
    let t = this.#state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next()
  }
  normal(): number {
    const u = Math.max(this.next(), 1e-12)
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next())
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo))
  }
  normals(n: number, scale = 1): Float32Array {
    const out = new Float32Array(n)
    for (let i = 0; i < n; i++) out[i] = this.normal() * scale
    return out
  }
  ints(n: number, lo: number, hi: number): Int32Array {
    const out = new Int32Array(n)
    for (let i = 0; i < n; i++) out[i] = this.int(lo, hi)
    return out
  }
}

/** A fresh seed per run (printed by the caller on failure) unless RLFARM_TEST_SEED is set. */
export function freshSeed(): number {
  const fixed = process.env.RLFARM_TEST_SEED
  return fixed ? Number(fixed) : Math.floor(Math.random() * 2 ** 31)
}

export const cudaAvailable = devices().some((d) => d.kind === 'cuda')

/**
 * Runs `body` as a subtest on the CPU and, when one is present, on CUDA; where
 * there is no CUDA device the CUDA subtest is reported as skipped.
 */
export async function onEachDevice(t: Test, name: string, body: (t: Test, device: 'cpu' | 'cuda:0') => void | Promise<void>) {
  // Async callbacks: tap ends a subtest when its promise settles.
  await t.test(`${name} [cpu]`, async (tt) => body(tt, 'cpu'))
  if (cudaAvailable) {
    await t.test(`${name} [cuda:0]`, async (tt) => body(tt, 'cuda:0'))
  } else {
    await t.test(`${name} [cuda:0]`, { skip: 'no CUDA device on this machine' }, async () => {})
  }
}

/** The tensor's values as float64 numbers on the host. */
export function values(x: Tensor): number[] {
  return x.toArray()
}

export interface CloseOptions {
  /** Absolute tolerance, one number or one per element. */
  atol?: number | ((i: number) => number)
  rtol?: number
}

/**
 * Asserts |actual - expected| <= atol + rtol |expected| everywhere, with NaN
 * only where the reference has NaN and infinities equal. Reports the worst element.
 */
export function assertClose(t: Test, actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, o: CloseOptions = {}): void {
  const rtol = o.rtol ?? 1e-5
  const atolAt = typeof o.atol === 'function' ? o.atol : () => (o.atol as number | undefined) ?? 1e-6
  if (actual.length !== expected.length) {
    t.fail(`${what}: length ${actual.length}, expected ${expected.length}`)
    return
  }
  let worst = -1
  let worstExcess = 0
  let bad = 0
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]
    const e = expected[i]
    let ok: boolean
    if (Number.isNaN(e) || Number.isNaN(a)) ok = Number.isNaN(e) && Number.isNaN(a)
    else if (!Number.isFinite(e) || !Number.isFinite(a)) ok = a === e
    else {
      const excess = Math.abs(a - e) - (atolAt(i) + rtol * Math.abs(e))
      ok = excess <= 0
      if (!ok && excess > worstExcess) {
        worstExcess = excess
        worst = i
      }
    }
    if (!ok) {
      bad++
      if (worst < 0) worst = i
    }
  }
  if (bad === 0) t.pass(`${what}: ${expected.length} values match`)
  else t.fail(`${what}: ${bad} of ${expected.length} differ; worst at [${worst}]: got ${actual[worst]}, expected ${expected[worst]}`)
}

/** Asserts that fn throws an Error whose message contains every fragment. */
export function assertThrowsWith(t: Test, fn: () => unknown, fragments: string[], what: string): void {
  try {
    fn()
    t.fail(`${what}: did not throw`)
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err)
    const missing = fragments.filter((f) => !message.includes(f))
    if (missing.length === 0) t.pass(`${what}: ${message}`)
    else t.fail(`${what}: message "${message}" lacks ${missing.map((m) => `"${m}"`).join(', ')}`)
  }
}

/** Asserts that fn's promise rejects with an Error whose message contains every fragment. */
export async function assertRejectsWith(t: Test, fn: () => Promise<unknown>, fragments: string[], what: string): Promise<void> {
  try {
    await fn()
    t.fail(`${what}: did not reject`)
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err)
    const missing = fragments.filter((f) => !message.includes(f))
    if (missing.length === 0) t.pass(`${what}: ${message}`)
    else t.fail(`${what}: message "${message}" lacks ${missing.map((m) => `"${m}"`).join(', ')}`)
  }
}

export function f32(data: ArrayLike<number>, shape: number[], device: string = 'cpu'): Tensor {
  return Tensor.from(Float32Array.from(data), shape, { device: device as 'cpu' })
}

export function i32(data: ArrayLike<number>, shape: number[], device: string = 'cpu'): Tensor {
  return Tensor.from(Int32Array.from(data), shape, { device: device as 'cpu' })
}

export function u8(data: ArrayLike<number>, shape: number[], device: string = 'cpu'): Tensor {
  return Tensor.from(Uint8Array.from(data), shape, { device: device as 'cpu' })
}

/** A [rows, steps] 0/1 mask with random right padding, some empty rows and a few holes. */
export function randomMask(rng: Rng, rows: number, steps: number): Uint8Array {
  const mask = new Uint8Array(rows * steps)
  for (let r = 0; r < rows; r++) {
    const kind = rng.next()
    if (kind < 0.15) continue // empty row
    const start = kind < 0.3 ? rng.int(0, Math.max(1, steps >> 1)) : 0 // some left padding
    const end = rng.int(start + 1, steps + 1)
    for (let t = start; t < end; t++) mask[r * steps + t] = rng.next() < 0.05 ? 0 : 1
  }
  return mask
}

/** A fresh directory under the OS temp dir (rlfarm-<prefix>-*), removed when test `t` ends. */
export function tempDir(t: { teardown(fn: () => void): void }, prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `rlfarm-${prefix}-`))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}
