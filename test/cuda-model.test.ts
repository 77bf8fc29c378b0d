// Models on CUDA against the CPU engine. On a machine without a GPU only the
// errors run (a cuda model says why it cannot be made); with one (npm run
// check:cuda) every fixture model is compared with its CPU twin:
//  - GEMMs (ops.matmul on cuda tensors, f32 and bf16 operands);
//  - forward log-probs, entropies and values, relative error < 1e-4 in f32, < 1e-2 in bf16;
//  - every parameter gradient of a backward;
//  - a few AdamW steps whose losses track the CPU's;
//  - greedy generation equal to the CPU's in f32.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { AdamW, backend, Model, ops, Tensor, train } from 'rlfarm'
import { assertThrowsWith, i32, tempDir } from './helpers/common'
import { TINY_POLICY } from './helpers/toy-data'

const FIXTURES = path.resolve(__dirname, 'fixtures/models')
const FULL = ['gpt2-tiny', 'llama-tiny', 'qwen2-tiny', 'llama3-tiny']
const TOL = { f32: 1e-4, bf16: 1e-2 } as const
const gpu = backend().cudaDevices > 0

/** ||a - b|| / ||b|| (0 when both are 0). */
function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0
  let den = 0
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2
    den += b[i] ** 2
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den)
}

function random(n: number, seed: number): number[] {
  let s = seed >>> 0 || 1
  return Array.from({ length: n }, () => {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    return ((s >>> 0) / 4294967296) * 2 - 1
  })
}

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

t.test('GEMMs on CUDA match the CPU (f32 SIMT kernel, bf16 tensor cores)', { skip: gpu ? false : 'no CUDA device' }, async (t) => {
  for (const [m, n, k] of [[1, 1, 1], [17, 33, 65], [128, 128, 32], [300, 257, 129]]) {
    const a = Tensor.from(Float32Array.from(random(m * k, m + 1)), [m, k])
    const b = Tensor.from(Float32Array.from(random(n * k, n + 2)), [n, k])
    const bias = Tensor.from(Float32Array.from(random(n, 3)), [n])
    const want = ops.matmul(a, b, { transB: true, bias }).toArray()
    const f32 = ops.matmul(a.to('cuda'), b.to('cuda'), { transB: true, bias: bias.to('cuda') }).to('cpu').toArray()
    t.ok(relError(f32, want) < TOL.f32, `${m}x${n}x${k} f32: rel. error ${relError(f32, want).toExponential(2)}`)
    // bf16 operands: the CPU product of the same rounded values, within fp32 accumulation.
    const a16 = a.cast('bf16')
    const b16 = b.cast('bf16')
    const want16 = ops.matmul(a16.cast('f32'), b16.cast('f32'), { transB: true }).toArray()
    const got16 = ops.matmul(a16.to('cuda'), b16.to('cuda'), { transB: true }).to('cpu').toArray()
    t.ok(relError(got16, want16) < TOL.f32, `${m}x${n}x${k} bf16 tensor cores: rel. error ${relError(got16, want16).toExponential(2)}`)
    const mixed = ops.matmul(a.to('cuda'), b16.to('cuda'), { transB: true }).to('cpu').toArray()
    t.ok(relError(mixed, want) < TOL.bf16, `${m}x${n}x${k} f32 x bf16: rel. error ${relError(mixed, want).toExponential(2)}`)
  }
  assertThrowsWith(t, () => ops.matmul(Tensor.zeros([2, 2]).to('cuda'), Tensor.zeros([2, 2])), ['b is on cpu but a is on cuda:0'], 'mixed devices')
})

for (const name of FULL) {
  for (const precision of ['f32', 'bf16'] as const) {
    t.test(`${name} on cuda (${precision}) tracks the CPU engine`, { skip: gpu ? false : 'no CUDA device' }, async (t) => {
      const dir = path.join(FIXTURES, name)
      const cpu = await Model.load(dir, { scalarHead: true })
      const gpuModel = await Model.load(dir, { scalarHead: true, device: 'cuda', precision })
      t.equal(gpuModel.device, 'cuda:0', 'on cuda:0')
      t.equal(gpuModel.precision, precision, `in ${precision}`)
      const B = 3
      const T = 12
      const tokens = i32(random(B * T, 7).map((x) => Math.floor(((x + 1) / 2) * (cpu.config.vocab - 1))), [B, T])
      const mask = Tensor.from(Uint8Array.from({ length: B * T }, (_, i) => (i === 0 || i === 1 ? 0 : 1)), [B, T])
      const tol = TOL[precision]

      const a = await cpu.forward(tokens, { attentionMask: mask, entropy: true, values: true, train: true })
      const b = await gpuModel.forward(tokens, { attentionMask: mask, entropy: true, values: true, train: true })
      for (const key of ['logp', 'entropy', 'values'] as const) {
        const err = relError(b[key]!.toArray(), a[key]!.toArray())
        t.ok(err < tol, `${key}: rel. error ${err.toExponential(2)} < ${tol}`)
      }
      const gradLogp = Tensor.from(Float32Array.from(random(B * (T - 1), 11)), [B, T - 1])
      const gradValues = Tensor.from(Float32Array.from(random(B * T, 13)), [B, T])
      await cpu.backward({ gradLogp, gradValues })
      await gpuModel.backward({ gradLogp, gradValues })
      for (const p of cpu.parameters()) {
        const err = relError(gpuModel.gradient(p.name).toArray(), cpu.gradient(p.name).toArray())
        if (!(err < 10 * tol)) t.fail(`gradient of ${p.name}: rel. error ${err.toExponential(2)}`)
      }
      t.ok(relError(gpuModel.flatGradients().toArray(), cpu.flatGradients().toArray()) < 10 * tol, 'all gradients together')

      // A few SFT steps (loss = -mean log-prob): the losses track the CPU's.
      const optA = new AdamW(cpu, { lr: 1e-2 })
      const optB = new AdamW(gpuModel, { lr: 1e-2 })
      for (let step = 0; step < 3; step++) {
        for (const [model, opt] of [[cpu, optA], [gpuModel, optB]] as const) {
          model.zeroGrad()
          const out = await model.forward(tokens, { train: true })
          const n = out.logp!.shape[0] * out.logp!.shape[1]
          await model.backward({ gradLogp: Tensor.full(out.logp!.shape, -1 / n) })
          await opt.step({ maxGradNorm: 1 })
        }
        const la = (await cpu.forward(tokens)).logp!.toArray()
        const lb = (await gpuModel.forward(tokens)).logp!.toArray()
        const mean = (x: number[]) => -x.reduce((s, v) => s + v, 0) / x.length
        t.ok(Math.abs(mean(lb) - mean(la)) < 10 * tol * Math.abs(mean(la)), `step ${step + 1}: loss ${mean(lb).toFixed(5)} vs cpu ${mean(la).toFixed(5)}`)
      }
      if (precision === 'f32') {
        const prompts = i32([1, 2, 3, 4, 5, 6], [2, 3])
        const ga = await cpu.generate(prompts, { maxNewTokens: 6, temperature: 0 })
        const gb = await gpuModel.generate(prompts, { maxNewTokens: 6, temperature: 0 })
        t.same(gb.tokens.toArray(), ga.tokens.toArray(), 'greedy generation equals the CPU engine')
      }
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
