// ops.gae, ops.whiten and ops.klPenalty against the float64 reference.
import t from 'tap'
import { ops, Tensor } from 'rlfarm'
import { assertClose, f32, freshSeed, onEachDevice, randomMask, Rng, u8, values } from './helpers/common'
import { gaeRef, klRef, whitenRef } from './helpers/reference'

const seed = freshSeed()
t.comment(`seed ${seed} (set RLFARM_TEST_SEED to replay)`)

t.test('gae', async (t) => {
  await onEachDevice(t, 'against the reference', (tt, device) => {
    const rng = new Rng(seed)
    // Steps that are not a multiple of 32 (the CUDA chunk), short and long rows.
    for (const [rows, steps] of [[1, 1], [7, 5], [13, 70], [5, 129]]) {
      const rewards = rng.normals(rows * steps)
      const vals = rng.normals(rows * steps)
      const mask = randomMask(rng, rows, steps)
      for (const [gamma, lambda] of [[1, 0.95], [0.99, 0.9], [0.5, 1], [1, 0]]) {
        const r = ops.gae(f32(rewards, [rows, steps], device), f32(vals, [rows, steps], device), u8(mask, [rows, steps], device), { gamma, lambda })
        const ref = gaeRef(rewards, vals, mask, rows, steps, gamma, lambda)
        assertClose(tt, values(r.advantages), ref.advantages, `[${rows}, ${steps}] gamma=${gamma} lambda=${lambda}: advantages`, { atol: 1e-5, rtol: 1e-5 })
        assertClose(tt, values(r.returns), ref.returns, `[${rows}, ${steps}] gamma=${gamma} lambda=${lambda}: returns`, { atol: 1e-5, rtol: 1e-5 })
      }
    }
  })

  await onEachDevice(t, 'masks and special values', (tt, device) => {
    const [rows, steps] = [3, 6]
    const rewards = new Float32Array(rows * steps).fill(1)
    const vals = new Float32Array(rows * steps).fill(0.5)
    // Row 0 all masked, row 1 full, row 2 right-padded; NaN hides under the mask.
    const mask = Float32Array.from([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0])
    rewards[0] = NaN
    vals[17] = NaN
    const r = ops.gae(f32(rewards, [rows, steps], device), f32(vals, [rows, steps], device), f32(mask, [rows, steps], device), { gamma: 0.9, lambda: 0.8 })
    const adv = values(r.advantages)
    tt.same(adv.slice(0, 6), [0, 0, 0, 0, 0, 0], 'an all-masked row gives zeros, not NaN')
    tt.ok(adv.every(Number.isFinite), 'NaN under the mask does not leak')
    const ref = gaeRef(rewards.map((x) => (Number.isNaN(x) ? 0 : x)), vals.map((x) => (Number.isNaN(x) ? 0 : x)), mask, rows, steps, 0.9, 0.8)
    assertClose(tt, adv, ref.advantages, 'equals the reference')
    const i32mask = Tensor.from(Int32Array.from(mask), [rows, steps], { device })
    const r2 = ops.gae(f32(rewards, [rows, steps], device), f32(vals, [rows, steps], device), i32mask, { gamma: 0.9, lambda: 0.8 })
    assertClose(tt, values(r2.advantages), adv, 'an i32 mask gives the same answer', { atol: 0, rtol: 0 })
    const unmasked = ops.gae(f32([1, 2, 3], [1, 3], device), f32([0, 0, 0], [1, 3], device))
    tt.same(values(unmasked.advantages), gaeRef([1, 2, 3], [0, 0, 0], [1, 1, 1], 1, 3, 1, 0.95).advantages.map(Math.fround), 'no mask: every token counts')
    const empty = ops.gae(Tensor.zeros([0, 4], { device }), Tensor.zeros([0, 4], { device }), Tensor.zeros([0, 4], { device }))
    tt.same(empty.advantages.shape, [0, 4], 'no rows: empty result')
  })
})

t.test('whiten', async (t) => {
  await onEachDevice(t, 'against the reference', (tt, device) => {
    const rng = new Rng(seed + 1)
    for (const [rows, steps] of [[4, 9], [16, 100], [1, 1]]) {
      const x = rng.normals(rows * steps, 3).map((v) => v + 5)
      const mask = randomMask(rng, rows, steps)
      mask[0] = 1
      for (const shiftMean of [true, false]) {
        const got = ops.whiten(f32(x, [rows, steps], device), u8(mask, [rows, steps], device), { shiftMean })
        assertClose(tt, values(got), whitenRef(x, mask, shiftMean), `[${rows}, ${steps}] shiftMean=${shiftMean}`, { atol: 1e-5, rtol: 1e-5 })
      }
    }
    const allMasked = ops.whiten(f32([1, 2, 3], [3], device), u8([0, 0, 0], [3], device))
    tt.same(values(allMasked), [0, 0, 0], 'an all-zero mask gives zeros, not NaN')
    const one = ops.whiten(f32([4, NaN, 3], [3], device), u8([1, 0, 0], [3], device))
    tt.same(values(one), [0, 0, 0], 'one token: centred to 0, NaN under the mask ignored')
  })
})

t.test('klPenalty', async (t) => {
  await onEachDevice(t, 'k1, k2, k3 with and without clamp', (tt, device) => {
    const rng = new Rng(seed + 2)
    const n = 300
    const logp = rng.normals(n, 2)
    const ref = rng.normals(n, 2)
    logp[0] = 30 // log-ratio beyond the k3 clamp of 20
    ref[1] = 40
    const mask = randomMask(rng, 10, 30)
    mask[0] = 1
    mask[1] = 1
    for (const estimator of ['k1', 'k2', 'k3'] as const) {
      for (const clamp of [0, 10, 0.5]) {
        const got = ops.klPenalty(f32(logp, [10, 30], device), f32(ref, [10, 30], device), u8(mask, [10, 30], device), { estimator, clamp: clamp || undefined })
        assertClose(tt, values(got), klRef(logp, ref, mask, estimator, clamp), `${estimator} clamp=${clamp}`, { atol: 1e-5, rtol: 1e-5 })
      }
    }
    const bounded = values(ops.klPenalty(f32([0, 100], [2], device), f32([100, 0], [2], device), undefined, { estimator: 'k3', clamp: true }))
    tt.same(bounded, [10, 10], 'clamp: true bounds k3 at 10')
    const hidden = values(ops.klPenalty(f32([NaN, 1], [2], device), f32([0, 0], [2], device), u8([0, 1], [2], device)))
    tt.same(hidden, [0, 1], 'masked NaN gives 0')
  })
})
