// Models on CUDA against the CPU engine. On a machine without a GPU only the
// errors run (a cuda model, or a run whose model spec asks for one, says why
// it cannot be made); with one, bench/cuda-checks.ts's comparisons run here:
// GEMMs, and every fixture model's forward, gradients, AdamW steps and greedy
// generation against its CPU twin, sampling, the attention kernels against the
// reference, and a PPO minibatch kept on the device (npm run check:cuda runs the
// same checks).
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { backend, Model, ops, Tensor, train } from 'rlfarm'
import { checkGemms, checkModel, FULL } from '../bench/cuda-checks'
import { loadModelSpec } from '../dist/training/models.js'
import { assertThrowsWith, tempDir } from './helpers/common'
import { TINY_POLICY } from './helpers/toy-data'

const FIXTURES = path.resolve(__dirname, 'fixtures/models')
const gpu = backend().cudaDevices > 0

t.test('without a GPU a cuda model is refused, saying why; bad devices and precisions are named', async (t) => {
  const small = { arch: 'llama', vocab: 20, dim: 16, layers: 1, heads: 2 } as const
  if (!gpu) {
    const why = backend().cudaUnavailableReason
    t.ok(why.length > 0, `the backend says why: ${why}`)
    assertThrowsWith(t, () => Model.create(small, { device: 'cuda' }), [`Model.create: device 'cuda' is not available: ${why}`], 'cuda')
    assertThrowsWith(t, () => Model.create(small, { device: 'cuda:1', precision: 'f32' }), ["device 'cuda:1' is not available"], 'cuda:1')
    await t.rejects(Model.load(path.join(FIXTURES, 'gpt2-tiny'), { device: 'cuda' }), /Model\.load: device 'cuda' is not available/, 'load onto cuda')
    assertThrowsWith(t, () => ops.matmul(Tensor.zeros([2, 2]), Tensor.zeros([2, 2]).to('cuda')), ['cuda'], 'a cuda tensor for matmul')
  } else {
    assertThrowsWith(t, () => Model.create(small, { device: `cuda:${backend().cudaDevices}` as 'cuda' }), ['does not exist'], 'a device past the last')
  }
  assertThrowsWith(t, () => Model.create(small, { device: 'gpu' as 'cuda' }), ["device must be 'cpu', 'cuda' or 'cuda:N'; got 'gpu'"], 'gpu')
  assertThrowsWith(t, () => Model.create(small, { precision: 'bf16' }), ["precision 'bf16' is for device 'cuda'"], 'bf16 on the cpu')
  assertThrowsWith(t, () => Model.create(small, { device: 'cuda', precision: 'fp16' as 'bf16' }), ["precision must be 'f32' or 'bf16'"], 'fp16')
  const cpu = Model.create(small)
  t.equal(cpu.device, 'cpu', 'a cpu model is on the cpu')
  t.equal(cpu.precision, 'f32', 'and computes in f32')
})

// The comparisons themselves live in bench/cuda-checks.ts, which check-cuda also runs without tap.
t.test('GEMMs on CUDA match the CPU (f32 SIMT kernel, bf16 tensor cores)', { skip: gpu ? false : 'no CUDA device' }, async (t) => {
  checkGemms((name, ok, detail) => t.ok(ok, `${name}: ${detail}`))
  assertThrowsWith(t, () => ops.matmul(Tensor.zeros([2, 2]).to('cuda'), Tensor.zeros([2, 2])), ['b is on cpu but a is on cuda:0'], 'mixed devices')
})

for (const name of FULL) {
  for (const precision of ['f32', 'bf16'] as const) {
    t.test(`${name} on cuda (${precision}) tracks the CPU engine`, { skip: gpu ? false : 'no CUDA device' }, async (t) => {
      await checkModel((check, ok, detail) => t.ok(ok, `${check}: ${detail}`), name, precision)
    })
  }
}

t.test('a trainer\'s model spec takes device and precision; without a GPU the run fails saying why', { skip: gpu ? 'a GPU is present' : false }, async (t) => {
  const dir = tempDir(t, 'cuda-spec')
  const file = path.join(dir, 'sft.jsonl')
  fs.writeFileSync(file, Array.from({ length: 8 }, (_, i) => JSON.stringify({ prompt: `p${i}`, response: `r${i}` })).join('\n'))
  await t.rejects(
    train({ algorithm: 'sft', output_dir: dir, name: 'cuda', policy: { ...TINY_POLICY, device: 'cuda', precision: 'f32' }, data: { train: file, chat_template: false }, training: { max_steps: 1 }, logging: { progress: 'none' } }),
    { message: new RegExp(`device 'cuda' is not available: ${backend().cudaUnavailableReason.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`) },
    'policy.device: cuda',
  )
})

t.test('forward onDevice: a cpu model ignores it (cpu tensors, the same values); a bad value is named', async (t) => {
  const model = Model.create({ arch: 'llama', vocab: 20, dim: 16, layers: 1, heads: 2 }, { seed: 3, scalarHead: true })
  const tokens = Tensor.from(Int32Array.from([1, 5, 7, 2, 9, 4, 3, 8]), [2, 4])
  const plain = await model.forward(tokens, { values: true, entropy: true })
  const kept = await model.forward(tokens, { values: true, entropy: true, onDevice: true })
  for (const key of ['logp', 'entropy', 'values'] as const) {
    t.equal(kept[key]!.device, 'cpu', `${key} on the cpu`)
    t.same(kept[key]!.toArray(), plain[key]!.toArray(), `${key} unchanged`)
  }
  await t.rejects(model.forward(tokens, { onDevice: 'yes' as never }), /model\.forward: onDevice must be true or false; got 'yes'/, 'onDevice not a boolean')
})

t.test('a model spec made in code without device or precision loads on the cpu', async (t) => {
  const spec = { tokenizer: 'byte', init: { arch: 'gpt2', hidden_size: 16, layers: 1, heads: 2, max_positions: 16 } }
  const loaded = await loadModelSpec(spec as never, 'policy', { seed: 1 })
  t.equal(loaded.model.device, 'cpu', 'on the cpu')
  t.equal(loaded.model.precision, 'f32', 'in f32')
})
