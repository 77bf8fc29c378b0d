// A seeded random number generator for data order and sampling decisions:
// xoshiro128** (Blackman and Vigna), 128 bits of state, seeded through
// splitmix32. Its state is four numbers that go into a checkpoint, so a
// resumed run continues the exact same stream.

export interface RngState {
  algorithm: 'xoshiro128**'
  /** The four 32-bit words of state. */
  s: [number, number, number, number]
}

export class Rng {
  #s = new Uint32Array(4)

  /** A generator seeded from a 32-bit integer (default 0). */
  constructor(seed = 0) {
    if (!Number.isSafeInteger(seed)) throw new TypeError(`Rng: seed must be an integer; got ${seed}`)
    let x = seed >>> 0
    for (let i = 0; i < 4; i++) {
      // splitmix32: spreads a small seed over all four words (never all zero).
      x = (x + 0x9e3779b9) >>> 0
      let z = x
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      this.#s[i] = z ^ (z >>> 16)
    }
  }

  /** A generator that continues from a saved state(). */
  static fromState(state: RngState): Rng {
    const rng = new Rng()
    rng.restore(state)
    return rng
  }

  /** The next 32-bit unsigned integer. */
  uint32(): number {
    const s = this.#s
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0
    const t = s[1] << 9
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = rotl(s[3], 11)
    return result
  }

  /** A float in [0, 1) with 32 random bits. */
  next(): number {
    return this.uint32() / 4294967296
  }

  /** An integer in [0, n), uniformly (no modulo bias), for 1 <= n <= 2^32. */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 4294967296) throw new RangeError(`Rng.int: n must be an integer in [1, 2^32]; got ${n}`)
    const limit = 4294967296 - (4294967296 % n) // the largest multiple of n that fits
    let x = this.uint32()
    while (x >= limit) x = this.uint32()
    return x % n
  }

  /** Shuffles `array` in place (Fisher–Yates) and returns it. */
  shuffle<T>(array: T[]): T[] {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.int(i + 1)
      const tmp = array[i]
      array[i] = array[j]
      array[j] = tmp
    }
    return array
  }

  /** The state, as plain JSON. */
  state(): RngState {
    return { algorithm: 'xoshiro128**', s: [this.#s[0], this.#s[1], this.#s[2], this.#s[3]] }
  }

  /** Continues from a state() (of this or another generator). */
  restore(state: RngState): void {
    const s = state?.s
    const valid =
      state?.algorithm === 'xoshiro128**' &&
      Array.isArray(s) &&
      s.length === 4 &&
      s.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff) &&
      s.some((w) => w !== 0)
    if (!valid) {
      throw new TypeError(`Rng.restore: expected { algorithm: 'xoshiro128**', s: four 32-bit unsigned integers, not all 0 }; got ${JSON.stringify(state)}`)
    }
    this.#s.set(s)
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k))
}
