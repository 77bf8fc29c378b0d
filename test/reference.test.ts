// The float64 references' analytic gradients against central finite
// differences of the references' own losses, so the kernels are compared with
// gradients that are known to be right.
import t from 'tap'
import { assertClose, freshSeed, randomMask, Rng } from './helpers/common'
import { logprobsGradRef, logprobsRef, ppoRef, ppoTokenLoss, ppoWeights, rewardRef, valueRef, valueTokenLoss } from './helpers/reference'

const seed = freshSeed()
t.comment(`seed ${seed} (set RLFARM_TEST_SEED to replay)`)

/** Central difference of f at x along coordinate i. */
function fd(f: (x: number[]) => number, x: number[], i: number, h = 1e-6): number {
  const up = x.slice()
  const down = x.slice()
  up[i] += h
  down[i] -= h
  return (f(up) - f(down)) / (2 * h)
}

t.test('logprobs gradient = finite differences of logp and entropy', async (t) => {
  const rng = new Rng(seed)
  for (const [rows, vocab, temperature] of [[3, 7, 1], [2, 13, 0.6], [2, 5, 1.7]]) {
    const logits = Array.from(rng.normals(rows * vocab, 2))
    const targets = Array.from(rng.ints(rows, 0, vocab))
    const g = Array.from(rng.normals(rows))
    const gh = Array.from(rng.normals(rows))
    // The scalar whose gradient is wanted: sum_r g_r logp_r + gh_r H_r.
    const objective = (z: number[]) => {
      const r = logprobsRef(z, vocab, targets, temperature)
      return r.logp.reduce((s, lp, i) => s + g[i] * lp + gh[i] * r.entropy[i], 0)
    }
    const numeric = logits.map((_, i) => fd(objective, logits, i))
    assertClose(t, logprobsGradRef(logits, vocab, targets, g, gh, temperature), numeric, `[${rows}, ${vocab}] T=${temperature}`, { atol: 1e-7, rtol: 1e-6 })
  }
})

t.test('PPO policy gradient = finite differences of the aggregated loss', async (t) => {
  const rng = new Rng(seed + 1)
  const [rows, steps] = [5, 7]
  const old = Array.from(rng.normals(rows * steps))
  const logp = old.map((o) => o + rng.normal() * 0.4)
  const adv = Array.from(rng.normals(rows * steps))
  const mask = randomMask(rng, rows, steps)
  mask[0] = 1
  for (const options of [
    { clipLow: 0.2, clipHigh: 0.28, dualClip: 0, aggregate: 'token-mean' as const },
    { clipLow: 0.1, clipHigh: 0.2, dualClip: 1.5, aggregate: 'seq-mean' as const },
  ]) {
    const w = ppoWeights(mask, rows, steps, options.aggregate)
    const loss = (x: number[]) => x.reduce((s, lp, i) => s + (w[i] ? w[i] * ppoTokenLoss(lp, old[i], adv[i], options) : 0), 0)
    const ref = ppoRef(logp, old, adv, mask, rows, steps, options)
    t.ok(Math.abs(ref.loss - loss(logp)) < 1e-12, `${options.aggregate}: the two loss formulations agree`)
    assertClose(t, ref.grad, logp.map((_, i) => fd(loss, logp, i)), `${JSON.stringify(options)}: grad`, { atol: 1e-8, rtol: 1e-6 })
  }
})

t.test('value gradient = finite differences', async (t) => {
  const rng = new Rng(seed + 2)
  const n = 40
  const old = Array.from(rng.normals(n))
  const v = old.map((o) => o + rng.normal() * 0.5)
  const ret = Array.from(rng.normals(n))
  const mask = randomMask(rng, 4, 10)
  mask[0] = 1
  for (const clip of [0.2, -1]) {
    const count = mask.reduce((a, b) => a + b, 0)
    const loss = (x: number[]) => x.reduce((s, vi, i) => s + (mask[i] ? valueTokenLoss(vi, old[i], ret[i], clip) / count : 0), 0)
    assertClose(t, valueRef(v, old, ret, mask, clip).grad, v.map((_, i) => fd(loss, v, i)), `clip=${clip}`, { atol: 1e-8, rtol: 1e-6 })
  }
})

t.test('reward-model gradient = finite differences', async (t) => {
  const rng = new Rng(seed + 3)
  const B = 12
  const c = Array.from(rng.normals(B, 2))
  const r = Array.from(rng.normals(B, 2))
  const ref = rewardRef(c, r, 0.3, 0.05)
  assertClose(t, ref.gradChosen, c.map((_, i) => fd((x) => rewardRef(x, r, 0.3, 0.05).loss, c, i)), 'd/d chosen', { atol: 1e-8, rtol: 1e-6 })
  assertClose(t, ref.gradRejected, r.map((_, i) => fd((x) => rewardRef(c, x, 0.3, 0.05).loss, r, i)), 'd/d rejected', { atol: 1e-8, rtol: 1e-6 })
})
