// The ops that let a PPO minibatch cross into the addon a few times only:
// ops.selectRows (a minibatch of several tensors in one call), ops.rowMoments
// (per-row masked sums and sums of squares), the losses' gradScale and
// ppoPolicyLoss's token count and entropy mean, and a value model's forward on
// the log-prob grid (values: 'actions'). Each is checked against the calls it
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
