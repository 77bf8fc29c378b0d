#!/usr/bin/env node
// Hashes of what the engine computes, for checking that a refactor changes no
// result: sampled tokens and their log-probs, log-probs after a few training
// steps (forward, PPO-shaped loss through the RL kernels, backward, AdamW) and
// the final parameters, for a tiny GPT-2 and a tiny Llama, at every SIMD level
// this CPU has and at 1 and 2 threads. Run it before and after a change and
// diff the output:
//   node scripts/engine-hashes.mjs > before.txt   (needs dist/: npx tsc -p tsconfig.json)
// Each (level, threads) pair runs in its own process, since RLFARM_SIMD and
// RLFARM_THREADS are read when the addon starts.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { fileURLToPath } from 'node:url'

const self = fileURLToPath(import.meta.url)

function hashOf(tensor) {
  const d = tensor.data
  return createHash('sha256').update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)).digest('hex').slice(0, 16)
}

const SHAPES = {
  gpt2: { arch: 'gpt2', vocab: 96, dim: 64, layers: 2, heads: 4, maxPositions: 64 },
  llama: { arch: 'llama', vocab: 96, dim: 64, layers: 2, heads: 4, kvHeads: 2, maxPositions: 64 },
}

async function child() {
  const { Model, AdamW, Tensor, ops, backend } = await import('../dist/index.js')
  const lines = []
  for (const [name, shape] of Object.entries(SHAPES)) {
    const model = Model.create(shape, { seed: 7 })
    const optimizer = new AdamW(model, { lr: 1e-2 })
    // Three prompts of five tokens, the first two left-padded.
    const prompts = Tensor.from(new Int32Array([0, 0, 5, 9, 11, 0, 3, 4, 5, 6, 7, 8, 9, 10, 12]), [3, 5])
    const promptMask = Tensor.from(new Int32Array([0, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]), [3, 5])
    const gen = await model.generate(prompts, { attentionMask: promptMask, maxNewTokens: 8, temperature: 1, stopTokens: [1], seed: 3 })
    lines.push(`${name} samples ${hashOf(gen.tokens)} logprobs ${hashOf(gen.logprobs)} lengths ${hashOf(gen.lengths)}`)
    const greedy = await model.generate(prompts, { attentionMask: promptMask, maxNewTokens: 8, temperature: 0 })
    lines.push(`${name} greedy ${hashOf(greedy.tokens)}`)
    const [B, T] = gen.tokens.shape
    const mask = new Int32Array(B * T)
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) mask[b * T + t] = t < 5 ? promptMask.data[b * 5 + t] : 1
    const attention = Tensor.from(mask, [B, T])
    const actions = Tensor.from(new Float32Array(B * (T - 1)).map((_, i) => (i % (T - 1) >= 4 ? 1 : 0)), [B, T - 1])
    const ref = await model.logprobs(gen.tokens, { attentionMask: attention })
    const rewards = Tensor.from(new Float32Array(B * (T - 1)).map((_, i) => ((i * 37) % 11) / 10 - 0.5), [B, T - 1])
    const values = Tensor.from(new Float32Array(B * (T - 1)).map((_, i) => ((i * 13) % 7) / 10), [B, T - 1])
    for (let step = 0; step < 3; step++) {
      const out = await model.forward(gen.tokens, { attentionMask: attention, train: true, entropy: true })
      const kl = ops.klPenalty(out.logp, ref, actions, { estimator: 'k3' })
      const shaped = ops.add(rewards, kl, { alpha: 1, beta: -0.1 })
      const { advantages } = ops.gae(shaped, values, actions, { gamma: 1, lambda: 0.95 })
      const adv = ops.whiten(advantages, actions)
      const loss = ops.ppoPolicyLoss(out.logp, ref, adv, actions, { clipLow: 0.2, clipHigh: 0.2 })
      model.zeroGrad()
      await model.backward({ gradLogp: loss.grad, gradEntropy: ops.add(out.entropy, undefined, { alpha: 0 }) })
      const { gradNorm } = await optimizer.step({ maxGradNorm: 1 })
      lines.push(`${name} step ${step} loss ${loss.loss.toPrecision(9)} gradNorm ${gradNorm.toPrecision(9)} logp ${hashOf(out.logp)} entropy ${hashOf(out.entropy)}`)
    }
    const after = await model.logprobs(gen.tokens, { attentionMask: attention })
    lines.push(`${name} after ${hashOf(after)} params ${hashOf(model.flatParameters())}`)
  }
  const b = backend()
  process.stdout.write(lines.map((l) => `simd=${b.simd} threads=${b.threads} ${l}`).join('\n') + '\n')
}

if (process.argv[2] === '--child') {
  await child()
} else {
  const { backend } = await import('../dist/index.js')
  const levels = ['generic', 'avx2', 'avx512'].filter((l) => backend().simdSupported.includes(l))
  for (const level of levels) {
    for (const threads of [1, 2]) {
      const r = spawnSync(process.execPath, [self, '--child'], {
        env: { ...process.env, RLFARM_SIMD: level, RLFARM_THREADS: String(threads) },
        encoding: 'utf8',
      })
      if (r.status !== 0) {
        // A level this CPU lacks is refused at start-up with a clear message.
        process.stdout.write(`simd=${level} threads=${threads} not run: ${(r.stderr.trim().split('\n').find((l) => l.includes('RLFARM_SIMD')) ?? r.stderr.trim()).slice(0, 200)}\n`)
        continue
      }
      process.stdout.write(r.stdout)
    }
  }
}
