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
//    AdamW steps whose losses track the CPU's, greedy generation in f32.
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
  if (precision === 'f32') {
    const prompts = Tensor.from(Int32Array.from([1, 2, 3, 4, 5, 6]), [2, 3])
    const ga = (await cpu.generate(prompts, { maxNewTokens: 6, temperature: 0 })).tokens.toArray()
    const gb = (await gpu.generate(prompts, { maxNewTokens: 6, temperature: 0 })).tokens.toArray()
    report(`${where}: greedy generation equals the CPU's`, ga.join() === gb.join(), `cuda ${gb.join(' ')} / cpu ${ga.join(' ')}`)
  }
}

export async function runCudaChecks(report: Report): Promise<void> {
  checkGemms(report)
  for (const name of FULL) {
    for (const precision of ['f32', 'bf16'] as const) await checkModel(report, name, precision)
  }
}

if (require.main === module) {
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
