// The GRPO family's losses and advantages against float64 references written
// from TRL's GRPOTrainer (test/helpers/reference.ts): each loss_type at token
// and sequence (GSPO) level, with and without the KL term, over micro-batches
// that accumulate into one step; scale_rewards; the former option names.
import t from 'tap'
import { Tensor } from 'rlfarm'
import { groupAdvantages, groupLossPart, resolveGroupOptions, zeroStdShare, type GroupLossOptions, type LossType } from '../dist/algorithms/grpo.js'
import type { GroupConfig } from '../dist/config/types.generated.js'
import { assertClose, assertThrowsWith, freshSeed, Rng, values } from './helpers/common'
import { grpoAdvantagesRef, grpoRef, type GrpoRefOptions } from './helpers/reference'

const seed = freshSeed()
t.comment(`seed ${seed} (set RLFARM_TEST_SEED to replay)`)

/** A rollout batch: rows x steps, right-padded masks of random lengths (one row empty), ratios around 1. */
function batch(rng: Rng, rows: number, steps: number, spread: number) {
  const n = rows * steps
  const old = rng.normals(n, 1).map((x) => x - 2)
  const logp = old.map((o) => o + rng.normal() * spread)
  const ref = old.map((o) => o + rng.normal() * 0.3)
  const adv = rng.normals(rows)
  const mask = new Float32Array(n)
  for (let r = 1; r < rows; r++) {
    const len = rng.int(1, steps + 1)
    for (let s = 0; s < len; s++) mask[r * steps + s] = 1
  }
  return { logp, old, ref, adv, mask }
}

/** The loss and gradient of the batch through groupLossPart, micro-batch by micro-batch. */
function viaParts(b: ReturnType<typeof batch>, rows: number, steps: number, microBatches: number[][], o: GroupLossOptions) {
  const tokens = b.mask.reduce((a, x) => a + x, 0)
  const grad = new Array<number>(rows * steps).fill(0)
  let loss = 0
  const shares = { clipLow: 0, clipHigh: 0, clipRegion: 0 }
  const pick = (x: Float32Array, mb: number[]) => Tensor.from(Float32Array.from(mb.flatMap((r) => Array.from(x.subarray(r * steps, (r + 1) * steps)))), [mb.length, steps])
  for (const mb of microBatches) {
    const part = groupLossPart(pick(b.logp, mb), pick(b.old, mb), pick(b.ref, mb), Float32Array.from(mb, (r) => b.adv[r]), pick(b.mask, mb), { rows, tokens }, o)
    loss += part.loss
    const g = values(part.grad)
    mb.forEach((r, i) => g.slice(i * steps, (i + 1) * steps).forEach((v, s) => (grad[r * steps + s] = v)))
    shares.clipLow += part.clipLow
    shares.clipHigh += part.clipHigh
    shares.clipRegion += part.clipRegion
  }
  return { loss, grad, ...shares }
}

const LOSS_TYPES: LossType[] = ['grpo', 'bnpo', 'dr_grpo', 'dapo']

t.test('each loss_type at token and sequence level, with and without KL, against TRL\'s formulas', async (t) => {
  const rng = new Rng(seed)
  const [rows, steps] = [12, 9]
  const microBatches = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
  for (const level of ['token', 'sequence'] as const) {
    // Sequence-level ratios are means, so they need a wider spread (and GSPO's small clips) to clip.
    const b = batch(rng, rows, steps, level === 'token' ? 0.3 : 0.6)
    for (const lossType of LOSS_TYPES) {
      for (const beta of [0, 0.04]) {
        const o: GrpoRefOptions = { lossType, level, clipLow: level === 'token' ? 0.2 : 0.05, clipHigh: level === 'token' ? 0.28 : 0.08, beta, maxCompletionLength: 10 }
        const label = `${lossType} ${level} beta=${beta}`
        const ref = grpoRef(b.logp, b.old, b.ref, b.adv, b.mask, rows, steps, microBatches, o)
        const got = viaParts(b, rows, steps, microBatches, { ...o, klCoef: beta, klEstimator: 'k3' })
        assertClose(t, [got.loss], [ref.loss], `${label}: loss`, { atol: 1e-6, rtol: 1e-5 })
        assertClose(t, got.grad, ref.grad, `${label}: gradient`, { atol: 1e-7, rtol: 1e-4 })
        assertClose(t, [got.clipLow, got.clipHigh, got.clipRegion], [ref.clipLow, ref.clipHigh, ref.clipRegion], `${label}: clip shares low, high, region`, { atol: 1e-6 })
        t.ok(ref.clipLow > 0 && ref.clipHigh > 0, `${label}: the case clips at both bounds (${ref.clipLow.toFixed(3)}, ${ref.clipHigh.toFixed(3)})`)
      }
    }
  }
})

t.test('the reference gradients are the derivatives of the reference losses', async (t) => {
  const rng = new Rng(seed + 1)
  const [rows, steps] = [6, 5]
  const b = batch(rng, rows, steps, 0.3)
  const logp = Float64Array.from(b.logp)
  for (const level of ['token', 'sequence'] as const) {
    for (const lossType of LOSS_TYPES) {
      // Clips wide enough not to bind: the loss is smooth, so central differences hold.
      const o: GrpoRefOptions = { lossType, level, clipLow: 0.99, clipHigh: 100, beta: 0.1, maxCompletionLength: 7 }
      const mbs = [[0, 1, 2], [3, 4, 5]]
      const ref = grpoRef(logp, b.old, b.ref, b.adv, b.mask, rows, steps, mbs, o)
      const h = 1e-6
      const fd = Array.from(logp, (_, i) => {
        const plus = Float64Array.from(logp)
        const minus = Float64Array.from(logp)
        plus[i] += h
        minus[i] -= h
        return (grpoRef(plus, b.old, b.ref, b.adv, b.mask, rows, steps, mbs, o).loss - grpoRef(minus, b.old, b.ref, b.adv, b.mask, rows, steps, mbs, o).loss) / (2 * h)
      })
      assertClose(t, ref.grad, fd, `${lossType} ${level}: analytic = finite differences`, { atol: 1e-7, rtol: 1e-5 })
    }
  }
})

t.test('GSPO: one ratio per sequence, exp(mean log-ratio), clipped as a whole', async (t) => {
  const steps = 4
  // Row 0: token log-ratios 0.3, -0.1, 0.1, 0.1 (mean 0.1, ratio e^0.1 = 1.105: past 1 + 0.05);
  // row 1: log-ratios 0.02 each except a masked token whose value must not count.
  const old = Float32Array.from([-1, -1, -1, -1, -2, -2, -2, -2])
  const logp = Float32Array.from([-0.7, -1.1, -0.9, -0.9, -1.98, -1.98, -1.98, 5])
  const mask = Float32Array.from([1, 1, 1, 1, 1, 1, 1, 0])
  const o: GroupLossOptions = { lossType: 'grpo', level: 'sequence', clipLow: 0.05, clipHigh: 0.05, klCoef: 0, klEstimator: 'k3', maxCompletionLength: steps }
  const adv = Float32Array.from([1, 1])
  const part = groupLossPart(Tensor.from(logp, [2, steps]), Tensor.from(old, [2, steps]), undefined, adv, Tensor.from(mask, [2, steps]), { rows: 2, tokens: 7 }, o)
  const g = values(part.grad)
  t.same(g.slice(0, 4), [0, 0, 0, 0], 'row 0: its sequence ratio is clipped, so no token of it moves, although its token at log-ratio -0.1 is inside the clip')
  const s1 = Math.exp(0.02)
  assertClose(t, g.slice(4), [-s1 / 2 / 3, -s1 / 2 / 3, -s1 / 2 / 3, 0], 'row 1: each token gets -A s / (rows x tokens of the row); the masked one nothing', { rtol: 1e-5 })
  assertClose(t, [part.loss], [(-(1 + 0.05) - s1) / 2], 'the loss: the mean over sequences of -min(s A, clip(s) A)', { rtol: 1e-6 })
  assertClose(t, [part.clipHigh, part.clipLow, part.clipRegion], [0.5, 0, 0.5], 'clip shares count sequences at this level')
  const tokenLevel = groupLossPart(Tensor.from(logp, [2, steps]), Tensor.from(old, [2, steps]), undefined, adv, Tensor.from(mask, [2, steps]), { rows: 2, tokens: 7 }, { ...o, level: 'token' })
  t.same(values(tokenLevel.grad).slice(0, 4).map((x) => x !== 0), [false, true, false, false], 'at token level that token of row 0 does move')
})

t.test('advantages: scale_rewards group, batch and none as TRL; rloo leave-one-out; zero-std groups', async (t) => {
  const rng = new Rng(seed + 2)
  const rewards = Float32Array.from(rng.normals(12, 2))
  rewards.fill(0.5, 8, 12) // a group whose rewards are all equal
  for (const scale of ['group', 'batch', 'none'] as const) {
    assertClose(t, groupAdvantages(rewards, 4, 'grpo', scale), grpoAdvantagesRef(rewards, 4, scale), `grpo, scale_rewards ${scale}`, { atol: 1e-5, rtol: 1e-5 })
  }
  t.same(Array.from(groupAdvantages(rewards, 4, 'grpo', 'group').slice(8)), [0, 0, 0, 0], 'an all-equal group has zero advantage')
  const group = [1, 2, 3, 6]
  assertClose(t, groupAdvantages(Float32Array.from(group), 4, 'rloo', 'none'), group.map((r) => r - (12 - r) / 3), 'rloo: r minus the mean of the others')
  t.equal(zeroStdShare(rewards, 4), 1 / 3, 'one group of three has zero std')
  t.throws(() => groupAdvantages(rewards, 5, 'grpo'), /12 scores do not make groups of 5/)
})

t.test('the former names: epochs is num_iterations, aggregate is loss_type; conflicts are errors', async (t) => {
  const base = { group_size: 4, clip_low: 0.2, kl_coef: 0, kl_estimator: 'k3', importance_sampling_level: 'token', dynamic_sampling: false, max_sampling_rounds: 4 } as GroupConfig
  t.same(resolveGroupOptions(base, 'grpo'), { lossType: 'dapo', scaleRewards: 'group', level: 'token', numIterations: 1 }, 'defaults as TRL: dapo, group, token, 1')
  t.same(resolveGroupOptions(base, 'rloo').scaleRewards, 'none', 'rloo: unscaled')
  t.same(resolveGroupOptions({ ...base, epochs: 3, aggregate: 'seq-mean' }, 'grpo'), { lossType: 'grpo', scaleRewards: 'group', level: 'token', numIterations: 3 }, 'epochs 3 and aggregate seq-mean still work')
  t.equal(resolveGroupOptions({ ...base, aggregate: 'token-mean' }, 'grpo').lossType, 'bnpo', 'token-mean is bnpo')
  t.equal(resolveGroupOptions({ ...base, epochs: 2, num_iterations: 2 }, 'grpo').numIterations, 2, 'both names agreeing is fine')
  assertThrowsWith(t, () => resolveGroupOptions({ ...base, epochs: 2, num_iterations: 3 }, 'grpo'), ['group.epochs (2)', 'group.num_iterations (3)', 'give num_iterations only'], 'epochs and num_iterations disagree')
  assertThrowsWith(t, () => resolveGroupOptions({ ...base, aggregate: 'token-mean', loss_type: 'dapo' }, 'grpo'), ['group.aggregate (token-mean)', 'group.loss_type (dapo)', 'token-mean is bnpo'], 'aggregate and loss_type disagree')
  assertThrowsWith(t, () => resolveGroupOptions({ ...base, scale_rewards: 'batch' }, 'rloo'), ['group.scale_rewards (batch) applies to grpo'], 'scale_rewards on rloo')
})
