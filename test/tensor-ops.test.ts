// The small tensor ops trainers compose: klPenaltyGrad, add, mul, rowSum,
// broadcastRows, against float64 references (and finite differences for the
// KL gradient), on the CPU and on CUDA when present.
import t from 'tap'
import { ops } from 'rlfarm'
import { assertClose, assertThrowsWith, f32, freshSeed, onEachDevice, randomMask, Rng, u8, values } from './helpers/common'
import { klRef } from './helpers/reference'

const seed = freshSeed()
t.comment(`seed ${seed} (set RLFARM_TEST_SEED to replay)`)

t.test('klPenaltyGrad = finite differences of the KL estimate', async (t) => {
  await onEachDevice(t, 'k1, k2, k3, clamps', (tt, device) => {
    const rng = new Rng(seed)
    const [rows, steps] = [6, 20]
    const logp = rng.normals(rows * steps, 1.5)
    const ref = rng.normals(rows * steps, 1.5)
    logp[0] = ref[0] + 25 // beyond the +-20 log-ratio clamp of k3
    const mask = randomMask(rng, rows, steps)
    mask[0] = 1
    for (const estimator of ['k1', 'k2', 'k3'] as const) {
      for (const clamp of [0, 1.5]) {
        const got = values(ops.klPenaltyGrad(f32(logp, [rows, steps], device), f32(ref, [rows, steps], device), u8(mask, [rows, steps], device), { estimator, clamp: clamp || undefined }))
        const h = 1e-4
        const numeric = Array.from(logp, (lp, i) => {
          if (!mask[i]) return 0
          const up = klRef([lp + h], [ref[i]], [1], estimator, clamp)[0]
          const down = klRef([lp - h], [ref[i]], [1], estimator, clamp)[0]
          return (up - down) / (2 * h)
        })
        assertClose(tt, got, numeric, `${estimator} clamp=${clamp}`, { atol: 1e-3, rtol: 1e-3 })
      }
    }
  })
})

t.test('add, mul, rowSum, broadcastRows', async (t) => {
  await onEachDevice(t, 'against plain loops', (tt, device) => {
    const rng = new Rng(seed + 1)
    const [rows, steps] = [7, 33]
    const a = rng.normals(rows * steps)
    const b = rng.normals(rows * steps)
    const mask = randomMask(rng, rows, steps)
    const A = f32(a, [rows, steps], device)
    const B = f32(b, [rows, steps], device)
    assertClose(tt, values(ops.add(A, B, { alpha: 2, beta: -0.5 })), Array.from(a, (x, i) => 2 * x - 0.5 * b[i]), 'add: 2a - b/2')
    assertClose(tt, values(ops.add(A, undefined, { alpha: -3 })), Array.from(a, (x) => -3 * x), 'add without b scales a')
    assertClose(tt, values(ops.mul(A, B)), Array.from(a, (x, i) => x * b[i]), 'mul')
    const sums = Array.from({ length: rows }, (_, r) => a.slice(r * steps, (r + 1) * steps).reduce((s, x, c) => s + (mask[r * steps + c] ? x : 0), 0))
    assertClose(tt, values(ops.rowSum(A, u8(mask, [rows, steps], device))), sums, 'rowSum with a mask', { atol: 1e-5 })
    assertClose(tt, values(ops.rowSum(A)), Array.from({ length: rows }, (_, r) => a.slice(r * steps, (r + 1) * steps).reduce((s, x) => s + x, 0)), 'rowSum without a mask', { atol: 1e-5 })
    const v = rng.normals(rows)
    const broadcast = values(ops.broadcastRows(f32(v, [rows], device), u8(mask, [rows, steps], device)))
    assertClose(tt, broadcast, Array.from(mask, (m, i) => (m ? v[Math.floor(i / steps)] : 0)), 'broadcastRows')
    const withNaN = f32([1, NaN, 3, 4], [2, 2], device)
    tt.same(values(ops.rowSum(withNaN, u8([1, 0, 1, 1], [2, 2], device))), [1, 7], 'a NaN under the mask stays out of the sum')
    assertThrowsWith(tt, () => ops.add(A, f32([1, 2], [2], device)), ['ops.add', 'b must have the shape of a'], 'shape mismatch')
    assertThrowsWith(tt, () => ops.broadcastRows(f32([1, 2, 3], [3], device), u8(mask, [rows, steps], device)), ['ops.broadcastRows', `values must have shape [${rows}]`], 'values per row')
    assertThrowsWith(tt, () => ops.rowSum(A, u8([1], [1], device)), ['ops.rowSum', 'mask must have the shape of x'], 'rowSum mask shape')
  })
})
