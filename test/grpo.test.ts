// The GRPO family's losses and advantages against float64 references written
// from TRL's GRPOTrainer (test/helpers/reference.ts): each loss_type at token
// and sequence (GSPO) level, with and without the KL term, over micro-batches
// that accumulate into one step; scale_rewards; the former option names; and
// the trainer on a tiny model: every variant learns, dynamic sampling refills
// its batch, the logged metrics are there and agree with each other.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { Tensor, train, type RunConfigInput } from 'rlfarm'
import { groupAdvantages, groupLossPart, resolveGroupOptions, zeroStdShare, type GroupLossOptions, type LossType } from '../dist/algorithms/grpo.js'
import type { GroupConfig } from '../dist/config/types.generated.js'
import { assertClose, assertThrowsWith, freshSeed, Rng, tempDir, values } from './helpers/common'
import { mean, readMetrics, TINY_POLICY, toyData } from './helpers/toy-data'
import { grpoAdvantagesRef, grpoRef, type GrpoRefOptions } from './helpers/reference'

const seed = freshSeed()
t.comment(`seed ${seed} (set RLFARM_TEST_SEED to replay)`)

/**
 * A rollout batch: rows x steps, right-padded masks of random lengths of 3 or
 * more (row 0 empty), log-ratios spread around 0, each row's shifted by (r % 4 - 1.5) x
 * shift, and advantages of sign + on odd rows, - on even ones.
 */
function batch(rng: Rng, rows: number, steps: number, spread: number, shift = 0) {
  const n = rows * steps
  const old = rng.normals(n, 1).map((x) => x - 2)
  const logp = old.map((o, i) => o + rng.normal() * spread + ((Math.floor(i / steps) % 4) - 1.5) * shift)
  const ref = old.map((o) => o + rng.normal() * 0.3)
  const adv = Float32Array.from({ length: rows }, (_, r) => Math.abs(rng.normal()) * (r % 2 ? 1 : -1))
  const mask = new Float32Array(n)
  for (let r = 1; r < rows; r++) {
    const len = rng.int(3, steps + 1)
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
    // Rows are shifted so that both bounds clip: rows 3, 7, 11 (A > 0) up, rows 4, 8 (A < 0)
    // down, most of their tokens past the token clips, and their means (sequence-level ratios)
    // past GSPO's small clips.
    const b = level === 'token' ? batch(rng, rows, steps, 0.3, 0.3) : batch(rng, rows, steps, 0.1, 0.15)
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

// ---- the trainer on a tiny model (as test/trainers.test.ts) ----

const data = toyData()
t.teardown(() => fs.rmSync(data.dir, { recursive: true, force: true }))

/** GRPO on the toy prompts with the count-'a' reward (8 tokens, no stop), `group` merged in. */
function grpoConfig(out: string, name: string, group: RunConfigInput['group'], extra: RunConfigInput = {}): RunConfigInput {
  return {
    algorithm: 'grpo',
    name,
    output_dir: out,
    seed: 1,
    policy: TINY_POLICY,
    data: { chat_template: false, max_length: 40, prompts: data.prompts },
    generation: { max_new_tokens: 8, stop_at_eos: false },
    optimizer: { lr: 1e-2 },
    reward_function: { name: 'count_token', token: 97 },
    training: { batch_size: 16, max_steps: 20 },
    logging: { progress: 'none' },
    ...extra,
    group: { group_size: 4, ...group },
  }
}

// Here every response has 8 tokens, so the token-level loss types differ only by a constant factor
// (which AdamW does not see): their differences are tested against the reference above.
t.test('every loss_type, and GSPO, raises the toy reward', async (t) => {
  const out = tempDir(t, 'runs')
  const variants: [string, RunConfigInput['group']][] = [
    ...LOSS_TYPES.map((loss_type) => [loss_type, { loss_type }] as [string, RunConfigInput['group']]),
    ['gspo', { importance_sampling_level: 'sequence', clip_low: 3e-4, clip_high: 4e-4, num_iterations: 2 }],
    ['dr_grpo unscaled, kl', { loss_type: 'dr_grpo', scale_rewards: 'none', kl_coef: 0.01 }],
  ]
  for (const [name, group] of variants) {
    const m = readMetrics((await train(grpoConfig(out, name.replace(/\W+/g, '-'), group))).runDir)
    const first = mean(m.slice(0, 4).map((x) => x.score))
    const last = mean(m.slice(-4).map((x) => x.score))
    t.ok(last > first + 1, `${name}: ${first.toFixed(2)} -> ${last.toFixed(2)}`)
    t.ok(m.every((x) => Number.isFinite(x.loss)), `${name}: finite losses`)
  }
})

t.test('logged metrics: entropy, clip shares, lengths, zero-std groups', async (t) => {
  const out = tempDir(t, 'runs')
  const one = readMetrics((await train(grpoConfig(out, 'mu1', {}, { training: { batch_size: 16, max_steps: 3 } }))).runDir)
  for (const key of ['score', 'score_std', 'entropy', 'clip_fraction', 'clip_fraction_low', 'clip_fraction_high', 'approx_kl', 'response_length', 'response_length_max', 'response_clipped', 'zero_std_groups', 'policy_loss', 'kl_loss']) {
    t.ok(one.every((x) => typeof x[key] === 'number' && Number.isFinite(x[key])), `logs ${key}`)
  }
  t.ok(one.every((x) => x.response_length === 8 && x.response_length_max === 8 && x.response_clipped === 1), 'no stop token: every response runs to max_new_tokens and counts as clipped')
  t.ok(one.every((x) => x.entropy > 0 && x.entropy <= Math.log(260)), `entropy per token, nats, within (0, log V]: ${one[0].entropy.toFixed(3)}`)
  t.ok(one.every((x) => x.clip_fraction === 0 && x.approx_kl === 0), 'one iteration: the policy is the sampling policy, nothing is clipped')
  t.ok(one.every((x) => x.zero_std_groups >= 0 && x.zero_std_groups <= 1 && x.zero_std_groups * 16 === Math.round(x.zero_std_groups * 16)), 'zero-std groups: a share of the 16 groups')
  // Group-scaled advantages have mean square (G - 1) / G over a group with spread (less a
  // hair for the 1e-4 added to its std, at least 0.5 here) and 0 over one without.
  t.ok(one.every((x) => Math.abs(x.advantage_abs ** 2 - 0.75 * (1 - x.zero_std_groups)) < 1e-3), 'advantage_abs agrees with the zero-std share')

  const four = readMetrics((await train(grpoConfig(out, 'mu4', { num_iterations: 4, clip_low: 0.1, clip_high: 0.1 }, { optimizer: { lr: 3e-2 }, training: { batch_size: 16, max_steps: 4 } }))).runDir)
  t.ok(four.some((x) => x.clip_fraction_low > 0) && four.some((x) => x.clip_fraction_high > 0), 'four iterations with a large step: tokens are clipped at both bounds')
  t.ok(four.every((x) => Math.abs(x.clip_fraction - x.clip_fraction_low - x.clip_fraction_high) < 1e-6), 'clip_fraction = low + high')
})

t.test('dynamic sampling drops groups whose rewards are all equal and samples more prompts to fill the batch', async (t) => {
  const out = tempDir(t, 'runs')
  const B = 16
  const m = readMetrics((await train(grpoConfig(out, 'dapo', { dynamic_sampling: true, max_sampling_rounds: 4 }, { training: { batch_size: B, max_steps: 8 } }))).runDir)
  for (const x of m) {
    t.equal(x.prompts_drawn, x.sampling_rounds * B, `step ${x.step}: ${x.sampling_rounds} rounds of ${B} prompts`)
    t.ok(x.groups_kept <= B && x.sampling_rounds <= 4, `step ${x.step}: at most ${B} groups kept (${x.groups_kept}), at most 4 rounds`)
    if (x.sampling_rounds < 4) t.equal(x.groups_kept, B, `step ${x.step}: stopped sampling once the batch was full`)
    // Every kept group has spread, so its advantages have mean square (G - 1) / G (less a hair for
    // the 1e-4 added to the std); one zero-std group of 16 would take 0.047 off.
    t.ok(Math.abs(x.advantage_abs ** 2 - 0.75) < 1e-3, `step ${x.step}: no zero-std group was trained on`)
  }
  t.ok(m.some((x) => x.sampling_rounds > 1 && x.groups_kept === B), 'some step refilled its batch from more rounds')
  const without = readMetrics((await train(grpoConfig(out, 'plain', {}, { training: { batch_size: B, max_steps: 2 } }))).runDir)
  t.ok(without[0].zero_std_groups > 0 && without[0].advantage_abs ** 2 < 0.75 - 1e-3, 'without it the same first batch trains on zero-std groups')
  t.notOk('prompts_drawn' in without[0], 'and logs no sampling rounds')

  // A reward that never differs within a group: nothing to keep, no update.
  const flat = await train(grpoConfig(out, 'flat', { dynamic_sampling: true, max_sampling_rounds: 2 }, { reward_function: { name: 'length' }, training: { batch_size: 4, max_steps: 2 } }))
  const fm = readMetrics(flat.runDir)
  t.ok(fm.every((x) => x.groups_kept === 0 && x.sampling_rounds === 2 && x.prompts_drawn === 8 && x.grad_norm === 0 && x.loss === 0), 'all groups equal: two rounds drawn, nothing kept, no update')
})

t.test('config errors for the former names', async (t) => {
  const out = tempDir(t, 'runs')
  await t.rejects(train(grpoConfig(out, 'both', { epochs: 2, num_iterations: 3 })), { message: /group\.epochs \(2\) and group\.num_iterations \(3\) are one setting/ })
  await t.rejects(train({ ...grpoConfig(out, 'rloo', { scale_rewards: 'group' }), algorithm: 'rloo' }), { message: /group\.scale_rewards \(group\) applies to grpo/ })
})

t.test('a resumed GRPO run with dynamic sampling, GSPO, mu = 2 and KL equals an uninterrupted one, bit for bit', async (t) => {
  const out = tempDir(t, 'runs')
  const group = { dynamic_sampling: true, importance_sampling_level: 'sequence', clip_low: 3e-4, clip_high: 4e-4, num_iterations: 2, kl_coef: 0.01 } as const
  const extra = { training: { batch_size: 8, max_steps: 6 } }
  const whole = await train(grpoConfig(out, 'whole', group, extra))
  const controller = new AbortController()
  const cut = await train(grpoConfig(out, 'cut', group, extra), { signal: controller.signal, onStep: (e) => e.step === 3 && controller.abort() })
  t.equal(cut.step, 3, 'stopped after step 3')
  const resumed = await train(grpoConfig(out, 'cut', group, extra), { resume: true })
  const bytes = (dir: string) => fs.readFileSync(path.join(dir, 'model', 'model.safetensors'))
  t.ok(bytes(resumed.runDir).equals(bytes(whole.runDir)), 'the final weights are identical')
  const strip = (m: Record<string, number>[]) => m.map(({ time: _, ...rest }) => rest)
  const wm = strip(readMetrics(whole.runDir))
  t.same(strip(readMetrics(resumed.runDir)), wm, 'the same metrics, step for step')
  t.ok(wm.some((x) => x.sampling_rounds > 1), 'the run drew extra sampling rounds')
})
