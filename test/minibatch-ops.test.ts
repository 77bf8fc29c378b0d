// The ops that let a PPO minibatch cross into the addon a few times only:
// ops.selectRows (a minibatch of several tensors in one call), ops.rowMoments
// (per-row masked sums and sums of squares), the losses' gradScale and
// ppoPolicyLoss's token count and entropy mean, and a value model's forward on
// the log-prob grid (values: 'actions'); and what keeps a pair-loss update
// (DPO, the reward model) on the device: Tensor.rows, ops.concat, ops.total
// and the pair losses' gradScale. Each is checked against the calls it
// replaces, bit for bit, and its argument errors name the argument.
import t from 'tap'
import { Model, ops, Tensor } from 'rlfarm'
import { assertThrowsWith, f32, freshSeed, i32, onEachDevice, randomMask, Rng, u8, values } from './helpers/common'

const seed = freshSeed()
t.comment(`seed ${seed} (RLFARM_TEST_SEED reproduces it)`)

const B = 7
const T = 13

/** Row r of a [B, ...] host array, copied by hand. */
function rowsOf(data: ArrayLike<number>, width: number, rows: number[]): number[] {
  return rows.flatMap((r) => Array.from({ length: width }, (_, k) => data[r * width + k]))
}

t.test('ops.selectRows copies the rows of every tensor, in the order asked, repeats included', async (t) => {
  await onEachDevice(t, 'selectRows', async (t, device) => {
    const rng = new Rng(seed)
    const a = rng.normals(B * T, 1)
    const ids = Int32Array.from({ length: B * 3 }, (_, i) => i * 7 - 20)
    const mask = randomMask(rng, B, T)
    const picked = [5, 0, 5, 3]
    const [x, y, z] = ops.selectRows([f32(a, [B, T], device), i32(ids, [B, 3], device), u8(mask, [B, T], device)], picked)
    t.same(x.shape, [4, T])
    t.same([x.dtype, y.dtype, z.dtype], ['f32', 'i32', 'u8'], 'dtypes kept')
    t.equal(x.device, device, 'on the inputs device')
    t.same(values(x), rowsOf(Float32Array.from(a), T, picked), 'f32 rows')
    t.same(values(y), rowsOf(ids, 3, picked), 'i32 rows')
    t.same(values(z), rowsOf(mask, T, picked), 'u8 rows')
    const [none] = ops.selectRows([f32(a, [B, T], device)], [])
    t.same(none.shape, [0, T], 'no rows: an empty tensor')
  })
})

t.test('ops.selectRows refuses what it cannot do, naming it', async (t) => {
  const x = f32([1, 2, 3, 4], [2, 2])
  assertThrowsWith(t, () => ops.selectRows([x], [2]), ['ops.selectRows', 'row 2 is outside tensor 0'], 'a row past the end')
  assertThrowsWith(t, () => ops.selectRows([x, f32([1], [1, 1])], [1]), ['row 1 is outside tensor 1'], 'a row past a shorter tensor')
  assertThrowsWith(t, () => ops.selectRows([x], [-1]), ['rows[0] must be a row index'], 'a negative row')
  assertThrowsWith(t, () => ops.selectRows([x], [0.5]), ['rows[0] must be a row index'], 'a fractional row')
  assertThrowsWith(t, () => ops.selectRows([x, 3 as never], [0]), ['tensors[1] must be a Tensor'], 'not a tensor')
  assertThrowsWith(t, () => ops.selectRows(x as never, [0]), ['tensors must be an array'], 'not an array')
  assertThrowsWith(t, () => ops.selectRows([Tensor.from(new Float32Array([1]), [])], [0]), ['tensor 0 must have a row dimension'], 'a scalar')
  const gone = f32([1, 2], [2, 1])
  gone.dispose()
  assertThrowsWith(t, () => ops.selectRows([gone], [0]), ['tensors[0] was disposed'], 'a disposed tensor')
})

t.test('ops.rowMoments equals rowSum of x and of x*x under the mask, with the token count first', async (t) => {
  await onEachDevice(t, 'rowMoments', async (t, device) => {
    const rng = new Rng(seed + 1)
    const xs = [rng.normals(B * T, 2), rng.normals(B * T, 5)].map((d) => f32(d, [B, T], device))
    const mask = f32(randomMask(rng, B, T), [B, T], device)
    const got = ops.rowMoments(xs, mask)
    t.same(got.shape, [B, 5])
    const columns = [ops.rowSum(mask), ...xs.flatMap((x) => [ops.rowSum(x, mask), ops.rowSum(ops.mul(x, x), mask)])].map(values)
    const expected = Array.from({ length: B }, (_, b) => columns.map((c) => c[b])).flat()
    t.same(values(got), expected, 'bit for bit the separate calls')
    t.same(ops.rowMoments([], u8(randomMask(rng, B, T), [B, T], device)).shape, [B, 1], 'no xs: the counts alone (any mask dtype)')
  })
  const mask = f32([1, 1, 0, 1], [2, 2])
  assertThrowsWith(t, () => ops.rowMoments([f32([1, 2, 3], [1, 3])], mask), ['ops.rowMoments', 'xs[0]'], 'x not shaped like the mask')
  assertThrowsWith(t, () => ops.rowMoments([i32([1, 2, 3, 4], [2, 2])], mask), ['xs[0]', 'f32'], 'x of the wrong dtype')
  assertThrowsWith(t, () => ops.rowMoments([], f32([1, 2], [2])), ['mask must be [B, T]'], 'a 1-D mask')
})

t.test("the losses' gradScale, and ppoPolicyLoss's token count and entropy mean, equal the separate calls", async (t) => {
  await onEachDevice(t, 'fused loss outputs', async (t, device) => {
    const rng = new Rng(seed + 2)
    const [logp, old, adv, entropy, v, oldV, ret] = Array.from({ length: 7 }, () => f32(rng.normals(B * T, 1), [B, T], device))
    const mask = f32(randomMask(rng, B, T), [B, T], device)
    const plain = ops.ppoPolicyLoss(logp, old, adv, mask)
    const scaled = ops.ppoPolicyLoss(logp, old, adv, mask, { gradScale: 0.37, entropy })
    t.same(values(scaled.grad), values(ops.add(plain.grad, undefined, { alpha: 0.37 })), 'policy gradient scaled as ops.add would')
    t.equal(scaled.loss, plain.loss, 'the loss is not scaled')
    const tokens = values(ops.rowSum(mask)).reduce((a, b) => a + b, 0)
    t.equal(scaled.tokens, tokens, 'tokens: the mask sum')
    t.equal(scaled.entropy, values(ops.rowSum(entropy, mask)).reduce((a, b) => a + b, 0) / tokens, 'entropy: its masked mean')
    t.equal(plain.entropy, undefined, 'no entropy asked, none given')
    const vPlain = ops.valueLoss(v, oldV, ret, mask)
    const vScaled = ops.valueLoss(v, oldV, ret, mask, { gradScale: 0.1 })
    t.same(values(vScaled.grad), values(ops.add(vPlain.grad, undefined, { alpha: 0.1 })), 'value gradient scaled')
  })
  const x = f32([0, 0], [1, 2])
  assertThrowsWith(t, () => ops.ppoPolicyLoss(x, x, x, undefined, { gradScale: NaN }), ['gradScale must be a finite number'], 'a NaN scale')
  assertThrowsWith(t, () => ops.valueLoss(x, x, x, undefined, { gradScale: Infinity }), ['gradScale must be a finite number'], 'an infinite scale')
  assertThrowsWith(t, () => ops.ppoPolicyLoss(x, x, x, undefined, { entropy: f32([0], [1, 1]) }), ['entropy'], 'entropy of another shape')
})

t.test("values: 'actions' is the value head on the log-prob grid, and backward takes its gradient there", async (t) => {
  const rng = new Rng(seed + 3)
  const make = () => Model.create({ arch: 'llama', vocab: 40, dim: 32, layers: 2, heads: 4, kvHeads: 2 }, { seed: 5, scalarHead: true })
  const tokens = i32(Array.from({ length: 3 * 9 }, () => Math.floor(rng.next() * 40)), [3, 9])
  const attentionMask = u8([0, 0, 1, 1, 1, 1, 1, 1, 1, ...new Array(18).fill(1)], [3, 9])
  const full = make()
  const grid = make()
  const all = (await full.forward(tokens, { attentionMask, train: true, logprobs: false, values: true })).values!
  const actions = (await grid.forward(tokens, { attentionMask, train: true, logprobs: false, values: 'actions' })).values!
  t.same(actions.shape, [3, 8], '[B, T - 1]')
  t.same(values(actions), rowsOf(values(all), 9, [0, 1, 2]).filter((_, i) => i % 9 !== 8), 'the first T - 1 values of each row')
  const g = rng.normals(3 * 8, 1)
  const padded = Array.from({ length: 3 * 9 }, (_, i) => (i % 9 === 8 ? 0 : g[Math.floor(i / 9) * 8 + (i % 9)]))
  await full.backward({ gradValues: f32(padded, [3, 9]) })
  await grid.backward({ gradValues: f32(g, [3, 8]) })
  t.same(values(grid.flatGradients()), values(full.flatGradients()), 'the same parameter gradients as [B, T] with a zero last column')
  await grid.forward(tokens, { attentionMask, train: true, logprobs: false, values: 'actions' })
  await t.rejects(grid.backward({ gradValues: f32(padded, [3, 9]) }), /gradValues must be a cpu f32 tensor \[3, 8\]/, 'a [B, T] gradient after an actions forward')
  await t.rejects(grid.forward(tokens, { values: 'all' as never }), /values must be true, false or 'actions'/, 'an unknown values option')
  await t.rejects(grid.forward(i32([1], [1, 1]), { logprobs: false, values: 'actions' }), /at least 2 tokens/, 'a one-token sequence')
})

t.test("a forward's ppoLoss and valueLoss are ops.ppoPolicyLoss and ops.valueLoss on its outputs, bit for bit, in the same call", async (t) => {
  const rng = new Rng(seed + 4)
  const make = () => Model.create({ arch: 'llama', vocab: 40, dim: 32, layers: 2, heads: 4, kvHeads: 2 }, { seed: 6, scalarHead: true })
  const tokens = i32(Array.from({ length: 3 * 9 }, () => Math.floor(rng.next() * 40)), [3, 9])
  const attentionMask = u8([0, 0, 1, 1, 1, 1, 1, 1, 1, ...new Array(18).fill(1)], [3, 9])
  const grid = [3, 8]
  const oldLogp = f32(rng.normals(24, 1).map((x) => x - 4), grid)
  const advantages = f32(rng.normals(24, 1), grid)
  const mask = u8(randomMask(rng, 3, 8), grid)
  const options = { clipLow: 0.1, clipHigh: 0.3, dualClip: 3, aggregate: 'seq-mean' as const, gradScale: 0.5 }
  for (const entropy of [false, true]) {
    const apart = make()
    const fused = make()
    const out = await apart.forward(tokens, { attentionMask, train: true, entropy, temperature: 0.7 })
    const want = ops.ppoPolicyLoss(out.logp!, oldLogp, advantages, mask, { ...options, entropy: out.entropy })
    const got = await fused.forward(tokens, { attentionMask, train: true, entropy, temperature: 0.7, ppoLoss: { oldLogp, advantages, mask, ...options } })
    const { grad, ...scalars } = got.ppoLoss!
    const { grad: wantGrad, ...wantScalars } = want
    t.same(scalars, wantScalars, `the loss and its statistics (entropy ${entropy})`)
    t.same(values(grad), values(wantGrad), 'the gradient')
    t.same(values(got.logp!), values(out.logp!), 'and the log-probs still come back')
    await apart.backward({ gradLogp: wantGrad })
    await fused.backward({ gradLogp: grad })
    t.same(values(fused.flatGradients()), values(apart.flatGradients()), 'the same parameter gradients')
  }
  const oldValues = f32(rng.normals(24, 1), grid)
  const returns = f32(rng.normals(24, 1), grid)
  for (const clip of [0.2, null]) {
    const apart = make()
    const fused = make()
    const v = (await apart.forward(tokens, { attentionMask, train: true, logprobs: false, values: 'actions' })).values!
    const want = ops.valueLoss(v, oldValues, returns, mask, { clip, gradScale: 0.25 })
    const got = (await fused.forward(tokens, { attentionMask, train: true, logprobs: false, values: 'actions', valueLoss: { oldValues, returns, mask, clip, gradScale: 0.25 } })).valueLoss!
    t.same([got.loss, got.clipFraction], [want.loss, want.clipFraction], `the value loss (clip ${clip})`)
    t.same(values(got.grad), values(want.grad), 'its gradient')
  }
  // Without a mask, all ones, as the ops take it.
  const model = make()
  const noMask = (await model.forward(tokens, { attentionMask, ppoLoss: { oldLogp, advantages } })).ppoLoss!
  t.equal(noMask.tokens, 24, 'no mask: every position counts')
})

t.test("a forward's loss inputs are checked before the forward runs, naming the field", async (t) => {
  const model = Model.create({ arch: 'gpt2', vocab: 40, dim: 16, layers: 1, heads: 2 }, { seed: 1, scalarHead: true })
  const tokens = i32(new Array(2 * 5).fill(3), [2, 5])
  const g = f32(new Array(8).fill(0), [2, 4])
  const wide = f32(new Array(10).fill(0), [2, 5])
  const cases: [object, string[], string][] = [
    [{ ppoLoss: { oldLogp: g, advantages: wide } }, ['model.forward', 'ppoLoss.advantages must be shaped like the output it goes with, [2,4]', 'got [2,5]'], 'advantages off the grid'],
    [{ ppoLoss: { oldLogp: g } }, ['model.forward', 'ppoLoss.advantages must be a Tensor'], 'a missing tensor'],
    [{ ppoLoss: { oldLogp: g, advantages: g, clipLo: 0.1 } }, ['ppoLoss', 'clipLo'], 'an unknown key'],
    [{ ppoLoss: { oldLogp: g, advantages: g, aggregate: 'sum' } }, ['ppoLoss.aggregate'], 'an unknown aggregate'],
    [{ ppoLoss: { oldLogp: g, advantages: g, gradScale: NaN } }, ['ppoLoss.gradScale must be a finite number'], 'a NaN scale'],
    [{ ppoLoss: [g, g] }, ['model.forward: ppoLoss must be an object'], 'an array'],
    [{ logprobs: false, ppoLoss: { oldLogp: g, advantages: g } }, ['ppoLoss needs log-probs'], 'no log-probs'],
    [{ valueLoss: { oldValues: g, returns: g } }, ['valueLoss needs values'], 'no values'],
    [{ values: true, valueLoss: { oldValues: g, returns: g } }, ['valueLoss.oldValues must be shaped like the output it goes with, [2,5]'], 'values on [B, T], inputs on the grid'],
    [{ values: 'actions', valueLoss: { oldValues: g, returns: g, clip: -1 } }, ['valueLoss.clip must be >= 0'], 'a negative clip'],
  ]
  for (const [options, fragments, what] of cases) {
    await t.rejects(model.forward(tokens, options as never), new RegExp(fragments.map((f) => f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')), what)
  }
  const ok = await model.forward(tokens, { values: 'actions', valueLoss: { oldValues: g, returns: g } })
  t.ok(Number.isFinite(ok.valueLoss!.loss), 'and the model still works after the refusals')
})

t.test('AdamW.step({ zeroGrad: true }) leaves the gradients at zero, after the same update', async (t) => {
  const { AdamW } = await import('rlfarm')
  const make = () => Model.create({ arch: 'gpt2', vocab: 40, dim: 16, layers: 1, heads: 2 }, { seed: 2 })
  const tokens = i32(Array.from({ length: 10 }, (_, i) => (i * 7) % 40), [2, 5])
  const g = f32(Array.from({ length: 8 }, (_, i) => i / 8 - 0.5), [2, 4])
  const runs = []
  for (const zeroGrad of [false, true]) {
    const model = make()
    const opt = new AdamW(model, { lr: 0.01 })
    await model.forward(tokens, { train: true })
    await model.backward({ gradLogp: g })
    const r = await opt.step({ maxGradNorm: 0.5, zeroGrad })
    runs.push({ model, r })
  }
  t.equal(runs[1].r.gradNorm, runs[0].r.gradNorm, 'the same norm')
  t.same(values(runs[1].model.flatParameters()), values(runs[0].model.flatParameters()), 'the same update')
  t.ok(values(runs[0].model.flatGradients()).some((x) => x !== 0), 'without it the gradients stay')
  t.ok(values(runs[1].model.flatGradients()).every((x) => x === 0), 'with it they are zero')
  const opt = new AdamW(runs[0].model)
  await t.rejects(opt.step({ zeroGrad: 'yes' as never }), /AdamW.step: zeroGrad must be true or false/, 'zeroGrad is a boolean')
})

t.test('Tensor.rows is a view of rows, ops.concat puts rows together, ops.total sums as JavaScript does', async (t) => {
  await onEachDevice(t, 'rows, concat, total', async (t, device) => {
    const rng = new Rng(seed + 7)
    const a = rng.normals(B * 3, 1)
    const x = f32(a, [B, 3], device)
    const mid = x.rows(2, 5)
    t.same(mid.shape, [3, 3], 'rows 2..4 of [7, 3]')
    t.same(values(mid), rowsOf(a, 3, [2, 3, 4]), 'their values')
    t.ok(mid.sharesMemoryWith(x), 'a view: no copy')
    t.same(x.rows(4).shape, [3, 3], 'end defaults to the last row')
    t.same(x.rows(3, 3).shape, [0, 3], 'an empty range')
    const ids = i32(Array.from({ length: 8 }, (_, i) => i), [4, 2], device)
    const joined = ops.concat([x.rows(5), x.rows(0, 2), f32([9, 8, 7], [1, 3], device)])
    t.same(joined.shape, [5, 3], '2 + 2 + 1 rows')
    t.same(values(joined), [...rowsOf(a, 3, [5, 6, 0, 1]), 9, 8, 7], 'the rows of each in turn')
    t.notOk(joined.sharesMemoryWith(x), 'a copy')
    t.same(values(ops.concat([ids.rows(2), ids.rows(0, 1)])), [4, 5, 6, 7, 0, 1], 'any dtype')
    const v = f32(rng.normals(1000, 3), [10, 100], device)
    t.equal(ops.total(v), values(v).reduce((s, y) => s + y, 0), 'the double sum of the f32 values, in order')
    t.equal(ops.total(v.rows(3, 3)), 0, 'nothing sums to 0')
  })
  const x = f32([1, 2, 3, 4], [2, 2])
  assertThrowsWith(t, () => x.rows(1, 3), ['Tensor.rows: end must be an integer from 0 to 2', 'got 3'], 'past the end')
  assertThrowsWith(t, () => x.rows(2, 1), ['Tensor.rows: end (1) is before start (2)'], 'backwards')
  assertThrowsWith(t, () => x.rows(0.5), ['Tensor.rows: start must be an integer'], 'a fraction')
  assertThrowsWith(t, () => Tensor.from(new Float32Array([1]), []).rows(0, 0), ['Tensor.rows: the tensor (f32 [] on cpu) has no row dimension'], 'a scalar')
  assertThrowsWith(t, () => ops.concat([]), ['ops.concat: tensors must hold at least one tensor'], 'nothing')
  assertThrowsWith(t, () => ops.concat([x, f32([1, 2, 3], [1, 3])]), ["ops.concat: tensors[1] is f32 [1, 3] on cpu; its rows must be shaped as tensors[0]'s"], 'rows of another shape')
  assertThrowsWith(t, () => ops.concat([x, i32([1, 2], [1, 2])]), ['ops.concat: tensors[1] is i32; tensors[0] is f32'], 'another dtype')
  assertThrowsWith(t, () => ops.concat([x, 3 as never]), ['ops.concat: tensors[1] must be a Tensor'], 'not a tensor')
  assertThrowsWith(t, () => ops.total(i32([1], [1])), ['ops.total: x must be f32'], 'an i32 tensor')
})

t.test("the pair losses' gradScale multiplies their f32 gradients in double, and only the gradients", async (t) => {
  await onEachDevice(t, 'pair-loss gradScale', async (t, device) => {
    const rng = new Rng(seed + 8)
    const [pc, pr, rc, rr] = Array.from({ length: 4 }, () => f32(rng.normals(B, 5), [B], device))
    const scaledAsJs = (g: Tensor, s: number) => Array.from(Float32Array.from(g.toArray(), (x) => x * s))
    for (const s of [1 / 3, 0.37, 2.5, 0]) {
      const plain = ops.dpoLoss({ policyChosen: pc, policyRejected: pr, refChosen: rc, refRejected: rr })
      const scaled = ops.dpoLoss({ policyChosen: pc, policyRejected: pr, refChosen: rc, refRejected: rr }, { gradScale: s })
      t.same(values(scaled.gradChosen), scaledAsJs(plain.gradChosen, s), `dpoLoss gradChosen x ${s}`)
      t.same(values(scaled.gradRejected), scaledAsJs(plain.gradRejected, s), `dpoLoss gradRejected x ${s}`)
      t.equal(scaled.loss, plain.loss, 'the loss is not scaled')
      t.same(values(scaled.chosenReward), values(plain.chosenReward), 'nor the rewards')
      const rPlain = ops.rewardLoss(pc, pr, { centerCoef: 0.01 })
      const rScaled = ops.rewardLoss(pc, pr, { centerCoef: 0.01, gradScale: s })
      t.same(values(rScaled.gradChosen), scaledAsJs(rPlain.gradChosen, s), `rewardLoss gradChosen x ${s}`)
      t.same(values(rScaled.gradRejected), scaledAsJs(rPlain.gradRejected, s), `rewardLoss gradRejected x ${s}`)
      t.equal(rScaled.accuracy, rPlain.accuracy, 'the accuracy is not scaled')
    }
    // Views of one [2B] tensor, as the trainers pass their chosen and rejected halves.
    const both = ops.concat([pc, pr])
    const viewed = ops.dpoLoss({ policyChosen: both.rows(0, B), policyRejected: both.rows(B), refChosen: rc, refRejected: rr })
    const direct = ops.dpoLoss({ policyChosen: pc, policyRejected: pr, refChosen: rc, refRejected: rr })
    t.same(values(viewed.gradRejected), values(direct.gradRejected), 'row views of one tensor give the same loss and gradients')
    t.equal(viewed.loss, direct.loss)
  })
  const x = f32([0, 0], [2])
  assertThrowsWith(t, () => ops.dpoLoss({ policyChosen: x, policyRejected: x, refChosen: x, refRejected: x }, { gradScale: NaN }), ['ops.dpoLoss: gradScale must be a finite number'], 'a NaN scale')
  assertThrowsWith(t, () => ops.rewardLoss(x, x, { gradScale: Infinity }), ['ops.rewardLoss: gradScale must be a finite number'], 'an infinite scale')
})
