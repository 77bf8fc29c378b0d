// PPO policy and value losses, the DPO family and the reward-model loss against
// the float64 reference (whose gradients are checked by finite differences in
// reference.test.ts, or are finite differences themselves for DPO).
import t from 'tap'
import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { ops, type DpoVariant } from 'rlfarm'
import { assertClose, f32, freshSeed, i32, onEachDevice, randomMask, Rng, u8, values } from './helpers/common'
import { dpoRef, ppoRef, rewardRef, valueRef } from './helpers/reference'

const seed = freshSeed()
t.comment(`seed ${seed} (set RLFARM_TEST_SEED to replay)`)

t.test('ppoPolicyLoss', async (t) => {
  await onEachDevice(t, 'against the reference', (tt, device) => {
    const rng = new Rng(seed)
    for (const [rows, steps] of [[6, 11], [17, 40], [1, 3]]) {
      const n = rows * steps
      const old = rng.normals(n, 2)
      // Ratios across the clip range, some far outside it and beyond the +-20 clamp.
      const logp = old.map((o) => o + rng.normal() * 0.4)
      logp[0] = old[0] + 25
      if (n > 2) logp[1] = old[1] - 25
      const adv = rng.normals(n)
      const mask = randomMask(rng, rows, steps)
      // Tokens 0 and 1 clip at the high and the low bound whatever the seed (the bound binds on the advantage's side).
      mask[0] = 1
      adv[0] = Math.abs(adv[0]) + 0.1
      if (n > 2) {
        mask[1] = 1
        adv[1] = -Math.abs(adv[1]) - 0.1
      }
      for (const options of [
        { clipLow: 0.2, clipHigh: 0.2, dualClip: 0, aggregate: 'token-mean' as const },
        { clipLow: 0.2, clipHigh: 0.28, dualClip: 3, aggregate: 'token-mean' as const },
        { clipLow: 0.1, clipHigh: 0.3, dualClip: 0, aggregate: 'seq-mean' as const },
        { clipLow: 0.2, clipHigh: 0.2, dualClip: 2, aggregate: 'seq-mean' as const },
      ]) {
        const label = `[${rows}, ${steps}] ${JSON.stringify(options)}`
        const got = ops.ppoPolicyLoss(
          f32(logp, [rows, steps], device), f32(old, [rows, steps], device), f32(adv, [rows, steps], device),
          u8(mask, [rows, steps], device), { ...options, dualClip: options.dualClip || undefined },
        )
        const ref = ppoRef(logp, old, adv, mask, rows, steps, options)
        assertClose(tt, [got.loss, got.clipFraction, got.approxKl, got.dualClipFraction], [ref.loss, ref.clipFraction, ref.approxKl, ref.dualClipFraction], `${label}: loss, clipFraction, approxKl, dualClipFraction`, { atol: 1e-6, rtol: 1e-5 })
        assertClose(tt, [got.clipLowFraction, got.clipHighFraction], [ref.clipLowFraction, ref.clipHighFraction], `${label}: clipLowFraction, clipHighFraction`, { atol: 1e-6, rtol: 1e-5 })
        if (n > 50) tt.ok(ref.clipLowFraction > 0 && ref.clipHighFraction > 0, `${label}: the case clips at both bounds`)
        assertClose(tt, [got.clipLowFraction + got.clipHighFraction], [got.clipFraction], `${label}: low + high = the clipped region`, { atol: 1e-6, rtol: 1e-5 })
        assertClose(tt, values(got.grad), ref.grad, `${label}: grad`, { atol: 1e-7, rtol: 1e-5 })
      }
    }
  })

  await onEachDevice(t, 'empty rows and NaN', (tt, device) => {
    const mask = u8([0, 0, 0, 1, 1, 0], [2, 3], device)
    const logp = f32([NaN, 1, 2, 0.1, 0.2, NaN], [2, 3], device)
    const old = f32([0, 0, 0, 0, 0, 0], [2, 3], device)
    const adv = f32([1, 1, 1, 1, -1, 1], [2, 3], device)
    for (const aggregate of ['token-mean', 'seq-mean'] as const) {
      const r = ops.ppoPolicyLoss(logp, old, adv, mask, { aggregate })
      tt.ok(Number.isFinite(r.loss), `${aggregate}: an empty row and masked NaN give a finite loss`)
      tt.same(values(r.grad).slice(0, 3), [0, 0, 0], `${aggregate}: the empty row has zero gradient`)
    }
    const none = ops.ppoPolicyLoss(logp, old, adv, u8([0, 0, 0, 0, 0, 0], [2, 3], device))
    tt.same([none.loss, none.clipFraction, none.approxKl], [0, 0, 0], 'no tokens at all: zeros, not NaN')
    const nan = ops.ppoPolicyLoss(f32([NaN, 0], [1, 2], device), f32([0, 0], [1, 2], device), f32([1, 1], [1, 2], device))
    tt.ok(Number.isNaN(nan.loss), 'a NaN in a counted token gives a NaN loss (for the trainer to catch)')
  })
})

t.test('valueLoss', async (t) => {
  await onEachDevice(t, 'against the reference', (tt, device) => {
    const rng = new Rng(seed + 1)
    const [rows, steps] = [9, 33]
    const n = rows * steps
    const old = rng.normals(n)
    const v = old.map((o) => o + rng.normal() * 0.5)
    const ret = rng.normals(n)
    const mask = randomMask(rng, rows, steps)
    mask[0] = 1
    for (const clip of [0.2, 0.05, null]) {
      const got = ops.valueLoss(f32(v, [rows, steps], device), f32(old, [rows, steps], device), f32(ret, [rows, steps], device), u8(mask, [rows, steps], device), { clip })
      const ref = valueRef(v, old, ret, mask, clip ?? -1)
      assertClose(tt, [got.loss, got.clipFraction], [ref.loss, ref.clipFraction], `clip=${clip}: loss, clipFraction`, { atol: 1e-6, rtol: 1e-5 })
      assertClose(tt, values(got.grad), ref.grad, `clip=${clip}: grad`, { atol: 1e-7, rtol: 1e-5 })
    }
    const empty = ops.valueLoss(f32([1, NaN], [2], device), f32([0, 0], [2], device), f32([0, 0], [2], device), u8([0, 0], [2], device))
    tt.same([empty.loss, ...values(empty.grad)], [0, 0, 0], 'all masked: zero loss and gradient')
  })
})

t.test('dpoLoss, every variant', async (t) => {
  const variants: DpoVariant[] = ['sigmoid', 'robust', 'hinge', 'ipo', 'bco_pair', 'sppo_hard', 'nca_pair', 'apo_zero', 'simpo']
  await onEachDevice(t, 'against the reference', (tt, device) => {
    const rng = new Rng(seed + 2)
    const B = 37
    const pc = rng.normals(B, 20).map((x) => x - 60)
    const pr = rng.normals(B, 20).map((x) => x - 60)
    const rc = pc.map((x) => x + rng.normal() * 3)
    const rr = pr.map((x) => x + rng.normal() * 3)
    const lc = Int32Array.from({ length: B }, () => rng.int(1, 80))
    const lr = Float32Array.from({ length: B }, () => rng.int(1, 80))
    for (const variant of variants) {
      for (const [beta, labelSmoothing, referenceFree] of [[0.1, 0, false], [0.5, 0.1, false], [0.05, 0, true]] as const) {
        if (variant === 'robust' && labelSmoothing === 0) continue
        const options = { variant, beta, labelSmoothing, gamma: 0.7, referenceFree }
        const label = `${variant} beta=${beta} eps=${labelSmoothing} refFree=${referenceFree}`
        // The hinge has a kink at beta h = 1 where the gradient jumps; keep pairs off it.
        const pcUsed = pc.map((x, i) => {
          const h = x - (referenceFree ? 0 : rc[i]) - (pr[i] - (referenceFree ? 0 : rr[i]))
          return variant === 'hinge' && Math.abs(1 - beta * h) < 1e-3 ? x + 0.01 / beta : x
        })
        const got = ops.dpoLoss({
          policyChosen: f32(pcUsed, [B], device), policyRejected: f32(pr, [B], device),
          refChosen: f32(rc, [B], device), refRejected: f32(rr, [B], device),
          chosenLength: i32(lc, [B], device), rejectedLength: f32(lr, [B], device),
        }, options)
        const useRef = !referenceFree
        // Only sigmoid (cDPO), robust and simpo use label smoothing; the others ignore it.
        const smoothing = ['sigmoid', 'robust', 'simpo'].includes(variant) ? labelSmoothing : 0
        const ref = dpoRef(pcUsed, pr, useRef ? rc : null, useRef ? rr : null, lc, lr, { variant, beta, labelSmoothing: smoothing, gamma: 0.7 })
        assertClose(tt, [got.loss, got.accuracy], [ref.loss, ref.accuracy], `${label}: loss, accuracy`, { atol: 1e-6, rtol: 1e-4 })
        assertClose(tt, values(got.gradChosen), ref.gradChosen, `${label}: gradChosen`, { atol: 1e-7, rtol: 1e-3 })
        assertClose(tt, values(got.gradRejected), ref.gradRejected, `${label}: gradRejected`, { atol: 1e-7, rtol: 1e-3 })
        assertClose(tt, values(got.chosenReward), ref.chosenReward, `${label}: chosenReward`, { atol: 1e-5, rtol: 1e-5 })
        assertClose(tt, values(got.rejectedReward), ref.rejectedReward, `${label}: rejectedReward`, { atol: 1e-5, rtol: 1e-5 })
      }
    }
  })

  await onEachDevice(t, 'reference-free and simpo need no reference tensors', (tt, device) => {
    const policyChosen = f32([-3, -5], [2], device)
    const policyRejected = f32([-4, -2], [2], device)
    const free = ops.dpoLoss({ policyChosen, policyRejected }, { referenceFree: true, beta: 1 })
    const ref = dpoRef([-3, -5], [-4, -2], null, null, null, null, { variant: 'sigmoid', beta: 1, labelSmoothing: 0, gamma: 0 })
    assertClose(tt, [free.loss, free.accuracy], [ref.loss, ref.accuracy], 'referenceFree sigmoid')
    const simpo = ops.dpoLoss({ policyChosen, policyRejected, chosenLength: f32([3, 5], [2], device), rejectedLength: f32([2, 2], [2], device) }, { variant: 'simpo', beta: 2, gamma: 0.5 })
    const sref = dpoRef([-3, -5], [-4, -2], null, null, [3, 5], [2, 2], { variant: 'simpo', beta: 2, labelSmoothing: 0, gamma: 0.5 })
    assertClose(tt, [simpo.loss, simpo.accuracy], [sref.loss, sref.accuracy], 'simpo without references')
  })
})

t.test('rewardLoss', async (t) => {
  await onEachDevice(t, 'against the reference', (tt, device) => {
    const rng = new Rng(seed + 3)
    const B = 45
    const chosen = rng.normals(B, 2)
    const rejected = rng.normals(B, 2)
    const margin = Float32Array.from({ length: B }, () => rng.uniform(0, 1))
    for (const [m, centerCoef] of [[0, 0], [0.5, 0.01], [margin, 0.1]] as const) {
      const got = ops.rewardLoss(f32(chosen, [B], device), f32(rejected, [B], device), {
        margin: typeof m === 'number' ? m : f32(m, [B], device), centerCoef,
      })
      const ref = rewardRef(chosen, rejected, m, centerCoef)
      const label = `margin=${typeof m === 'number' ? m : 'tensor'} centerCoef=${centerCoef}`
      assertClose(tt, [got.loss, got.accuracy], [ref.loss, ref.accuracy], `${label}: loss, accuracy`, { atol: 1e-6, rtol: 1e-5 })
      assertClose(tt, values(got.gradChosen), ref.gradChosen, `${label}: gradChosen`, { atol: 1e-7, rtol: 1e-5 })
      assertClose(tt, values(got.gradRejected), ref.gradRejected, `${label}: gradRejected`, { atol: 1e-7, rtol: 1e-5 })
    }
    const big = ops.rewardLoss(f32([200, -200], [2], device), f32([-200, 200], [2], device))
    tt.ok(Number.isFinite(big.loss) && Math.abs(big.loss - 200) < 1e-3, 'no overflow for large reward gaps')
  })
})

t.test('losses do not depend on the thread count', async (t) => {
  const script = `
    const { ops, Tensor } = require('rlfarm')
    const n = 64 * 300
    const f = (k) => Tensor.from(Float32Array.from({ length: n }, (_, i) => Math.sin(i * k)), [64, 300])
    const mask = Tensor.from(Uint8Array.from({ length: n }, (_, i) => (i % 7 ? 1 : 0)), [64, 300])
    const p = ops.ppoPolicyLoss(f(1), f(2), f(3), mask, { aggregate: 'seq-mean' })
    const v = ops.valueLoss(f(1), f(2), f(3), mask)
    const w = ops.whiten(f(5), mask).toArray().reduce((a, b) => a + b * 1e-3, 0)
    console.log(JSON.stringify([p.loss, p.approxKl, v.loss, w, Array.from(p.grad.data.subarray(0, 50))]))
  `
  const run = (threads: string) =>
    execFileSync(process.execPath, ['-e', script], { cwd: path.resolve(__dirname, '..'), env: { ...process.env, RLFARM_THREADS: threads }, encoding: 'utf8' })
  t.equal(run('1'), run('2'), '1 thread and 2 threads give bit-identical losses and gradients')
  t.equal(run('2'), run('5'), '2 threads and 5 threads too')
})

t.test('losses are deterministic', async (t) => {
  const rng = new Rng(seed + 4)
  const [rows, steps] = [32, 64]
  const n = rows * steps
  const args = [f32(rng.normals(n), [rows, steps]), f32(rng.normals(n), [rows, steps]), f32(rng.normals(n), [rows, steps]), u8(randomMask(rng, rows, steps), [rows, steps])] as const
  const a = ops.ppoPolicyLoss(...args)
  const b = ops.ppoPolicyLoss(...args)
  t.equal(a.loss, b.loss, 'same inputs, bit-identical loss')
  t.same(values(a.grad), values(b.grad), 'and gradient')
})
