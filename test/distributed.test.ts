// Data-parallel runs on Gloo, with 2-3 ranks over 127.0.0.1: collectives are
// exact, a rank that never calls times out, rendezvous errors name the
// problem, SFT, reward, DPO, PPO, GRPO and RLOO on 2 ranks reach the weights
// of 1 rank, and eval and best-of-n on 2 ranks write what 1 rank writes; the
// gradient all-reduce overlapped with backward gives the sums of the one after
// it, and a peer failing during it is an error; NCCL's parts that run without
// a GPU. Without Gloo in the addon these tests skip, saying so.
import t from 'tap'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { distributed, Model, resolveConfig, SafetensorsFile, Tensor } from 'rlfarm'
import { encoderFor, loadModelSpec } from '../dist/training/models.js'
import { sampleResponses } from '../dist/training/rollout.js'
import { tempDir } from './helpers/common'
import { toyData, TINY_POLICY } from './helpers/toy-data'
import { native } from '../ts/native'

const ROOT = path.join(__dirname, '..')
const BIN = path.join(ROOT, 'bin', 'rlfarm.js')
const WORKER = path.join(__dirname, 'helpers', 'dist-worker.mjs')
const skip = distributed.glooAvailable() ? false : 'rlfarm was built without Gloo (apt-get install libgloo-dev, then npm run build:native)'

interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

function run(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 240_000): Promise<Exit> & { pid: number | undefined } {
  const child = spawn(process.execPath, args, { cwd: __dirname, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const done = new Promise<Exit>((resolve) =>
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    }),
  )
  return Object.assign(done, { pid: child.pid })
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
}

/** Starts the worker as ranks `ranks` of `worldSize`; resolves to each rank's JSON line. */
async function ranks(scenario: string, worldSize: number, env: NodeJS.ProcessEnv = {}, which = [...Array(worldSize).keys()]) {
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rlfarm-dist-'))
  const file = (rank: number) => path.join(dir, `rank-${rank}.json`)
  const exits = await Promise.all(
    which.map((rank) =>
      run([WORKER, scenario], { RANK: String(rank), WORLD_SIZE: String(worldSize), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), TEST_RESULT_FILE: file(rank), ...env }),
    ),
  )
  try {
    return exits.map((e, k) => {
      if (!fs.existsSync(file(which[k]))) throw new Error(`rank ${which[k]} wrote no result (exit ${e.code} ${e.signal ?? ''}): ${e.stdout}\n${e.stderr}`)
      return { ...(JSON.parse(fs.readFileSync(file(which[k]), 'utf8')) as Record<string, unknown>), exit: e }
    })
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const value = (r: number, i: number) => ((i * 7 + r * 5) % 23) - 11

t.test('collectives are exact on f32, bf16 and i32, sizes not multiples of the ranks', { skip }, async (t) => {
  for (const world of [2, 3]) {
    const results = await ranks('collectives', world)
    for (const res of results) {
      t.equal(res.exit.code, 0, `rank ${res.rank} of ${world} exits cleanly`)
      const reduce = res.reduce as Record<string, number[]>
      const broadcast = res.broadcast as Record<string, number[]>
      const gather = res.gather as Record<string, { shape: number[]; values: number[] }>
      const scatter = res.scatter as Record<string, { shape: number[]; values: number[] }>
      let wrong = 0
      for (const dtype of ['f32', 'bf16', 'i32']) {
        for (const n of [1, 7, 1001, 65537]) {
          const at = (i: number) => [...Array(world).keys()].map((r) => value(r, i))
          const sum = (i: number) => at(i).reduce((a, b) => a + b, 0)
          const expect: Record<string, (i: number) => number> = {
            sum,
            avg: (i) => (dtype === 'i32' ? Math.trunc(sum(i) / world) : dtype === 'f32' ? Math.fround(sum(i) / world) : sum(i) / world),
            max: (i) => Math.max(...at(i)),
            min: (i) => Math.min(...at(i)),
          }
          for (const [op, f] of Object.entries(expect)) {
            const got = reduce[`${dtype}/${n}/${op}`]
            if (dtype === 'bf16' && op === 'avg') {
              // bf16 keeps 8 bits of mantissa: the quotient is rounded once.
              if (got.some((v, i) => Math.abs(v - f(i)) > Math.abs(f(i)) / 128)) wrong++
            } else if (got.length !== n || got.some((v, i) => v !== f(i))) {
              wrong++
              t.fail(`${dtype} n=${n} ${op} on rank ${res.rank}: first values ${got.slice(0, 4)} vs ${[0, 1, 2, 3].map(f)}`)
            }
          }
          if (broadcast[`${dtype}/${n}`].some((v, i) => v !== value(world - 1, i))) wrong++
          const g = gather[`${dtype}/${n}`]
          t.same(g.shape, [world, n])
          if (g.values.some((v, k) => v !== value(Math.floor(k / n), k % n))) wrong++
          // reduceScatter of [world, n]: rank r gets row r of the sum.
          const s = scatter[`${dtype}/${n}`]
          t.same(s.shape, [1, n])
          if (s.values.some((v, i) => v !== sum(res.rank as number * n + i))) wrong++
        }
      }
      t.equal(wrong, 0, `rank ${res.rank} of ${world}: every reduce, broadcast, gather and scatter is exact`)
      const sumAt = (i: number) => [...Array(world).keys()].reduce((a, r) => a + value(r, i), 0)
      t.same(res.concurrent, [3, 70001, 5, 1000, 2, 40000, 9, 17].map((n) => [0, 1, 2].slice(0, n).map(sumAt)), 'collectives started together complete in order')
    }
  }
})

t.test('a collective that another rank never makes times out, naming the operation and the rank', { skip }, async (t) => {
  const [zero, one] = await ranks('silent', 2)
  t.match(zero.error, /distributed\.allReduce of .* failed on rank 0 of 2: .*(Timed out|timed out)/)
  t.match(zero.error, /another rank did not make the same call in time/)
  t.ok((zero.seconds as number) < 60, `the timeout is kept (${zero.seconds} s for 1.5 s)`)
  t.equal(one.exit.code, 0)
})

t.test('rendezvous: file store, wrong world size, a rank that never joins, a port in use', { skip }, async (t) => {
  const dir = tempDir(t, 'rdzv')
  const viaFiles = await ranks('exchange', 2, { RLFARM_RDZV: `file://${dir}` })
  t.same(viaFiles.map((r) => r.values), [['from 0', 'from 1'], ['from 0', 'from 1']], 'file:// rendezvous (Gloo FileStore) connects the ranks')

  const port = await freePort()
  const env = (rank: number, world: number) => ({ RANK: String(rank), WORLD_SIZE: String(world), MASTER_PORT: String(port), TEST_RDZV_TIMEOUT_MS: '3000' })
  const [a, b] = await Promise.all([run([WORKER, 'exchange'], env(0, 2)), run([WORKER, 'exchange'], env(1, 3))])
  t.match(b.stdout, /rank 1 has WORLD_SIZE=3 but rank 0, which serves the store, has WORLD_SIZE=2/, 'a wrong world size is named')
  t.not(a.code, 0, 'rank 0 fails too')

  const missing = await ranks('exchange', 3, { TEST_RDZV_TIMEOUT_MS: '2000' }, [0, 1])
  for (const r of missing) t.match(r.error, /rendezvous timed out after 2 s .*: rank 2 of WORLD_SIZE=3 never joined/, `rank ${r.rank} names the missing rank`)

  const holder = net.createServer()
  const busy = await new Promise<number>((resolve) => holder.listen(0, () => resolve((holder.address() as net.AddressInfo).port)))
  const inUse = await run([WORKER, 'exchange'], { RANK: '0', WORLD_SIZE: '2', MASTER_PORT: String(busy), TEST_RDZV_TIMEOUT_MS: '2000' })
  holder.close()
  t.match(inUse.stdout, new RegExp(`MASTER_PORT ${busy} is already in use`), 'a port in use is named')

  await t.rejects(distributed.init({ worldSize: 2, rank: 2 }), /rank 2 is outside 0\.\.1/)
  await t.rejects(distributed.init({ worldSize: 2, rdzv: 'etcd://x' }), /rdzv must be 'tcp' or 'file:\/\/DIR'/)
})

t.test('the store: old exchange keys are erased; a rank waiting when rank 0 exits says so, not that it timed out', { skip }, async (t) => {
  const dir = tempDir(t, 'store')
  const [a, b] = await ranks('exchanges', 2, { RLFARM_RDZV: `file://${dir}` })
  const files = a.files as number[]
  t.ok(files[0] === files[1], `the file store holds ${files.join(' then ')} files after 10 and 40 exchanges`)
  t.same(b.files, files)
  const [, waiting] = await ranks('rankZeroExits', 2, { RLFARM_DIST_TIMEOUT_MS: '120000' })
  t.match(waiting.error, /rank 0 stopped serving the store .* while this rank waited for key\(s\) .*exchange\/1\/never\/0/, waiting.error as string)
  t.notMatch(waiting.error, /timed out/, 'no timeout is claimed')
  t.ok((waiting.seconds as number) < 60, `it says so at once (${waiting.seconds} s)`)
})

// ---- trainers: 2 ranks reach the weights of 1 with the same global batch ----

const data = toyData()
t.teardown(() => fs.rmSync(data.dir, { recursive: true, force: true }))

function writeConfig(dir: string, algorithm: string, extra: string): string {
  const file = path.join(dir, `${algorithm}.json`)
  const init = TINY_POLICY.init
  const base = {
    algorithm,
    seed: 3,
    output_dir: path.join(dir, 'runs'),
    policy: { tokenizer: 'byte', init },
    data: { chat_template: false, max_length: 40, train: algorithm === 'sft' ? data.sft : data.preferences, eval_size: 8 },
    optimizer: { lr: 3e-3 },
    training: { batch_size: 8, gradient_accumulation: 2, max_steps: 6 },
    checkpoint: { every: 2 },
    logging: { progress: 'none' },
    ...JSON.parse(extra),
  }
  fs.writeFileSync(file, JSON.stringify(base))
  return file
}

function maxDifference(a: string, b: string): number {
  const fa = SafetensorsFile.open(a)
  const fb = SafetensorsFile.open(b)
  let worst = 0
  for (const name of fa.entries.keys()) {
    const x = fa.tensor(name).data as Float32Array
    const y = fb.tensor(name).data as Float32Array
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]))
  }
  return worst
}

// The sampling trainers: a reward model (random, so scores vary), 7 prompts a batch (4 and 3 rows
// on the ranks; a minibatch of 3 may fall on one rank only), and the
// statistics that need the whole batch (normalisation, whitening, the
// adaptive KL) switched on.
const rl = (steps: number, extra: object) =>
  JSON.stringify({
    data: { chat_template: false, max_length: 40, prompts: data.prompts },
    generation: { max_new_tokens: 8 },
    reward_model: { tokenizer: 'byte', init: TINY_POLICY.init },
    optimizer: { lr: 1e-2 },
    training: { batch_size: 7, max_steps: steps },
    ...extra,
  })
const SCORE_KEYS = ['score', 'kl', 'grad_norm', 'rewards/reward_model/mean', 'response_length']

for (const { algorithm, extra, models, keys, rounds } of [
  { algorithm: 'sft', extra: '{}', models: ['model'], keys: ['loss', 'grad_norm'] },
  { algorithm: 'reward', extra: '{}', models: ['model'], keys: ['loss', 'grad_norm'] },
  { algorithm: 'dpo', extra: '{"dpo": {"beta": 0.1}}', models: ['model'], keys: ['loss', 'grad_norm'] },
  {
    algorithm: 'ppo',
    extra: rl(4, { ppo: { minibatch_size: 3, epochs: 2, normalize_rewards: true, kl_target: 1, kl_horizon: 50, entropy_coef: 0.01 } }),
    models: ['model', 'value_model'],
    keys: [...SCORE_KEYS, 'kl_coef', 'reward', 'policy_loss', 'value_loss', 'clip_fraction', 'approx_kl', 'entropy', 'value_explained_variance', 'eos_fraction'],
  },
  // Groups of 3 on 5 prompts: 9 and 6 rows on the ranks, and micro-batches of 5 rows that cut across groups (bnpo's token mean is the micro-batch's).
  {
    algorithm: 'grpo',
    extra: rl(3, { training: { batch_size: 5, max_steps: 3 }, group: { group_size: 3, loss_type: 'bnpo', scale_rewards: 'batch', kl_coef: 0.05, num_iterations: 2 } }),
    models: ['model'],
    keys: [...SCORE_KEYS, 'score_std', 'reward', 'loss', 'policy_loss', 'kl_loss', 'clip_fraction', 'approx_kl', 'entropy', 'advantage_abs', 'response_length_max'],
  },
  // Best of 4 on 14 prompts a round (split across the ranks), then SFT on the winners (each batch split), twice.
  {
    algorithm: 'expert_iteration',
    extra: rl(0, { training: { batch_size: 7 }, expert_iteration: { rounds: 2, n: 4, prompts_per_round: 14 } }),
    models: ['model'],
    keys: ['loss', 'grad_norm', 'winner_score'],
    rounds: 2,
  },
  {
    algorithm: 'rloo',
    extra: rl(3, { training: { batch_size: 5, max_steps: 3 }, group: { group_size: 3, kl_coef: 0.05 } }),
    models: ['model'],
    keys: [...SCORE_KEYS, 'reward', 'loss', 'clip_fraction', 'entropy', 'advantage_abs'],
  },
] as const) {
  t.test(`${algorithm}: --nproc 2 reaches the weights of --nproc 1`, { skip }, async (t) => {
    const dir = tempDir(t, algorithm)
    const file = writeConfig(dir, algorithm, extra)
    // Expert iteration: 14 prompts in batches of 7, each round.
    const steps = rounds ? rounds * 2 : (JSON.parse(fs.readFileSync(file, 'utf8')) as { training: { max_steps: number } }).training.max_steps
    const one = await run([BIN, 'train', file, '--name', 'one'])
    t.equal(one.code, 0, one.stderr)
    const two = await run([BIN, 'train', file, '--name', 'two', '--nproc', '2'])
    t.equal(two.code, 0, two.stderr)
    const model = (name: string, which = 'model') => path.join(dir, 'runs', name, which, 'model.safetensors')
    // Parameters the loss is invariant to (attention key biases; the reward
    // model's final-norm bias, which shifts chosen and rejected alike) get
    // gradients that are float noise, which AdamW turns into steps of up to
    // lr: hence 1e-3 here, and the gradient norms below, which AdamW's scale
    // invariance would otherwise hide, at 1e-4 relative.
    for (const which of models) {
      const diff = maxDifference(model('one', which), model('two', which))
      t.ok(diff < 1e-3, `${which}: largest weight difference ${diff} (float summation order only)`)
    }
    const metrics = (name: string) =>
      fs.readFileSync(path.join(dir, 'runs', name, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>)
    const series = (name: string, key: string) => metrics(name).filter((m) => m[key] !== undefined).map((m) => m[key])
    const close = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]) < 1e-4 * Math.max(1, Math.abs(x)))
    t.equal(series('two', keys[0]).length, steps, 'rank 0 logs every step once')
    // The logged figures are the whole batch's, not rank 0's share.
    for (const key of keys) {
      const [a, b] = [series('one', key), series('two', key)]
      t.ok(a.length > 0 && close(a, b), `${key}: ${a.at(-1)} (1 process) vs ${b.at(-1)} (2 ranks)`)
    }
    t.same(fs.readdirSync(path.join(dir, 'runs')).sort(), ['one', 'two'], 'only rank 0 made a run directory')
  })
}

for (const [algorithm, extra] of [
  ['eval', { training: { batch_size: 7 } }],
  ['best_of_n', { training: { batch_size: 5 }, best_of_n: { n: 4, chunk: 3 } }],
] as const) {
  t.test(`${algorithm}: --nproc 2 splits the prompts and writes the outputs of --nproc 1, in prompt order`, { skip }, async (t) => {
    const dir = tempDir(t, algorithm)
    const file = writeConfig(dir, algorithm, rl(0, extra))
    for (const [name, more] of [['one', []], ['two', ['--nproc', '2']]] as const) {
      const r = await run([BIN, 'train', file, '--name', name, ...more])
      t.equal(r.code, 0, r.stderr)
    }
    const outputs = (name: string) =>
      fs.readFileSync(path.join(dir, 'runs', name, 'outputs.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { prompt: string; response: string; score: number })
    const [one, two] = [outputs('one'), outputs('two')]
    t.equal(two.length, 96, 'one line per prompt')
    t.same(two.map((o) => [o.prompt, o.response]), one.map((o) => [o.prompt, o.response]), 'the same responses to the same prompts, in order')
    const worst = Math.max(...one.map((o, i) => Math.abs(o.score - two[i].score)))
    t.ok(worst < 1e-5, `scores agree (largest difference ${worst})`)
    t.ok(new Set(two.map((o) => o.response)).size > 10, 'the responses differ from prompt to prompt')
  })
}

t.test('--resume at another --nproc than the run started with continues it as one process would', { skip }, async (t) => {
  const dir = tempDir(t, 'renproc')
  const steps = 10
  const file = writeConfig(dir, 'ppo', rl(steps, { ppo: { minibatch_size: 3, normalize_rewards: true, kl_target: 1, kl_horizon: 50 }, optimizer: { lr: 3e-3 }, checkpoint: { every: 2 } }))
  const runs = path.join(dir, 'runs')
  const whole = await run([BIN, 'train', file, '--name', 'whole'])
  t.equal(whole.code, 0, whole.stderr)
  // ZeRO-1 writes checkpoints in the unsharded layout: a sharded run resumes unsharded, and the other way.
  const sharding = (on: boolean) => (on ? ['--set', 'distributed.shard_optimizer=true'] : [])
  for (const [from, to, shardFrom, shardTo] of [[2, 1, false, false], [1, 2, false, false], [2, 1, true, false], [1, 2, false, true]] as const) {
    const name = `from-${from}${shardFrom ? '-sharded' : ''}-to-${to}${shardTo ? '-sharded' : ''}`
    const checkpoints = path.join(runs, name, 'checkpoints')
    const cut = run([BIN, 'train', file, '--name', name, '--nproc', String(from), ...sharding(shardFrom)])
    // Stopped (SIGTERM, as a scheduler stops a job) once it has a checkpoint: it saves one more where it stops.
    const started = Date.now()
    while (!(fs.existsSync(checkpoints) && fs.readdirSync(checkpoints).some((d) => /^step-/.test(d))) && Date.now() - started < 120_000) await new Promise((r) => setTimeout(r, 50))
    process.kill(cut.pid!, 'SIGTERM')
    const stopped = await cut
    t.equal(stopped.code, 130, `${name}: the run stops on SIGTERM, interrupted`)
    const at = JSON.parse(fs.readFileSync(path.join(runs, name, 'run.json'), 'utf8')) as { state: string; step: number }
    t.ok(at.state === 'interrupted' && at.step < steps, `${name}: stopped at step ${at.step} of ${steps}`)
    const resumed = await run([BIN, 'train', file, '--name', name, '--resume', '--nproc', String(to), ...sharding(shardTo)])
    t.equal(resumed.code, 0, resumed.stderr)
    t.match(resumed.stdout, new RegExp(`metrics: steps=${steps}`), `${name}: the resumed run finishes`)
    // Over 10 steps AdamW turns the float noise in the gradients of
    // parameters the loss does not depend on into steps of up to lr each
    // (see above): hence 3e-3 on the weights, and the figures below, which
    // that noise does not move, at 1e-3 relative.
    for (const which of ['model', 'value_model']) {
      const diff = maxDifference(path.join(runs, 'whole', which, 'model.safetensors'), path.join(runs, name, which, 'model.safetensors'))
      t.ok(diff < 3e-3, `${name}: ${which} as the uninterrupted run's (largest difference ${diff})`)
    }
    for (const key of ['score', 'kl', 'kl_coef', 'policy_loss', 'value_loss', 'grad_norm']) {
      const series = (run: string) => fs.readFileSync(path.join(runs, run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>).flatMap((m) => (m[key] === undefined ? [] : [m[key]]))
      const [a, b] = [series('whole'), series(name)]
      t.ok(a.length === steps && b.length === steps && a.every((x, i) => Math.abs(x - b[i]) < 1e-3 * Math.max(Math.abs(x), 1e-3)), `${name}: ${key} step for step (last ${a.at(-1)} vs ${b.at(-1)})`)
    }
  }
})

t.test('ZeRO-1: a sharded AdamW step gives the weights and moments of one process on the summed gradients', { skip }, async (t) => {
  for (const world of [2, 3]) {
    for (const res of await ranks('zero', world)) {
      const r = res as unknown as { rank: number; exit: Exit; total: number; moments: number; norms: [number, number][]; params: number; moved: number; m: number; v: number; step: number; error?: string }
      t.equal(r.exit.code, 0, `rank ${r.rank} of ${world} exits cleanly ${r.error ?? ''}`)
      const shard = Math.ceil(Math.ceil(r.total / world) / 16) * 16
      t.equal(r.moments, shard, `rank ${r.rank} of ${world} holds ${r.moments} moments of ${r.total} parameters each (its shard)`)
      for (const [zero, plain] of r.norms) t.ok(Math.abs(zero - plain) < 1e-6 * plain, `the global gradient norm: ${zero} vs ${plain}`)
      t.ok(r.moved > 1e-3, `the steps moved the weights (by up to ${r.moved})`)
      t.ok(r.params < 1e-7, `rank ${r.rank} of ${world}: every parameter as one process's (largest difference ${r.params})`)
      t.ok(r.m < 1e-9 && r.v < 1e-12, `the gathered moments are one process's (largest differences ${r.m}, ${r.v})`)
      t.equal(r.step, 2)
    }
  }
})

t.test('overlap_backward: gradients summed bucket by bucket during backward are those of one all-reduce after it', { skip }, async (t) => {
  for (const world of [2, 3]) {
    for (const r of await ranks('overlap', world)) {
      const res = r as unknown as { rank: number; exit: Exit; buckets: number[]; differences: number[]; largest: number; error?: string }
      t.equal(res.exit.code, 0, `rank ${res.rank} of ${world} exits cleanly ${res.error ?? ''}`)
      // 3 layers: what follows them, each layer, the embeddings; or everything in one bucket.
      t.same(res.buckets, [5, 1], `rank ${res.rank} of ${world}: a bucket per layer, or one`)
      t.ok(res.largest > 1e-3, `the gradients are not zero (largest ${res.largest})`)
      // Two ranks add a + b in either order alike; three add in an order that depends on where the ring cuts the buffer.
      const [perLayer, whole] = res.differences
      t.equal(whole, 0, `rank ${res.rank} of ${world}: one bucket is bit for bit the one all-reduce`)
      if (world === 2) t.equal(perLayer, 0, `rank ${res.rank} of 2: per-layer buckets are bit for bit the one all-reduce`)
      else t.ok(perLayer <= 1e-6 * res.largest, `rank ${res.rank} of 3: per-layer buckets within float rounding (${perLayer})`)
    }
  }
})

t.test('overlap_backward: a peer that exits or stops calling during an overlapped backward gives an error naming the collective and the rank', { skip }, async (t) => {
  for (const peer of ['exits', 'silent']) {
    const [zero, one] = await ranks('overlapPeerFails', 2, { TEST_PEER: peer, TEST_TIMEOUT_MS: '1500' })
    t.match(zero.error, /model\.backward: the gradient all-reduce overlapped with backward failed at bucket 1 of 5 .*distributed\.allReduce of .* failed on rank 0 of 2/, `${peer}: ${zero.error}`)
    t.match(zero.error, peer === 'silent' ? /another rank did not make the same call in time/ : /a peer rank has probably exited|another rank did not make the same call in time/)
    t.ok((zero.seconds as number) < 60, `${peer}: stopped in ${zero.seconds} s (timeout 1.5 s)`)
    t.equal(one.exit.code, 0)
  }
})

for (const [algorithm, extra, models] of [
  ['sft', '{}', ['model']],
  ['ppo', rl(3, { ppo: { minibatch_size: 3, epochs: 2, normalize_rewards: true } }), ['model', 'value_model']],
] as const) {
  t.test(`overlap_backward: ${algorithm} at --nproc 2 reaches the weights of overlap off and of --nproc 1`, { skip }, async (t) => {
    const dir = tempDir(t, `overlap-${algorithm}`)
    const file = writeConfig(dir, algorithm, extra)
    const runs: [string, string[]][] = [
      ['one', []],
      // A bucket per layer, so backward and the sums interleave.
      ['overlap', ['--nproc', '2', '--set', 'distributed.overlap_backward=true', '--set', 'distributed.bucket_mb=0']],
      ['after', ['--nproc', '2', '--set', 'distributed.overlap_backward=false']],
    ]
    for (const [name, more] of runs) {
      const r = await run([BIN, 'train', file, '--name', name, ...more])
      t.equal(r.code, 0, `${name}: ${r.stderr}`)
    }
    const model = (name: string, which: string) => path.join(dir, 'runs', name, which, 'model.safetensors')
    for (const which of models) {
      // Two ranks sum a + b bit for bit alike however the buffer is cut.
      t.equal(maxDifference(model('overlap', which), model('after', which)), 0, `${which}: overlapped and after backward, bit for bit`)
      const diff = maxDifference(model('one', which), model('overlap', which))
      t.ok(diff < 1e-3, `${which}: largest weight difference from --nproc 1 ${diff} (float summation order only)`)
    }
  })
}

// NCCL (CUDA tensors) needs GPUs, which the machines these tests were written on lack: what runs without one is tested here.
t.test('NCCL: the nccl.h values passed for dtypes, reductions and the unique id', async (t) => {
  // ncclDataType_t: ncclInt32 2, ncclFloat32 7, ncclBfloat16 9; ncclRedOp_t: ncclSum 0, ncclMax 2, ncclMin 3, ncclAvg 4; ncclUint8 1.
  const e = native.ncclEnums()
  t.same({ dtypes: e.dtypes, ops: e.ops, bytes: e.bytes, uniqueIdBytes: e.uniqueIdBytes }, { dtypes: { f32: 7, bf16: 9, i32: 2 }, ops: { sum: 0, avg: 4, max: 2, min: 3 }, bytes: 1, uniqueIdBytes: 128 })
  t.equal(e.inProgress, 7, 'ncclInProgress')
})

t.test("NCCL: the ncclConfig_t of the non-blocking init is NCCL 2.14's layout, as NCCL_CONFIG_INITIALIZER fills it", async (t) => {
  // nccl.h (v2.14.3): typedef struct ncclConfig_v21400 { size_t size; unsigned int magic; unsigned int version; int blocking; }
  // NCCL_CONFIG_INITIALIZER { sizeof(ncclConfig_t), 0xcafebeef, NCCL_VERSION(2, 14, 0) = 21400, ... }. Later NCCLs read
  // `size` bytes and, for version 21400, reset every field added after 2.14 (the padding after blocking included).
  const c = native.ncclEnums().config
  t.same(c.offsets, { size: 0, magic: 8, version: 12, blocking: 16 })
  t.equal(c.sizeof, 24, 'sizeof on a 64-bit ABI: 8 + 4 + 4 + 4, padded to size_t alignment')
  t.equal(c.size, c.sizeof, 'size is sizeof(ncclConfig_t)')
  t.equal(c.magic, 0xcafebeef, 'NCCL_API_MAGIC')
  t.equal(c.version, 2 * 10000 + 14 * 100 + 0, 'NCCL_VERSION(2, 14, 0): the first with ncclCommInitRankConfig, and the layout declared')
  t.equal(c.blocking, 0, 'non-blocking: the init is polled with the group timeout')
})

t.test('NCCL: the wait on a non-blocking init ends when the state settles, or at the timeout (real time)', async (t) => {
  const inProgress = native.ncclEnums().inProgress
  // Settles to ncclSuccess after 150 ms, well within a 5 s timeout.
  const ok = native.ncclSettle(150, 0, 5000)
  t.equal(ok.state, 0)
  t.equal(ok.timedOut, false)
  t.ok(ok.waitedMs >= 150 && ok.waitedMs < 2000, `waited ${ok.waitedMs} ms`)
  t.ok(ok.polls > 1, 'polled more than once')
  // Settles to an error (ncclRemoteError 6): that error, not a timeout.
  const bad = native.ncclSettle(50, 6, 5000)
  t.same({ state: bad.state, timedOut: bad.timedOut }, { state: 6, timedOut: false })
  // Never settles within the timeout (a rank that died before joining): timed out at ~300 ms, still in progress.
  const stuck = native.ncclSettle(60000, 0, 300)
  t.same({ state: stuck.state, timedOut: stuck.timedOut }, { state: inProgress, timedOut: true })
  t.ok(stuck.waitedMs >= 300 && stuck.waitedMs < 3000, `gave up after ${stuck.waitedMs} ms`)
  // Already settled: one poll, no wait.
  const now = native.ncclSettle(0, 0, 1000)
  t.same({ state: now.state, timedOut: now.timedOut, polls: now.polls }, { state: 0, timedOut: false, polls: 1 })
})

t.test('NCCL: deviceGradients (what NCCL sums for a cuda model) of a cpu model says where its gradients are', async (t) => {
  const model = Model.create({ arch: 'gpt2', vocab: 16, dim: 8, layers: 1, heads: 2, maxPositions: 8 }, { seed: 1 })
  t.throws(() => model.deviceGradients(), /model\.deviceGradients: this model is on the cpu \(its gradients are model\.flatGradients\(\)\)/)
})

t.test('NCCL: a library that is missing or is not NCCL is named, with what to install', async (t) => {
  const probe = "const { backend } = require('rlfarm'); const b = backend(); console.log(JSON.stringify({ library: b.ncclLibrary, reason: b.ncclUnavailableReason }))"
  const ask = async (file: string) => {
    const r = await run(['-e', probe], { RLFARM_NCCL: file })
    t.equal(r.code, 0, r.stderr)
    return JSON.parse(r.stdout) as { library: string; reason: string }
  }
  const missing = await ask('/nonexistent/libnccl.so.2')
  t.equal(missing.library, '')
  t.match(missing.reason, /^\/nonexistent\/libnccl\.so\.2 not found \(tried \/nonexistent\/libnccl\.so\.2; .*\): install NCCL .*nvidia-nccl-cu12.*RLFARM_NCCL.*\.to\('cpu'\)/)
  // A shared library that is not NCCL: the addon itself.
  const addon = path.join(ROOT, 'build', 'Release', 'rlfarm.node')
  const wrong = await ask(addon)
  t.equal(wrong.library, '')
  t.match(wrong.reason, new RegExp(`^${addon.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} lacks a function rlfarm calls \\(ncclGetUniqueId, .*is it NCCL 2\\.10 or later`))
})

t.test("NCCL's unique id exchange: rank 0's bytes reach every rank through the store; a wrong size is an error, not a hang", { skip }, async (t) => {
  for (const world of [2, 3]) {
    for (const r of await ranks('shareId', world)) {
      t.equal(r.exit.code, 0)
      t.same([r.same, r.second, r.error], [true, true, undefined], `rank ${r.rank} of ${world} has rank 0's bytes, twice under one key`)
    }
  }
  const dir = tempDir(t, 'share-id')
  const viaFiles = await ranks('shareId', 2, { RLFARM_RDZV: `file://${dir}` })
  t.same(viaFiles.map((r) => [r.same, r.second]), [[true, true], [true, true]], 'through the file store too')
  const [zero, one] = await ranks('shareId', 2, { TEST_ID_BYTES: '100', TEST_TIMEOUT_MS: '1500' })
  t.match(zero.error, /rank 0 made 100 bytes for rlfarm\/user\/nccl-id; expected 128/)
  t.match(one.error, /timed out after 1\.5 s waiting for key\(s\) rlfarm\/user\/nccl-id/)
  t.ok((one.seconds as number) < 60, `rank 1 stopped waiting after ${one.seconds} s`)
})

t.test('distributed.shard_optimizer: PPO (two models) at --nproc 2 reaches the weights of --nproc 1', { skip }, async (t) => {
  const dir = tempDir(t, 'zero-ppo')
  const file = writeConfig(dir, 'ppo', rl(4, { ppo: { minibatch_size: 3, epochs: 2, normalize_rewards: true }, optimizer: { lr: 1e-2, max_grad_norm: 0.5 } }))
  const one = await run([BIN, 'train', file, '--name', 'one'])
  t.equal(one.code, 0, one.stderr)
  const two = await run([BIN, 'train', file, '--name', 'two', '--nproc', '2', '--set', 'distributed.shard_optimizer=true'])
  t.equal(two.code, 0, two.stderr)
  for (const which of ['model', 'value_model']) {
    const diff = maxDifference(path.join(dir, 'runs', 'one', which, 'model.safetensors'), path.join(dir, 'runs', 'two', which, 'model.safetensors'))
    t.ok(diff < 1e-3, `${which}: largest weight difference ${diff} (float summation order only)`)
  }
  const series = (name: string) => fs.readFileSync(path.join(dir, 'runs', name, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as Record<string, number>).grad_norm)
  const [a, b] = [series('one'), series('two')]
  t.ok(a.length === 4 && a.every((x, i) => Math.abs(x - b[i]) < 1e-4 * Math.max(1, x)), `grad_norm step for step (${a.join(", ")} vs ${b.join(", ")})`)
})

t.test('a rank that fails on its own rows ends the run at once with its error, not after the collective timeout', { skip }, async (t) => {
  const dir = tempDir(t, 'fails')
  // Row 0 (rank 0's) leaves the model no room to answer; rank 1's rows are fine, and it waits for rank 0's answers.
  const prompts = path.join(dir, 'prompts.jsonl')
  fs.writeFileSync(prompts, [{ prompt: 'x'.repeat(45) }, ...Array.from({ length: 13 }, (_, i) => ({ prompt: `p${i}:` }))].map((r) => `${JSON.stringify(r)}\n`).join(''))
  const file = writeConfig(dir, 'eval', rl(0, { data: { chat_template: false, max_length: 48, prompts }, training: { batch_size: 7 } }))
  const started = Date.now()
  const r = await run([BIN, 'train', file, '--name', 'fails', '--nproc', '2'])
  const seconds = (Date.now() - started) / 1000
  t.equal(r.code, 1)
  t.match(r.stderr, /rlfarm train: generation\.max_new_tokens \(8\) does not fit the policy's context: prompts of \d+ tokens leave \d+ of its \d+ positions/, "rank 0's error is shown")
  // Whichever of the two ends first, the launcher stops the other.
  t.match(r.stderr, /rank [01] of 2 exited with code 1; the other ranks of this node were stopped/)
  t.ok(seconds < 200, `the run ended in ${seconds.toFixed(0)} s (the collective timeout is 300 s)`)
})

t.test('two "nodes" started as two commands with --nnodes 2', { skip }, async (t) => {
  const dir = tempDir(t, 'nodes')
  const file = writeConfig(dir, 'sft', '{}')
  const port = String(await freePort())
  const node = (rank: number) => run([BIN, 'train', file, '--name', 'nodes', '--nnodes', '2', '--node-rank', String(rank), '--nproc', '1', '--master-addr', '127.0.0.1', '--master-port', port])
  const [n0, n1] = await Promise.all([node(0), node(1)])
  t.equal(n0.code, 0, n0.stderr)
  t.equal(n1.code, 0, n1.stderr)
  t.match(n0.stdout, /metrics: steps=6/, 'node 0 prints the result')
  t.ok(fs.existsSync(path.join(dir, 'runs', 'nodes', 'model', 'model.safetensors')))
})

t.test('ranks with different configs: the error names the rank and the first field', { skip }, async (t) => {
  const dir = tempDir(t, 'differ')
  const file = writeConfig(dir, 'sft', '{}')
  const port = String(await freePort())
  const rank = (r: number, lr: string) => run([BIN, 'train', file, '--name', 'differ', '--set', `optimizer.lr=${lr}`], { RANK: String(r), WORLD_SIZE: '2', MASTER_PORT: port })
  const [a, b] = await Promise.all([rank(0, '0.003'), rank(1, '0.004')])
  for (const e of [a, b]) {
    t.not(e.code, 0)
    t.match(e.stderr, /rank 1 differs from rank 0 in the config field optimizer\.lr: 0\.004 on rank 1, 0\.003 on rank 0/)
  }
  t.notOk(fs.existsSync(path.join(dir, 'runs', 'differ')), 'nothing was written')
})

t.test('a rank killed mid-run stops the other; the last checkpoint is intact and --resume finishes', { skip }, async (t) => {
  const dir = tempDir(t, 'killed')
  const file = writeConfig(dir, 'sft', '{"training": {"batch_size": 8, "gradient_accumulation": 1, "max_steps": 150}, "checkpoint": {"every": 2, "keep": 2}}')
  const runDir = path.join(dir, 'runs', 'killed')
  const launcher = run([BIN, 'train', file, '--name', 'killed', '--nproc', '2'], { RLFARM_DIST_TIMEOUT_MS: '60000' })
  // Wait for a checkpoint, then kill rank 1 (the launcher's second child).
  const children = () => fs.readFileSync(`/proc/${launcher.pid}/task/${launcher.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  const started = Date.now()
  while (!(fs.existsSync(path.join(runDir, 'checkpoints')) && fs.readdirSync(path.join(runDir, 'checkpoints')).some((d) => /^step-/.test(d)))) {
    if (Date.now() - started > 120_000) break
    await new Promise((r) => setTimeout(r, 100))
  }
  const kids = children()
  t.equal(kids.length, 2, 'the launcher runs two ranks')
  process.kill(kids[1], 'SIGKILL')
  const killedAt = Date.now()
  const exit = await launcher
  t.not(exit.code, 0, 'the launcher fails')
  t.match(exit.stderr, /rank 1 of 2 was killed by SIGKILL/, 'and names the rank')
  t.ok(Date.now() - killedAt < 60_000, 'the other rank stopped within the collective timeout')
  const resumed = await run([BIN, 'train', file, '--name', 'killed', '--nproc', '2', '--resume'])
  t.equal(resumed.code, 0, resumed.stderr)
  t.match(resumed.stderr + fs.readFileSync(path.join(runDir, 'run.log'), 'utf8'), /resumed from .*step-0000\d\d/, 'from the last checkpoint')
  t.match(resumed.stdout, /metrics: steps=150/, 'the resumed run finishes')
})

t.test('one rank needs no Gloo: collectives return their input; bad arguments are named', async (t) => {
  await t.rejects(distributed.allReduce(Tensor.from([1])), /distributed\.allReduce: call distributed\.init\(\) first/)
  await distributed.init({ worldSize: 1, rank: 0 })
  t.teardown(() => distributed.destroy())
  t.equal(distributed.worldSize, 1)
  const x = Tensor.from([1, 2, 3])
  t.same(Array.from((await distributed.allReduce(x, { op: 'avg' })).data), [1, 2, 3])
  t.same((await distributed.allGather(x)).shape, [1, 3])
  t.same(Array.from((await distributed.reduceScatter(Tensor.from([4, 5]))).data), [4, 5])
  await distributed.barrier()
  await t.rejects(distributed.allReduce([1, 2] as never), /distributed\.allReduce: expected a Tensor; got an array/)
  await t.rejects(distributed.allReduce(x, { op: 'mean' as never }), /op must be one of 'sum', 'avg', 'max', 'min'; got 'mean'/)
  await t.rejects(distributed.broadcast(x, { root: 1 }), /root must be a rank in 0\.\.0; got 1/)
  await t.rejects(distributed.barrier({ timeout: 5 } as never), /unknown option 'timeout'\. Did you mean 'timeoutMs'\?/)
  await t.rejects(distributed.init(), /already initialised/)
})

t.test('a prompt gets the same sample whichever rank draws it; one process keeps its seeds', async (t) => {
  const config = resolveConfig({ algorithm: 'ppo', policy: TINY_POLICY, data: { max_length: 40, chat_template: false }, generation: { max_new_tokens: 6, temperature: 1, stop_at_eos: false } })
  const policy = await loadModelSpec(config.policy, 'policy', { seed: 5 })
  const encoder = encoderFor(policy.tokenizer, config.data, policy.model)
  const prompts = ['bcd:', 'x:', 'longer one:', 'qq:', 'mno pq:'].map((p) => encoder.prompt(p))
  const generation = config.generation
  const whole = await sampleResponses(policy.model, encoder, prompts, generation, 11)
  const width = Math.max(...prompts.map((p) => p.length))
  for (const [rank, world] of [[0, 2], [1, 2], [2, 3]]) {
    const rows = prompts.map((_, i) => i).filter((i) => i % world === rank)
    const shard = await sampleResponses(policy.model, encoder, rows.map((i) => prompts[i]), generation, 11, undefined, { global: { rowIndices: rows, promptWidth: width } })
    t.same(shard.texts, rows.map((i) => whole.texts[i]), `rank ${rank} of ${world} samples what one process samples for its rows`)
  }
  // A row alone, given its index and width in the batch, samples what it did in the batch.
  const alone = await sampleResponses(policy.model, encoder, [prompts[0]], generation, 11, undefined, { global: { rowIndices: [0], promptWidth: width } })
  t.same(alone.texts, [whole.texts[0]])
  t.not(new Set(whole.texts).size, 1, 'the rows draw different samples')
  await t.rejects(sampleResponses(policy.model, encoder, prompts, generation, 11, undefined, { global: { rowIndices: [0], promptWidth: width } }), /sampleResponses: 1 row indices for 5 prompts/)
})

t.test('a pipeline with --nproc 2: SFT, reward, PPO and eval data-parallel, rank 0 writes', { skip }, async (t) => {
  const dir = tempDir(t, 'pipeline')
  const tiny = { policy: { tokenizer: 'byte', init: TINY_POLICY.init }, data: { chat_template: false, max_length: 40 }, logging: { progress: 'none' } }
  const rl = { data: { prompts: data.prompts, chat_template: false, max_length: 40 }, generation: { max_new_tokens: 8, stop_at_eos: false }, optimizer: { lr: 1e-2 } }
  const pipeline = (name: string) => ({
    name,
    output_dir: dir,
    seed: 2,
    stages: [
      { name: 'sft', run: { ...tiny, algorithm: 'sft', data: { ...tiny.data, train: data.sft }, optimizer: { lr: 1e-2 }, training: { batch_size: 16, max_steps: 4 } } },
      { name: 'rm', run: { ...tiny, algorithm: 'reward', policy: { path: '${sft}' }, data: { ...tiny.data, train: data.preferences }, training: { batch_size: 16, max_steps: 3 } } },
      { name: 'ppo', run: { ...tiny, ...rl, algorithm: 'ppo', policy: { path: '${sft}' }, reward_model: { path: '${rm}' }, training: { batch_size: 8, max_steps: 2 }, ppo: { minibatch_size: 4 } } },
      { name: 'eval', run: { ...tiny, ...rl, algorithm: 'eval', policy: { path: '${ppo}' }, reward_model: { path: '${rm}' }, training: { batch_size: 16 } } },
    ],
  })
  const results: Record<string, { stages: { name: string; metrics: Record<string, number> }[] }> = {}
  for (const [name, extra] of [['one', []], ['two', ['--nproc', '2']]] as const) {
    const file = path.join(dir, `${name}.json`)
    fs.writeFileSync(file, JSON.stringify(pipeline(name)))
    const r = await run([BIN, 'run', file, ...extra])
    t.equal(r.code, 0, r.stderr)
    results[name] = JSON.parse(fs.readFileSync(path.join(dir, name, 'summary.json'), 'utf8'))
  }
  t.same(results.two.stages.map((s) => s.name), ['sft', 'rm', 'ppo', 'eval'])
  const reward = (name: string) => results[name].stages[3].metrics.reward
  t.ok(Math.abs(reward('one') - reward('two')) < 1e-3, `eval reward of the PPO policy: ${reward('one')} (1 rank) vs ${reward('two')} (2 ranks)`)
})

t.test('without Gloo, --nproc 2 says what to install', { skip: skip ? false : 'this addon has Gloo (build with RLFARM_GLOO=0, or run with RLFARM_ADDON naming such a build)' }, async (t) => {
  const dir = tempDir(t, 'nogloo')
  const r = await run([BIN, 'train', writeConfig(dir, 'sft', '{}'), '--nproc', '2'])
  t.equal(r.code, 1)
  t.match(r.stderr, /built without Gloo.*apt-get install libgloo-dev.*npm rebuild rlfarm/)
  t.notOk(fs.existsSync(path.join(dir, 'runs')), 'no rank started')
})
