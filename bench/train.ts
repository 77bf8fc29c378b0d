// npm run bench:train -- --arch gpt2 --layers 4 --dim 256 --heads 4 --ctx 128 --batch 16 --vocab 256 --steps 10 [--rounds 3] [--json]
//   [--device cuda --precision bf16]: the model on the CUDA engine, the peer on the same GPU (scripts/check-cuda.mjs)
//
// Full optimizer steps of a freshly initialised model (forward, next-token
// cross-entropy, backward, AdamW) on random tokens, and batched generation with
// the KV cache; the same model and steps in PyTorch eager (bench/torch_train.py)
// run in the same invocation as the peer. rlfarm and the peer take turns for
// --rounds rounds (the peer tries every thread setting in the first round and
// keeps the fastest), so that a slow spell of a shared machine falls on both;
// the figures are medians over the rounds of each round's median step, and the
// speed-up is their ratio. Prints a table and, with --json, one JSON line last
// with tokensPerSecond (training) among other figures.
import os from 'node:os'
import { AdamW, backend, devices, Model, Tensor } from 'rlfarm'
import { benchArgs } from './args'
import { median, runPython } from './peer'

interface Args {
  arch: 'gpt2' | 'llama'
  layers: number
  dim: number
  heads: number
  kvHeads: number
  ctx: number
  batch: number
  vocab: number
  steps: number
  genBatch: number
  genPrompt: number
  genTokens: number
  generate: boolean
  peer: boolean
  json: boolean
  rounds: number
  device: 'cpu' | 'cuda'
  precision: 'f32' | 'bf16'
}

function parseArgs(argv: string[]): Args {
  const defaults = {
    arch: 'gpt2', layers: 4, dim: 256, heads: 4, kvHeads: 0, ctx: 128, batch: 16, vocab: 256, steps: 10,
    genBatch: 64, genPrompt: 16, genTokens: 64, generate: true, peer: true, json: false, rounds: 3,
    device: 'cpu', precision: 'bf16',
  }
  const { args } = benchArgs('train', argv, defaults, { min: { kvHeads: 0 }, choices: { arch: ['gpt2', 'llama'], device: ['cpu', 'cuda'], precision: ['bf16', 'f32'] } })
  return { ...args, arch: args.arch as Args['arch'], device: args.device as Args['device'], precision: args.precision as Args['precision'], kvHeads: args.kvHeads || args.heads }
}

/** Model.create's device options for the bench's --device and --precision. */
function placement(a: Args): { device?: 'cuda'; precision?: 'f32' | 'bf16' } {
  return a.device === 'cuda' ? { device: 'cuda', precision: a.precision } : {}
}

function randomTokens(batch: number, steps: number, vocab: number, seed: number): Tensor {
  const t = Tensor.empty([batch, steps], { dtype: 'i32' })
  let s = seed >>> 0 || 1
  const data = t.data as Int32Array
  for (let i = 0; i < data.length; i++) {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    data[i] = (s >>> 0) % vocab
  }
  return t
}

async function benchTrain(a: Args): Promise<{ stepMs: number[]; tokensPerSecond: number; loss: number }> {
  const model = Model.create(
    { arch: a.arch, vocab: a.vocab, dim: a.dim, layers: a.layers, heads: a.heads, kvHeads: a.kvHeads, maxPositions: Math.max(a.ctx, a.genPrompt + a.genTokens) },
    { seed: 1, ...placement(a) },
  )
  const opt = new AdamW(model, { lr: 3e-4, weightDecay: 0.1 })
  const targets = a.batch * (a.ctx - 1)
  const gradLogp = Tensor.full([a.batch, a.ctx - 1], -1 / targets)
  const stepMs: number[] = []
  let loss = 0
  for (let step = 0; step <= a.steps; step++) {
    const tokens = randomTokens(a.batch, a.ctx, a.vocab, step + 1)
    const start = process.hrtime.bigint()
    model.zeroGrad()
    const { logp } = await model.forward(tokens, { train: true })
    await model.backward({ gradLogp })
    await opt.step({ maxGradNorm: 1 })
    const ms = Number(process.hrtime.bigint() - start) / 1e6
    const lp = logp!.data as Float32Array
    loss = -lp.reduce((x, y) => x + y, 0) / lp.length
    logp!.dispose()
    tokens.dispose()
    if (step > 0) stepMs.push(ms) // step 0 warms up
  }
  return { stepMs, tokensPerSecond: (a.batch * a.ctx) / (median(stepMs) / 1e3), loss }
}

async function benchGenerate(a: Args): Promise<{ ms: number; tokensPerSecond: number }> {
  const model = Model.create(
    { arch: a.arch, vocab: a.vocab, dim: a.dim, layers: a.layers, heads: a.heads, kvHeads: a.kvHeads, maxPositions: Math.max(a.ctx, a.genPrompt + a.genTokens) },
    { seed: 1, ...placement(a) },
  )
  const prompts = randomTokens(a.genBatch, a.genPrompt, a.vocab, 7)
  await model.generate(prompts, { maxNewTokens: 4, temperature: 1 }) // warm-up
  const times: number[] = []
  for (let i = 0; i < 3; i++) {
    const start = process.hrtime.bigint()
    const out = await model.generate(prompts, { maxNewTokens: a.genTokens, temperature: 1, seed: i })
    times.push(Number(process.hrtime.bigint() - start) / 1e6)
    out.tokens.dispose()
  }
  const ms = median(times)
  return { ms, tokensPerSecond: (a.genBatch * a.genTokens) / (ms / 1e3) }
}

interface PeerResult {
  torch: string
  threads: number
  step_ms: number
  fastest_step_ms: number
  tokens_per_second: number
  generate_ms?: number
  generate_tokens_per_second?: number
}

function runPeer(a: Args, threadSettings: number[]): { runs: PeerResult[]; error?: string } {
  const runs: PeerResult[] = []
  for (const threads of threadSettings) {
    const r = runPython<PeerResult>('torch_train.py', ['--arch', a.arch, '--layers', a.layers, '--dim', a.dim, '--heads', a.heads, '--kv-heads', a.kvHeads,
      '--ctx', a.ctx, '--batch', a.batch, '--vocab', a.vocab, '--steps', a.steps, '--threads', threads,
      '--gen-batch', a.genBatch, '--gen-prompt', a.genPrompt, '--gen-tokens', a.generate ? a.genTokens : 0,
      '--device', a.device, ...(a.device === 'cuda' && a.precision === 'bf16' ? ['--autocast-bf16'] : [])])
    if ('error' in r) return { runs, error: r.error }
    runs.push(r)
  }
  return { runs }
}

interface Round {
  rlfarmStepMs: number
  rlfarmGenerateMs?: number
  torchStepMs?: number
  torchGenerateMs?: number
}

async function main() {
  const a = parseArgs(process.argv.slice(2))
  const info = backend()
  const machine = a.device === 'cuda' ? `${(devices().find((d) => d.kind === 'cuda') as { name?: string } | undefined)?.name ?? 'cuda'} (${a.precision})` : `${os.cpus()[0]?.model ?? 'cpu'}, ${info.threads} threads, ${info.simd}`
  const shape = `${a.arch} L${a.layers} d${a.dim} h${a.heads}${a.kvHeads !== a.heads ? ` kv${a.kvHeads}` : ''} ctx${a.ctx} batch${a.batch} vocab${a.vocab}`
  const tokensPerStep = a.batch * a.ctx
  const genTokens = a.genBatch * a.genTokens
  const rounds: Round[] = []
  // Host threads matter to the CPU peer only: on a GPU one setting.
  let threadSettings = a.device === 'cuda' ? [1] : [1, 2, os.availableParallelism()].filter((v, i, all) => all.indexOf(v) === i)
  let firstPeer: { runs: PeerResult[]; error?: string } = { runs: [] }
  let rlfarmFastest = Infinity
  let torchFastest = Infinity
  let loss = 0
  for (let r = 0; r < Math.max(1, a.rounds); r++) {
    const train = await benchTrain(a)
    const gen = a.generate ? await benchGenerate(a) : undefined
    loss = train.loss
    rlfarmFastest = Math.min(rlfarmFastest, ...train.stepMs)
    const round: Round = { rlfarmStepMs: median(train.stepMs), rlfarmGenerateMs: gen?.ms }
    if (a.peer) {
      const peer = runPeer(a, threadSettings)
      if (r === 0) firstPeer = peer
      if (peer.error) break
      const best = peer.runs.reduce((x, y) => (y.tokens_per_second > x.tokens_per_second ? y : x))
      threadSettings = [best.threads]  // the fastest for training, kept for the later rounds
      round.torchStepMs = best.step_ms
      round.torchGenerateMs = best.generate_ms
      torchFastest = Math.min(torchFastest, best.fastest_step_ms)
    }
    rounds.push(round)
  }
  const typical = (pick: (r: Round) => number | undefined) => {
    const xs = rounds.map(pick).filter((x): x is number => x !== undefined)
    return xs.length ? median(xs) : undefined
  }
  const stepMs = typical((r) => r.rlfarmStepMs)!
  const torchStepMs = typical((r) => r.torchStepMs)
  const genMs = typical((r) => r.rlfarmGenerateMs)
  const torchGenMs = typical((r) => r.torchGenerateMs)
  const tokensPerSecond = tokensPerStep / (stepMs / 1e3)
  const peerTokensPerSecond = torchStepMs ? tokensPerStep / (torchStepMs / 1e3) : undefined
  const generateTokensPerSecond = genMs ? genTokens / (genMs / 1e3) : undefined
  const peerGenerateTokensPerSecond = torchGenMs ? genTokens / (torchGenMs / 1e3) : undefined
  console.log(`rlfarm training on ${machine}: ${shape}, ${rounds.length} round(s) of ${a.steps} steps`)
  console.log(`  train: median step ${stepMs.toFixed(1)} ms, ${tokensPerSecond.toFixed(0)} tokens/s (loss ${loss.toFixed(3)}); fastest step ${rlfarmFastest.toFixed(1)} ms`)
  if (peerTokensPerSecond) {
    const threads = firstPeer.runs.map((r) => r.threads).join(', ')
    console.log(`  torch ${firstPeer.runs[0].torch} eager (best of threads ${threads}: ${threadSettings[0]}): ${torchStepMs!.toFixed(1)} ms, ${peerTokensPerSecond.toFixed(0)} tokens/s; fastest step ${torchFastest.toFixed(1)} ms -> rlfarm ${(tokensPerSecond / peerTokensPerSecond).toFixed(2)}x (fastest steps ${(torchFastest / rlfarmFastest).toFixed(2)}x)`)
    if (rounds.length > 1) {
      console.log(`  per round: ${rounds.map((r) => `${r.rlfarmStepMs.toFixed(0)}/${r.torchStepMs?.toFixed(0)} ms = ${(r.torchStepMs! / r.rlfarmStepMs).toFixed(2)}x`).join(', ')}`)
    }
  } else if (firstPeer.error) {
    console.log(`  peer failed: ${firstPeer.error}`)
  }
  if (generateTokensPerSecond) {
    console.log(`  generate: batch ${a.genBatch}, prompt ${a.genPrompt}, ${a.genTokens} new tokens: ${genMs!.toFixed(0)} ms, ${generateTokensPerSecond.toFixed(0)} tokens/s`)
    if (peerGenerateTokensPerSecond) {
      console.log(`  torch generate (KV cache, threads ${threadSettings[0]}): ${torchGenMs!.toFixed(0)} ms, ${peerGenerateTokensPerSecond.toFixed(0)} tokens/s -> rlfarm ${(generateTokensPerSecond / peerGenerateTokensPerSecond).toFixed(2)}x`)
    }
  }
  if (a.json) {
    console.log(JSON.stringify({
      machine, shape, tokensPerSecond, stepMs, fastestStepMs: rlfarmFastest, generateTokensPerSecond,
      peerTokensPerSecond, peerStepMs: torchStepMs, peerFastestStepMs: Number.isFinite(torchFastest) ? torchFastest : undefined,
      peerGenerateTokensPerSecond, peerThreads: threadSettings[0], rounds, firstPeerRuns: firstPeer.runs,
    }))
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
