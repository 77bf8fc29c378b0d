// ops.logprobs and ops.logprobsBackward against the float64 reference, on
// every CPU vector level and on CUDA when present.
import t, { type Test } from 'tap'
import { backend, ops, setSimdLevel, Tensor } from 'rlfarm'
import { assertClose, f32, freshSeed, i32, onEachDevice, Rng, values } from './helpers/common'
import { logprobsGradRef, logprobsRef } from './helpers/reference'

const EPS32 = 2 ** -23
const seed = freshSeed()
t.comment(`seed ${seed} (set RLFARM_TEST_SEED to replay)`)

interface Case {
  name: string
  rows: number
  vocab: number
  temperature: number
  logits: Float32Array
  targets: Int32Array
}

function bf16Round(x: Float32Array): Float32Array {
  const bits = Tensor.from(Array.from(x), [x.length], { dtype: 'bf16' })
  return Float32Array.from(bits.toArray())
}

function rowMaxAbs(c: Case, r: number): number {
  let m = 0
  for (let j = 0; j < c.vocab; j++) {
    const v = Math.abs(c.logits[r * c.vocab + j])
    if (Number.isFinite(v)) m = Math.max(m, v)
  }
  return m
}

function makeCases(rng: Rng): Case[] {
  const cases: Case[] = []
  const add = (name: string, rows: number, vocab: number, temperature: number, fill: (i: number) => number) => {
    const logits = new Float32Array(rows * vocab)
    for (let i = 0; i < logits.length; i++) logits[i] = fill(i)
    cases.push({ name, rows, vocab, temperature, logits, targets: rng.ints(rows, 0, vocab) })
  }
  // Vocabularies that are multiples of no block or vector size, one of them over two CPU blocks.
  add('V=1', 5, 1, 1, () => rng.normal())
  add('V=37 T=0.7', 9, 37, 0.7, () => rng.normal() * 3)
  add('V=2053 T=1.3', 6, 2053, 1.3, () => rng.normal() * 4)
  add('V=5003', 4, 5003, 1, () => rng.normal() * 2)
  add('logits of +-1e4', 5, 515, 1, () => rng.uniform(-1e4, 1e4))
  add('logits of +-1e4, T=2.5', 3, 1031, 2.5, () => rng.uniform(-1e4, 1e4))
  // A -inf logit in every row (never the target, handled below), and a row rising towards its end.
  const withInf: Case = { name: '-inf logits', rows: 6, vocab: 301, temperature: 0.9, logits: rng.normals(6 * 301, 2), targets: new Int32Array(6) }
  for (let r = 0; r < withInf.rows; r++) {
    withInf.targets[r] = rng.int(0, withInf.vocab)
    for (let k = 0; k < 5; k++) {
      const j = rng.int(0, withInf.vocab)
      if (j !== withInf.targets[r]) withInf.logits[r * withInf.vocab + j] = -Infinity
    }
  }
  cases.push(withInf)
  add('increasing (max moves every block)', 2, 4500, 1, (i) => (i % 4500) * 0.01)
  return cases
}

function checkForward(tt: Test, c: Case, device: string, dtype: 'f32' | 'bf16') {
  const logitsData = dtype === 'bf16' ? bf16Round(c.logits) : c.logits
  const logits = dtype === 'bf16'
    ? f32(logitsData, [c.rows, c.vocab], 'cpu').cast('bf16').to(device as 'cpu')
    : f32(logitsData, [c.rows, c.vocab], device)
  const targets = i32(c.targets, [c.rows], device)
  const got = ops.logprobs(logits, targets, { temperature: c.temperature, entropy: true })
  const ref = logprobsRef(logitsData, c.vocab, c.targets, c.temperature)
  tt.same(got.logp.shape, [c.rows], `${c.name}: logp shape`)
  const atol = (i: number) => 1e-5 + 8 * EPS32 * (rowMaxAbs(c, i) / c.temperature)
  assertClose(tt, values(got.logp), ref.logp, `${c.name} ${dtype}: logp`, { atol, rtol: 1e-5 })
  assertClose(tt, values(got.entropy!), ref.entropy, `${c.name} ${dtype}: entropy`, { atol, rtol: 1e-5 })
  const plain = ops.logprobs(logits, targets, { temperature: c.temperature })
  tt.equal(plain.entropy, undefined, `${c.name}: no entropy unless asked`)
  assertClose(tt, values(plain.logp), values(got.logp), `${c.name}: logp without entropy equals logp with`, { atol: 0, rtol: 0 })
}

function checkBackward(tt: Test, c: Case, device: string, rng: Rng, dtype: 'f32' | 'bf16') {
  const logitsData = dtype === 'bf16' ? bf16Round(c.logits) : c.logits
  const logits = dtype === 'bf16'
    ? f32(logitsData, [c.rows, c.vocab], 'cpu').cast('bf16').to(device as 'cpu')
    : f32(logitsData, [c.rows, c.vocab], device)
  const targets = i32(c.targets, [c.rows], device)
  const g = rng.normals(c.rows)
  const gh = rng.normals(c.rows)
  for (const mode of ['logp', 'entropy', 'both'] as const) {
    const gLogp = mode === 'entropy' ? null : g
    const gEnt = mode === 'logp' ? null : gh
    const d = ops.logprobsBackward(logits, targets, gLogp ? f32(gLogp, [c.rows], device) : null, {
      temperature: c.temperature,
      gradEntropy: gEnt ? f32(gEnt, [c.rows], device) : undefined,
    })
    tt.same(d.shape, [c.rows, c.vocab], `${c.name} ${mode}: dlogits shape`)
    tt.equal(d.dtype, dtype, `${c.name} ${mode}: dlogits dtype follows logits`)
    const ref = logprobsGradRef(logitsData, c.vocab, c.targets, gLogp, gEnt, c.temperature)
    const logV = Math.log(c.vocab)
    const atol = (i: number) => {
      const r = Math.floor(i / c.vocab)
      const scale = (Math.abs(gLogp ? gLogp[r] : 0) + Math.abs(gEnt ? gEnt[r] : 0) * (1 + logV)) / c.temperature
      return scale * (2e-6 + 8 * EPS32 * (rowMaxAbs(c, r) / c.temperature))
    }
    assertClose(tt, values(d), ref, `${c.name} ${dtype} grad(${mode})`, { atol, rtol: dtype === 'bf16' ? 4e-3 : 1e-4 })
  }
}

t.test('logprobs matches the float64 reference', async (t) => {
  const rng = new Rng(seed)
  const cases = makeCases(rng)
  await onEachDevice(t, 'f32 and bf16 logits', (tt, device) => {
    for (const c of cases) {
      checkForward(tt, c, device, 'f32')
      if (c.vocab > 1) checkForward(tt, c, device, 'bf16')
    }
  })
})

t.test('logprobsBackward matches the float64 reference', async (t) => {
  const rng = new Rng(seed + 1)
  const cases = makeCases(rng)
  await onEachDevice(t, 'gradients', (tt, device) => {
    for (const c of cases) {
      checkBackward(tt, c, device, rng, 'f32')
      if (c.vocab > 1) checkBackward(tt, c, device, rng, 'bf16')
    }
  })
})

t.test('every CPU vector level gives the same answers', async (t) => {
  const rng = new Rng(seed + 2)
  const cases = makeCases(rng)
  const levels = backend().simdSupported
  const original = backend().simd
  t.ok(levels.includes('generic'), 'generic is always available')
  try {
    for (const level of levels) {
      setSimdLevel(level as 'generic')
      t.equal(backend().simd, level, `level ${level} active`)
      await t.test(`simd=${level}`, async (tt) => {
        for (const c of cases) {
          checkForward(tt, c, 'cpu', 'f32')
          checkBackward(tt, c, 'cpu', rng, 'f32')
        }
      })
    }
  } finally {
    setSimdLevel(original as 'generic')
  }
})

t.test('special values', async (t) => {
  await onEachDevice(t, 'inf and NaN', (tt, device) => {
    const V = 40
    const base = new Rng(seed + 3).normals(4 * V)
    // row 0: target logit is -inf -> logp -inf; row 1: a NaN logit -> NaN; row 2: +inf -> NaN; row 3 clean
    base[0 * V + 3] = -Infinity
    base[0 * V + 11] = -Infinity
    base[1 * V + 7] = NaN
    base[2 * V + 9] = Infinity
    const logits = f32(base, [4, V], device)
    const targets = i32([3, 0, 0, 5], [4], device)
    const r = ops.logprobs(logits, targets, { entropy: true })
    const lp = values(r.logp)
    const h = values(r.entropy!)
    tt.equal(lp[0], -Infinity, 'a -inf target logit gives logp -inf')
    tt.ok(Number.isFinite(h[0]), 'and a finite entropy')
    tt.ok(Number.isNaN(lp[1]) && Number.isNaN(h[1]), 'a NaN logit makes its row NaN')
    tt.ok(Number.isNaN(lp[2]), 'a +inf logit makes its row NaN')
    const ref = logprobsRef(base.subarray(3 * V), V, [5])
    assertClose(tt, [lp[3], h[3]], [ref.logp[0], ref.entropy[0]], 'other rows are untouched')
    const d = values(ops.logprobsBackward(logits, targets, f32([1, 1, 1, 1], [4], device)))
    tt.ok(d.slice(0, V).every(Number.isFinite), 'the -inf row has a finite gradient')
    tt.equal(d[11], 0, 'zero gradient at a -inf logit')
    tt.equal(d[3], 1, 'g (1 - p) = g at a -inf target logit')
    tt.ok(d.slice(V, 2 * V).some(Number.isNaN), 'the NaN row has NaN gradients')
    assertClose(tt, d.slice(3 * V), logprobsGradRef(base.subarray(3 * V), V, [5], [1], null), 'clean row gradient')
  })
})

t.test('shapes: leading dimensions and empty batches', async (t) => {
  await onEachDevice(t, 'shapes', (tt, device) => {
    const rng = new Rng(seed + 4)
    const [B, T, V] = [3, 5, 17]
    const data = rng.normals(B * T * V)
    const y = rng.ints(B * T, 0, V)
    const r = ops.logprobs(f32(data, [B, T, V], device), i32(y, [B, T], device))
    tt.same(r.logp.shape, [B, T], 'logp has the targets shape')
    assertClose(tt, values(r.logp), logprobsRef(data, V, y).logp, '[B, T, V] equals the flat rows')
    const empty = ops.logprobs(Tensor.zeros([0, V], { device }), Tensor.zeros([0], { dtype: 'i32', device }), { entropy: true })
    tt.same(empty.logp.shape, [0], 'no rows: empty logp')
    tt.same(empty.entropy!.shape, [0], 'no rows: empty entropy')
    const d = ops.logprobsBackward(Tensor.zeros([0, V], { device }), Tensor.zeros([0], { dtype: 'i32', device }), Tensor.zeros([0], { device }))
    tt.same(d.shape, [0, V], 'no rows: empty gradient')
  })
})
