// npm run bench:ultrafeedback -- [--out DIR] [--json]
//
// UltraFeedback-style AI feedback on the farm, measured: examples/ultrafeedback.yaml
// (farm -> SFT at two sizes -> pool ratings -> reward model -> critique model
// -> best-of-n) plus the stages its measurements need:
//   label_pairs   pairwise pool labels of SFT samples at the same number of
//                 judged completions as the ratings (3000 instructions x 2
//                 pairs = 12000 completions; the ratings: 3000 x 4)
//   reward_mean   a reward model on the ratings binarised by mean aspect rating
//                 (the example's reward binarises by overall score)
//   reward_pairs  a reward model on the pairwise labels
//   gold_pairs    held-out pairs labelled by gold; rm_*_on_gold: each reward
//                 model's accuracy on them
//   best_of_64    best-of-n by the rating-trained reward model at n = 64
// then reads the critique model's ratings of held-out completions
// (critic_rate): its Spearman with gold (with a bootstrap standard error) and
// how often its critique names the faults gold finds (faultsOf), beside the
// share a constant guess of the commonest faults gets (the peer). Runs
// `rlfarm run` on the combined pipeline (with --resume when DIR holds a
// finished run of the example, whose stages are kept) and prints a table.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { parse as parseYaml } from 'yaml'
import { goldScore, parsePreferenceRow, readDataset, spearman } from 'rlfarm'
import { faultKindsOf, faultsNamed, faultsOf } from 'rlfarm/internal'
import { Rng } from '../ts/util/rng'
import { benchArgs } from './args'

const ROOT = path.join(__dirname, '..')

async function main(): Promise<void> {
  const { args } = benchArgs('ultrafeedback', process.argv.slice(2), { out: path.join(ROOT, 'runs', 'bench-ultrafeedback'), json: false }, {})
  const out = path.resolve(String(args.out))

  type Stage = { name: string; run: Record<string, unknown> }
  const example = parseYaml(fs.readFileSync(path.join(ROOT, 'examples', 'ultrafeedback.yaml'), 'utf8'), { merge: true }) as { name: string; seed: number; stages: Stage[] }
  const byName = (name: string) => example.stages.find((s) => s.name === name)!.run
  const reward = byName('reward') as { data: Record<string, unknown> }
  const rate = byName('rate') as Record<string, unknown>
  const rmOnGold = (rm: string): Stage => ({
    name: `rm_${rm}_on_gold`,
    run: { algorithm: 'eval', policy: { path: `\${${rm}}`, scalar_head: true }, data: { train: '${gold_pairs.preferences}', max_length: 64, chat_template: false, check_text: false }, training: { batch_size: 100 } },
  })
  const extra: Stage[] = [
    { name: 'label_pairs', run: { algorithm: 'label', policy: { path: '${sft}' }, judge: rate.judge, data: rate.data, generation: rate.generation, training: rate.training, label: { pairs_per_prompt: 2 } } },
    { name: 'reward_mean', run: { ...reward, data: { ...reward.data, binarize: 'mean_rating' } } },
    { name: 'reward_pairs', run: { ...reward, data: { train: '${label_pairs.preferences}', eval_size: 100, max_length: 64, chat_template: false, check_text: false } } },
    { name: 'gold_pairs', run: { algorithm: 'label', policy: { path: '${sft}' }, judge: { kind: 'gold' }, data: { prompts: '${farm.unlabelled}', max_length: 48, chat_template: false }, generation: rate.generation, training: rate.training, label: { pairs_per_prompt: 2 } } },
    rmOnGold('reward'),
    rmOnGold('reward_mean'),
    rmOnGold('reward_pairs'),
    { name: 'best_of_64', run: { ...byName('best_of_1'), best_of_n: { n: 64 } } },
    { name: 'eval_best_of_64', run: { ...byName('eval_best_of_1'), data: { ...(byName('eval_best_of_1').data as object), prompts: '${best_of_64.outputs}' } } },
  ]
  fs.mkdirSync(out, { recursive: true })
  const file = path.join(out, 'ultrafeedback-bench.json')
  fs.writeFileSync(file, JSON.stringify({ ...example, stages: [...example.stages, ...extra] }, null, 1))
  const finished = fs.existsSync(path.join(out, example.name, 'summary.json'))
  const started = Date.now()
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'rlfarm.js'), 'run', file, '--out', out, '--progress', 'none', ...(finished ? ['--resume'] : [])], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] })
  if (r.status !== 0) throw new Error(`rlfarm run ${file} failed (exit ${r.status})`)
  const minutes = (Date.now() - started) / 60_000

  const summary = JSON.parse(fs.readFileSync(path.join(out, example.name, 'summary.json'), 'utf8')) as { stages: { name: string; metrics: Record<string, number>; seconds?: number }[] }
  const metrics = (name: string) => summary.stages.find((s) => s.name === name)!.metrics
  const pm = (x: number, se: number) => `${x.toFixed(3)} ± ${se.toFixed(3)}`

  // Reward models on gold pairs.
  const rms = [
    { what: 'ratings, binarised by overall score', stage: 'reward' },
    { what: 'ratings, binarised by mean aspect rating', stage: 'reward_mean' },
    { what: 'pairwise labels', stage: 'reward_pairs' },
  ].map((x) => {
    const m = metrics(`rm_${x.stage}_on_gold`)
    return { ...x, accuracy: m.gold_pair_accuracy, stderr: m.gold_pair_accuracy_stderr, pairs: m.gold_pairs }
  })
  // The pairs each reward model trained on: the file's pairs less the stage's held-out eval_size.
  const ratingsFile = path.join(out, example.name, 'rate', 'ratings.jsonl')
  const heldOut = Number(reward.data.eval_size)
  const binarised = async (binarize: 'overall' | 'mean_rating') => (await readDataset(ratingsFile, parsePreferenceRow, { format: 'ultrafeedback', binarize, onBadRow: 'skip', checkText: false })).rows.length - heldOut
  const trainPairs = [await binarised('overall'), await binarised('mean_rating'), metrics('label_pairs').pairs - heldOut]
  const judged = { ratings: metrics('rate').completions, pairs: 2 * metrics('label_pairs').pairs + 2 * metrics('label_pairs').undecided }

  // Best-of-n by the rating-trained reward model: gold win-rate against the references.
  const bon = [1, 4, 16, 64].map((n) => ({ n, winRate: metrics(`eval_best_of_${n}`).win_rate, stderr: metrics(`eval_best_of_${n}`).win_rate_stderr }))

  // The critique model on held-out completions.
  const rows = fs
    .readFileSync(path.join(out, example.name, 'critic_rate', 'ratings.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { instruction: string; completions: { response: string; critique: string; overall_score: number }[] })
  const items = rows.flatMap((row) => row.completions.map((c) => ({ critic: c.overall_score, gold: goldScore(row.instruction, c.response), named: faultsNamed(c.critique), truth: faultKindsOf(faultsOf(row.instruction, c.response)) })))
  const rho = spearman(items.map((i) => i.critic), items.map((i) => i.gold))
  const rng = new Rng(7)
  const boot = Array.from({ length: 500 }, () => {
    const pick = items.map(() => items[rng.int(items.length)])
    return spearman(pick.map((i) => i.critic), pick.map((i) => i.gold))
  })
  const bootMean = boot.reduce((a, b) => a + b, 0) / boot.length
  const rhoStderr = Math.sqrt(boot.reduce((a, b) => a + (b - bootMean) ** 2, 0) / (boot.length - 1))
  const share = (xs: boolean[]) => {
    const p = xs.filter(Boolean).length / xs.length
    return { p, stderr: Math.sqrt((p * (1 - p)) / xs.length), n: xs.length }
  }
  const key = (f: { wrongAnswer: boolean; chatter: boolean }) => `${Number(f.wrongAnswer)}${Number(f.chatter)}`
  const exact = share(items.map((i) => key(i.named) === key(i.truth)))
  const counts = new Map<string, number>()
  for (const i of items) counts.set(key(i.truth), (counts.get(key(i.truth)) ?? 0) + 1)
  const commonest = [...counts.entries()].sort((a, b) => b[1] - a[1])[0][0]
  const guess = share(items.map((i) => key(i.truth) === commonest))
  const wrongNamed = share(items.filter((i) => i.truth.wrongAnswer).map((i) => i.named.wrongAnswer))
  const chatterNamed = share(items.filter((i) => i.truth.chatter).map((i) => i.named.chatter))
  // False alarms: a fault named where gold finds none.
  const wrongFalse = share(items.filter((i) => !i.truth.wrongAnswer).map((i) => i.named.wrongAnswer))
  const chatterFalse = share(items.filter((i) => !i.truth.chatter).map((i) => i.named.chatter))
  const critic = { spearman: rho, spearmanStderr: rhoStderr, completions: items.length, skipped: metrics('critic_rate').judge_skipped ?? 0, exactFaults: exact, commonestGuess: guess, wrongAnswerNamed: wrongNamed, chatterNamed, wrongAnswerFalseAlarms: wrongFalse, chatterFalseAlarms: chatterFalse, poolSpearman: metrics('rate').gold_spearman }

  const lines = [
    `rlfarm bench ultrafeedback: ${minutes.toFixed(1)} min for the stages this call ran (${out})`,
    '',
    `Reward models at the same number of judged completions (ratings: ${judged.ratings}, pairwise: ${judged.pairs}), accuracy on ${rms[0].pairs} gold-labelled held-out pairs:`,
    '| trained on | training pairs | gold-pair accuracy |',
    '| --- | ---: | ---: |',
    ...rms.map((x, i) => `| ${x.what} | ${trainPairs[i]} | ${pm(x.accuracy, x.stderr)} |`),
    '',
    'Best-of-n by the rating-trained reward model, gold win-rate against the references:',
    '| n | gold win-rate |',
    '| ---: | ---: |',
    ...bon.map((b) => `| ${b.n} | ${pm(b.winRate, b.stderr)} |`),
    '',
    `Critique model on ${items.length} held-out completions (${critic.skipped} left out without a readable score):`,
    `- Spearman with gold: ${pm(rho, rhoStderr)} (bootstrap s.e.; the pool's overall scores on the training ratings: ${critic.poolSpearman?.toFixed(3)})`,
    `- critique names exactly gold's faults: ${pm(exact.p, exact.stderr)} (peer, always the commonest faults: ${pm(guess.p, guess.stderr)})`,
    `- names a wrong answer where gold finds one: ${pm(wrongNamed.p, wrongNamed.stderr)} of ${wrongNamed.n}; names chatter where gold finds it: ${pm(chatterNamed.p, chatterNamed.stderr)} of ${chatterNamed.n}`,
    `- names a wrong answer where gold finds none: ${pm(wrongFalse.p, wrongFalse.stderr)} of ${wrongFalse.n}; names chatter where gold finds none: ${pm(chatterFalse.p, chatterFalse.stderr)} of ${chatterFalse.n}`,
  ]
  console.log(lines.join('\n'))
  const result = { minutes, judged, rewardModels: rms.map((x, i) => ({ ...x, trainPairs: trainPairs[i] })), bestOfN: bon, critic }
  fs.writeFileSync(path.join(out, 'ultrafeedback-bench-result.json'), JSON.stringify(result, null, 1))
  if (args.json) console.log(JSON.stringify(result))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
