// The CUDA engine against the CPU engine, as plain checks that report through
// a callback: test/cuda-model.test.ts runs them under tap, and
// scripts/check-cuda.mjs runs this file directly on a GPU machine (where tap,
// a dev dependency, is not installed):
//   npx tsx bench/cuda-checks.ts      (prints one line per check, exits 1 on a failure)
// Each needs a CUDA device:
//  - GEMMs: ops.matmul on cuda tensors, f32 and bf16 operands, against the CPU,
//    and cuBLASLt against the own kernels where cuBLASLt loaded;
//  - every fixture model: forward log-probs, entropies and values (relative
//    error < 1e-4 in f32, < 1e-2 in bf16), every parameter gradient, a few
//    AdamW steps whose losses and moments track the CPU's, greedy generation in f32;
//  - sampling on the device (temperature, top-k, top-p, stop tokens, per-row
//    seeds, left-padded prompts) picking the CPU's tokens in f32;
//  - the fused attention (forward, and its backward's gradients) and the
//    decode kernel against the reference attention (RLFARM_CUDA_ATTENTION=reference);
//  - a PPO minibatch kept on the device (forward onDevice, ops.ppoPolicyLoss on
//    cuda tensors, backward from a cuda gradient) against the same through the cpu.
//   npx tsx bench/cuda-checks.ts --generate-bench   generation tokens/s at batch 64 (JSON lines)
import path from 'node:path'
import { AdamW, backend, Model, ops, Tensor } from 'rlfarm'

export type Report = (name: string, ok: boolean, detail: string) => void

const FIXTURES = path.resolve(__dirname, '../test/fixtures/models')
export const FULL = ['gpt2-tiny', 'llama-tiny', 'qwen2-tiny', 'llama3-tiny']
export const TOL = { f32: 1e-4, bf16: 1e-2 } as const

/** ||a - b|| / ||b|| (the norm of a - b when b is 0). */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0
  let den = 0
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2
    den += b[i] ** 2
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den)
}

export function random(n: number, seed: number): number[] {
  let s = seed >>> 0 || 1
  return Array.from({ length: n }, () => {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    return ((s >>> 0) / 4294967296) * 2 - 1
  })
}

function within(report: Report, name: string, err: number, tol: number): void {
  report(name, err < tol, `rel. error ${err.toExponential(2)} (< ${tol})`)
}

export function checkGemms(report: Report): void {
  for (const [m, n, k] of [[1, 1, 1], [17, 33, 65], [128, 128, 32], [300, 257, 129]]) {
    const a = Tensor.from(Float32Array.from(random(m * k, m + 1)), [m, k])
    const b = Tensor.from(Float32Array.from(random(n * k, n + 2)), [n, k])
    const bias = Tensor.from(Float32Array.from(random(n, 3)), [n])
    const want = ops.matmul(a, b, { transB: true, bias }).toArray()
    const f32 = ops.matmul(a.to('cuda'), b.to('cuda'), { transB: true, bias: bias.to('cuda') }).to('cpu').toArray()
    within(report, `gemm ${m}x${n}x${k} f32`, relError(f32, want), TOL.f32)
    // bf16 operands: the CPU product of the same rounded values, up to fp32 accumulation.
    const a16 = a.cast('bf16')
    const b16 = b.cast('bf16')
    const want16 = ops.matmul(a16.cast('f32'), b16.cast('f32'), { transB: true }).toArray()
    const got16 = ops.matmul(a16.to('cuda'), b16.to('cuda'), { transB: true }).to('cpu').toArray()
    within(report, `gemm ${m}x${n}x${k} bf16 tensor cores`, relError(got16, want16), TOL.f32)
    const mixed = ops.matmul(a.to('cuda'), b16.to('cuda'), { transB: true }).to('cpu').toArray()
    within(report, `gemm ${m}x${n}x${k} f32 x bf16`, relError(mixed, want), TOL.bf16)
  }
  // cuBLASLt (where it loaded) against the own kernels, on the same products.
  if (backend().cudaGemm.startsWith('cublaslt')) {
    const a = Tensor.from(Float32Array.from(random(96 * 80, 21)), [96, 80]).to('cuda')
    const b = Tensor.from(Float32Array.from(random(72 * 80, 22)), [72, 80]).to('cuda')
    const saved = process.env.RLFARM_CUDA_GEMM
    for (const dtype of ['f32', 'bf16'] as const) {
      const [x, y] = dtype === 'f32' ? [a, b] : [a.to('cpu').cast('bf16').to('cuda'), b.to('cpu').cast('bf16').to('cuda')]
      const lt = ops.matmul(x, y, { transB: true }).to('cpu').toArray()
      process.env.RLFARM_CUDA_GEMM = 'own'
      const own = ops.matmul(x, y, { transB: true }).to('cpu').toArray()
      if (saved === undefined) delete process.env.RLFARM_CUDA_GEMM
      else process.env.RLFARM_CUDA_GEMM = saved
      within(report, `gemm 96x72x80 ${dtype}: cuBLASLt against the own kernel`, relError(lt, own), TOL.f32)
    }
  } else {
    report('gemm: cuBLASLt', true, `not used: ${backend().cudaGemm}`)
  }
  // A batch, as attention uses it: [batch, m, k] x [batch, n, k]^T.
  const a = Tensor.from(Float32Array.from(random(3 * 20 * 16, 5)), [3, 20, 16])
  const b = Tensor.from(Float32Array.from(random(3 * 24 * 16, 6)), [3, 24, 16])
  const want = ops.matmul(a, b, { transB: true }).toArray()
  within(report, 'gemm batch of 3, 20x24x16 f32', relError(ops.matmul(a.to('cuda'), b.to('cuda'), { transB: true }).to('cpu').toArray(), want), TOL.f32)
}

/** One fixture model on cuda against its CPU twin. */
export async function checkModel(report: Report, name: string, precision: 'f32' | 'bf16'): Promise<void> {
  const where = `${name} ${precision}`
  const dir = path.join(FIXTURES, name)
  const cpu = await Model.load(dir, { scalarHead: true })
  const gpu = await Model.load(dir, { scalarHead: true, device: 'cuda', precision })
  report(`${where}: placed`, gpu.device === 'cuda:0' && gpu.precision === precision, `${gpu.device} ${gpu.precision}`)
  const B = 3
  const T = 12
  const tokens = Tensor.from(Int32Array.from(random(B * T, 7).map((x) => Math.floor(((x + 1) / 2) * (cpu.config.vocab - 1)))), [B, T])
  const mask = Tensor.from(Uint8Array.from({ length: B * T }, (_, i) => (i === 0 || i === 1 ? 0 : 1)), [B, T]) // row 0 left-padded
  const tol = TOL[precision]

  const a = await cpu.forward(tokens, { attentionMask: mask, entropy: true, values: true, train: true })
  const b = await gpu.forward(tokens, { attentionMask: mask, entropy: true, values: true, train: true })
  for (const key of ['logp', 'entropy', 'values'] as const) within(report, `${where}: forward ${key}`, relError(b[key]!.toArray(), a[key]!.toArray()), tol)
  const gradLogp = Tensor.from(Float32Array.from(random(B * (T - 1), 11)), [B, T - 1])
  const gradValues = Tensor.from(Float32Array.from(random(B * T, 13)), [B, T])
  await cpu.backward({ gradLogp, gradValues })
  await gpu.backward({ gradLogp, gradValues })
  const worst = cpu.parameters().map((p) => ({ name: p.name, err: relError(gpu.gradient(p.name).toArray(), cpu.gradient(p.name).toArray()) }))
    .reduce((x, y) => (y.err > x.err ? y : x))
  within(report, `${where}: every parameter gradient (worst ${worst.name})`, worst.err, 10 * tol)

  // A few SFT steps (loss = -mean log-prob) on each: the losses track the CPU's.
  const optA = new AdamW(cpu, { lr: 1e-2 })
  const optB = new AdamW(gpu, { lr: 1e-2 })
  const loss = (x: number[]) => -x.reduce((s, v) => s + v, 0) / x.length
  for (let step = 0; step < 3; step++) {
    for (const [model, opt] of [[cpu, optA], [gpu, optB]] as const) {
      model.zeroGrad()
      const out = await model.forward(tokens, { train: true })
      await model.backward({ gradLogp: Tensor.full(out.logp!.shape, -1 / out.logp!.numel) })
      await opt.step({ maxGradNorm: 1 })
    }
    const la = loss((await cpu.forward(tokens)).logp!.toArray())
    const lb = loss((await gpu.forward(tokens)).logp!.toArray())
    within(report, `${where}: loss after step ${step + 1} (${lb.toFixed(5)} vs cpu ${la.toFixed(5)})`, Math.abs(lb - la) / Math.abs(la), 10 * tol)
  }
  // AdamW's moments stay on the device between steps: state() brings them back, and they track the CPU's.
  const [ma, mb] = [optA.state(), optB.state()]
  within(report, `${where}: AdamW moments read back after 3 steps`, Math.max(relError(mb.m.toArray(), ma.m.toArray()), relError(mb.v.toArray(), ma.v.toArray())), 10 * tol)
  // Moments written on the host reach the device at the next step: the cuda optimizer takes the CPU's state, and both step once more alike.
  optB.loadState(optA.state())
  for (const [model, opt] of [[cpu, optA], [gpu, optB]] as const) {
    const out = await model.forward(tokens, { train: true })
    await model.backward({ gradLogp: Tensor.full(out.logp!.shape, -1 / out.logp!.numel) })
    await opt.step({ maxGradNorm: 1, zeroGrad: true })
  }
  const [na, nb] = [optA.state(), optB.state()]
  within(report, `${where}: AdamW moments after loading the CPU's state and a 4th step`, Math.max(relError(nb.m.toArray(), na.m.toArray()), relError(nb.v.toArray(), na.v.toArray())), 10 * tol)
  if (precision === 'f32') {
    const prompts = Tensor.from(Int32Array.from([1, 2, 3, 4, 5, 6]), [2, 3])
    const ga = (await cpu.generate(prompts, { maxNewTokens: 6, temperature: 0 })).tokens.toArray()
    const gb = (await gpu.generate(prompts, { maxNewTokens: 6, temperature: 0 })).tokens.toArray()
    report(`${where}: greedy generation equals the CPU's`, ga.join() === gb.join(), `cuda ${gb.join(' ')} / cpu ${ga.join(' ')}`)
    await checkSampling(report, where, cpu, gpu)
  }
  await checkAttention(report, where, gpu, tol)
  await checkDeviceUpdate(report, where, gpu)
}

/**
 * A PPO minibatch kept on the device: forward with onDevice, the clipped loss
 * with ops on cuda tensors, backward from its cuda gradient. The gradients
 * equal those of the same minibatch through cpu tensors.
 */
async function checkDeviceUpdate(report: Report, where: string, gpu: Model): Promise<void> {
  const V = gpu.config.vocab
  const B = 3
  const T = 10
  const tokens = Tensor.from(Int32Array.from(random(B * T, 37).map((x) => Math.floor(((x + 1) / 2) * (V - 1)))), [B, T])
  const old = Tensor.from(Float32Array.from(random(B * (T - 1), 41).map((x) => x - 4)), [B, T - 1])
  const advantages = Tensor.from(Float32Array.from(random(B * (T - 1), 43)), [B, T - 1])
  const mask = Tensor.from(Float32Array.from({ length: B * (T - 1) }, (_, i) => (i % (T - 1) < 3 ? 0 : 1)), [B, T - 1])
  const step = async (onDevice: boolean) => {
    gpu.zeroGrad()
    const out = await gpu.forward(tokens, { train: true, onDevice })
    const place = (x: Tensor) => (onDevice ? x.to('cuda') : x)
    const loss = ops.ppoPolicyLoss(out.logp!, place(old), place(advantages), place(mask), { clipLow: 0.2 })
    await gpu.backward({ gradLogp: loss.grad })
    return { device: out.logp!.device, gradDevice: loss.grad.device, loss: loss.loss, grads: gpu.parameters().map((p) => gpu.gradient(p.name).toArray()) }
  }
  const device = await step(true)
  const host = await step(false)
  report(`${where}: onDevice keeps log-probs and the loss's gradient on the device`, device.device.startsWith('cuda') && device.gradDevice.startsWith('cuda'), `logp on ${device.device}, grad on ${device.gradDevice}`)
  within(report, `${where}: PPO loss on the device (${device.loss.toFixed(6)} vs ${host.loss.toFixed(6)} through the cpu)`, Math.abs(device.loss - host.loss) / Math.max(1e-12, Math.abs(host.loss)), TOL.f32)
  within(report, `${where}: gradients from a device gradLogp equal those from a cpu one`, Math.max(...device.grads.map((g, i) => relError(g, host.grads[i]))), TOL.f32)
}

/** The sampler on the device against the CPU's (the same rules, sampling_math.h): left-padded prompts, per-row seeds, stop tokens. */
async function checkSampling(report: Report, where: string, cpu: Model, gpu: Model): Promise<void> {
  const V = cpu.config.vocab
  const B = 4
  const P = 5
  const prompts = Tensor.from(Int32Array.from(random(B * P, 17).map((x) => Math.floor(((x + 1) / 2) * (V - 1)))), [B, P])
  const attentionMask = Tensor.from(Uint8Array.from({ length: B * P }, (_, i) => (i % P < (i / P | 0) ? 0 : 1)), [B, P]) // row b: b pad tokens first
  for (const options of [
    { temperature: 1, seed: 3 },
    { temperature: 0.8, topK: 5, seed: 4 },
    { temperature: 1.2, topP: 0.9, seed: 5 },
    { temperature: 1, topK: 20, topP: 0.7, stopTokens: [1, 2, 3], padToken: 0, seed: 6 },
  ]) {
    const o = { maxNewTokens: 12, attentionMask, ...options }
    const a = await cpu.generate(prompts, o)
    const b = await gpu.generate(prompts, o)
    const same = a.tokens.toArray().join() === b.tokens.toArray().join() && a.lengths.toArray().join() === b.lengths.toArray().join() &&
      a.actionMask.toArray().join() === b.actionMask.toArray().join()
    report(`${where}: sampling ${JSON.stringify(options)} picks the CPU's tokens`, same, `cuda ${b.tokens.toArray().join(' ')} / cpu ${a.tokens.toArray().join(' ')}`)
    within(report, `${where}: sampling ${JSON.stringify(options)} log-probs`, relError(b.logprobs.toArray(), a.logprobs.toArray()), TOL.f32 * 10)
  }
}

/** The fused and decode attention kernels against the reference attention (RLFARM_CUDA_ATTENTION=reference), on the same model. */
async function checkAttention(report: Report, where: string, gpu: Model, tol: number): Promise<void> {
  const V = gpu.config.vocab
  const B = 2
  const T = Math.min(150, gpu.config.maxPositions) // past one 64-query block and one key tile
  const tokens = Tensor.from(Int32Array.from(random(B * T, 23).map((x) => Math.floor(((x + 1) / 2) * (V - 1)))), [B, T])
  const attentionMask = Tensor.from(Uint8Array.from({ length: B * T }, (_, i) => (i < 3 ? 0 : 1)), [B, T])
  const withAttention = async <R>(kind: 'fused' | 'reference', fn: () => Promise<R>): Promise<R> => {
    process.env.RLFARM_CUDA_ATTENTION = kind
    try {
      return await fn()
    } finally {
      delete process.env.RLFARM_CUDA_ATTENTION
    }
  }
  const run = async () => {
    gpu.zeroGrad()
    const out = await gpu.forward(tokens, { attentionMask, train: true, values: true })
    await gpu.backward({ gradLogp: Tensor.full(out.logp!.shape, 1 / out.logp!.numel), gradValues: Tensor.full(out.values!.shape, 0.5) })
    return { logp: out.logp!.toArray(), grads: gpu.parameters().map((p) => gpu.gradient(p.name).toArray()) }
  }
  const fused = await withAttention('fused', run)
  const ref = await withAttention('reference', run)
  // In f32 the two differ by summation order alone; in bf16 the reference's score GEMMs round to bf16, the fused kernel does not.
  const tight = tol
  within(report, `${where}: fused attention log-probs over ${T} tokens against the reference`, relError(fused.logp, ref.logp), tight)
  const worst = Math.max(...fused.grads.map((g, i) => relError(g, ref.grads[i])))
  within(report, `${where}: gradients of the fused backward (heads <= 64; wider: the reference backward on the fused forward)`, worst, 10 * tight)
  const p = Tensor.from(Int32Array.from(random(3 * 6, 29).map((x) => Math.floor(((x + 1) / 2) * (V - 1)))), [3, 6])
  const g = { maxNewTokens: Math.min(20, gpu.config.maxPositions - 6), temperature: 0 }
  const decoded = await withAttention('fused', () => gpu.generate(p, g))
  const reference = await withAttention('reference', () => gpu.generate(p, g))
  const agree = decoded.tokens.toArray().filter((x, i) => x === reference.tokens.toArray()[i]).length / decoded.tokens.numel
  report(`${where}: greedy decoding with the decode kernel agrees with the reference attention`, agree === 1 || (tol > TOL.f32 && agree > 0.9), `${(100 * agree).toFixed(1)}% of tokens equal`)
}

/** Generation tokens/s at batch 64 on the device (16-token prompts, 64 new tokens, temperature 1), GPT-2 124M's shape with random weights. */
export async function benchGeneration(precision: 'f32' | 'bf16'): Promise<{ precision: string; batch: number; newTokens: number; tokensPerSecond: number; seconds: number }> {
  const model = Model.create({ arch: 'gpt2', vocab: 50257, dim: 768, layers: 12, heads: 12, maxPositions: 1024, tieEmbeddings: true }, { seed: 1, device: 'cuda', precision })
  const batch = 64
  const newTokens = 64
  const prompts = Tensor.from(Int32Array.from(random(batch * 16, 31).map((x) => Math.floor(((x + 1) / 2) * 50256))), [batch, 16])
  await model.generate(prompts, { maxNewTokens: 4, temperature: 1 }) // warm-up: allocations, module load
  const runs: number[] = []
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now()
    const out = await model.generate(prompts, { maxNewTokens: newTokens, temperature: 1, seed: i })
    runs.push((performance.now() - t0) / 1000)
    if (out.logprobs.shape[1] !== newTokens) throw new Error(`generation stopped after ${out.logprobs.shape[1]} of ${newTokens} tokens`)
  }
  const seconds = runs.sort((a, b) => a - b)[1]
  return { precision, batch, newTokens, tokensPerSecond: (batch * newTokens) / seconds, seconds }
}

/**
 * Every check; one that throws (a CUDA error, a failed RLF_CHECK) is reported
 * as a failure and the next one still runs, so that one GPU run finds every
 * broken path rather than the first.
 */
export async function runCudaChecks(report: Report): Promise<void> {
  const guarded = async (name: string, fn: () => unknown): Promise<void> => {
    try {
      await fn()
    } catch (err) {
      report(`${name}: threw`, false, ((err as Error).stack ?? String(err)).split('\n').slice(0, 3).join(' | '))
    }
  }
  await guarded('gemm', () => checkGemms(report))
  for (const name of FULL) {
    for (const precision of ['f32', 'bf16'] as const) await guarded(`${name} ${precision}`, () => checkModel(report, name, precision))
  }
}

if (require.main === module && process.argv.includes('--generate-bench')) {
  // npx tsx bench/cuda-checks.ts --generate-bench: one JSON line per precision.
  ;(async () => {
    for (const precision of ['bf16', 'f32'] as const) console.log(JSON.stringify(await benchGeneration(precision)))
  })().catch((err) => {
    console.error(`generation bench failed: ${(err as Error).stack ?? err}`)
    process.exit(1)
  })
} else if (require.main === module) {
  let failed = 0
  runCudaChecks((name, ok, detail) => {
    if (!ok) failed++
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${detail}`)
  })
    .then(() => {
      console.log(`cuda checks: ${failed === 0 ? 'all passed' : `${failed} failed`}`)
      process.exit(failed === 0 ? 0 : 1)
    })
    .catch((err) => {
      console.error(`FAIL cuda checks stopped: ${(err as Error).stack ?? err}`)
      process.exit(1)
    })
}
