// The farm's fidelity checks at a small scale (the full-scale run is
// examples/fidelity.yaml; its figures are in bench/RESULTS.md):
//   best-of-n   the win-rate of best-of-n grows with n
//   over-optimisation   PPO without a KL penalty against a biased proxy
//               reward: the proxy rises while the gold win-rate falls
import path from 'node:path'
import t from 'tap'
import { runPipeline } from 'rlfarm'
import { tempDir } from './helpers/common'

const data = { max_length: 64, chat_template: false }

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
        { name: 'farm', run: { algorithm: 'farm', farm: { sft_size: 4000, preference_size: 10, unlabelled_size: 200, eval_size: 120 } } },
        {
          name: 'sft',
          run: {
            algorithm: 'sft',
            policy: { tokenizer: 'byte', init: { hidden_size: 64, layers: 2, heads: 4, max_positions: 64 } },
            data: { train: '${farm.sft}', ...data },
            optimizer: { lr: 3e-3, schedule: 'cosine', warmup_steps: 20 },
            training: { batch_size: 32, max_steps: 300 },
          },
        },
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
