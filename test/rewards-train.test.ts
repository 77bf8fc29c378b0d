// Rewards as code inside the trainers: in-process rewards through train(),
// module rewards named in a YAML file (relative to it), the rows with all
// their columns (GSM8K and MATH items from JSONL and Parquet), every
// sampling algorithm that scores (grpo, rloo, ppo with and without a reward
// model, best_of_n, expert_iteration, eval), and a failing reward: an error
// naming it, the last checkpoint kept, the CLI's exit status 1.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { FAMILIES, RewardError, Rng, runPipeline, train, type RewardFn, type RunConfigInput } from 'rlfarm'
import { mean, readMetrics, TINY_POLICY, toyData, writeJsonl } from './helpers/toy-data'
import { tempDir } from './helpers/common'

const data = toyData()
t.teardown(() => fs.rmSync(data.dir, { recursive: true, force: true }))
const DATASETS = path.join(__dirname, 'fixtures', 'datasets')
const CLI = path.join(__dirname, '..', 'bin', 'rlfarm.js')

function config(out: string, extra: RunConfigInput): RunConfigInput {
  return {
    algorithm: 'grpo',
    output_dir: out,
    seed: 1,
    policy: TINY_POLICY,
    data: { prompts: data.prompts, chat_template: false, max_length: 40 },
    generation: { max_new_tokens: 8, stop_at_eos: false },
    optimizer: { lr: 1e-2 },
    training: { batch_size: 16, max_steps: 2 },
    group: { group_size: 4 },
    logging: { progress: 'none' },
    ...extra,
  }
}

const countA: RewardFn = ({ completions }) => completions.map((c) => [...c].filter((x) => x === 'a').length)

t.test('train(config, { rewards }): GRPO raises an in-process reward, logged by name', async (t) => {
  const out = tempDir(t, 'runs')
  const r = await train(config(out, { reward_function: { name: 'countA' }, training: { batch_size: 16, max_steps: 20 } }), { rewards: { countA } })
  const m = readMetrics(r.runDir)
  const first = mean(m.slice(0, 4).map((x) => x['rewards/countA/mean']))
  const last = mean(m.slice(-4).map((x) => x['rewards/countA/mean']))
  t.ok(last > first + 1, `rewards/countA/mean: ${first.toFixed(2)} -> ${last.toFixed(2)}`)
  t.ok('rewards/countA/std' in m[0], 'and its std')
  await t.rejects(train(config(out, { reward_function: { name: 'countA' } }), { rewards: { countA: 5 as never } }), { message: /rewards.countA must be a function/ })
  await t.rejects(train(config(out, { reward_function: { name: 'countB' } }), { rewards: { countA } }), { message: /no reward named 'countB'.*\(countA\).*did you mean 'countA'\?/ })
})

t.test('rows keep all their columns: GSM8K and MATH items from JSONL and Parquet', async (t) => {
  const out = tempDir(t, 'runs')
  for (const [file, column] of [['gsm8k.jsonl', 'answer'], ['gsm8k.parquet', 'answer'], ['math.jsonl', 'solution'], ['math.parquet', 'solution']] as const) {
    const seen: { prompts: string[]; rows: Record<string, unknown>[] }[] = []
    const spy: RewardFn = ({ prompts, rows }) => {
      seen.push({ prompts, rows })
      return rows.map(() => 0)
    }
    await train(config(out, { algorithm: 'best_of_n', data: { prompts: path.join(DATASETS, file), chat_template: false, max_length: 40 }, reward_functions: [{ name: 'spy' }, { name: 'math' }], best_of_n: { n: 2 }, training: { batch_size: 2 } }), { rewards: { spy } })
    const rows = seen.flatMap((s) => s.rows)
    t.ok(rows.length >= 2 && rows.every((r) => typeof r[column] === 'string'), `${file}: each row has its '${column}'`)
    t.ok(seen[0].prompts[0].length > 10 && rows.some((r) => r.question === seen[0].prompts[0] || r.problem === seen[0].prompts[0]), `${file}: the prompt is the question/problem`)
  }
})

t.test('a YAML config names module rewards relative to itself; every sampling algorithm scores with them', async (t) => {
  const dir = tempDir(t, 'yaml')
  const out = path.join(dir, 'runs')
  fs.writeFileSync(path.join(dir, 'rewards.mjs'), "export const hasA = ({ completions, rows }) => completions.map((c, i) => (rows[i].prompt === undefined ? null : c.includes('a') ? 1 : 0))\n")
  const yaml = (name: string, lines: string[]) => {
    const file = path.join(dir, `${name}.yaml`)
    fs.writeFileSync(
      file,
      [
        `output_dir: ${JSON.stringify(out)}`,
        `name: ${name}`,
        'policy: { tokenizer: byte, init: { hidden_size: 32, layers: 1, heads: 2, max_positions: 48 } }',
        `data: { prompts: ${JSON.stringify(data.prompts)}, chat_template: false, max_length: 40 }`,
        'generation: { max_new_tokens: 8, stop_at_eos: false }',
        'reward_functions: [{ module: ./rewards.mjs, export: hasA, weight: 2 }, { name: length, weight: 0 }]',
        'logging: { progress: none }',
        ...lines,
      ].join('\n'),
    )
    return file
  }
  const runs: [string, string[], (r: Awaited<ReturnType<typeof train>>) => void][] = [
    ['grpo', ['algorithm: grpo', 'training: { batch_size: 8, max_steps: 2 }'], (r) => t.ok('rewards/hasA/mean' in readMetrics(r.runDir)[0], 'grpo logs each reward')],
    ['rloo', ['algorithm: rloo', 'training: { batch_size: 8, max_steps: 2 }'], (r) => t.ok('rewards/length/mean' in readMetrics(r.runDir)[0], 'rloo logs each reward')],
    ['ppo', ['algorithm: ppo', 'training: { batch_size: 8, max_steps: 2 }', 'ppo: { minibatch_size: 8 }'], (r) => t.equal(r.step, 2, 'ppo trains on them')],
    ['best_of_n', ['algorithm: best_of_n', 'best_of_n: { n: 4 }', 'training: { batch_size: 32 }'], (r) => t.ok(r.metrics.best_score >= r.metrics.single_sample_score && r.metrics.best_score <= 2, `best_of_n: best ${r.metrics.best_score} (weight 2)`)],
    ['expert_iteration', ['algorithm: expert_iteration', 'expert_iteration: { rounds: 1, n: 2, prompts_per_round: 16 }', 'training: { batch_size: 8 }'], (r) => t.ok(Number.isFinite(r.metrics.initial_score), 'expert_iteration scores its samples')],
    ['eval', ['algorithm: eval', 'training: { batch_size: 48 }'], (r) => t.ok(r.metrics.reward >= 0 && r.metrics.reward <= 2, `eval: mean reward ${r.metrics.reward}`)],
  ]
  for (const [name, lines, check] of runs) check(await train(yaml(name, lines)))
})

t.test('ppo: reward functions added to a reward model', async (t) => {
  const out = tempDir(t, 'runs')
  const rm = await train(config(out, { algorithm: 'reward', name: 'rm', data: { train: data.preferences, chat_template: false, max_length: 40 }, training: { batch_size: 16, max_steps: 2 } }))
  const one: RewardFn = ({ completions }) => completions.map(() => 1)
  const r = await train(config(out, { algorithm: 'ppo', reward_model: { path: rm.model }, reward_function: { name: 'one', weight: 3 }, ppo: { minibatch_size: 16 } }), { rewards: { one } })
  const m = readMetrics(r.runDir)[0]
  t.equal(m['rewards/one/mean'], 1)
  t.ok(Number.isFinite(m['rewards/reward_model/mean']), 'the reward model is logged on its own')
  t.ok(Math.abs(m.score - (m['rewards/reward_model/mean'] + 3)) < 1e-4, `score = reward model + 3 x one (${m.score})`)
})

t.test('a failing reward stops the run with an error naming it; the last checkpoint is kept', async (t) => {
  const out = tempDir(t, 'runs')
  const failAt2: RewardFn = ({ completions, step }) => completions.map((_, i) => (step === 2 && i === 5 ? NaN : 0))
  const err = await train(config(out, { name: 'fails', reward_function: { name: 'failAt2' }, training: { batch_size: 4, max_steps: 5 }, checkpoint: { every: 1 } }), { rewards: { failAt2 } }).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(err instanceof RewardError, 'a RewardError')
  t.match((err as Error).message, /reward function 'failAt2', row 5 \(step 2\): returned NaN; expected a finite number/)
  const run = path.join(out, 'fails')
  t.ok(fs.existsSync(path.join(run, 'checkpoints', 'step-2')) || fs.readdirSync(path.join(run, 'checkpoints')).some((d) => d.includes('2')), 'the checkpoint of step 2 is kept')
  t.match(JSON.parse(fs.readFileSync(path.join(run, 'run.json'), 'utf8')), { state: 'failed' })
  const skipped = await train(config(out, { name: 'skips', reward_function: { name: 'failAt2' }, reward: { on_error: 'skip' }, training: { batch_size: 4, max_steps: 3 } }), { rewards: { failAt2 } })
  t.same(readMetrics(skipped.runDir).map((m) => m.reward_errors), [0, 0, 1], 'on_error: skip counts the row instead')
})

t.test('the CLI exits 1 on a failing module reward, with the error', async (t) => {
  const dir = tempDir(t, 'cli')
  fs.writeFileSync(path.join(dir, 'rewards.ts'), 'export function broken({ rows }: { rows: { prompt: string }[] }): number[] {\n  return rows.map((r: { prompt: string }): number => { if (r.prompt === "b:") throw new Error(`cannot score ${r.prompt}`); return 1 })\n}\n')
  writeJsonl(path.join(dir, 'prompts.jsonl'), [{ prompt: 'a:' }, { prompt: 'b:' }])
  const file = path.join(dir, 'run.yaml')
  fs.writeFileSync(
    file,
    [
      'algorithm: grpo',
      `output_dir: ${JSON.stringify(path.join(dir, 'runs'))}`,
      'policy: { tokenizer: byte, init: { hidden_size: 32, layers: 1, heads: 2, max_positions: 48 } }',
      'data: { prompts: prompts.jsonl, chat_template: false }',
      'generation: { max_new_tokens: 4, stop_at_eos: false }',
      'reward_function: { module: ./rewards.ts, export: broken }',
      'training: { batch_size: 2, max_steps: 2 }',
      'logging: { progress: none }',
    ].join('\n'),
  )
  const r = spawnSync(process.execPath, [CLI, 'train', file], { encoding: 'utf8', timeout: 120_000 })
  t.equal(r.status, 1, 'exit status 1')
  t.match(r.stderr, /reward function 'broken', row \d+ \(step 0\): threw: cannot score b:/)
})

t.test("eval on farm instructions: gold_accuracy, the share of closed-family answers exactly right, with its standard error", async (t) => {
  const dir = tempDir(t, 'gold')
  const rng = new Rng(3)
  const rows = FAMILIES.flatMap((f) => [0, 1].map((k) => {
    const task = f.make(rng)
    return { prompt: task.instruction, reference: task.answer, response: k === 0 ? task.answer : `${task.answer}\nhope this helps`, kind: f.kind }
  }))
  const file = writeJsonl(path.join(dir, 'rows.jsonl'), rows)
  const r = await train({ algorithm: 'eval', output_dir: path.join(dir, 'runs'), data: { prompts: file }, logging: { progress: 'none' } })
  const closed = rows.filter((row) => row.kind === 'closed').length
  t.equal(r.metrics.gold_accuracy_n, closed, 'over the closed families only')
  t.equal(r.metrics.gold_accuracy, 0.5, 'the chatty half is not exact')
  t.ok(Math.abs(r.metrics.gold_accuracy_stderr - Math.sqrt(0.25 * closed / (closed - 1) / closed)) < 1e-12, 'standard error of the mean')
})

t.test('runPipeline(config, { rewards }) hands them to its stages', async (t) => {
  const out = tempDir(t, 'runs')
  const calls: number[] = []
  const counted: RewardFn = ({ completions }) => {
    calls.push(completions.length)
    return completions.map(() => 1)
  }
  const stage = { algorithm: 'best_of_n' as const, policy: TINY_POLICY, data: { prompts: data.prompts, chat_template: false, max_length: 40 }, generation: { max_new_tokens: 4 }, reward_function: { name: 'counted' }, best_of_n: { n: 2 }, training: { batch_size: 48 } }
  const r = await runPipeline({ name: 'p', output_dir: out, stages: [{ name: 'bon', run: stage }] }, { rewards: { counted }, progress: 'none' })
  t.equal(r.stages[0].metrics.best_score, 1)
  t.equal(calls.reduce((a, b) => a + b, 0), 96 * 2, 'called on every sample')
  await t.rejects(runPipeline({ name: 'q', output_dir: out, stages: [{ name: 'bon', run: stage }] }, { rewards: [] as never }), { message: /rewards must be an object of reward functions by name/ })
})

t.test('ppo.normalize_rewards: scores that are all equal stay finite (no spread yet: left unscaled)', async (t) => {
  const out = tempDir(t, 'runs')
  const constant: RewardFn = ({ completions }) => completions.map(() => 2)
  const r = await train(
    config(out, { algorithm: 'ppo', name: 'ppo-constant', reward_function: { name: 'constant' }, training: { batch_size: 4, max_steps: 3 }, ppo: { minibatch_size: 4, normalize_rewards: true } }),
    { rewards: { constant } },
  )
  const rows = readMetrics(r.runDir).filter((m) => m.policy_loss !== undefined)
  t.equal(rows.length, 3, 'three steps')
  for (const m of rows) {
    t.equal(m.score, 2, 'the raw score is logged')
    t.ok([m.reward, m.policy_loss, m.value_loss].every(Number.isFinite), `step ${m.step}: reward, policy and value losses are finite`)
  }
})
