// What the training loops read back to the host (backend().hostReads and
// hostReadBytes, counted alike on the CPU and on a GPU, where each read is a
// device-to-host copy). A PPO minibatch update and a DPO update must bring
// back a fixed number of values, whatever the batch and the sequence length:
// on a GPU, nothing comes back per token. A model spec asking for a GPU that
// is not there fails first, naming the field.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { backend, Model, ops, Tensor, train, type RunConfigInput } from 'rlfarm'
import { tempDir } from './helpers/common'
import { writeJsonl } from './helpers/toy-data'

/** Host reads (calls, bytes) while `fn` runs. */
async function readsDuring(fn: () => Promise<unknown> | unknown): Promise<{ reads: number; bytes: number }> {
  const before = backend()
  await fn()
  const after = backend()
  return { reads: after.hostReads - before.hostReads, bytes: after.hostReadBytes - before.hostReadBytes }
}

const POLICY = { tokenizer: 'byte', init: { hidden_size: 32, layers: 1, heads: 2, max_positions: 96 } }

t.test('hostReads counts what comes back to the host, and only that', async (t) => {
  const x = Tensor.from(new Float32Array([1, 2, 3, 4]), [4])
  t.same(await readsDuring(() => x.toArray()), { reads: 1, bytes: 16 }, 'toArray: one read of the tensor')
  t.same(await readsDuring(() => ops.add(x, x)), { reads: 0, bytes: 0 }, 'an op whose result stays a tensor reads nothing')
  const mask = Tensor.from(new Float32Array([1, 1, 0, 1]), [1, 4])
  const loss = await readsDuring(() => ops.ppoPolicyLoss(ops.add(mask, undefined, { alpha: -1 }), Tensor.zeros([1, 4]), mask, mask))
  t.same(loss, { reads: 2, bytes: 4 * 6 + 8 }, "ppoPolicyLoss: its statistics and its token count, one double summed where the values are")

  const model = Model.create({ arch: 'gpt2', vocab: 16, dim: 16, layers: 1, heads: 2, maxPositions: 8 }, { seed: 1, scalarHead: true })
  const tokens = Tensor.from(Int32Array.from([1, 2, 3, 4, 5, 6]), [2, 3])
  t.same(await readsDuring(() => model.forward(tokens, { values: true })), { reads: 2, bytes: 4 * (2 * 2 + 2 * 3) }, 'a forward not asked for onDevice: its outputs come back')
  t.same(await readsDuring(() => model.forward(tokens, { values: true, onDevice: true })), { reads: 0, bytes: 0 }, 'onDevice: nothing comes back (a cpu model counts what a GPU would copy)')
  const masked = await readsDuring(() => model.forward(tokens, { attentionMask: Tensor.from(Uint8Array.from([0, 1, 1, 1, 1, 1]), [2, 3]), onDevice: true }))
  t.same(masked, { reads: 0, bytes: 0 }, 'the attention mask is checked natively, not read into JavaScript')
  await t.rejects(model.logprobs(tokens, { attentionMask: Tensor.from([1, 0.5, 1, 1, 1, 1], [2, 3]) }), { message: 'model.logprobs: attentionMask[0][1] = 0.5; a mask holds 1 (a real token) or 0 (padding)' }, 'and a bad value is named as before')
})

t.test('a PPO minibatch update reads back the same few scalars at any batch and length', async (t) => {
  const dir = tempDir(t, 'host-reads-ppo')
  const prompts = writeJsonl(path.join(dir, 'prompts.jsonl'), Array.from({ length: 16 }, (_, i) => ({ prompt: `p${i}:` })))
  // Two runs differing only in epochs differ by one minibatch update (policy and value).
  const minibatch = async (batch: number, newTokens: number) => {
    const run = (epochs: number) => {
      const config: RunConfigInput = {
        algorithm: 'ppo',
        name: `ppo-${batch}-${newTokens}-${epochs}`,
        output_dir: dir,
        seed: 1,
        policy: POLICY,
        data: { chat_template: false, max_length: 40, prompts },
        generation: { max_new_tokens: newTokens, stop_at_eos: false },
        reward_function: { name: 'count_token', token: 97 },
        training: { batch_size: batch, max_steps: 1 },
        ppo: { minibatch_size: batch, epochs },
        logging: { progress: 'none' },
      }
      return readsDuring(() => train(config))
    }
    const one = await run(1)
    const two = await run(2)
    return { reads: two.reads - one.reads, bytes: two.bytes - one.bytes }
  }
  const small = await minibatch(4, 8)
  const large = await minibatch(8, 32) // 8x the tokens
  t.comment(`one PPO minibatch update reads back ${small.reads} values (${small.bytes} bytes) at 4 x 8 new tokens, ${large.reads} (${large.bytes} bytes) at 8 x 32`)
  t.same(large, small, 'the same reads at both sizes: nothing per row or per token')
  // The loss's statistics and token count, the entropy mean, the value loss's statistics, two gradient norms.
  t.ok(small.reads > 0 && small.reads <= 6, `${small.reads} reads <= 6`)
  t.ok(small.bytes <= 64, `${small.bytes} bytes <= 64`)
})

// A pair-loss update (DPO, or the reward model's Bradley-Terry step) over
// `batch` pairs of `length`-letter responses: the reads and bytes of one update.
async function pairUpdate(t: Tap.Test, algorithm: 'dpo' | 'reward', batch: number, length: number) {
  const dir = tempDir(t, `host-reads-${algorithm}-${batch}-${length}`)
  // Responses of `length` letters: the padded sequence length follows it.
  const file = writeJsonl(
    path.join(dir, 'pairs.jsonl'),
    Array.from({ length: 16 }, (_, i) => ({ prompt: `p${i}:`, chosen: ` a${'b'.repeat(length)}`, rejected: ` z${'y'.repeat(length)}` })),
  )
  // Two runs differing only in max_steps differ by one update.
  const run = (steps: number) =>
    readsDuring(() =>
      train({
        algorithm,
        name: `${algorithm}-${steps}`,
        output_dir: dir,
        seed: 1,
        policy: POLICY,
        data: { chat_template: false, max_length: 90, train: file },
        training: { batch_size: batch, max_steps: steps },
        logging: { progress: 'none' },
      }),
    )
  const one = await run(1)
  const two = await run(2)
  return { reads: two.reads - one.reads, bytes: two.bytes - one.bytes }
}

for (const algorithm of ['dpo', 'reward'] as const) {
  t.test(`a ${algorithm === 'dpo' ? 'DPO' : 'reward-model'} update reads back the same few scalars at any batch and length`, async (t) => {
    const short = await pairUpdate(t, algorithm, 4, 4)
    const long = await pairUpdate(t, algorithm, 4, 60)
    const wide = await pairUpdate(t, algorithm, 8, 4)
    t.comment(`one ${algorithm} update: ${short.reads} reads, ${short.bytes} bytes (4 pairs, 4-letter responses); ${long.reads}, ${long.bytes} (4 pairs, 60 letters); ${wide.reads}, ${wide.bytes} (8 pairs)`)
    t.same(long, short, 'fifteen times the response length: the same reads, none per token')
    t.same(wide, short, 'twice the pairs: the same reads and bytes, none per pair')
    // The loss's statistics and the gradient norm; DPO also the two implicit rewards' sums.
    const most = algorithm === 'dpo' ? 4 : 2
    t.ok(short.reads > 0 && short.reads <= most, `${short.reads} reads <= ${most}`)
  })
}

t.test('a model spec on a GPU that is not there fails naming the field, before the run starts', async (t) => {
  const dir = tempDir(t, 'host-reads-device')
  const prompts = writeJsonl(path.join(dir, 'prompts.jsonl'), [{ prompt: 'p:' }])
  // cuda:99 is absent on every machine: without a GPU (or CUDA) "not available", with one "does not exist".
  const config: RunConfigInput = {
    algorithm: 'ppo',
    name: 'on-cuda',
    output_dir: dir,
    policy: { ...POLICY, device: 'cuda:99' },
    value_model: { ...POLICY, device: 'cuda' },
    data: { chat_template: false, prompts },
    reward_function: { name: 'count_token', token: 97 },
    logging: { progress: 'none' },
  }
  const err = await train(config).then(
    () => undefined,
    (e: Error) => e,
  )
  t.equal(err?.name, 'ConfigError', 'a ConfigError')
  t.match(err?.message, /policy\.device: device 'cuda:99' (is not available|does not exist)/, 'naming policy.device')
  if (backend().cudaDevices === 0) t.match(err?.message, /value_model\.device: device 'cuda' is not available/, 'and value_model.device, each field it finds')
  t.notOk(fs.existsSync(path.join(dir, 'on-cuda')), 'no run directory was made')
})
