// ops.shapeRewards: PPO's per-token rewards in one native call, against the
// float64 reference, bit for bit equal to the three calls it replaces
// (klPenalty -> broadcastRows -> add), and its argument errors.
import t from 'tap'
import { ops, Tensor } from 'rlfarm'
import { assertClose, assertThrowsWith, f32, freshSeed, onEachDevice, randomMask, Rng, u8, values } from './helpers/common'
import { shapedRewardsRef } from './helpers/reference'

const seed = freshSeed()
t.comment(`seed ${seed} (RLFARM_TEST_SEED reproduces it)`)

const B = 9
const T = 23

function inputs(rng: Rng) {
  const logp = rng.normals(B * T, 2)
  const ref = rng.normals(B * T, 2)
  const mask = randomMask(rng, B, T)
  const last = new Uint8Array(B * T)
  for (let b = 0; b < B; b++) {
    // The last masked token of the row, as a rollout's lastMask.
    for (let s = T - 1; s >= 0; s--) {
      if (mask[b * T + s]) {
        last[b * T + s] = 1
        break
      }
    }
  }
  const scores = rng.normals(B, 3)
  return { logp, ref, mask, last, scores }
}

t.test('shapeRewards', async (t) => {
  await onEachDevice(t, 'against the float64 reference', (tt, device) => {
    const rng = new Rng(seed)
    const x = inputs(rng)
    for (const estimator of ['k1', 'k2', 'k3'] as const) {
      for (const klCoef of [0, 0.05, 1.5]) {
        const got = ops.shapeRewards(f32(x.logp, [B, T], device), f32(x.ref, [B, T], device), u8(x.mask, [B, T], device), f32(x.scores, [B], device), u8(x.last, [B, T], device), {
          klCoef,
          estimator,
        })
        const want = shapedRewardsRef(x.logp, x.ref, x.mask, x.scores, x.last, T, klCoef, estimator)
        assertClose(tt, values(got.kl), want.kl, `kl ${estimator} beta=${klCoef}`, { atol: 1e-5, rtol: 1e-5 })
        assertClose(tt, values(got.rewards), want.rewards, `rewards ${estimator} beta=${klCoef}`, { atol: 1e-5, rtol: 1e-5 })
      }
    }
  })

  await onEachDevice(t, 'bit for bit the three calls it replaces', (tt, device) => {
    const rng = new Rng(seed + 1)
    const x = inputs(rng)
    for (const dtype of ['f32', 'i32', 'u8'] as const) {
      const mask = Tensor.from(Array.from(x.mask), [B, T], { dtype, device: device as 'cpu' })
      const last = Tensor.from(Array.from(x.last), [B, T], { dtype, device: device as 'cpu' })
      const logp = f32(x.logp, [B, T], device)
      const ref = f32(x.ref, [B, T], device)
      const scores = f32(x.scores, [B], device)
      for (const estimator of ['k1', 'k3'] as const) {
        const fused = ops.shapeRewards(logp, ref, mask, scores, last, { klCoef: 0.07, estimator })
        const kl = ops.klPenalty(logp, ref, mask, { estimator })
        const rewards = ops.add(kl, ops.broadcastRows(scores, last), { alpha: -0.07, beta: 1 })
        tt.same(values(fused.kl), values(kl), `kl, ${dtype} masks, ${estimator}`)
        tt.same(values(fused.rewards), values(rewards), `rewards, ${dtype} masks, ${estimator}`)
      }
    }
  })
})

t.test('shapeRewards: bad arguments name the argument', async (t) => {
  const logp = f32(new Float32Array(6), [2, 3])
  const mask = u8([1, 1, 1, 1, 1, 0], [2, 3])
  const last = u8([0, 0, 1, 0, 1, 0], [2, 3])
  const scores = f32([1, 2], [2])
  assertThrowsWith(t, () => ops.shapeRewards(logp, logp, mask, scores, last), ['ops.shapeRewards', 'klCoef is required'], 'no klCoef')
  assertThrowsWith(t, () => ops.shapeRewards(logp, logp, mask, f32([1, 2, 3], [3]), last, { klCoef: 0.1 }), ['ops.shapeRewards', 'scores must have shape [2]', 'got [3]'], 'scores per row')
  assertThrowsWith(
    t,
    () => ops.shapeRewards(logp, logp, mask, scores, f32([0, 0, 1, 0, 1, 0], [2, 3]), { klCoef: 0.1 }),
    ['ops.shapeRewards', 'lastMask must be u8', 'f32'],
    "lastMask of another dtype than mask's",
  )
  assertThrowsWith(t, () => ops.shapeRewards(logp, f32(new Float32Array(4), [2, 2]), mask, scores, last, { klCoef: 0.1 }), ['refLogp must have the shape of logp'], 'refLogp shape')
  assertThrowsWith(t, () => ops.shapeRewards(logp, logp, mask, scores, last, { klCoef: Infinity }), ['klCoef must be a finite number'], 'klCoef finite')
  assertThrowsWith(t, () => ops.shapeRewards(logp, logp, mask, scores, last, { klCoef: 0.1, estimator: 'k4' as 'k1' }), ['estimator'], 'estimator')
})
