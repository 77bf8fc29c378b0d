// The farm as a pipeline, small: farm -> sft -> label (pool) -> reward ->
// ppo (with held-out win-rates during training) and best-of-n (gold reward)
// -> eval stages with win-rates and KL, run through `rlfarm compare`.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { goldScore, train } from 'rlfarm'
import { tempDir } from './helpers/common'

const ROOT = path.join(__dirname, '..')
const BIN = path.join(ROOT, 'bin', 'rlfarm.js')
const readJsonl = (file: string) => fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)

const tinyPolicy = { tokenizer: 'byte', init: { hidden_size: 32, layers: 1, heads: 2, max_positions: 64 } }
const data = { max_length: 64, chat_template: false }
const gen = { max_new_tokens: 12, temperature: 1.0 }
const evalStage = (policy: string) => ({
  algorithm: 'eval',
  policy: { path: `\${${policy}}` },
  reference: { path: '${sft}' },
  reward_model: { path: '${reward}' },
  data: { prompts: '${farm.eval}', ...data },
  generation: { max_new_tokens: 12, temperature: 0 },
  training: { batch_size: 20 },
})
const pipeline = {
  name: 'tiny-farm',
  seed: 1,
  stages: [
    { name: 'farm', run: { algorithm: 'farm', farm: { sft_size: 400, preference_size: 64, unlabelled_size: 32, eval_size: 40 } } },
    { name: 'sft', run: { algorithm: 'sft', policy: tinyPolicy, data: { train: '${farm.sft}', ...data }, optimizer: { lr: 3e-3 }, training: { batch_size: 16, max_steps: 30 } } },
    { name: 'label', run: { algorithm: 'label', policy: { path: '${sft}' }, data: { prompts: '${farm.preference}', ...data }, generation: gen, training: { batch_size: 32 } } },
    { name: 'label_x3', run: { algorithm: 'label', policy: { path: '${sft}' }, data: { prompts: '${farm.preference}', ...data }, generation: gen, training: { batch_size: 32 }, label: { pairs_per_prompt: 3 } } },
    { name: 'reward', run: { algorithm: 'reward', policy: { path: '${sft}' }, data: { train: '${label.preferences}', ...data, check_text: false }, training: { batch_size: 16, max_steps: 5 } } },
    {
      name: 'ppo',
      run: {
        algorithm: 'ppo',
        policy: { path: '${sft}' },
        reward_model: { path: '${reward}' },
        data: { prompts: '${farm.unlabelled}', eval: '${farm.eval}', ...data },
        generation: gen,
        optimizer: { lr: 1e-3 },
        training: { batch_size: 8, max_steps: 4, eval_every: 2 },
        ppo: { minibatch_size: 8, kl_coef: 0.1 },
      },
    },
    {
      name: 'best_of_4',
      run: { algorithm: 'best_of_n', policy: { path: '${sft}' }, reward_function: { name: 'farm_gold' }, data: { prompts: '${farm.eval}', ...data }, generation: gen, training: { batch_size: 20 }, best_of_n: { n: 4 } },
    },
    { name: 'eval_sft', run: evalStage('sft') },
    { name: 'eval_ppo', run: evalStage('ppo') },
    { name: 'eval_best_of_4', run: { algorithm: 'eval', data: { prompts: '${best_of_4.outputs}', ...data, check_text: false }, training: { batch_size: 20 } } },
  ],
}

t.test('rlfarm compare on a small farm pipeline', async (t) => {
  const out = tempDir(t, 'farm-pipeline')
  const file = path.join(out, 'tiny.json')
  fs.writeFileSync(file, JSON.stringify(pipeline))
  const r = spawnSync(process.execPath, [BIN, 'compare', file, '--out', out, '--progress', 'none'], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 })
  t.equal(r.status, 0, r.stderr)
  const dir = path.join(out, 'tiny-farm')
  const stage = (name: string) => path.join(dir, name)
  const summary = JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8'))
  const metrics = (name: string) => summary.stages.find((s: { name: string }) => s.name === name).metrics as Record<string, number>

  t.test('farm: the splits as files', async (t) => {
    t.same(['sft', 'preference', 'unlabelled', 'eval'].map((s) => readJsonl(path.join(stage('farm'), `${s}.jsonl`)).length), [400, 64, 32, 40])
  })

  t.test('label: two SFT samples per instruction, the pool picks one; ties are left out and counted', async (t) => {
    const rows = readJsonl(path.join(stage('label'), 'preferences.jsonl'))
    const m = metrics('label')
    t.equal(rows.length, m.pairs)
    t.equal(m.pairs + m.undecided, 64, 'every instruction gave a pair or a counted tie')
    t.ok(rows.every((row) => typeof row.prompt === 'string' && typeof row.chosen === 'string' && typeof row.rejected === 'string' && row.chosen !== row.rejected))
    t.ok(rows.every((row) => typeof row.family === 'string'), "the row's other fields are kept")
    t.ok(m.gold_agreement >= 0 && m.gold_agreement <= 1, `agreement with gold: ${m.gold_agreement}`)
  })

  t.test('label: pairs_per_prompt independent pairs per instruction', async (t) => {
    const rows = readJsonl(path.join(stage('label_x3'), 'preferences.jsonl'))
    const m = metrics('label_x3')
    t.equal(m.pairs + m.undecided, 3 * 64, 'three pairs (or counted ties) for every instruction')
    const perPrompt = new Map<string, Set<string>>()
    for (const row of rows) {
      const pairs = perPrompt.get(row.prompt as string) ?? new Set<string>()
      pairs.add(JSON.stringify([row.chosen, row.rejected]))
      perPrompt.set(row.prompt as string, pairs)
    }
    t.ok([...perPrompt.values()].every((pairs) => pairs.size <= 3), 'at most three pairs per instruction')
    t.ok([...perPrompt.values()].some((pairs) => pairs.size >= 2), 'an instruction gets different pairs, not one pair copied')
  })

  t.test('ppo: held-out win-rates and proxy reward during training', async (t) => {
    const evals = readJsonl(path.join(stage('ppo'), 'metrics.jsonl')).filter((row) => row.eval_win_rate !== undefined)
    t.same(evals.map((row) => row.step), [0, 2, 4])
    t.ok(evals.every((row) => typeof row.eval_reward === 'number' && typeof row.eval_pool_win_rate === 'number' && typeof row.eval_gold_score === 'number'))
  })

  t.test('eval: win-rates by gold and the pool with standard errors, reward, KL to SFT', async (t) => {
    const m = metrics('eval_sft')
    t.equal(m.n, 40)
    t.ok(m.win_rate >= 0 && m.win_rate <= 1 && m.win_rate_stderr > 0 && m.win_rate_stderr < 0.2)
    t.ok(m.pool_win_rate >= 0 && m.pool_win_rate <= 1 && m.pool_win_rate_stderr > 0)
    t.equal(m.kl, 0, 'the SFT model against itself: KL 0')
    t.ok(Number.isFinite(m.reward))
    t.ok(Number.isFinite(metrics('eval_ppo').kl))
    const rows = readJsonl(path.join(stage('eval_sft'), 'outputs.jsonl'))
    t.ok(rows.every((row) => typeof row.reference === 'string' && row.gold === goldScore(row.prompt as string, row.response as string)))
  })

  t.test('eval of a responses file: best-of-4 by the gold reward is judged as chosen', async (t) => {
    const m = metrics('eval_best_of_4')
    t.ok(Math.abs(m.gold_score - metrics('best_of_4').best_score) < 1e-6, `the chosen responses' gold score is the best-of-n score: ${m.gold_score}`)
    t.ok(metrics('best_of_4').best_score >= metrics('best_of_4').single_sample_score)
  })

  t.test('summary, leaderboard and report', async (t) => {
    t.same(summary.policies.map((p: { policy: string }) => p.policy), ['sft', 'ppo', 'best_of_4'])
    const board = JSON.parse(fs.readFileSync(path.join(dir, 'leaderboard.json'), 'utf8'))
    t.same(new Set(board.entries.map((e: { method: string }) => e.method)), new Set(['sft', 'ppo', 'best_of_4']))
    t.ok(board.entries.every((e: { seconds: number; n: number }) => e.seconds > 0 && e.n === 40), 'each method with its wall time')
    t.ok(board.poolGoldSpearman >= -1 && board.poolGoldSpearman <= 1)
    const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8')
    t.equal((html.match(/<svg/g) ?? []).length, 2, 'the win-rate chart and the PPO curves')
    t.match(r.stdout, /Spearman rank correlation, pool vs gold: -?[\d.]+/)
    t.match(r.stdout, /win-rate \(gold\)/)
  })

  t.test('compare a second time: the finished leaderboard, nothing trained again', async (t) => {
    const model = path.join(stage('ppo'), 'model', 'model.safetensors')
    const trained = fs.statSync(model).mtimeMs
    const again = spawnSync(process.execPath, [BIN, 'compare', file, '--out', out, '--progress', 'none'], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 })
    t.equal(again.status, 0, again.stderr)
    // The wall-time column is each stage's own, so the tables are the same too.
    t.equal(again.stdout, r.stdout, 'the same leaderboard')
    t.equal(fs.statSync(model).mtimeMs, trained, 'from the finished run')
  })
})

t.test('eval: clear errors for rows it cannot judge', async (t) => {
  const out = tempDir(t, 'farm-pipeline')
  const rows = path.join(out, 'rows.jsonl')
  fs.writeFileSync(rows, `${JSON.stringify({ prompt: 'add 1 and 2', reference: ' 3' })}\n`)
  await t.rejects(
    train({ algorithm: 'eval', output_dir: out, name: 'a', data: { prompts: rows } }, { progress: 'none' }),
    /without policy.path, each row needs a 'response' string to judge; prompt 1 has none/,
  )
  const plain = path.join(out, 'plain.jsonl')
  fs.writeFileSync(plain, `${JSON.stringify({ prompt: 'hello' })}\n`)
  await t.rejects(
    train({ algorithm: 'eval', output_dir: out, name: 'b', policy: tinyPolicy, data: { prompts: plain, chat_template: false } }, { progress: 'none' }),
    /give reward_model or reward_function to score responses, or prompts with a `reference`/,
  )
  await t.rejects(
    train({ algorithm: 'label', output_dir: out, name: 'c', policy: tinyPolicy, data: { prompts: plain, chat_template: false } }, { progress: 'none' }),
    /the pool judge compares responses to farm instructions only; prompt 1 is "hello"/,
  )
})
