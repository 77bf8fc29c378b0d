// How often a PPO minibatch crosses into the native addon (backend().nativeCalls):
// two tiny runs that differ only in the number of PPO epochs (one minibatch
// each) differ by exactly one minibatch's crossings. The bound keeps per-token
// or per-row work from creeping back into the loop.
import t from 'tap'
import fs from 'node:fs'
import { backend, Tensor, ops, train, type RunConfigInput } from 'rlfarm'
import { TINY_POLICY, toyData } from './helpers/toy-data'
import { tempDir } from './helpers/common'

const data = toyData()
t.teardown(() => fs.rmSync(data.dir, { recursive: true, force: true }))

// As measured: a minibatch 110 -> 79 once Tensor kept its shape, dtype and
// device; a step 235 -> 225 (generate returns the masks, shapeRewards fuses the
// shaping) -> 197; after issue 15's argument checks, 83 and 198. Then 12 and
// 30: handles carry their shape, dtype and device as plain properties,
// ops.selectRows picks a minibatch of every tensor in one call, the losses
// scale their gradients and count their tokens, values come on the log-prob
// grid, and ops.rowMoments gives the step's statistics. Then 8 and 26: each
// forward computes its loss (ppoLoss, valueLoss) in the same call, and the
// optimizer step clears the gradients (no zeroGrad calls); a step 24 once
// ppoPolicyLoss sums its token count on the device. Lower the bounds when the
// loop crosses less; a rise means work crept back into JavaScript.
const MINIBATCH_CROSSINGS_AT_MOST = 8
const STEP_CROSSINGS_AT_MOST = 24

t.test('backend().nativeCalls counts calls into the addon', async (t) => {
  const before = backend().nativeCalls
  const x = Tensor.from(new Float32Array([1, 2, 3]), [3]) // fromTypedArray
  ops.add(x, x) // ops.add (and the wrapping of its result)
  const after = backend().nativeCalls
  t.ok(after - before >= 3, `a tensor, an op and backend(): ${after - before} calls`)
})

t.test("a Tensor's shape, dtype and device are read without a call into the addon", async (t) => {
  const x = Tensor.zeros([2, 3])
  const before = backend().nativeCalls
  for (let i = 0; i < 10; i++) void [x.shape, x.dtype, x.device, x.numel, x.disposed]
  t.equal(backend().nativeCalls - before, 1, 'only this backend() call: the addon set them on the handle when it made it')
  t.same([x.dtype, x.device, x.numel], ['f32', 'cpu', 6])
  const shape = x.shape
  shape[0] = 99
  t.same(x.shape, [2, 3], 'shape is a copy: changing it changes nothing')
  x.dispose()
  t.throws(() => x.shape, /disposed/, 'and it throws once the tensor is disposed')
})

t.test('the crossings of one PPO minibatch', async (t) => {
  const out = tempDir(t, 'runs')
  const run = async (epochs: number, steps = 1): Promise<number> => {
    const config: RunConfigInput = {
      algorithm: 'ppo',
      name: `epochs-${epochs}-steps-${steps}`,
      output_dir: out,
      seed: 1,
      policy: TINY_POLICY,
      data: { chat_template: false, max_length: 40, prompts: data.prompts },
      generation: { max_new_tokens: 8, stop_at_eos: false },
      reward_function: { name: 'count_token', token: 97 },
      training: { batch_size: 4, max_steps: steps },
      ppo: { minibatch_size: 4, epochs },
      logging: { progress: 'none' },
    }
    const before = backend().nativeCalls
    await train(config)
    return backend().nativeCalls - before
  }
  const one = await run(1)
  const two = await run(2)
  const twoSteps = await run(1, 2)
  const perMinibatch = two - one
  const perStep = twoSteps - one
  t.comment(`one PPO minibatch (policy and value update): ${perMinibatch} native calls`)
  t.comment(`one PPO step (rollout, scoring, shaping, advantages, one minibatch, logging): ${perStep} native calls`)
  t.ok(perMinibatch > 0, 'a minibatch crosses into the addon')
  t.ok(perMinibatch <= MINIBATCH_CROSSINGS_AT_MOST, `${perMinibatch} <= ${MINIBATCH_CROSSINGS_AT_MOST}`)
  t.ok(perStep > perMinibatch, 'a step is more than its minibatch')
  t.ok(perStep <= STEP_CROSSINGS_AT_MOST, `${perStep} <= ${STEP_CROSSINGS_AT_MOST}`)
})
