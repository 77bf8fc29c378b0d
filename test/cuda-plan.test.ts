// The CUDA engine's host-side plan (native/cuda/plan.cpp), checked on the CPU
// for every model shape of the fixtures and for GPT-2 124M: each GEMM's grid
// covers its output exactly, launches fit their limits, the classifier's
// chunk keeps [rows, vocab] logits under 64 MB, and the memory plan matches
// the parameter buffer the engine allocates. Runs without a GPU.
import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { configFromHf, cudaPlan, Model, type CudaGemmPlan, type CudaPlan, type ModelConfig } from 'rlfarm'
import { native } from '../ts/native'
import { completeConfig } from '../dist/model/config.js'
import { assertThrowsWith } from './helpers/common'

const FIXTURES = path.resolve(__dirname, 'fixtures/models')
const GPT2_124M = { arch: 'gpt2', vocab: 50257, dim: 768, layers: 12, heads: 12, maxPositions: 1024, tieEmbeddings: true } as const

function fixtureConfigs(): [string, ModelConfig][] {
  return fs
    .readdirSync(FIXTURES)
    .filter((name) => fs.existsSync(path.join(FIXTURES, name, 'config.json')))
    .map((name) => {
      const file = path.join(FIXTURES, name, 'config.json')
      return [name, configFromHf(JSON.parse(fs.readFileSync(file, 'utf8')), file)]
    })
}

function checkGemm(t: Test, g: CudaGemmPlan, precision: string, sms: number): void {
  const [tm, tn] = g.tile
  const [gx, gy, gz] = g.launch.grid
  const ok =
    gx * tn >= g.n && (gx - 1) * tn < g.n && gy * tm >= g.m && (gy - 1) * tm < g.m && gz === g.batch &&
    g.launch.block === g.warps * 32 && g.launch.block <= 1024 && g.launch.smemBytes > 0 && g.launch.smemBytes <= 48 * 1024 &&
    g.tensorCores === (precision === 'bf16') && g.waves > 0 && Math.abs(g.waves * sms - (gx * gy * gz) / blocksPerSm(g)) < 1e-6 * gx * gy * gz
  if (!ok) t.fail(`${g.name} ${g.m}x${g.n}x${g.k} (batch ${g.batch}): plan ${JSON.stringify(g)}`)
}

// As plan.cpp: resident blocks per SM from threads (2048) and shared memory (228 KB).
function blocksPerSm(g: CudaGemmPlan): number {
  return Math.max(1, Math.min(Math.floor(2048 / g.launch.block), Math.floor((228 * 1024) / g.launch.smemBytes)))
}

function checkPlan(t: Test, name: string, config: ModelConfig, plan: CudaPlan, batch: number, steps: number, train: boolean, sms: number, params: number): void {
  t.equal(plan.rows, batch * steps, `${name}: rows`)
  for (const g of plan.gemms) checkGemm(t, g, plan.precision, sms)
  const names = plan.gemms.map((g) => g.name)
  t.equal(names.includes('qkv dW'), train, `${name}: backward GEMMs planned iff training`)
  const qkv = plan.gemms.find((g) => g.name === 'qkv')!
  t.same([qkv.m, qkv.n, qkv.k], [batch * steps, (config.heads + 2 * config.kvHeads) * config.headDim, config.dim], `${name}: the qkv GEMM's shape`)
  const head = plan.gemms.find((g) => g.name === 'head')!
  const targets = batch * Math.max(steps - 1, 1)
  t.ok(plan.headChunkRows >= 1 && plan.headChunkRows <= targets && (plan.headChunkRows === 1 || plan.headChunkRows * config.vocab <= 16 << 20), `${name}: classifier chunk ${plan.headChunkRows} rows`)
  t.same([head.m, head.n, head.k], [plan.headChunkRows, config.vocab, config.dim], `${name}: the head GEMM works on one chunk`)
  const m = plan.memory
  t.equal(m.params, params * 4, `${name}: fp32 master weights are the model's buffer`)
  t.equal(m.working, plan.precision === 'bf16' ? params * 2 : 0, `${name}: the bf16 working copy`)
  t.same([m.grads, m.adamM, m.adamV], train ? [params * 4, params * 4, params * 4] : [0, 0, 0], `${name}: gradients and moments`)
  const sum = m.params + m.working + m.grads + m.adamM + m.adamV + m.activations + m.scratch + m.head + m.attention
  t.equal(m.total, sum, `${name}: total is the sum of the buffers`)
  const l = plan.launches
  t.same(l.norm.grid, [batch * steps, 1, 1], `${name}: a block per row for the norms`)
  t.ok(l.norm.block >= 32 && l.norm.block <= 1024 && (l.norm.block & (l.norm.block - 1)) === 0, `${name}: norm block is a power of two`)
  t.same(l.attentionSoftmax.grid, [batch * config.heads * steps, 1, 1], `${name}: a block per score row`)
  t.equal(l.classifier.grid[0], plan.headChunkRows, `${name}: a classifier block per chunk row`)
  t.ok(l.adamw.grid[0] * l.adamw.block <= Math.max(params, 256) + 255 && l.adamw.grid[0] <= sms * 8, `${name}: AdamW grid-strides over the buffer`)
  checkFlash(t, name, plan.flash, l.attentionFlash, config.headDim, batch * config.heads, steps)
  const back = plan.flashBackward
  const backTile = train && config.headDim <= 64 ? plan.flash.headDimTile : 0
  t.equal(back.headDimTile, backTile, `${name}: the fused backward for heads up to 64 wide, when training`)
  if (backTile > 0) {
    t.same([back.tile, back.dq], [plan.flash.keyTile, l.attentionFlash], `${name}: dQ takes the forward's launch`)
    t.same([back.dkv.block, back.dkv.grid], [64, foldedGrid(Math.ceil(steps / 64), batch * config.kvHeads)], `${name}: dK and dV a thread per key of a kv head`)
    t.ok(back.dkv.smemBytes === 2 * back.tile * backTile * 4 + 2 * back.tile * 4 && back.dkv.smemBytes <= 48 * 1024, `${name}: query tiles fit (${back.dkv.smemBytes} B)`)
  }
  if (train) checkBackwardSums(t, name, plan, config, batch * steps)
  const scores = batch * config.heads * steps * steps * 4
  const want = train ? (backTile === 0 ? 2 * scores : 0) : plan.flash.headDimTile === 0 ? scores : 0
  t.equal(m.attention, want, `${name}: score buffers only where the reference attention runs`)
}

// The backward's column sums (bias and norm gradients) and the embedding's sorted scatter.
function checkBackwardSums(t: Test, name: string, plan: CudaPlan, config: ModelConfig, rows: number): void {
  const up = config.arch === 'gpt2' ? config.hidden : 2 * config.hidden
  const cols = Math.max(config.dim, up, (config.heads + 2 * config.kvHeads) * config.headDim)
  const c = plan.columnSums
  t.ok(c.chunkRows >= 64 && c.chunkRows % 8 === 0 && c.chunks * c.chunkRows >= rows && (c.chunks - 1) * c.chunkRows < rows && c.chunks <= 1024, `${name}: ${c.chunks} chunks of ${c.chunkRows} rows cover the ${rows} rows`)
  t.same([c.partials.grid, c.partials.block], [[Math.ceil(cols / 32), c.chunks, 1], 256], `${name}: a block per 32 columns and chunk, 8 row lanes`)
  t.ok(c.finish.grid[0] * c.finish.block >= 2 * cols && c.scratchFloats === c.chunks * 2 * cols, `${name}: a finishing thread per column and sum, partials for each`)
  const e = plan.embedBackward
  const ids = Math.max(config.vocab, config.maxPositions ?? 0)
  t.ok(2 ** e.idBits >= ids && (e.idBits === 1 || 2 ** (e.idBits - 1) < ids), `${name}: the sort covers ids below ${ids} in ${e.idBits} bits`)
  t.same([e.runs.grid, e.scratchBytes], [[rows, 1, 1], 12 * rows], `${name}: a block per sorted row; sorted ids, row indices before and after`)
}

// (row, head) pairs over a grid's y, folded into z past y's limit of 65535 blocks.
function foldedGrid(x: number, pairs: number): [number, number, number] {
  const y = Math.min(pairs, 65535)
  return [x, y, Math.ceil(pairs / y)]
}

// The fused attention's plan: the smallest compiled head width that holds the head, a thread per query.
function checkFlash(t: Test, name: string, flash: { headDimTile: number; keyTile: number }, launch: CudaPlan['launches']['attentionFlash'], headDim: number, batchHeads: number, queries: number): void {
  const tile = [16, 32, 64, 128].find((w) => headDim <= w) ?? 0
  t.equal(flash.headDimTile, tile, `${name}: head ${headDim} runs at compiled width ${tile}`)
  if (tile === 0) return
  t.equal(flash.keyTile, tile <= 64 ? 64 : 32, `${name}: keys per tile`)
  t.same([launch.block, launch.grid], [64, foldedGrid(Math.ceil(queries / 64), batchHeads)], `${name}: a block of 64 queries per (row, head)`)
  t.ok(launch.smemBytes === 2 * flash.keyTile * tile * 4 + flash.keyTile && launch.smemBytes <= 48 * 1024, `${name}: K and V tiles fit a block's default shared memory (${launch.smemBytes} B)`)
}

t.test('plans for every fixture model shape, both precisions, training and not', async (t) => {
  const configs = fixtureConfigs()
  t.ok(configs.length >= 7, `found ${configs.length} fixture configs`)
  for (const [name, config] of configs) {
    const params = Model.create(config).parameterCount
    for (const precision of ['bf16', 'f32'] as const) {
      for (const train of [true, false]) {
        for (const [batch, steps] of [[1, 1], [2, 10], [3, 17]]) {
          for (const sms of [108, 132]) {
            const plan = cudaPlan(config, { batch, steps, precision, train, sms })
            checkPlan(t, `${name} ${precision} train=${train} [${batch}, ${steps}] on ${sms} SMs`, config, plan, batch, steps, train, sms, params)
          }
        }
      }
    }
  }
})

t.test('GPT-2 124M: the big GEMMs take the largest tensor-core tile; memory adds up', async (t) => {
  const plan = cudaPlan(GPT2_124M, { batch: 8, steps: 1024, precision: 'bf16', train: true, sms: 132 })
  const params = 124439808 // GPT-2 124M with the tied head
  checkPlan(t, 'gpt2-124M', { ...GPT2_124M, kvHeads: 12, headDim: 64, hidden: 3072 } as unknown as ModelConfig, plan, 8, 1024, true, 132, params)
  for (const [name, tile] of [['qkv', [128, 128, 32]], ['up', [128, 128, 32]], ['down', [128, 128, 32]], ['head', [128, 128, 32]], ['qkv dW', [64, 128, 32]]] as const) {
    const g = plan.gemms.find((x) => x.name === name)!
    t.same(g.tile, tile, `${name} (${g.m}x${g.n}x${g.k}) uses the ${tile[0]}x${tile[1]} tile: ${g.launch.grid[0] * g.launch.grid[1]} blocks on 132 SMs`)
    t.ok(g.launch.grid[0] * g.launch.grid[1] >= 132, `${name}: a block for every SM`)
  }
  t.equal(plan.headChunkRows, Math.floor((16 << 20) / 50257), 'the classifier takes 333 rows of 50257 logits at a time')
  t.ok(plan.memory.total < 40 * 2 ** 30, `a training step of 8 x 1024 tokens plans ${(plan.memory.total / 2 ** 30).toFixed(1)} GiB`)
  const sums = plan.columnSums
  t.ok(sums.partials.grid[0] * sums.partials.grid[1] >= 8 * 132, `the bias and norm gradients' column sums: ${sums.partials.grid[0] * sums.partials.grid[1]} blocks of 256 threads (a thread per column would be ${Math.ceil(3072 / 128)} blocks)`)
  t.equal(plan.embedBackward.idBits, 16, "the token embedding's sort: 16 bits cover 50257 ids")
  const f32 = cudaPlan(GPT2_124M, { batch: 8, steps: 1024, precision: 'f32', train: true, sms: 132 })
  t.equal(f32.memory.working, 0, 'no bf16 copy in f32')
  t.ok(f32.gemms.every((g) => !g.tensorCores), 'f32 GEMMs run on the SIMT kernel')
})

t.test('a small GEMM takes the tiling with the most blocks', async (t) => {
  const plan = cudaPlan({ arch: 'llama', vocab: 256, dim: 256, layers: 1, heads: 4 }, { batch: 1, steps: 64, sms: 132 })
  const qkv = plan.gemms.find((g) => g.name === 'qkv')!
  t.same(qkv.tile, [64, 64, 32], `64 x 768 x 256 takes the 64x64 tile (${qkv.waves.toFixed(2)} waves)`)
  t.ok(qkv.waves < 1, 'and still does not fill a 132-SM GPU')
})

t.test('bad plans are refused, naming the argument', async (t) => {
  const small = { arch: 'gpt2', vocab: 20, dim: 16, layers: 1, heads: 2, maxPositions: 16 } as const
  assertThrowsWith(t, () => cudaPlan(small, { batch: 0, steps: 4 }), ['cudaPlan: batch must be an integer', 'got 0'], 'batch 0')
  assertThrowsWith(t, () => cudaPlan(small, { batch: 1.5, steps: 4 }), ['cudaPlan: batch must be an integer'], 'batch 1.5')
  assertThrowsWith(t, () => cudaPlan(small, { steps: 4 } as never), ['cudaPlan: batch is required'], 'no batch')
  assertThrowsWith(t, () => cudaPlan(small, { batch: 1, steps: 4, precision: 'fp16' as never }), ['cudaPlan: precision', 'fp16'], 'fp16')
  assertThrowsWith(t, () => cudaPlan(small, { batch: 1, steps: 4, sms: 0 }), ['cudaPlan: sms'], 'sms 0')
  assertThrowsWith(t, () => cudaPlan(small, { batch: 1, steps: 0 }), ['cudaPlan: steps must be an integer', 'got 0'], 'steps 0')
  assertThrowsWith(t, () => cudaPlan(small, { batch: 1, steps: 4, tile: 3 } as never), ['cudaPlan', 'tile'], 'an unknown option')
  assertThrowsWith(t, () => cudaPlan({ ...small, dim: 15 }, { batch: 1, steps: 4 }), ['n_embd (15)'], 'a config the engine refuses')
})

t.test('generation plans: KV cache, decode attention and sampler for every fixture shape and GPT-2 124M', async (t) => {
  const configs: [string, ModelConfig][] = [...fixtureConfigs(), ['gpt2-124M', completeConfig(GPT2_124M) as ModelConfig]]
  for (const [name, config] of configs) {
    for (const [batch, prompt, newTokens] of [[1, 1, 0], [3, 7, 5], [64, 16, 64]]) {
      for (const truncate of [false, true]) {
        const where = `${name} [${batch} x ${prompt}] + ${newTokens}${truncate ? ' top-k/top-p' : ''}`
        const p = native.cudaGeneratePlan(completeConfig(config) as never, batch, prompt, newTokens, truncate)
        const slots = prompt + Math.max(newTokens, 1)
        t.equal(p.slots, slots, `${where}: cache slots`)
        t.equal(p.kvCacheBytes, 2 * config.layers * batch * slots * config.kvHeads * config.headDim * 4, `${where}: keys and values of every layer in fp32`)
        t.same([p.decodeAttention.grid, p.decodeAttention.block, p.decodeAttention.smemBytes, p.decodeAttention.supported],
          [[batch * config.heads, 1, 1], 128, slots * 4, true], `${where}: decode attention, a block per (row, head)`)
        checkFlash(t, `${where}: prefill`, p.prefillAttention, p.prefillAttention, config.headDim, batch * config.heads, prompt)
        const chunks = Math.ceil(config.vocab / 256)
        t.same([p.sampling.grid, p.sampling.block, p.sampling.smemBytes], [[batch, 1, 1], 256, chunks * 8], `${where}: a sampler block per row, a double per 256 tokens`)
        const width = truncate ? 2 ** Math.ceil(Math.log2(config.vocab)) : 0
        t.same([p.sampling.sortWidth, p.sampling.scratchBytes], [width, truncate ? batch * (width * 8 + config.vocab * 4) : 0], `${where}: sort scratch only with top-k / top-p`)
        t.equal(p.totalBytes, p.kvCacheBytes + p.prefillBytes + p.stepBytes + p.sampling.scratchBytes, `${where}: total adds up`)
      }
    }
  }
  const big = native.cudaGeneratePlan(completeConfig(GPT2_124M) as never, 64, 16, 64, false)
  t.equal(big.kvCacheBytes, 2 * 12 * 64 * 80 * 768 * 4, 'GPT-2 124M, 64 rows of 16 + 64 tokens: a 377 MB cache')
  // More (row, head) pairs than a grid's y holds (65535): a rollout of 8192 rows of a 12-head model.
  const many = native.cudaGeneratePlan(completeConfig(GPT2_124M) as never, 8192, 16, 4, false)
  t.same(many.prefillAttention.grid, [1, 65535, 2], '98304 (row, head) pairs fold into z: 65535 x 2 blocks cover them')
  checkFlash(t, 'gpt2-124M [8192 x 16]: prefill', many.prefillAttention, many.prefillAttention, 64, 8192 * 12, 16)
  const manyTrain = cudaPlan(GPT2_124M, { batch: 6000, steps: 4, precision: 'bf16', train: true, sms: 132 })
  t.same([manyTrain.launches.attentionFlash.grid, manyTrain.flashBackward.dq.grid, manyTrain.flashBackward.dkv.grid],
    [[1, 65535, 2], [1, 65535, 2], [1, 65535, 2]], '72000 pairs: the forward, dQ, and dK/dV grids fold alike')
  const long = native.cudaGeneratePlan(completeConfig({ arch: 'llama', vocab: 64, dim: 64, layers: 1, heads: 2, maxPositions: 1 << 16 }) as never, 1, 12000, 100, false)
  t.equal(long.decodeAttention.supported, false, '12100 slots of scores do not fit shared memory: the reference attention decodes')
  const wide = cudaPlan({ arch: 'llama', vocab: 64, dim: 512, layers: 1, heads: 2 }, { batch: 1, steps: 8, train: false })
  t.same(wide.flash, { headDimTile: 0, keyTile: 0 }, 'a head of 256 is wider than the fused kernel: the reference attention runs')
  t.equal(wide.memory.attention, 2 * 8 * 8 * 4, 'and its scores are planned')
  const head128 = cudaPlan({ arch: 'llama', vocab: 64, dim: 256, layers: 1, heads: 2 }, { batch: 1, steps: 8, train: true })
  t.same([head128.flash.headDimTile, head128.flashBackward.headDimTile], [128, 0], 'a head of 128: the fused forward, the reference backward')
  assertThrowsWith(t, () => native.cudaGeneratePlan(completeConfig(GPT2_124M) as never, 0, 4, 4, false), ['cuda plan: generate: batch must be > 0; got 0'], 'batch 0')
  assertThrowsWith(t, () => native.cudaGeneratePlan(completeConfig(GPT2_124M) as never, 1, 4, -1, false), ['cuda plan: generate: new tokens must be >= 0; got -1'], 'negative new tokens')
})

t.test("cuBLASLt's column-major layouts of a row-major product compute it", async (t) => {
  // Multiplies as cuBLASLt would, from the layouts alone: D (col-major, c's
  // rows x cols, ld) = op(A) op(B), A read from our b's memory and B from our
  // a's; then D's memory read row-major must be our C.
  let seed = 5
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1
  for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
    for (const [m, n, k] of [[1, 1, 1], [3, 5, 7], [6, 2, 4]]) {
      const lda = (transA ? m : k) + 1 // padded rows, as submatrices have
      const ldb = (transB ? k : n) + 2
      const ldc = n + 3
      const a = Array.from({ length: (transA ? k : m) * lda }, rnd)
      const b = Array.from({ length: (transB ? n : k) * ldb }, rnd)
      const A = (i: number, j: number) => (transA ? a[j * lda + i] : a[i * lda + j]) // op(A)[i, j]
      const B = (i: number, j: number) => (transB ? b[j * ldb + i] : b[i * ldb + j])
      const p = native.cublasltPlan(transA, transB, m, n, k, lda, ldb, ldc)
      const colMajor = (mem: number[], l: { rows: number; cols: number; ld: number; transposed: boolean }) => (i: number, j: number) =>
        l.transposed ? mem[i * l.ld + j] : mem[j * l.ld + i] // op(X)[i, j] of a column-major X
      const ltA = colMajor(b, p.a)
      const ltB = colMajor(a, p.b)
      const shapesOk = (p.a.transposed ? p.a.cols : p.a.rows) === p.c.rows && (p.b.transposed ? p.b.rows : p.b.cols) === p.c.cols &&
        (p.a.transposed ? p.a.rows : p.a.cols) === k && (p.b.transposed ? p.b.cols : p.b.rows) === k
      const d = new Array<number>(m * ldc).fill(0)
      for (let i = 0; i < p.c.rows; i++) {
        for (let j = 0; j < p.c.cols; j++) {
          let s = 0
          for (let q = 0; q < k; q++) s += ltA(i, q) * ltB(q, j)
          d[j * p.c.ld + i] = s
        }
      }
      let worst = 0
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let want = 0
          for (let q = 0; q < k; q++) want += A(i, q) * B(q, j)
          worst = Math.max(worst, Math.abs(d[i * ldc + j] - want))
        }
      }
      t.ok(shapesOk && worst < 1e-12, `transA ${transA} transB ${transB}, ${m}x${n}x${k}: layouts ${JSON.stringify(p)}; worst difference ${worst}`)
    }
  }
  assertThrowsWith(t, () => native.cublasltPlan(false, false, 0, 1, 1, 1, 1, 1), ['cublasltPlan: m must be an integer >= 1; got 0'], 'm 0')
})
