// Bad input never aborts the process: every op names the argument, what it
// expected and what it got. A fuzz pass throws random junk at every op.
import t from 'tap'
import { ops, Tensor, type DType } from 'rlfarm'
import { assertThrowsWith, cudaAvailable, f32, i32, Rng, u8 } from './helpers/common'

t.test('logprobs and logprobsBackward', async (t) => {
  const logits = f32([1, 2, 3, 4, 5, 6], [2, 3])
  const y = i32([0, 2], [2])
  assertThrowsWith(t, () => ops.logprobs(i32([1, 2, 3, 4, 5, 6], [2, 3]), y), ['ops.logprobs', 'logits must be f32 or bf16', 'got i32 [2, 3] on cpu'], 'i32 logits')
  assertThrowsWith(t, () => ops.logprobs(logits, f32([0, 2], [2])), ['ops.logprobs', 'targets must be i32', 'got f32 [2]'], 'f32 targets')
  assertThrowsWith(t, () => ops.logprobs(logits, i32([0, 1, 2], [3])), ['targets must have shape [2]', 'got [3]'], 'targets shape')
  assertThrowsWith(t, () => ops.logprobs(logits, i32([0, 3], [2])), ['targets[1] = 3 is outside [0, 3)'], 'target too large')
  assertThrowsWith(t, () => ops.logprobs(logits, i32([-1, 0], [2])), ['targets[0] = -1 is outside [0, 3)'], 'negative target')
  assertThrowsWith(t, () => ops.logprobs(Tensor.zeros([2, 0]), y), ['empty last dimension (V = 0)'], 'V = 0')
  assertThrowsWith(t, () => ops.logprobs(Tensor.zeros([]), Tensor.zeros([], { dtype: 'i32' })), ['at least one dimension'], 'scalar logits')
  for (const temperature of [0, -1, NaN, Infinity]) {
    assertThrowsWith(t, () => ops.logprobs(logits, y, { temperature }), ['temperature must be a finite number > 0', `got ${temperature}`], `temperature ${temperature}`)
  }
  assertThrowsWith(t, () => ops.logprobs(logits, y, { temperature: '1' as unknown as number }), ['temperature must be a number', "got '1'"], 'temperature as a string')
  assertThrowsWith(t, () => ops.logprobs([1, 2, 3] as unknown as Tensor, y), ['ops.logprobs: logits must be a Tensor', 'got an array'], 'an array for a tensor')
  assertThrowsWith(t, () => ops.logprobs(logits, y, { entropie: true } as never), ["unknown option 'entropie'", "Did you mean 'entropy'?"], 'misspelt option')
  assertThrowsWith(t, () => ops.logprobsBackward(logits, y, null), ['give gradLogp, gradEntropy or both'], 'no gradient')
  assertThrowsWith(t, () => ops.logprobsBackward(logits, y, f32([1], [1])), ['gradLogp must have the shape of targets, [2]', 'got [1]'], 'gradLogp shape')
  assertThrowsWith(t, () => ops.logprobsBackward(logits, y, null, { gradEntropy: i32([1, 1], [2]) }), ['gradEntropy must be f32'], 'gradEntropy dtype')
})

t.test('gae, whiten, klPenalty', async (t) => {
  const r = f32([1, 2, 3, 4], [2, 2])
  assertThrowsWith(t, () => ops.gae(f32([1, 2], [2]), f32([1, 2], [2])), ['ops.gae', 'rewards must be 2-D [B, T]', 'got f32 [2] on cpu'], '1-D rewards')
  assertThrowsWith(t, () => ops.gae(r, f32([1, 2], [1, 2])), ['values must have the shape of rewards, [2, 2]', 'got [1, 2]'], 'values shape')
  assertThrowsWith(t, () => ops.gae(r, r, r.cast('bf16')), ['mask must be f32 or i32 or u8', 'got bf16'], 'bf16 mask')
  assertThrowsWith(t, () => ops.gae(r, r, undefined, { gamma: 1.5 }), ['gamma must be in [0, 1]', 'got 1.5'], 'gamma > 1')
  assertThrowsWith(t, () => ops.gae(r, r, undefined, { lambda: -0.1 }), ['lambda must be in [0, 1]', 'got -0.1'], 'lambda < 0')
  assertThrowsWith(t, () => ops.gae(r, r, undefined, { lamda: 0.9 } as never), ["unknown option 'lamda'", "Did you mean 'lambda'?"], 'misspelt lambda')
  assertThrowsWith(t, () => ops.whiten(r, u8([1, 1, 1], [3])), ['ops.whiten', 'mask must have the shape of x, [2, 2]', 'got [3]'], 'whiten mask shape')
  assertThrowsWith(t, () => ops.klPenalty(r, r, undefined, { estimator: 'k4' as 'k1' }), ["estimator must be one of 'k1', 'k2', 'k3'", "got 'k4'"], 'unknown estimator')
  assertThrowsWith(t, () => ops.klPenalty(r, r, undefined, { clamp: -2 }), ['clamp must be a finite number > 0', 'got -2'], 'negative clamp')
  assertThrowsWith(t, () => ops.klPenalty(r, f32([1, 2, 3], [3])), ['refLogp must have the shape of logp'], 'refLogp shape')
})

t.test('ppoPolicyLoss and valueLoss', async (t) => {
  const x = f32([0.1, 0.2, 0.3, 0.4], [2, 2])
  assertThrowsWith(t, () => ops.ppoPolicyLoss(Tensor.zeros([0, 3]), Tensor.zeros([0, 3]), Tensor.zeros([0, 3])), ['ops.ppoPolicyLoss', 'logp is empty (shape [0, 3])'], 'empty batch')
  assertThrowsWith(t, () => ops.ppoPolicyLoss(x, x, x, undefined, { clipLow: 1.2 }), ['clipLow must be in [0, 1)', 'got 1.2'], 'clipLow too large')
  assertThrowsWith(t, () => ops.ppoPolicyLoss(x, x, x, undefined, { dualClip: 0.5 }), ['dualClip must be in (1,', 'got 0.5'], 'dualClip <= 1')
  assertThrowsWith(t, () => ops.ppoPolicyLoss(x, x, x, undefined, { aggregate: 'token_mean' as 'token-mean' }), ["aggregate must be one of 'token-mean', 'seq-mean'", "Did you mean 'token-mean'?"], 'aggregate typo')
  assertThrowsWith(t, () => ops.ppoPolicyLoss(x, f32([1, 2], [2]), x), ['oldLogp must have the shape of logp, [2, 2]', 'got [2]'], 'oldLogp shape')
  assertThrowsWith(t, () => ops.ppoPolicyLoss(f32([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2]), f32([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2]), f32([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2])), ['logp must be [B, T] or [T]'], '3-D logp')
  assertThrowsWith(t, () => ops.valueLoss(x, x, x, undefined, { clip: -1 }), ['ops.valueLoss', 'clip must be >= 0 (or null for no clipping)'], 'negative value clip')
  assertThrowsWith(t, () => ops.valueLoss(x, x, i32([1, 2, 3, 4], [2, 2])), ['returns must be f32', 'got i32'], 'i32 returns')
})

t.test('dpoLoss and rewardLoss', async (t) => {
  const a = f32([-1, -2], [2])
  const b = f32([-3, -4], [2])
  assertThrowsWith(t, () => ops.dpoLoss({ policyChosen: a, policyRejected: b }), ['ops.dpoLoss', "refChosen is required for variant 'sigmoid'", 'referenceFree: true'], 'missing reference')
  assertThrowsWith(t, () => ops.dpoLoss({ policyChosen: a, policyRejected: b, refChosen: a, refRejected: b }, { variant: 'ipo' }), ["chosenLength is required for variant 'ipo'"], 'ipo without lengths')
  assertThrowsWith(t, () => ops.dpoLoss({ policyChosen: a, policyRejected: b, chosenLength: f32([3, 0], [2]), rejectedLength: f32([1, 1], [2]) }, { variant: 'simpo' }), ['chosenLength[1] = 0 must be a positive length'], 'zero length')
  assertThrowsWith(t, () => ops.dpoLoss({ policyChosen: a, policyRejected: b, refChosen: a, refRejected: b }, { variant: 'dpo' as 'ipo' }), ["variant must be one of 'sigmoid'"], 'unknown variant')
  assertThrowsWith(t, () => ops.dpoLoss({ policyChosen: a, policyRejected: b, refChosen: a, refRejected: b }, { beta: 0 }), ['beta must be a finite number > 0', 'got 0'], 'beta 0')
  assertThrowsWith(t, () => ops.dpoLoss({ policyChosen: a, policyRejected: b, refChosen: a, refRejected: b }, { variant: 'robust', labelSmoothing: 0.5 }), ['labelSmoothing must be in [0, 0.5)', 'got 0.5'], 'robust needs eps < 0.5')
  assertThrowsWith(t, () => ops.dpoLoss({ policyChoosen: a, policyRejected: b } as never), ["unknown option 'policyChoosen'", "Did you mean 'policyChosen'?"], 'misspelt input')
  assertThrowsWith(t, () => ops.dpoLoss({ policyChosen: f32([1, 2, 3], [3]), policyRejected: b, refChosen: a, refRejected: b }), ['policyRejected must have the shape of policyChosen, [3]', 'got [2]'], 'batch mismatch')
  assertThrowsWith(t, () => ops.rewardLoss(a, f32([1, 2, 3], [3])), ['ops.rewardLoss', 'rejected must have the shape of chosen, [2]', 'got [3]'], 'reward shapes')
  assertThrowsWith(t, () => ops.rewardLoss(a, b, { margin: f32([1], [1]) }), ['margin must have the shape of chosen'], 'margin shape')
  assertThrowsWith(t, () => ops.rewardLoss(a, b, { centerCoef: -1 }), ['centerCoef must be in [0,'], 'negative centerCoef')
})

t.test('tensors', async (t) => {
  assertThrowsWith(t, () => Tensor.from(new Float32Array(5), [2, 3]), ['Tensor.from: shape [2, 3] holds 6 elements but the Float32Array has 5'], 'shape and length disagree')
  assertThrowsWith(t, () => Tensor.from(new Float64Array(4) as never, [4]), ['Float64Array', 'expected Float32Array, Int32Array, Uint8Array or Uint16Array'], 'Float64Array')
  assertThrowsWith(t, () => Tensor.from(new Float32Array(4), [4], { dtype: 'i32' }), ["dtype 'i32' does not match the Float32Array"], 'dtype mismatch')
  assertThrowsWith(t, () => Tensor.from(new Float32Array(4), [2, -2]), ['shape[1] must be a non-negative integer', 'got -2'], 'negative dimension')
  assertThrowsWith(t, () => Tensor.from(new Float32Array(4), [2, 2], { devise: 'cpu' } as never), ["unknown option 'devise'", "Did you mean 'device'?"], 'misspelt option')
  assertThrowsWith(t, () => Tensor.zeros([2], { dtype: 'f64' as DType }), ["unknown dtype 'f64'", 'f32, bf16, i32, u8'], 'unknown dtype')
  assertThrowsWith(t, () => Tensor.zeros([2]).to('gpu' as 'cpu'), ["unknown device 'gpu'"], 'unknown device')
  assertThrowsWith(t, () => Tensor.zeros([6]).reshape([4, 2]), ['cannot reshape f32 [6] on cpu (6 elements) to [4, 2] (8 elements)'], 'reshape size')
  assertThrowsWith(t, () => Tensor.zeros([6]).reshape([-1, -1]), ['only one dimension may be -1'], 'two -1')
  assertThrowsWith(t, () => Tensor.zeros([2]).item(), ['has 2 elements, not 1'], 'item of many')
  assertThrowsWith(t, () => Tensor.from([1, 'a'] as never), ['data[1] is not a number'], 'non-number element')
  if (!cudaAvailable) {
    assertThrowsWith(t, () => Tensor.zeros([2], { device: 'cuda' }), ['cuda:0', 'CUDA'], 'no CUDA device: a clear error')
    assertThrowsWith(t, () => Tensor.zeros([2]).to('cuda:0'), ['cuda:0', 'CUDA'], 'to(cuda) without a device')
  } else {
    const gpu = Tensor.zeros([2], { device: 'cuda:0' })
    assertThrowsWith(t, () => gpu.data, ['Tensor.data: the tensor is on cuda:0', ".to('cpu')"], 'data of a device tensor')
    assertThrowsWith(t, () => ops.klPenalty(gpu, Tensor.zeros([2])), ['refLogp is on cpu but logp is on cuda:0', '.to()'], 'mixed devices')
  }
})

t.test('a detached buffer is refused, not read', async (t) => {
  const buffer = new ArrayBuffer(16)
  const tensor = Tensor.from(new Float32Array(buffer), [4])
  structuredClone(buffer, { transfer: [buffer] })
  t.equal(buffer.byteLength, 0, 'the buffer was transferred away')
  assertThrowsWith(t, () => ops.whiten(tensor), ['ops.whiten: x', 'detached'], 'an op refuses it')
  assertThrowsWith(t, () => tensor.clone(), ['detached'], 'clone refuses it')
})

t.test('fuzz: random junk never crashes an op', async (t) => {
  const rng = new Rng(1234)
  const dtypes: DType[] = ['f32', 'bf16', 'i32', 'u8']
  const junkNumbers = [0, -1, 1, 0.5, 2, NaN, Infinity, -Infinity, 1e30]
  const tensor = () => {
    const ndim = rng.int(0, 4)
    const shape = Array.from({ length: ndim }, () => rng.int(0, 4))
    const dtype = dtypes[rng.int(0, 4)]
    const x = Tensor.zeros(shape, { dtype })
    const data = x.data
    for (let i = 0; i < data.length; i++) data[i] = rng.int(-3, 5)
    return x
  }
  const num = () => junkNumbers[rng.int(0, junkNumbers.length)]
  const calls: Array<() => unknown> = [
    () => ops.logprobs(tensor(), tensor(), { temperature: num(), entropy: rng.next() < 0.5 }),
    () => ops.logprobsBackward(tensor(), tensor(), tensor(), { temperature: num(), gradEntropy: rng.next() < 0.5 ? tensor() : undefined }),
    () => ops.gae(tensor(), tensor(), tensor(), { gamma: num(), lambda: num() }),
    () => ops.whiten(tensor(), tensor()),
    () => ops.klPenalty(tensor(), tensor(), tensor(), { clamp: num() }),
    () => ops.ppoPolicyLoss(tensor(), tensor(), tensor(), tensor(), { clipLow: num(), clipHigh: num(), dualClip: num() }),
    () => ops.valueLoss(tensor(), tensor(), tensor(), tensor(), { clip: num() }),
    () => ops.dpoLoss({ policyChosen: tensor(), policyRejected: tensor(), refChosen: tensor(), refRejected: tensor(), chosenLength: tensor(), rejectedLength: tensor() }, { beta: num(), labelSmoothing: num(), gamma: num() }),
    () => ops.rewardLoss(tensor(), tensor(), { margin: rng.next() < 0.5 ? tensor() : num(), centerCoef: num() }),
    () => tensor().reshape([rng.int(-1, 4), rng.int(0, 4)]),
    () => tensor().cast(dtypes[rng.int(0, 4)]),
  ]
  let threw = 0
  let returned = 0
  for (let i = 0; i < 3000; i++) {
    try {
      calls[i % calls.length]()
      returned++
    } catch (err) {
      if (!(err instanceof Error) || err.message.length === 0) {
        t.fail(`call ${i} threw something that is not an Error with a message: ${String(err)}`)
        return
      }
      threw++
    }
  }
  t.pass(`3000 random calls: ${returned} returned, ${threw} threw an Error, none crashed`)
  t.ok(threw > 0 && returned > 0, 'both outcomes happened')
})
