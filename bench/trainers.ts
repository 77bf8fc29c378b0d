// npm run bench:trainers -- [--layers 4 --dim 256 --heads 4 --batch 16 --prompt 16 --response 48 --minibatch 8 --steps 6 --rounds 3] [--json]
//   [--device cuda]: every model of the runs on the CUDA engine (bf16), the peer on the same GPU (scripts/check-cuda.mjs)
//
// Trainer throughput: PPO and DPO steps through rlfarm's own trainers
// (`train` with a config, the path a user's run takes: data rows, tokenizer,
// batching, the native ops, logging to metrics.jsonl and TensorBoard) on a
// random-init GPT-2 with the byte tokenizer, against the same steps written
// as TRL writes them in eager PyTorch (bench/torch_trainers.py) on the same
// shapes. rlfarm and the peer take turns for --rounds rounds; a step's time
// is the interval between step events, the first step (which also loads the
// models and, for DPO, computes the reference log-probs) left out. Prints a
// table and, with --json, one JSON line last.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { backend, ByteTokenizer, train, type RunConfigInput } from 'rlfarm'
import { benchArgs } from './args'
import { median, runPython } from './peer'

interface Args {
  layers: number
  dim: number
  heads: number
  batch: number
  prompt: number
  response: number
  minibatch: number
  epochs: number
  steps: number
  rounds: number
  peer: boolean
  json: boolean
  device: 'cpu' | 'cuda'
}

function parseArgs(argv: string[]): Args {
  const defaults = { layers: 4, dim: 256, heads: 4, batch: 16, prompt: 16, response: 48, minibatch: 8, epochs: 2, steps: 6, rounds: 3, peer: true, json: false, device: 'cpu' }
  // The first step is left out of the timings, so at least two.
  const { args } = benchArgs('trainers', argv, defaults, { min: { steps: 2 }, choices: { device: ['cpu', 'cuda'] } })
  return { ...args, device: args.device as Args['device'] }
}

/** Fixed-length text from a seeded stream: one byte token per character. */
function letters(n: number, seed: number): string {
  let x = seed * 2654435761 + 1
  let out = ''
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0
    out += String.fromCharCode(97 + (x % 26))
  }
  return out
}

interface Shapes {
  vocab: number
  promptTokens: number
  dpoLength: number
  dpoResponse: number
}

/** Prompts and preference pairs of fixed lengths, so that no row is padded and both sides do the same work. */
function writeData(dir: string, a: Args): Shapes & { prompts: string; pairs: string } {
  const rows = a.batch * (a.steps + 1)
  const prompts = path.join(dir, 'prompts.jsonl')
  const pairs = path.join(dir, 'pairs.jsonl')
  fs.writeFileSync(prompts, Array.from({ length: rows }, (_, i) => JSON.stringify({ prompt: letters(a.prompt, i) }) + '\n').join(''))
  fs.writeFileSync(
    pairs,
    Array.from({ length: rows }, (_, i) => JSON.stringify({ prompt: letters(a.prompt, i), chosen: letters(a.response, 2 * i + 1), rejected: letters(a.response, 2 * i + 2) }) + '\n').join(''),
  )
  const tokenizer = new ByteTokenizer()
  const promptTokens = tokenizer.encode(letters(a.prompt, 0)).length // with BOS
  const dpoResponse = a.response + 1 // the response's bytes and EOS
  return { prompts, pairs, vocab: tokenizer.vocabSize, promptTokens, dpoLength: promptTokens + dpoResponse, dpoResponse }
}

/** Step times (ms) of one rlfarm run: intervals between step events after the first. */
async function runRlfarm(config: RunConfigInput, check: (metrics: Readonly<Record<string, number>>) => void = () => {}): Promise<number[]> {
  const stamps: number[] = []
  await train(config, {
    onStep: (e) => {
      if (e.phase !== 'train') return
      stamps.push(performance.now())
      check(e.metrics)
    },
  })
  return stamps.slice(1).map((t, i) => t - stamps[i])
}

interface PeerResult {
  torch: string
  threads: number
  ppo_step_ms: number
  ppo_fastest_step_ms: number
  dpo_step_ms: number
  dpo_fastest_step_ms: number
}

function runPeer(a: Args, s: Shapes, threads: number): PeerResult | { error: string } {
  return runPython<PeerResult>('torch_trainers.py', [
    '--vocab', s.vocab, '--layers', a.layers, '--dim', a.dim, '--heads', a.heads, '--batch', a.batch,
    '--prompt', s.promptTokens, '--response', a.response, '--minibatch', a.minibatch, '--epochs', a.epochs,
    '--dpo-length', s.dpoLength, '--dpo-response', s.dpoResponse, '--steps', a.steps - 1, '--threads', threads,
    '--device', a.device, ...(a.device === 'cuda' ? ['--autocast-bf16'] : []),
  ])
}

async function main() {
  const a = parseArgs(process.argv.slice(2))
  const info = backend()
  const machine = `${os.cpus()[0]?.model ?? 'cpu'}, ${info.threads} threads, ${info.simd}`
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rlfarm-bench-trainers-'))
  try {
    const data = writeData(dir, a)
    const init = { hidden_size: a.dim, layers: a.layers, heads: a.heads, max_positions: Math.max(data.promptTokens + a.response, data.dpoLength) }
    const common = (name: string): RunConfigInput => ({
      output_dir: dir, name, seed: 1,
      policy: { tokenizer: 'byte', init, device: a.device },
      data: { chat_template: false, max_length: 512 },
      training: { batch_size: a.batch, max_steps: a.steps },
      logging: { progress: 'none' },
    })
    const ppoConfig = (round: number): RunConfigInput => ({
      ...common(`ppo-${round}`), algorithm: 'ppo',
      reward_model: { tokenizer: 'byte', init, device: a.device },
      data: { chat_template: false, max_length: 512, prompts: data.prompts },
      generation: { max_new_tokens: a.response, temperature: 1, stop_at_eos: false },
      ppo: { epochs: a.epochs, minibatch_size: a.minibatch },
    })
    const dpoConfig = (round: number): RunConfigInput => ({ ...common(`dpo-${round}`), algorithm: 'dpo', data: { chat_template: false, max_length: 512, train: data.pairs } })

    const rounds: Array<{ ppo: number; dpo: number; torchPpo?: number; torchDpo?: number }> = []
    const fastest = { ppo: Infinity, dpo: Infinity, torchPpo: Infinity, torchDpo: Infinity }
    let threadSettings = a.device === 'cuda' ? [1] : [1, 2] // host threads matter to the CPU peer only
    let peerInfo: PeerResult | undefined
    let peerError: string | undefined
    for (let r = 0; r < a.rounds; r++) {
      const ppo = await runRlfarm(ppoConfig(r), (m) => {
        // The peer samples exactly `response` tokens per prompt: so must rlfarm, or the two did different work.
        if (m.response_length !== a.response) throw new Error(`PPO sampled ${m.response_length} tokens a response, not ${a.response}`)
      })
      const dpo = await runRlfarm(dpoConfig(r))
      fastest.ppo = Math.min(fastest.ppo, ...ppo)
      fastest.dpo = Math.min(fastest.dpo, ...dpo)
      const round: (typeof rounds)[number] = { ppo: median(ppo), dpo: median(dpo) }
      if (a.peer && !peerError) {
        // Every thread setting in the first round; the faster one (by PPO step) afterwards.
        const results: PeerResult[] = []
        for (const threads of threadSettings) {
          const p = runPeer(a, data, threads)
          if ('error' in p) {
            peerError = p.error
            break
          }
          results.push(p)
        }
        if (results.length) {
          const best = results.reduce((x, y) => (y.ppo_step_ms < x.ppo_step_ms ? y : x))
          threadSettings = [best.threads]
          peerInfo = best
          round.torchPpo = best.ppo_step_ms
          round.torchDpo = best.dpo_step_ms
          fastest.torchPpo = Math.min(fastest.torchPpo, best.ppo_fastest_step_ms)
          fastest.torchDpo = Math.min(fastest.torchDpo, best.dpo_fastest_step_ms)
        }
      }
      rounds.push(round)
    }
    const typical = (key: keyof (typeof rounds)[number]) => {
      const xs = rounds.map((r) => r[key]).filter((x): x is number => x !== undefined)
      return xs.length ? median(xs) : undefined
    }
    const ppoTokens = a.batch * a.response
    const shape = `gpt2 L${a.layers} d${a.dim} h${a.heads} vocab ${data.vocab}`
    console.log(`rlfarm trainers on ${machine}: ${shape}; ${rounds.length} round(s) of ${a.steps} steps (the first left out)`)
    const line = (name: string, ms: number, peerMs: number | undefined, fast: number, peerFast: number, what: string) => {
      const peer = peerMs ? `; torch ${peerMs.toFixed(0)} ms (fastest ${peerFast.toFixed(0)}) -> rlfarm ${(peerMs / ms).toFixed(2)}x (fastest ${(peerFast / fast).toFixed(2)}x)` : ''
      console.log(`  ${name}: ${ms.toFixed(0)} ms a step (fastest ${fast.toFixed(0)}), ${what}${peer}`)
    }
    const ppoMs = typical('ppo')!
    const dpoMs = typical('dpo')!
    line('PPO', ppoMs, typical('torchPpo'), fastest.ppo, fastest.torchPpo,
      `${a.batch} prompts of ${data.promptTokens} tokens, ${a.response} sampled tokens each, ${a.epochs} epochs of minibatches of ${a.minibatch}: ${(ppoTokens / (ppoMs / 1e3)).toFixed(0)} sampled tokens/s`)
    line('DPO', dpoMs, typical('torchDpo'), fastest.dpo, fastest.torchDpo,
      `${a.batch} pairs of ${data.dpoLength} tokens: ${((2 * a.batch * data.dpoLength) / (dpoMs / 1e3)).toFixed(0)} tokens/s`)
    if (peerInfo) console.log(`  peer: torch ${peerInfo.torch} eager, ${peerInfo.threads} thread(s) (the faster of ${rounds.length > 1 ? '1 and 2 in round 1' : '1 and 2'}), OPENBLAS_NUM_THREADS=${process.env.OPENBLAS_NUM_THREADS ?? '2'}`)
    if (peerError) console.log(`  peer failed: ${peerError}`)
    if (rounds.length > 1 && peerInfo) {
      console.log(`  per round (rlfarm/torch ms): ${rounds.map((r) => `PPO ${r.ppo.toFixed(0)}/${r.torchPpo?.toFixed(0)} DPO ${r.dpo.toFixed(0)}/${r.torchDpo?.toFixed(0)}`).join(', ')}`)
    }
    if (a.json) {
      console.log(JSON.stringify({
        machine, shape, device: a.device, batch: a.batch, promptTokens: data.promptTokens, response: a.response, minibatch: a.minibatch, epochs: a.epochs,
        ppoStepMs: ppoMs, dpoStepMs: dpoMs, peerPpoStepMs: typical('torchPpo'), peerDpoStepMs: typical('torchDpo'),
        fastest, peerThreads: peerInfo?.threads, rounds,
      }))
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
