#!/usr/bin/env node
// npm run check:cuda [-- --log FILE] [--skip-bench] [--budget SECONDS]: the
// CUDA engine's first contact with a GPU, in one command. Every stage goes to
// one log (default check-cuda.log) and the last line is one summary. On a
// machine without a GPU the stages that can run do (the planning code, the
// PyTorch peer's shapes against rlfarm's PPO step), and the rest say that they
// need a GPU.
//
// GPU time is scarce: the whole check keeps to --budget seconds (default 480,
// 8 minutes, inside the device run's 540 s limit, so the summary line is
// always written). Each command gets the smaller of its own limit and what is
// left of the budget, and its whole process tree is killed at that limit; a
// stage with no time left is skipped, saying so. A stage that fails or throws
// never stops the next. The correctness stages run first, the benchmarks last.
//
// Stages:
//   addon        the CUDA backend runs on the GPU at hand (machine code for its
//                major version, or the PTX of an older one); only if not, and nvcc
//                and cmake are there, it is built for it (RLFARM_CUDA_ARCHS=<cc>)
//   plan         cudaPlan for GPT-2 124M at the benchmark's shapes (pure host code)
//   peer-shapes  bench/ppo_shapes.py (python, no torch) against rlfarm's PPO trainer run
//                at the benchmark's batch, prompt, response, minibatch and epochs
//                (a tiny model on whatever device there is)
//   checks       bench/cuda-checks.ts: GEMMs (cuBLASLt, found in PyTorch's wheels, against
//                the own kernels too), and every fixture model's forward
//                (rel. error < 1e-4 f32, < 1e-2 bf16), gradients, AdamW steps
//                tracking the CPU's losses, greedy and sampled generation equal to
//                the CPU's in f32, the fused and decode attention kernels against
//                the reference attention                                      [GPU]
//   trainers     bench/cuda-trainers.ts: a few steps of PPO, DPO, SFT, reward-model
//                training, GRPO and RLOO of a tiny model with device: cuda (f32)
//                in every model spec, their losses
//                tracking the same runs on the CPU (rel. error < 1e-3) and their
//                host reads (backend().hostReads) equal to the CPU's          [GPU]
//   generate     generation tokens/s at batch 64 (GPT-2 124M's shape, 16 + 64
//                tokens, temperature 1), bf16 and f32 (bench/cuda-checks.ts
//                --generate-bench)                                            [GPU]
//   kernels      bench/kernels.ts --device cuda: the RLHF ops' GB/s, log-probs against
//                the device-to-device copy bandwidth of the same run (goal 80%) [GPU]
//   peak         bench/torch_peak.py: the bf16 matmul rate (torch.matmul) of this
//                GPU, the denominator of the MFU                              [GPU]
//   train        bench/train.ts: GPT-2 124M training tokens/s (batch 8 x 1024, bf16)
//                and MFU; generation tokens/s at batch 64; PyTorch eager on the same
//                GPU as the peer                                              [GPU]
//   ppo          bench/trainers.ts: one PPO step (64 prompts x 64 new tokens, two
//                epochs) on a GPT-2 124M-shaped model through rlfarm's trainer,
//                beside the same step in PyTorch eager (bench/torch_trainers.py) [GPU]
//
// With the device tool (docs in the tool library's device/README.md): build here
// for the H100/H200 and carry the build, so the lease is spent on checks:
//   RLFARM_CUDA_ARCHS=90 node scripts/build-native.js && npx tsc -p tsconfig.json
//   bash ../shared/hooks/device-pack.sh        (node and production deps into .device/)
//   run: carry [".device", "dist", "build/Release"], timeout_s 540, command
//     source .device/env.sh && node scripts/check-cuda.mjs --log $OUT/check-cuda.log
// then record the figures in bench/RESULTS.md with the device's name.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { archRuns, createRunner } from './check-cuda-run.mjs'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const option = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined)
const logFile = option('--log') ?? path.join(root, 'check-cuda.log')
const skipBench = args.includes('--skip-bench')
const budget = Number(option('--budget') ?? 480)
if (!(budget > 0)) {
  console.error(`check:cuda: --budget must be a number of seconds > 0; got ${option('--budget')}`)
  process.exit(2)
}
const log = fs.openSync(logFile, 'w')

function say(line) {
  console.log(line)
  fs.writeSync(log, `${line}\n`)
}

const runner = createRunner({ budget, log, say, cwd: root })
/** Runs a command from the project root within its limit and the budget; its output goes to the log. */
function run(cmd, argv, options = {}) {
  const r = runner.run(cmd, argv, options)
  return { ...r, json: lastJson(r.stdout) }
}

function lastJson(text) {
  const line = text.trim().split('\n').reverse().find((l) => l.startsWith('{'))
  try {
    return line ? JSON.parse(line) : undefined
  } catch {
    return undefined
  }
}

const results = []
const figures = []
function stage(name, status, detail) {
  results.push({ name, status })
  say(`stage ${name}: ${status}${detail ? ` (${detail})` : ''}`)
}
/** A failed command's stage: skipped when the budget had no time left for it, else FAIL. */
function failed(name, r, detail) {
  stage(name, r.skipped ? 'skipped' : 'FAIL', r.skipped ? r.why : detail)
}
/** Runs one stage; an exception (a bad line of output, say) fails that stage alone. */
function attempt(name, fn) {
  try {
    fn()
  } catch (err) {
    stage(name, 'FAIL', `the check itself threw: ${err?.stack?.split('\n').slice(0, 2).join(' ') ?? err}`)
  }
}

const tsx = path.join(root, 'node_modules', '.bin', 'tsx')
const python = process.env.RLFARM_BENCH_PYTHON ?? 'python3'
process.env.RLFARM_BENCH_PYTHON = python
say(`check:cuda: budget ${budget} s${runner.killsTree ? '' : ' (no timeout(1) here: a command past its limit is killed, its children may not be)'}`)

// ---------------------------------------------------------------- addon
const probe = () => run(process.execPath, ['-e', "const r=require('./dist/index.js');const b=r.backend();console.log(JSON.stringify({compiled:b.cudaCompiled,archs:b.cudaArchs,devices:b.cudaDevices,why:b.cudaUnavailableReason,gpus:r.devices().filter(d=>d.kind==='cuda')}))"], { timeout: 60 })
const probed = probe()
let info = probed.json
if (!info) {
  if (probed.skipped) stage('addon', 'skipped', probed.why)
  else stage('addon', 'FAIL', 'dist/ or the addon does not load: run npx tsc -p tsconfig.json and node scripts/build-native.js')
  info = { compiled: false, archs: '', devices: 0, why: 'the addon did not load', gpus: [] }
}
const gpu = info.devices > 0
const gpuName = gpu ? info.gpus[0].name : 'no GPU'
say(`rlfarm check:cuda on ${gpuName}; CUDA backend ${info.compiled ? `compiled for ${info.archs}` : 'not compiled'}${gpu ? '' : `; no device: ${info.why}`}`)
if (gpu) {
  attempt('addon', () => {
    const cc = info.gpus[0].computeCapability.replace('.', '')
    if (!info.compiled || !archRuns(info.archs, cc)) {
      // Only when the addon cannot run here: a build is minutes of the lease.
      const built = run(process.execPath, ['scripts/build-native.js'], { timeout: 420, env: { RLFARM_CUDA_ARCHS: cc, RLFARM_BUILD_FROM_SOURCE: '1' } })
      info = probe().json ?? info
      const ok = built.ok && archRuns(info.archs, cc)
      if (built.skipped) failed('addon', built)
      else stage('addon', ok ? 'ok' : 'FAIL', built.ok ? `built for sm_${cc}` : `build for sm_${cc} failed: ${built.why}`)
    } else {
      stage('addon', 'ok', `compiled for ${info.archs}, the GPU is sm_${cc}`)
    }
  })
} else {
  stage('addon', info.compiled ? 'ok' : 'FAIL', info.compiled ? `CUDA backend compiled for ${info.archs}` : 'built without the CUDA backend (nvcc missing or RLFARM_CUDA=0)')
}

// ---------------------------------------------------------------- plan
const GPT2_124M = { arch: 'gpt2', vocab: 50257, dim: 768, layers: 12, heads: 12, maxPositions: 1024, tieEmbeddings: true }
const sms = gpu ? info.gpus[0].multiprocessors : 132
attempt('plan', () => {
  const plan = run(process.execPath, ['-e', `const { cudaPlan } = require('./dist/index.js'); console.log(JSON.stringify(cudaPlan(${JSON.stringify(GPT2_124M)}, { batch: 8, steps: 1024, precision: 'bf16', train: true, sms: ${sms} })))`], { timeout: 60 })
  if (plan.json) {
    const gemms = plan.json.gemms.map((g) => `${g.name} ${g.m}x${g.n}x${g.k}${g.batch > 1 ? `x${g.batch}` : ''}: ${g.tile.join('x')} tile, ${g.launch.grid.join('x')} grid`)
    fs.writeSync(log, `${gemms.join('\n')}\n`)
    stage('plan', 'ok', `GPT-2 124M, 8 x 1024 tokens, bf16 on ${sms} SMs: ${plan.json.gemms.length} GEMMs, ${(plan.json.memory.total / 2 ** 30).toFixed(1)} GiB planned`)
  } else {
    failed('plan', plan, plan.why || 'no plan came back')
  }
})

// ---------------------------------------------------------------- peer shapes
const PPO = { batch: 64, prompt: 16, response: 64, minibatch: 16, epochs: 2 }
function peerShapes() {
  const tiny = run(tsx, ['bench/trainers.ts', '--layers', '1', '--dim', '32', '--heads', '2', '--batch', PPO.batch, '--prompt', PPO.prompt, '--response', PPO.response,
    '--minibatch', PPO.minibatch, '--epochs', PPO.epochs, '--steps', '2', '--rounds', '1', '--no-peer', '--json', ...(gpu ? ['--device', 'cuda'] : [])].map(String), { timeout: 120 })
  if (!tiny.json) {
    failed('peer-shapes', tiny, `rlfarm's PPO run failed: ${tiny.why}`)
    return
  }
  const s = tiny.json
  const shapes = run(python, ['bench/ppo_shapes.py', '--batch', s.batch, '--prompt', s.promptTokens, '--response', s.response, '--minibatch', s.minibatch, '--epochs', s.epochs].map(String), { timeout: 60 })
  if (!shapes.json) {
    failed('peer-shapes', shapes, `bench/ppo_shapes.py: ${shapes.why}`)
    return
  }
  const want = { sequences: [s.batch, s.promptTokens + s.response], updates: s.epochs * Math.ceil(s.batch / s.minibatch), perToken: [s.batch, s.response] }
  const bad = []
  if (shapes.json.sequences.join() !== want.sequences.join()) bad.push(`sequences ${shapes.json.sequences} vs rlfarm's ${want.sequences}`)
  if (shapes.json.updates !== want.updates) bad.push(`updates ${shapes.json.updates} vs rlfarm's ${want.updates}`)
  for (const k of ['old_logprobs', 'ref_logprobs', 'values', 'rewards', 'advantages', 'returns']) {
    if (shapes.json[k].join() !== want.perToken.join()) bad.push(`${k} ${shapes.json[k]} vs ${want.perToken} response tokens per row`)
  }
  stage('peer-shapes', bad.length ? 'FAIL' : 'ok', bad.length ? bad.join('; ') : `PPO ${s.batch} prompts of ${s.promptTokens} tokens, ${s.response} sampled, ${want.updates} minibatch updates: the peer's stages match rlfarm's run`)
}
// Without a GPU it is the one check that runs; with one it waits for the GPU's correctness stages.
if (!gpu) attempt('peer-shapes', peerShapes)

// ---------------------------------------------------------------- GPU stages
const NEEDS_GPU = `needs a GPU: ${info.why || 'none found'}`
if (!gpu) {
  for (const name of ['checks', 'trainers', 'generate', 'kernels', 'peak', 'train', 'ppo']) stage(name, 'skipped', NEEDS_GPU)
} else {
  // cuBLASLt: the GPU machine has it inside PyTorch's CUDA wheels, off the loader's path.
  if (!process.env.RLFARM_CUBLASLT) {
    const find = run(python, ['-c', "import glob, os, sys; print(next(iter(sorted(f for p in sys.path if os.path.isdir(p) for f in glob.glob(os.path.join(p, 'nvidia', '**', 'libcublasLt.so*'), recursive=True))), ''))"], { timeout: 30 })
    const lib = find.out.trim().split('\n').pop()
    if (find.ok && lib) process.env.RLFARM_CUBLASLT = lib
    say(`cuBLASLt: ${process.env.RLFARM_CUBLASLT ?? 'not found in PyTorch\'s wheels; the own GEMM kernels run every product'}`)
  }
  attempt('checks', () => {
    const checks = run(tsx, ['bench/cuda-checks.ts'], { timeout: 180, env: { RLFARM_CUDA_SYNC: '1' } })
    const bad = (checks.out.match(/^FAIL /gm) ?? []).length
    const passed = (checks.out.match(/^ok {2}/gm) ?? []).length
    if (checks.skipped) failed('checks', checks)
    else stage('checks', checks.ok ? 'ok' : 'FAIL', `${passed} passed, ${bad} failed${checks.ok ? '' : `: ${checks.why}`}`)
  })
  attempt('trainers', () => {
    const trainers = run(tsx, ['bench/cuda-trainers.ts', 'cuda'], { timeout: 120 })
    const trainerFails = trainers.out.split('\n').filter((l) => l.startsWith('FAIL '))
    if (trainers.ok) stage('trainers', 'ok', `PPO, DPO, SFT, reward, GRPO and RLOO on cuda track the CPU's losses; host reads equal`)
    else failed('trainers', trainers, trainerFails.join('; ') || trainers.why)
  })
  attempt('generate', () => {
    const gen = run(tsx, ['bench/cuda-checks.ts', '--generate-bench'], { timeout: 90 })
    const genRuns = gen.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
    if (gen.ok && genRuns.length) {
      for (const g of genRuns) figures.push(`generate b64 ${g.precision} ${g.tokensPerSecond.toFixed(0)} tok/s`)
      stage('generate', 'ok', genRuns.map((g) => `${g.precision} ${g.tokensPerSecond.toFixed(0)} tokens/s (${g.batch} x ${g.newTokens} in ${g.seconds.toFixed(2)} s)`).join(', '))
    } else {
      failed('generate', gen, gen.why || 'no figures came back')
    }
  })
  attempt('kernels', () => {
    const kernels = run(tsx, ['bench/kernels.ts', '--device', 'cuda', '--no-peer', '--json'], { timeout: 90 })
    const logprobs = kernels.json?.results?.find((r) => r.op === 'logprobs')
    if (logprobs?.copyShare !== undefined) {
      const share = 100 * logprobs.copyShare
      figures.push(`logprobs ${share.toFixed(0)}% of copy bw`)
      stage('kernels', 'ok', `logprobs [${logprobs.shape}] ${logprobs.gbps.toFixed(0)} GB/s, ${share.toFixed(0)}% of the copy's ${kernels.json.copyGbps.toFixed(0)} GB/s (goal 80%)`)
    } else {
      failed('kernels', kernels, kernels.why || 'no figures came back')
    }
  })
  attempt('peer-shapes', peerShapes)
  if (skipBench) {
    for (const name of ['peak', 'train', 'ppo']) stage(name, 'skipped', '--skip-bench')
  } else {
    let tflops
    attempt('peak', () => {
      const peak = run(python, ['bench/torch_peak.py'], { timeout: 60 })
      tflops = peak.json?.bf16_tflops
      if (tflops) stage('peak', 'ok', `torch.matmul bf16 8192^3: ${tflops.toFixed(0)} TFLOP/s`)
      else failed('peak', peak, peak.why || 'no figure came back (is torch installed?)')
    })
    attempt('train', () => {
      const train = run(tsx, ['bench/train.ts', '--arch', 'gpt2', '--layers', '12', '--dim', '768', '--heads', '12', '--ctx', '1024', '--batch', '8', '--vocab', '50257',
        '--steps', '5', '--rounds', '1', '--gen-batch', '64', '--gen-prompt', '16', '--gen-tokens', '64', '--device', 'cuda', '--precision', 'bf16', '--json'], { timeout: 180 })
      if (train.json) {
        const t = train.json
        // Model FLOPs per token (PaLM's count): 6 N for the weights' products, 12 L T d for attention.
        const params = 124439808
        const flopsPerToken = 6 * params + 12 * 12 * 1024 * 768
        const mfu = tflops ? (t.tokensPerSecond * flopsPerToken) / (tflops * 1e12) : undefined
        figures.push(`train 124M ${t.tokensPerSecond.toFixed(0)} tok/s${mfu !== undefined ? `, MFU ${(100 * mfu).toFixed(1)}%` : ''}`)
        if (t.generateTokensPerSecond) figures.push(`generate b64 ${t.generateTokensPerSecond.toFixed(0)} tok/s`)
        stage('train', 'ok', `${t.tokensPerSecond.toFixed(0)} tokens/s (torch ${t.peerTokensPerSecond?.toFixed(0) ?? '?'}), MFU ${mfu !== undefined ? `${(100 * mfu).toFixed(1)}%` : '?'} of ${tflops?.toFixed(0) ?? '?'} TFLOP/s; generation ${t.generateTokensPerSecond?.toFixed(0) ?? '?'} tokens/s at batch 64`)
      } else {
        failed('train', train, train.why || 'no figures came back')
      }
    })
    attempt('ppo', () => {
      const ppo = run(tsx, ['bench/trainers.ts', '--layers', '12', '--dim', '768', '--heads', '12', '--batch', PPO.batch, '--prompt', PPO.prompt, '--response', PPO.response,
        '--minibatch', PPO.minibatch, '--epochs', PPO.epochs, '--steps', '3', '--rounds', '1', '--device', 'cuda', '--json'].map(String), { timeout: 240 })
      if (ppo.json) {
        const p = ppo.json
        figures.push(`PPO step ${p.ppoStepMs.toFixed(0)} ms vs torch ${p.peerPpoStepMs?.toFixed(0) ?? '?'} ms`)
        stage('ppo', 'ok', `rlfarm ${p.ppoStepMs.toFixed(0)} ms, torch eager ${p.peerPpoStepMs?.toFixed(0) ?? '?'} ms a step`)
      } else {
        failed('ppo', ppo, ppo.why || 'no figures came back')
      }
    })
  }
}

const count = (s) => results.filter((r) => r.status === s).length
const spent = budget - runner.left()
say(`check:cuda: ${gpuName}: ${count('ok')} ok, ${count('FAIL')} failed, ${count('skipped')} skipped${figures.length ? `; ${figures.join('; ')}` : ''}${gpu ? '' : ' (checks, trainers, generate, kernels, peak, train and ppo need a GPU)'}; ${spent.toFixed(0)} of ${budget} s; log ${logFile}`)
fs.closeSync(log)
process.exit(count('FAIL') > 0 ? 1 : 0)
