// The CPU matrix multiply (cpu::sgemm, through ops.matmul) against a float64
// reference, on every CPU vector level and every available gemm backend.
//
// Tolerance per element of C, with u = 2^-23:
//   |err| <= 1e-5 sqrt(K) max|a| max|b| |alpha| + 2u |beta c|
// Inputs are zero-mean normals, so a float32 sum of K products drifts like
// u K max|a| max|b| / sqrt(2) at worst in practice, 50x below the bound at
// K = 3000; while a single wrong index changes an element by about
// max|a| max|b| / 16, far above it for every K tested here. Elements of C
// outside the product's block must come back exactly as they went in.
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import path from 'node:path'
import t, { type Test } from 'tap'
import { backend, ops, setGemmBackend, setSimdLevel, Tensor } from 'rlfarm'
import { assertClose, assertThrowsWith, f32, freshSeed, Rng } from './helpers/common'

const U = 2 ** -23
const seed = freshSeed()
t.comment(`seed ${seed} (set RLFARM_TEST_SEED to replay)`)

type Backend = 'builtin' | 'openblas'
type Level = 'generic' | 'avx2' | 'avx512'

/** A product as sgemm sees it: stored matrices with their row strides. */
interface Product {
  name: string
  transA: boolean
  transB: boolean
  M: number
  N: number
  K: number
  alpha: number
  beta: number
  /** Stored matrices: a is aRows x lda, b is bRows x ldb, c0 is cRows x ldc (C before the call). */
  a: Float32Array
  aRows: number
  lda: number
  b: Float32Array
  bRows: number
  ldb: number
  c0: Float32Array
  cRows: number
  ldc: number
  /** Whether the stored matrices are bigger than the product (then m, n, k are passed). */
  padded: boolean
}

interface Shape {
  M: number
  N: number
  K: number
}

/**
 * Random inputs for one product. With `pad`, every stored matrix gets extra
 * columns (a leading dimension longer than the row) and extra rows, so the
 * product works on submatrices. beta = 0 poisons C with NaN.
 */
function makeProduct(rng: Rng, s: Shape, transA: boolean, transB: boolean, alpha: number, beta: number, pad: boolean): Product {
  const extra = () => (pad ? rng.int(1, 4) : 0)
  const aRows = (transA ? s.K : s.M) + extra()
  const lda = (transA ? s.M : s.K) + extra()
  const bRows = (transB ? s.N : s.K) + extra()
  const ldb = (transB ? s.K : s.N) + extra()
  const cRows = s.M + extra()
  const ldc = s.N + extra()
  const c0 = beta === 0 ? new Float32Array(cRows * ldc).fill(NaN) : rng.normals(cRows * ldc)
  const name = `${s.M}x${s.N}x${s.K}${transA ? ' A^T' : ''}${transB ? ' B^T' : ''} alpha=${alpha} beta=${beta}${pad ? ' (submatrices)' : ''}`
  return {
    name, transA, transB, ...s, alpha, beta,
    a: rng.normals(aRows * lda), aRows, lda,
    b: rng.normals(bRows * ldb), bRows, ldb,
    c0, cRows, ldc, padded: pad,
  }
}

function maxAbs(x: Float32Array): number {
  let m = 0
  for (const v of x) if (Number.isFinite(v)) m = Math.max(m, Math.abs(v))
  return m
}

/** The expected stored C in float64, and the tolerance of each element. */
function reference(p: Product): { expected: Float64Array; tolerance: Float64Array } {
  const expected = Float64Array.from(p.c0)
  const tolerance = new Float64Array(p.c0.length)
  const productTol = 1e-5 * Math.sqrt(p.K) * maxAbs(p.a) * maxAbs(p.b) * Math.abs(p.alpha)
  for (let i = 0; i < p.M; i++) {
    for (let j = 0; j < p.N; j++) {
      let sum = 0
      for (let k = 0; k < p.K; k++) {
        const a = p.transA ? p.a[k * p.lda + i] : p.a[i * p.lda + k]
        const b = p.transB ? p.b[j * p.ldb + k] : p.b[k * p.ldb + j]
        sum += a * b
      }
      const at = i * p.ldc + j
      const scaled = p.beta === 0 ? 0 : p.beta * p.c0[at]
      // alpha = 0 means A and B are not read, as in BLAS.
      expected[at] = (p.alpha === 0 ? 0 : p.alpha * sum) + scaled
      tolerance[at] = productTol + 2 * U * Math.abs(scaled)
    }
  }
  return { expected, tolerance }
}

/** Runs the product with ops.matmul on fresh copies of the stored matrices; returns the stored C. */
function run(p: Product): Float32Array {
  const c = f32(p.c0, [p.cRows, p.ldc])
  const sizes = p.padded ? { m: p.M, n: p.N, k: p.K } : {}
  const out = ops.matmul(f32(p.a, [p.aRows, p.lda]), f32(p.b, [p.bRows, p.ldb]), {
    transA: p.transA, transB: p.transB, alpha: p.alpha, beta: p.beta, c, ...sizes,
  })
  return out.data as Float32Array
}

function check(t: Test, p: Product, ref: ReturnType<typeof reference>, what: string): void {
  assertClose(t, run(p), ref.expected, `${p.name} ${what}`, { atol: (i) => ref.tolerance[i], rtol: 0 })
}

const backends = backend().gemmAvailable as Backend[]
const levels = backend().simdSupported as Level[]

/** Runs body once per gemm backend and CPU vector level, restoring both afterwards. */
async function onEachConfiguration(t: Test, body: (t: Test, config: string) => void): Promise<void> {
  const original = { gemm: backend().gemm as Backend, simd: backend().simd as Level }
  try {
    for (const gemm of ['builtin', 'openblas'] as const) {
      if (!backends.includes(gemm)) {
        await t.test(`gemm=${gemm}`, { skip: 'libopenblas.so.0 cannot be loaded here' }, async () => {})
        continue
      }
      setGemmBackend(gemm)
      // OpenBLAS ignores rlfarm's vector level: one pass is enough.
      for (const simd of gemm === 'builtin' ? levels : [original.simd]) {
        setSimdLevel(simd)
        await t.test(`gemm=${gemm} simd=${simd}`, async (tt) => body(tt, `[${gemm} ${simd}]`))
      }
    }
  } finally {
    setGemmBackend(original.gemm)
    setSimdLevel(original.simd)
  }
}

// Shapes that are multiples of no tile (AVX-512 8x48, AVX2 6x16, generic 4x4)
// and cross every cache block: several depth blocks (K > 256 and K > 512),
// several column blocks (N > 384) and several row blocks (M > 1536); N = 97
// and 640 end in a sliver of one AVX-512 vector after whole 48-wide panels,
// computed by a one-vector tile. The last is big enough to be shared out
// over the pool: with A as stored it shares packed B in two column blocks and
// claims rows of C; with A transposed it shares packed A in two row blocks
// and claims columns. The very wide one shares A and claims chunks of
// columns wider than L2 holds packed, which go through in blocks.
const SHAPES: Shape[] = [
  { M: 1, N: 1, K: 1 },
  { M: 7, N: 13, K: 5 },
  { M: 33, N: 65, K: 17 },
  { M: 130, N: 97, K: 258 },
  { M: 12, N: 32, K: 16 },
  { M: 25, N: 70, K: 600 },
  { M: 61, N: 40, K: 1100 },
  { M: 5, N: 1000, K: 3 },
  { M: 1600, N: 33, K: 9 },
  { M: 129, N: 128, K: 64 },
  { M: 600, N: 640, K: 1100 },
  { M: 16, N: 20100, K: 600 },
]
const SCALES: Array<[number, number]> = [[1, 0], [1, 1], [-0.5, -0.75], [2.5, 0], [0.75, 1]]

t.test('matches the float64 reference: every transpose, shape, scale and submatrix', async (t) => {
  const rng = new Rng(seed)
  const cases: Array<{ p: Product; ref: ReturnType<typeof reference> }> = []
  let n = 0
  for (const shape of SHAPES) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const [alpha, beta] = SCALES[n % SCALES.length]
        const p = makeProduct(rng, shape, transA, transB, alpha, beta, n % 3 === 1)
        cases.push({ p, ref: reference(p) })
        n++
      }
    }
  }
  await onEachConfiguration(t, (tt, config) => {
    for (const { p, ref } of cases) check(tt, p, ref, config)
  })
})

t.test('empty and trivial products', async (t) => {
  const rng = new Rng(seed + 1)
  const cases: Array<{ p: Product; ref: ReturnType<typeof reference> }> = []
  for (const [alpha, beta] of [[1, 0], [1, 0.5], [0, -2]]) {
    for (const transA of [false, true]) {
      const k0 = makeProduct(rng, { M: 9, N: 21, K: 0 }, transA, !transA, alpha, beta, false)
      k0.name = `K = 0 ${k0.name}`
      cases.push({ p: k0, ref: reference(k0) })
    }
  }
  // alpha = 0: C = beta * C without reading A or B, as in BLAS (NaN in A is ignored).
  const alphaZero = makeProduct(rng, { M: 17, N: 40, K: 30 }, false, true, 0, 0.5, true)
  alphaZero.a.fill(NaN)
  alphaZero.name = `NaN A ${alphaZero.name}`
  cases.push({ p: alphaZero, ref: reference(alphaZero) })
  await onEachConfiguration(t, (tt, config) => {
    for (const { p, ref } of cases) check(tt, p, ref, config)
    for (const [M, N, K] of [[0, 5, 3], [4, 0, 3], [0, 0, 0]]) {
      const out = ops.matmul(Tensor.zeros([M, K]), Tensor.zeros([K, N]))
      tt.same(out.shape, [M, N], `${M}x${N}x${K} gives an empty [${M}, ${N}] ${config}`)
    }
    const untouched = f32([NaN, 1, 2], [1, 3])
    ops.matmul(Tensor.zeros([0, 3]), Tensor.zeros([3, 3]), { c: untouched, beta: 0, m: 0 })
    tt.ok(Number.isNaN(untouched.data[0]) && untouched.data[2] === 2, `M = 0 leaves c alone ${config}`)
  })
})

/** One stored [batch, rows, cols] tensor and its matrices as 2-D tensors. */
function stack(rng: Rng, batch: number, rows: number, cols: number): { all: Tensor; each: Tensor[] } {
  const data = rng.normals(batch * rows * cols)
  const each = Array.from({ length: batch }, (_, i) => f32(data.subarray(i * rows * cols, (i + 1) * rows * cols), [rows, cols]))
  return { all: f32(data, [batch, rows, cols]), each }
}

t.test('batched products equal a loop of single products', async (t) => {
  const rng = new Rng(seed + 2)
  // Attention-like (one product per head) and a batch smaller than the pool
  // with products big enough to be split over threads.
  const shapes: Array<Shape & { batch: number }> = [
    { batch: 8, M: 128, N: 128, K: 64 },
    { batch: 5, M: 33, N: 20, K: 17 },
    { batch: 1, M: 200, N: 190, K: 210 },
  ]
  await onEachConfiguration(t, (tt, config) => {
    for (const s of shapes) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const a = stack(rng, s.batch, transA ? s.K : s.M, transA ? s.M : s.K)
          const b = stack(rng, s.batch, transB ? s.N : s.K, transB ? s.K : s.N)
          const c = stack(rng, s.batch, s.M, s.N)
          const what = `batch ${s.batch} of ${s.M}x${s.N}x${s.K}${transA ? ' A^T' : ''}${transB ? ' B^T' : ''} ${config}`
          const loop = c.each.map((ci, i) => Array.from(ops.matmul(a.each[i], b.each[i], { transA, transB, alpha: 0.5, beta: 1.5, c: ci.clone() }).data))
          const batched = ops.matmul(a.all, b.all, { transA, transB, alpha: 0.5, beta: 1.5, c: c.all })
          tt.same(batched.shape, [s.batch, s.M, s.N], `${what}: shape`)
          // The builtin kernel sums each element the same way however C is
          // split over threads, so the two agree bit for bit; OpenBLAS picks
          // kernels by block shape, so there they agree to rounding.
          const bound = 1e-5 * Math.sqrt(s.K) * maxAbs(a.all.data as Float32Array) * maxAbs(b.all.data as Float32Array)
          const tolerance = config.includes('builtin') ? 0 : bound
          assertClose(tt, batched.data as Float32Array, loop.flat(), `${what}: batched vs loop`, { atol: tolerance, rtol: 0 })
          // A 2-D operand is shared by every product of the batch.
          const shared = ops.matmul(a.all, b.each[0], { transA, transB })
          const first = ops.matmul(a.each[s.batch - 1], b.each[0], { transA, transB })
          const last = (shared.data as Float32Array).subarray((s.batch - 1) * s.M * s.N)
          assertClose(tt, last, first.data as Float32Array, `${what}: shared b`, { atol: tolerance, rtol: 0 })
        }
      }
    }
  })
})

t.test('a bias equals the product followed by a separate add, bit for bit', async (t) => {
  // The builtin kernel adds the bias in the tile's epilogue, after the last
  // depth block (K = 600 and 1100 have several); the result must round as
  // sgemm then y[i, j] += bias[j] would, which the model's Linear layers rely on.
  const rng = new Rng(seed + 3)
  const cases: Array<{ p: Product; bias: Float32Array }> = []
  let n = 0
  for (const shape of [{ M: 33, N: 65, K: 17 }, { M: 25, N: 70, K: 600 }, { M: 61, N: 40, K: 1100 }, { M: 130, N: 97, K: 258 }, { M: 9, N: 21, K: 0 }, { M: 200, N: 500, K: 600 }]) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const [alpha, beta] = SCALES[n % SCALES.length]
        cases.push({ p: makeProduct(rng, shape, transA, transB, alpha, beta, n % 3 === 1), bias: Float32Array.from(rng.normals(shape.N)) })
        n++
      }
    }
  }
  await onEachConfiguration(t, (tt, config) => {
    let mismatches = 0
    let first = ''
    for (const { p, bias } of cases) {
      const plain = run(p)
      const c = f32(p.c0, [p.cRows, p.ldc])
      const sizes = p.padded ? { m: p.M, n: p.N, k: p.K } : {}
      const fused = ops.matmul(f32(p.a, [p.aRows, p.lda]), f32(p.b, [p.bRows, p.ldb]), {
        transA: p.transA, transB: p.transB, alpha: p.alpha, beta: p.beta, c, bias: f32(bias, [p.N]), ...sizes,
      }).data as Float32Array
      for (let i = 0; i < p.cRows; i++) {
        for (let j = 0; j < p.ldc; j++) {
          const at = i * p.ldc + j
          // Inside the product: plain + bias rounded to f32; outside it (a padded c): untouched.
          const want = i < p.M && j < p.N ? Math.fround(plain[at] + bias[j]) : plain[at]
          if (!Object.is(fused[at], want)) {
            if (!mismatches) first = `${p.name} C[${i}, ${j}] = ${fused[at]}, want ${want}`
            mismatches++
          }
        }
      }
    }
    tt.equal(mismatches, 0, `${cases.length} products with a bias ${config}${first ? `; first: ${first}` : ''}`)
  })
})

t.test('deterministic: the same inputs give bit-identical outputs', async (t) => {
  const rng = new Rng(seed + 3)
  const a = f32(rng.normals(257 * 520), [257, 520])
  const b = f32(rng.normals(300 * 520), [300, 520])
  await onEachConfiguration(t, (tt, config) => {
    const first = ops.matmul(a, b, { transB: true }).data
    const second = ops.matmul(a, b, { transB: true }).data
    tt.same(second, first, `257x300x520 twice ${config}`)
  })
})

t.test('builtin results do not depend on the thread count', async (t) => {
  const script = `
    const { ops, setGemmBackend, Tensor } = require(${JSON.stringify(path.resolve(__dirname, '..'))})
    setGemmBackend('builtin')
    const f = (rows, cols, k) => Tensor.from(Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * k)), [rows, cols])
    const out = ops.matmul(f(300, 600, 0.7), f(250, 600, 1.3), { transB: true }).data
    // A transposed with few rows: packed A is shared and columns of C are claimed.
    const shareA = ops.matmul(f(600, 300, 0.9), f(600, 500, 1.1), { transA: true }).data
    const batched = ops.matmul(Tensor.from(Float32Array.from({ length: 6 * 40 * 30 }, (_, i) => Math.cos(i)), [6, 40, 30]), f(30, 50, 0.3)).data
    process.stdout.write(require('node:crypto').createHash('sha256').update(out).update(shareA).update(batched).digest('hex'))
  `
  const digest = (threads: string) =>
    execFileSync(process.execPath, ['-e', script], { env: { ...process.env, RLFARM_THREADS: threads }, encoding: 'utf8' })
  const one = digest('1')
  t.match(one, /^[0-9a-f]{64}$/, 'the child process computed a digest')
  t.equal(digest('2'), one, '1 and 2 threads give bit-identical products')
  t.equal(digest('3'), one, '3 threads too')
  t.not(createHash('sha256').update('').digest('hex'), one, 'the digest covers real output')
})

t.test('backend selection', async (t) => {
  const info = backend()
  t.ok(info.gemmAvailable.includes('builtin'), 'builtin is always available')
  t.ok(info.gemmAvailable.includes(info.gemm), `the active backend (${info.gemm}) is available`)
  if (!process.env.RLFARM_GEMM) t.equal(info.gemm, 'builtin', 'builtin is the default')
  assertThrowsWith(t, () => setGemmBackend('mkl' as Backend), ["gemm backend 'mkl' is unknown", 'expected builtin or openblas'], 'unknown backend')
  const script = `require(${JSON.stringify(path.resolve(__dirname, '..'))}).backend()`
  try {
    execFileSync(process.execPath, ['-e', script], { env: { ...process.env, RLFARM_GEMM: 'blas' }, encoding: 'utf8', stdio: 'pipe' })
    t.fail('RLFARM_GEMM=blas was accepted')
  } catch (err) {
    t.match(String((err as { stderr?: string }).stderr), /RLFARM_GEMM: gemm backend 'blas' is unknown/, 'RLFARM_GEMM=blas is refused with a clear error')
  }
})

t.test('argument errors name the argument', async (t) => {
  const a = f32([1, 2, 3, 4, 5, 6], [2, 3])
  const b = f32([1, 2, 3, 4, 5, 6], [3, 2])
  assertThrowsWith(t, () => ops.matmul(a, a), ['ops.matmul', 'b must have K = 3 rows, the columns of a', 'got 2'], 'inner sizes differ')
  assertThrowsWith(t, () => ops.matmul(a, b, { transA: true }), ['b must have K = 2 rows, the columns of a^T', 'got 3'], 'inner sizes differ with transA')
  assertThrowsWith(t, () => ops.matmul(a.cast('bf16'), b), ['ops.matmul', 'a must be f32', 'got bf16 [2, 3]'], 'bf16 a')
  assertThrowsWith(t, () => ops.matmul(a, f32([1, 2, 3], [3])), ['b must be 2-D, or 3-D for a batch', 'got f32 [3] on cpu'], '1-D b')
  assertThrowsWith(t, () => ops.matmul(a, b, { c: Tensor.zeros([2, 3]) }), ['c must have shape [2, 2]', 'got [2, 3]'], 'wrong c shape')
  assertThrowsWith(t, () => ops.matmul(a, b, { c: Tensor.zeros([2, 2], { dtype: 'i32' }) }), ['c must be f32', 'got i32'], 'i32 c')
  assertThrowsWith(t, () => ops.matmul(a, b, { beta: 1 }), ['beta = 1 needs c'], 'beta without c')
  assertThrowsWith(t, () => ops.matmul(a, b, { m: 3 }), ['a is 2 x 3', 'it has no 3 x 3 block'], 'm too large')
  assertThrowsWith(t, () => ops.matmul(a, b, { k: 4 }), ['a is 2 x 3', 'no 2 x 4 block'], 'k too large')
  assertThrowsWith(t, () => ops.matmul(a, b, { n: 1.5 }), ['ops.matmul: n must be an integer >= 0', 'got 1.5'], 'fractional n')
  assertThrowsWith(t, () => ops.matmul(a, b, { alpha: NaN }), ['alpha must be a finite number', 'got NaN'], 'NaN alpha')
  assertThrowsWith(t, () => ops.matmul(a, b, { transposeA: true } as never), ["unknown option 'transposeA'"], 'unknown option')
  assertThrowsWith(t, () => ops.matmul(a, b, { transA: 1 } as never), ['transA must be true or false', 'got 1'], 'numeric transA')
  assertThrowsWith(t, () => ops.matmul(f32(new Float32Array(12), [2, 2, 3]), f32(new Float32Array(18), [3, 3, 2])), ['a and b must hold the same number of matrices'], 'batch sizes differ')
  assertThrowsWith(t, () => ops.matmul([1, 2] as unknown as Tensor, b), ['ops.matmul: a must be a Tensor', 'got an array'], 'an array for a tensor')
  assertThrowsWith(t, () => ops.matmul(a, b, { bias: f32([1, 2, 3], [3]) }), ['ops.matmul', 'bias must have shape [2]', 'got [3]'], 'bias of the wrong length')
  assertThrowsWith(t, () => ops.matmul(a, b, { bias: Tensor.zeros([2], { dtype: 'i32' }) }), ['bias must be f32', 'got i32'], 'i32 bias')
  assertThrowsWith(t, () => ops.matmul(f32(new Float32Array(12), [2, 2, 3]), b, { bias: Tensor.zeros([2]) }), ['bias is for 2-D products', 'got a batch'], 'bias on a batch')
})
