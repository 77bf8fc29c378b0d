// The farm's fidelity checks at a small scale (the full-scale run is
// examples/fidelity.yaml, or one check at a time in examples/fidelity/; its figures are in bench/RESULTS.md):
//   best-of-n   the win-rate of best-of-n grows with n
//   over-optimisation   PPO without a KL penalty against a biased proxy
//               reward: the proxy rises while the gold win-rate falls
//   West-of-N   the reward model trained on best-vs-worst pairs beside the
//               pool's ranks gold-labelled pairs better than its base
import path from 'node:path'
import t from 'tap'
import { runPipeline } from 'rlfarm'
import { tempDir } from './helpers/common'

const data = { max_length: 64, chat_template: false }

/** The farm's splits and a 64-wide byte-level GPT-2 fine-tuned on its demonstrations for `steps`. */
const farmAndSft = (farm: Record<string, number>, steps: number) => [
  { name: 'farm', run: { algorithm: 'farm', farm } },
  {
    name: 'sft',
    run: {
      algorithm: 'sft',
      policy: { tokenizer: 'byte', init: { hidden_size: 64, layers: 2, heads: 4, max_positions: 64 } },
      data: { train: '${farm.sft}', ...data },
      optimizer: { lr: 3e-3, schedule: 'cosine', warmup_steps: 20 },
      training: { batch_size: 32, max_steps: steps },
    },
  },
]

t.test('fidelity, small scale', async (t) => {
  const out = tempDir(t, 'fidelity')
  const bon = (n: number) => ({
    name: `best_of_${n}`,
    run: { algorithm: 'best_of_n', policy: { path: '${sft}' }, reward_function: { name: 'farm_gold' }, data: { prompts: '${farm.eval}', ...data }, generation: { max_new_tokens: 12, temperature: 1 }, training: { batch_size: 40 }, best_of_n: { n } },
  })
  const evalOf = (n: number) => ({ name: `eval_best_of_${n}`, run: { algorithm: 'eval', data: { prompts: `\${best_of_${n}.outputs}`, ...data } } })
  const result = await runPipeline(
    {
      name: 'fidelity-small',
      output_dir: out,
      seed: 2,
      stages: [
        ...farmAndSft({ sft_size: 4000, preference_size: 10, unlabelled_size: 200, eval_size: 120 }, 300),
        bon(1),
        bon(4),
        bon(16),
        evalOf(1),
        evalOf(4),
        evalOf(16),
        {
          name: 'ppo_length',
          run: {
            algorithm: 'ppo',
            policy: { path: '${sft}' },
            reward_function: { name: 'length', scale: 0.1 },
            data: { prompts: '${farm.unlabelled}', eval: '${farm.eval}', ...data },
            generation: { max_new_tokens: 16, temperature: 1 },
            optimizer: { lr: 1e-3 },
            training: { batch_size: 32, max_steps: 30, eval_every: 10 },
            ppo: { minibatch_size: 16, kl_coef: 0 },
          },
        },
      ],
    },
    { progress: 'none' },
  )
  const metrics = (name: string) => result.stages.find((s) => s.name === name)!.metrics

  const win = [1, 4, 16].map((n) => metrics(`eval_best_of_${n}`).win_rate)
  t.ok(win[0] < win[1] && win[1] < win[2], `best-of-n win-rate grows with n (1, 4, 16): ${win.map((w) => w.toFixed(3)).join(', ')}`)
  const se = metrics('eval_best_of_1').win_rate_stderr
  t.ok(win[2] - win[0] > 2 * se, 'best-of-16 is above best-of-1 by more than two standard errors')

  const { readFileSync } = await import('node:fs')
  const rows = readFileSync(path.join(result.dir, 'ppo_length', 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>)
    .filter((r) => r.eval_win_rate !== undefined)
  const first = rows[0]
  const last = rows[rows.length - 1]
  t.ok(last.eval_reward > first.eval_reward, `the proxy (length) rises: ${first.eval_reward.toFixed(2)} -> ${last.eval_reward.toFixed(2)}`)
  t.ok(last.eval_gold_score < first.eval_gold_score, `gold falls: ${first.eval_gold_score.toFixed(3)} -> ${last.eval_gold_score.toFixed(3)}`)
})

t.test('fidelity, small scale: West-of-N raises the reward model\'s accuracy on gold-labelled pairs', async (t) => {
  const out = tempDir(t, 'fidelity-won')
  const result = await runPipeline(
    {
      name: 'west-of-n-small',
      output_dir: out,
      seed: 3,
      stages: [
        ...farmAndSft({ sft_size: 4000, preference_size: 3000, unlabelled_size: 1500, eval_size: 20 }, 1000),
        { name: 'label', run: { algorithm: 'label', policy: { path: '${sft}' }, judge: { kind: 'pool' }, data: { prompts: '${farm.preference}', ...data }, generation: { max_new_tokens: 12, temperature: 1 }, training: { batch_size: 128 } } },
        {
          name: 'reward',
          run: { algorithm: 'reward', policy: { path: '${sft}' }, data: { train: '${label.preferences}', eval_size: 50, ...data, check_text: false }, optimizer: { lr: 1e-3, schedule: 'cosine', warmup_steps: 10 }, training: { batch_size: 32, epochs: 2 } },
        },
        { name: 'gold_pairs', run: { algorithm: 'label', policy: { path: '${sft}' }, judge: { kind: 'gold' }, data: { prompts: '${farm.unlabelled}', ...data }, generation: { max_new_tokens: 12, temperature: 1 }, training: { batch_size: 128 } } },
        {
          name: 'west_of_n',
          run: {
            algorithm: 'west_of_n',
            policy: { path: '${sft}' },
            reward_model: { path: '${reward}' },
            data: { train: '${label.preferences}', prompts: '${farm.unlabelled}', eval_size: 50, ...data, check_text: false },
            generation: { max_new_tokens: 12, temperature: 1 },
            optimizer: { lr: 5e-4, schedule: 'cosine', warmup_steps: 10 },
            training: { batch_size: 32, epochs: 1 },
            west_of_n: { n: 8 },
          },
        },
        { name: 'rm_on_gold', run: { algorithm: 'eval', policy: { path: '${reward}', scalar_head: true }, data: { train: '${gold_pairs.preferences}', ...data, check_text: false } } },
        { name: 'rm_west_of_n_on_gold', run: { algorithm: 'eval', policy: { path: '${west_of_n}', scalar_head: true }, data: { train: '${gold_pairs.preferences}', ...data, check_text: false } } },
      ],
    },
    { progress: 'none' },
  )
  const metrics = (name: string) => result.stages.find((s) => s.name === name)!.metrics
  const base = metrics('rm_on_gold')
  const won = metrics('rm_west_of_n_on_gold')
  t.ok(base.pairs >= 300, `${base.pairs} gold-labelled pairs`)
  t.ok(base.accuracy > 0.55, `the base reward model ranks gold pairs better than chance: ${base.accuracy.toFixed(3)}`)
  t.ok(won.accuracy > base.accuracy, `West-of-N is more accurate on them than its base: ${base.accuracy.toFixed(3)} -> ${won.accuracy.toFixed(3)}`)
})
