// The trainers on tiny models and toy data (byte tokenizer, random-init
// GPT-2): each loss goes down or each toy reward goes up, runs resume
// bit-identically, pipelines feed one stage into the next, and bad configs
// give the documented errors.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { ConfigError, NonFiniteError, runPipeline, train, type RunConfigInput, type StepEvent } from 'rlfarm'
import { mean, readMetrics, TINY_POLICY, toyData } from './helpers/toy-data'
import { tempDir } from './helpers/common'

const data = toyData()
t.teardown(() => fs.rmSync(data.dir, { recursive: true, force: true }))


const quiet = { logging: { progress: 'none' as const } }

/** A config of `algorithm` on the toy data in `out`, with `extra` merged in (one level deep). */
function config(out: string, algorithm: RunConfigInput['algorithm'], extra: RunConfigInput = {}): RunConfigInput {
  const base: RunConfigInput = {
    algorithm,
    output_dir: out,
    seed: 1,
    policy: TINY_POLICY,
    data: { chat_template: false, max_length: 40 },
    ...quiet,
  }
  const merged: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(extra)) {
    const old = merged[k]
    merged[k] = old && typeof old === 'object' && v && typeof v === 'object' ? { ...old, ...v } : v
  }
  return merged as RunConfigInput
}

const train_ = (m: Record<string, number>[]) => m.filter((r) => r.loss !== undefined || r.score !== undefined)

t.test('SFT: the loss on response tokens goes down; packing works too', async (t) => {
  const out = tempDir(t, 'runs')
  const r = await train(
    config(out, 'sft', { name: 'sft', data: { train: data.sft, eval_size: 16 }, optimizer: { lr: 1e-2 }, training: { batch_size: 16, max_steps: 40, eval_every: 20 } }),
  )
  const m = train_(readMetrics(r.runDir))
  t.equal(m.length, 40)
  const first = mean(m.slice(0, 3).map((x) => x.loss))
  const last = mean(m.slice(-5).map((x) => x.loss))
  t.ok(last < first * 0.6, `loss falls: ${first.toFixed(3)} -> ${last.toFixed(3)}`)
  t.ok(r.metrics.eval_loss < first * 0.7, `held-out loss ${r.metrics.eval_loss.toFixed(3)}`)
  t.ok(fs.existsSync(path.join(r.model!, 'model.safetensors')) && fs.existsSync(path.join(r.model!, 'rlfarm.json')), 'the model and its tokenizer note are saved')
  t.match(fs.readFileSync(path.join(r.runDir, 'config.yaml'), 'utf8'), /algorithm: sft/, 'the resolved config is saved')
  t.ok(fs.readdirSync(r.runDir).some((f) => f.startsWith('events.out.tfevents.')), 'TensorBoard events')

  const packed = await train(config(out, 'sft', { name: 'packed', data: { train: data.sft }, sft: { packing: true }, optimizer: { lr: 1e-2 }, training: { batch_size: 4, max_steps: 20 } }))
  const pm = train_(readMetrics(packed.runDir))
  t.ok(mean(pm.slice(-5).map((x) => x.loss)) < mean(pm.slice(0, 3).map((x) => x.loss)), 'packed: the loss falls')
})

t.test('reward model: held-out pairwise accuracy goes up', async (t) => {
  const out = tempDir(t, 'runs')
  const r = await train(config(out, 'reward', { data: { train: data.preferences, eval_size: 24 }, optimizer: { lr: 3e-3 }, training: { batch_size: 16, max_steps: 30 } }))
  t.ok(r.metrics.eval_accuracy_before <= 0.75, `before: ${r.metrics.eval_accuracy_before}`)
  t.ok(r.metrics.eval_accuracy >= 0.9, `after: ${r.metrics.eval_accuracy}`)
  const m = train_(readMetrics(r.runDir))
  t.ok(mean(m.slice(-5).map((x) => x.loss)) < mean(m.slice(0, 3).map((x) => x.loss)), 'the Bradley-Terry loss falls')
})

t.test('DPO: chosen-over-rejected accuracy goes up; every variant trains', async (t) => {
  const out = tempDir(t, 'runs')
  const r = await train(config(out, 'dpo', { data: { train: data.preferences, eval_size: 24 }, optimizer: { lr: 3e-3 }, dpo: { beta: 0.1 }, training: { batch_size: 16, max_steps: 30 } }))
  const m = train_(readMetrics(r.runDir))
  t.ok(mean(m.slice(-5).map((x) => x.loss)) < mean(m.slice(0, 3).map((x) => x.loss)) - 0.1, 'the DPO loss falls')
  t.ok(r.metrics.eval_accuracy >= 0.9, `held-out accuracy ${r.metrics.eval_accuracy}`)
  for (const variant of ['sigmoid', 'robust', 'hinge', 'ipo', 'bco_pair', 'sppo_hard', 'nca_pair', 'apo_zero', 'simpo'] as const) {
    const v = await train(
      config(out, 'dpo', { data: { train: data.preferences }, optimizer: { lr: 3e-3 }, dpo: { variant, beta: 0.1, label_smoothing: variant === 'sigmoid' ? 0.1 : 0 }, training: { batch_size: 16, max_steps: 6 } }),
    )
    const vm = train_(readMetrics(v.runDir))
    t.ok(vm.every((x) => Number.isFinite(x.loss)), `${variant}: finite losses`)
    t.ok(mean(vm.slice(-2).map((x) => x.loss)) < vm[0].loss, `${variant}: the loss falls (${vm[0].loss.toFixed(3)} -> ${vm.at(-1)!.loss.toFixed(3)})`)
  }
})

// The toy reward: how many 'a' (byte 97) the 8-token response holds.
const countA = (scale = 1) => ({ reward_function: { name: 'count_token' as const, token: 97, scale } })
const rl = (extra: RunConfigInput): RunConfigInput => ({
  data: { prompts: data.prompts },
  generation: { max_new_tokens: 8, stop_at_eos: false },
  optimizer: { lr: 1e-2 },
  ...extra,
})

t.test('PPO raises the toy reward while the KL penalty bounds the drift from the reference', async (t) => {
  const out = tempDir(t, 'runs')
  const run = (kl: number, name: string) =>
    train(config(out, 'ppo', rl({ name, ...countA(0.5), training: { batch_size: 16, max_steps: 30 }, ppo: { minibatch_size: 8, epochs: 2, kl_coef: kl } })))
  const penalised = readMetrics((await run(0.1, 'kl')).runDir)
  const free = readMetrics((await run(0, 'free')).runDir)
  const score = (m: Record<string, number>[], a: number, b: number) => mean(m.slice(a, b).map((x) => x.score))
  t.equal(penalised[0].kl, 0, 'the first rollout: policy = reference, KL 0')
  t.ok(score(penalised, -10, undefined as never) > score(penalised, 0, 5) + 0.15, `score rises: ${score(penalised, 0, 5)} -> ${score(penalised, -10, undefined as never)}`)
  t.ok(score(free, -5, undefined as never) > 0.75, 'without a penalty it rises further')
  const maxKl = Math.max(...penalised.map((x) => x.kl))
  t.ok(maxKl < 15, `KL stays bounded with kl_coef 0.1 (max ${maxKl.toFixed(2)})`)
  t.ok(free.at(-1)!.kl > 2 * penalised.at(-1)!.kl, `and is well below the unpenalised run's (${free.at(-1)!.kl.toFixed(1)})`)
  for (const key of ['reward', 'kl', 'entropy', 'clip_fraction', 'value_explained_variance', 'response_length', 'value_loss', 'policy_loss']) {
    t.ok(key in penalised.at(-1)!, `logs ${key}`)
  }
})

t.test('GRPO and RLOO raise the toy reward', async (t) => {
  const out = tempDir(t, 'runs')
  for (const algorithm of ['grpo', 'rloo'] as const) {
    const r = await train(config(out, algorithm, rl({ ...countA(), training: { batch_size: 16, max_steps: 20 }, group: { group_size: 4 } })))
    const m = readMetrics(r.runDir)
    const first = mean(m.slice(0, 4).map((x) => x.score))
    const last = mean(m.slice(-4).map((x) => x.score))
    t.ok(last > first + 1, `${algorithm}: ${first.toFixed(2)} -> ${last.toFixed(2)}`)
  }
})

t.test('best-of-n, expert iteration and West-of-N', async (t) => {
  const out = tempDir(t, 'runs')
  const bon = await train(config(out, 'best_of_n', rl({ ...countA(), best_of_n: { n: 16 }, training: { batch_size: 8 } })))
  t.ok(bon.metrics.best_score > bon.metrics.single_sample_score, `best of 16 beats one sample: ${bon.metrics.best_score} > ${bon.metrics.single_sample_score}`)
  const outputs = fs.readFileSync(bon.files!.outputs, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  t.equal(outputs.length, 96, 'one best response per prompt in outputs.jsonl')

  const ei = await train(config(out, 'expert_iteration', rl({ ...countA(), best_of_n: { n: 8 }, expert_iteration: { rounds: 2 }, training: { batch_size: 16 } })))
  t.ok(ei.metrics.final_score > ei.metrics.initial_score, `expert iteration raises the score: ${ei.metrics.initial_score} -> ${ei.metrics.final_score}`)

  const rm = await train(config(out, 'reward', { name: 'rm', data: { train: data.preferences, eval_size: 24 }, optimizer: { lr: 3e-3 }, training: { batch_size: 16, max_steps: 10 } }))
  const won = await train(
    config(out, 'west_of_n', rl({ reward_model: { path: rm.model }, data: { train: data.preferences, prompts: data.prompts, eval_size: 24 }, optimizer: { lr: 3e-3 }, west_of_n: { n: 8 }, training: { batch_size: 16, max_steps: 10 } })),
  )
  t.ok(Number.isFinite(won.metrics.accuracy) && Number.isFinite(won.metrics.base_accuracy), 'reports the base and the new accuracy')
  t.ok(won.metrics.accuracy >= won.metrics.base_accuracy - 0.05, `West-of-N keeps or raises accuracy: ${won.metrics.base_accuracy} -> ${won.metrics.accuracy}`)
})

t.test('a resumed run equals an uninterrupted one, bit for bit', async (t) => {
  const out = tempDir(t, 'runs')
  for (const [algorithm, extra] of [
    ['sft', { data: { train: data.sft }, optimizer: { lr: 1e-2 }, training: { batch_size: 8, max_steps: 8 } }],
    ['ppo', rl({ ...countA(), training: { batch_size: 8, max_steps: 6 }, ppo: { minibatch_size: 4, kl_target: 1, kl_horizon: 50, normalize_rewards: true } })],
  ] as const) {
    const whole = await train(config(out, algorithm, { name: `${algorithm}-whole`, ...extra } as RunConfigInput))
    const controller = new AbortController()
    const events: StepEvent[] = []
    const cut = await train(config(out, algorithm, { name: `${algorithm}-cut`, ...extra } as RunConfigInput), {
      signal: controller.signal,
      onStep: (e) => {
        events.push(e)
        if (e.step === 3) controller.abort()
      },
    })
    t.equal(cut.interrupted, true, `${algorithm}: the AbortSignal stops the run`)
    t.equal(cut.step, 3, 'after the step in progress')
    t.equal(JSON.parse(fs.readFileSync(path.join(cut.runDir, 'run.json'), 'utf8')).state, 'interrupted')
    t.ok(fs.existsSync(path.join(cut.runDir, 'checkpoints', 'step-000003', 'state.json')), 'a checkpoint is saved on stop')
    const resumed = await train(config(out, algorithm, { name: `${algorithm}-cut`, ...extra } as RunConfigInput), { resume: true })
    t.equal(resumed.step, whole.step)
    const bytes = (dir: string) => fs.readFileSync(path.join(dir, 'model', 'model.safetensors'))
    t.ok(bytes(resumed.runDir).equals(bytes(whole.runDir)), `${algorithm}: the final weights are identical`)
    const strip = (m: Record<string, number>[]) => m.map(({ time: _, ...rest }) => rest)
    t.same(strip(readMetrics(resumed.runDir)), strip(readMetrics(whole.runDir)), `${algorithm}: the same metrics, step for step`)
  }
})

t.test('a pipeline feeds each stage into the next', async (t) => {
  const out = tempDir(t, 'runs')
  const events: StepEvent[] = []
  const r = await runPipeline(
    {
      name: 'pipe',
      output_dir: out,
      seed: 2,
      stages: [
        { name: 'sft', run: config(out, 'sft', { data: { train: data.sft }, optimizer: { lr: 1e-2 }, training: { batch_size: 16, max_steps: 10 } }) },
        { name: 'rm', run: config(out, 'reward', { policy: { path: '${sft}' }, data: { train: data.preferences }, optimizer: { lr: 3e-3 }, training: { batch_size: 16, max_steps: 5 } }) },
        { name: 'ppo', run: config(out, 'ppo', rl({ policy: { path: '${sft}' }, reward_model: { path: '${rm}' }, training: { batch_size: 8, max_steps: 2 }, ppo: { minibatch_size: 4 } })) },
        { name: 'eval', run: config(out, 'eval', rl({ policy: { path: '${ppo}' }, reward_model: { path: '${rm}' }, training: { batch_size: 48 } })) },
      ],
    },
    { onStep: (e) => events.push(e) },
  )
  t.same(
    r.stages.map((s) => s.name),
    ['sft', 'rm', 'ppo', 'eval'],
  )
  t.equal(r.stages[2].runDir, path.join(out, 'pipe', 'ppo'))
  t.match(fs.readFileSync(path.join(out, 'pipe', 'ppo', 'config.yaml'), 'utf8'), path.join(out, 'pipe', 'sft', 'model'), 'the PPO policy is the SFT model')
  t.ok(Number.isFinite(r.stages[3].metrics.reward), 'eval scores the PPO policy')
  t.same([...new Set(events.map((e) => e.stage))], ['sft', 'rm', 'ppo', 'eval'], 'step events name their stage')
  t.ok(fs.existsSync(path.join(out, 'pipe', 'summary.json')))

  // Resuming a finished pipeline keeps every stage.
  const again = await runPipeline(path.join(out, 'pipe', 'pipeline.yaml'), { resume: true })
  t.same(again.stages.map((s) => s.model), r.stages.map((s) => s.model))
  // ...and refuses a result.json that names outputs outside the stage's directory (${rm} would read them).
  const rmResult = path.join(out, 'pipe', 'rm', 'result.json')
  const original = fs.readFileSync(rmResult, 'utf8')
  for (const model of [path.join(out, 'elsewhere'), '../../../etc']) {
    fs.writeFileSync(rmResult, JSON.stringify({ ...JSON.parse(original), model }))
    await t.rejects(
      runPipeline(path.join(out, 'pipe', 'pipeline.yaml'), { resume: true }),
      { message: new RegExp(`^${rmResult.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: model: ".*" leads out of the directory`) },
      `a stage output outside its directory is refused (${model})`,
    )
  }
  fs.writeFileSync(rmResult, original)
  // ...but not a stage that ran another config: its outputs are not this pipeline's.
  await t.rejects(
    runPipeline(path.join(out, 'pipe', 'pipeline.yaml'), { resume: true, set: ['stages[1].run.optimizer.lr=0.001'] }),
    { message: `runPipeline: stages[1] (rm): the finished stage in ${path.join(out, 'pipe', 'rm')} ran another config (optimizer.lr: 0.003 then, 0.001 now); run the pipeline again from scratch with --overwrite, give it a new --name, or resume with the config it ran` },
    'a changed stage is not silently kept on resume',
  )
})

t.test('embedding: train() leaves the event loop free and reports steps', async (t) => {
  const out = tempDir(t, 'runs')
  let ticks = 0
  const timer = setInterval(() => ticks++, 5)
  const steps: number[] = []
  const start = Date.now()
  await train(config(out, 'sft', { data: { train: data.sft }, training: { batch_size: 16, max_steps: 20 } }), { onStep: (e) => steps.push(e.step) })
  clearInterval(timer)
  const ms = Date.now() - start
  t.same(steps, Array.from({ length: 20 }, (_, i) => i + 1), 'a step event per step')
  t.ok(ticks >= ms / 5 / 4, `timers ran during training: ${ticks} ticks in ${ms} ms`)
})

t.test('bad configs and bad runs give clear errors', async (t) => {
  const out = tempDir(t, 'runs')
  await t.rejects(train(config(out, 'sft', { training: { batch_sise: 4 } as never })), { name: 'ConfigError', message: /batch_sise.*did you mean 'batch_size'/ })
  await t.rejects(train(config(out, 'sft', { training: { batch_size: 'four' as never } })), ConfigError)
  await t.rejects(train(config(out, 'sft', { training: { batch_size: 'four' as never } })), { message: /training\.batch_size/ })
  await t.rejects(train(config(out, 'ppo', rl({ ...countA(), policy: { path: path.join(out, 'no-such-model') } }))), { message: /no-such-model/ })
  await t.rejects(train(config(out, 'sft', { data: {} })), { name: 'ConfigError', message: /data\.train: is required/ })
  await t.rejects(train(config(out, 'ppo', rl({}))), { message: /reward_model.*reward_function/ })
  await t.rejects(train({ ...config(out, 'sft'), algorithm: undefined }), { name: 'ConfigError', message: /algorithm: is required/ })
  // New tokens that do not fit the context after the prompts: the config fields are named (was: generate's maxNewTokens).
  await t.rejects(train(config(out, 'ppo', rl({ ...countA(), generation: { max_new_tokens: 100 } }))), { message: /^generation\.max_new_tokens \(100\) does not fit the policy's context: prompts of \d+ tokens leave \d+ of its 48 positions; lower generation\.max_new_tokens or data\.max_prompt_length/ })
  const file = path.join(out, 'bad.yaml')
  fs.writeFileSync(file, 'algorithm: sft\npolicy:\n  pth: ./model\n')
  await t.rejects(train(file), { message: new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:3: policy\\.pth: unknown key 'pth'.*did you mean 'path'`) })

  // A loss that blows up stops the run, keeps the last checkpoint and marks the run failed.
  const name = 'diverge'
  await t.rejects(
    train(config(out, 'sft', { name, data: { train: data.sft }, optimizer: { lr: 1e30, max_grad_norm: 0 }, training: { batch_size: 8, max_steps: 50 }, checkpoint: { every: 1 } })),
    NonFiniteError,
  )
  const status = JSON.parse(fs.readFileSync(path.join(out, name, 'run.json'), 'utf8'))
  t.equal(status.state, 'failed')
  t.match(status.error, /not finite/)
  const checkpoints = fs.readdirSync(path.join(out, name, 'checkpoints'))
  t.ok(checkpoints.length >= 1, `the last good checkpoints are kept: ${checkpoints.join(', ')}`)
})
