// AlpacaFarm's validation: Kendall, quantiles and the bootstrap interval
// against hand-computed values; the choice of a method's setting in each
// world on the validation split (by hand-made outcomes); the farm's
// validation split; the evaluation pool without label flips
// (judge.eval_label_noise); reward models measured on gold-labelled pairs;
// and examples/validation.yaml itself, shrunk with --set, through
// `rlfarm compare` (validation.json, both leaderboards, the plot).
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { AnnotatorPool, goldPreference, kendall, makeSplits, poolWinRate, spearman, train, winRateOf, writeSplits } from 'rlfarm'
import { formatRewardModels, formatValidation, pipelineValidation, quantile, rewardModelAccuracies, selectCandidate, validationOf } from 'rlfarm/internal'
import { tempDir } from './helpers/common'
import { exampleStages, shrinkValidation } from './helpers/shrink-validation'

const ROOT = path.join(__dirname, '..')
const BIN = path.join(ROOT, 'bin', 'rlfarm.js')
const readJsonl = (file: string) => fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>)
const writeJsonl = (file: string, rows: readonly object[]) => fs.writeFileSync(file, rows.map((r) => `${JSON.stringify(r)}\n`).join(''))
const close = (a: number, b: number, eps = 1e-12) => Math.abs(a - b) < eps

t.test('kendall: tau-b by hand, with and without ties', async (t) => {
  // b's order against a's: 6 concordant pairs, 4 discordant -> (6 - 4) / 10.
  t.ok(close(kendall([1, 2, 3, 4, 5], [3, 4, 1, 2, 5]), 0.2))
  // One tie in a: 5 concordant, 0 discordant, n0 = 6 -> 5 / sqrt(5 * 6).
  t.ok(close(kendall([1, 2, 2, 3], [1, 3, 2, 4]), 5 / Math.sqrt(30)))
  t.equal(kendall([1, 2, 3], [3, 2, 1]), -1)
  t.equal(kendall([1, 1, 1], [1, 2, 3]), 0, 'all ties: no ranking to agree with')
  t.throws(() => kendall([1, 2], [1]), /kendall: the two lists differ in length \(2 and 1\)/)
  t.throws(() => kendall([1], [1]), /at least two items/)
})

t.test('quantile: linear interpolation between order statistics', async (t) => {
  t.equal(quantile([4, 1, 3, 2], 0.5), 2.5)
  t.ok(close(quantile([4, 1, 3, 2], 0.025), 1.075))
  t.equal(quantile([4, 1, 3, 2], 1), 4)
  t.equal(quantile([7], 0.3), 7)
  t.throws(() => quantile([], 0.5), /no values/)
  t.throws(() => quantile([1], 1.5), /q must be in \[0, 1\]; got 1.5/)
})

t.test('validationOf: win-rates, Spearman and Kendall of three methods by hand', async (t) => {
  const v = validationOf(
    [
      { method: 'A', simulated: [1, 1, 1, 0], human: [1, 1, 0, 0] },
      { method: 'B', simulated: [1, 0, 0.5, 0], human: [1, 1, 1, 0] },
      { method: 'C', simulated: [0, 0, 0, 0], human: [0, 0, 0.5, 0] },
    ],
    { resamples: 200, seed: 3 },
  )
  t.same(
    v.methods.map((m) => [m.method, m.simulatedWinRate, m.humanWinRate]),
    [
      ['A', 0.75, 0.5],
      ['B', 0.375, 0.75],
      ['C', 0, 0.125],
    ],
  )
  // A's simulated outcomes 1,1,1,0: sample variance 0.25, standard error sqrt(0.25 / 4).
  t.equal(v.methods[0].simulatedStderr, 0.25)
  // Ranks A1 B2 C3 against B1 A2 C3: sum d^2 = 2, 1 - 6 * 2 / (3 * 8) = 0.5.
  t.ok(close(v.spearman, 0.5))
  // Pairs AB discordant, AC and BC concordant: (2 - 1) / 3.
  t.ok(close(v.kendall, 1 / 3))
  t.equal(v.instructions, 4)
  t.equal(v.resamples, 200)
  t.ok(v.spearmanInterval[0] <= v.spearmanInterval[1] && v.spearmanInterval[0] >= -1 && v.spearmanInterval[1] <= 1)
  t.same(validationOf([{ method: 'A', simulated: [1, 1, 1, 0], human: [1, 1, 0, 0] }, { method: 'B', simulated: [1, 0, 0.5, 0], human: [1, 1, 1, 0] }, { method: 'C', simulated: [0, 0, 0, 0], human: [0, 0, 0.5, 0] }], { resamples: 200, seed: 3 }), v, 'the same seed, the same interval')
})

t.test('validationOf: the bootstrap interval resamples instructions', async (t) => {
  // Every instruction ranks A > B > C in both worlds: every resample agrees perfectly.
  const same = [1, 0.5, 0].map((x, i) => ({ method: 'ABC'[i], simulated: [x, x, x], human: [x, x, x] }))
  t.same(validationOf(same).spearmanInterval, [1, 1])
  // Instruction 0 ranks A > B > C in both worlds; instruction 1 reverses the
  // simulated world's order. A resample of two instructions takes {0,0}
  // (Spearman 1) or {1,1} (-1) a quarter of the time each, and one of each
  // (all tied, 0) half the time: the 2.5% and 97.5% quantiles are -1 and 1.
  const split = [
    { method: 'A', simulated: [1, 0], human: [1, 1] },
    { method: 'B', simulated: [0.5, 0.5], human: [0.5, 0.5] },
    { method: 'C', simulated: [0, 1], human: [0, 0] },
  ]
  const v = validationOf(split, { resamples: 2000, seed: 1 })
  t.same(v.spearmanInterval, [-1, 1])
  t.equal(v.spearman, spearman([0.5, 0.5, 0.5], [1, 0.5, 0]), 'the point estimate: the simulated world ties all three')
  t.throws(() => validationOf(split.slice(0, 2)), /needs at least three methods to rank; got 2/)
  t.throws(() => validationOf([...split.slice(0, 2), { method: 'C', simulated: [0], human: [0, 0] }]), /every method needs an outcome for each of the 2 instructions in both worlds; C has 1 simulated and 2 human/)
  t.throws(() => validationOf(split, { resamples: 0 }), /resamples must be a positive integer; got 0/)
})

t.test('selectCandidate: the highest validation win-rate; a tie goes to the first listed', async (t) => {
  const s = selectCandidate([
    { candidate: 'beta_0_1', outcomes: [1, 0, 0.5, 0] },
    { candidate: 'beta_0_5', outcomes: [1, 1, 0.5, 0] },
    { candidate: 'beta_1', outcomes: [0, 1, 0, 0] },
  ])
  t.equal(s.selected, 'beta_0_5')
  t.same(
    s.candidates.map((c) => [c.candidate, c.winRate]),
    [
      ['beta_0_1', 0.375],
      ['beta_0_5', 0.625],
      ['beta_1', 0.25],
    ],
  )
  // 1, 1, 0.5, 0: mean 0.625, sample variance 0.22917, standard error sqrt(0.22917 / 4).
  t.ok(close(s.candidates[1].stderr, Math.sqrt(0.6875 / 3 / 4)))
  t.equal(selectCandidate([{ candidate: 'a', outcomes: [1, 0] }, { candidate: 'b', outcomes: [0.5, 0.5] }]).selected, 'a', 'equal win-rates: the first listed')
  t.throws(() => selectCandidate([]), /selectCandidate: no candidates to choose from/)
  t.throws(() => selectCandidate([{ candidate: 'a', outcomes: [] }]), /candidate a has no validation outcomes/)
})

t.test('pipelineValidation: each world chooses a setting by its own judge on the validation instructions, then reads its evaluation', async (t) => {
  const dir = tempDir(t, 'validation-select')
  const evalPrompts = ['e1', 'e2', 'e3', 'e4']
  const valPrompts = ['v1', 'v2', 'v3', 'v4']
  // A stage's outputs.jsonl: per prompt, the pool's and gold's outcome.
  const stage = (name: string, prompts: string[], pool: number[], gold: number[]) => {
    const runDir = path.join(dir, name)
    fs.mkdirSync(runDir, { recursive: true })
    writeJsonl(path.join(runDir, 'outputs.jsonl'), prompts.map((prompt, i) => ({ prompt, response: 'r', pool_outcome: pool[i], gold_outcome: gold[i] })))
    return { name, runDir }
  }
  const ev = (name: string, pool: number[], gold: number[]) => stage(name, evalPrompts, pool, gold)
  const stages = [
    ev('eval_sft', [0, 0, 0, 1], [0, 0, 0, 0]),
    ev('eval_simulated_bon', [1, 0, 0, 0], [1, 1, 0, 0]),
    ev('eval_human_bon', [1, 1, 1, 1], [0, 0, 1, 0]),
    // dpo at two settings in each world; their evaluations differ so that the test sees which was read.
    ev('eval_simulated_dpo__a', [1, 1, 0, 0], [0, 0, 0, 0]),
    ev('eval_simulated_dpo__b', [1, 1, 1, 1], [0, 0, 0, 0]),
    ev('eval_human_dpo__a', [0, 0, 0, 0], [1, 1, 1, 0]),
    ev('eval_human_dpo__b', [0, 0, 0, 0], [0, 0, 0, 0]),
    // The pool prefers b on the validation instructions and gold prefers a:
    // the simulated world must take b, the human world a.
    stage('select_simulated_dpo__a', valPrompts, [0, 0, 1, 0], [1, 1, 1, 1]),
    stage('select_simulated_dpo__b', valPrompts, [1, 1, 0.5, 0], [0, 0, 0, 0]),
    stage('select_human_dpo__a', valPrompts, [0, 0, 0, 0], [1, 1, 0, 0]),
    stage('select_human_dpo__b', valPrompts, [1, 1, 1, 1], [0, 1, 0, 0]),
  ]
  const v = pipelineValidation(stages, { resamples: 50 })!
  t.same(v.methods.map((m) => m.method), ['bon', 'dpo', 'sft'])
  const dpo = v.methods.find((m) => m.method === 'dpo')!
  t.equal(dpo.simulatedWinRate, 1, "the simulated world reads eval_simulated_dpo__b's pool outcomes")
  t.equal(dpo.humanWinRate, 0.75, "the human world reads eval_human_dpo__a's gold outcomes")
  t.same(dpo.selection, {
    simulated: { selected: 'b', candidates: [{ candidate: 'a', winRate: 0.25, stderr: 0.25 }, { candidate: 'b', winRate: 0.625, stderr: Math.sqrt(0.6875 / 3 / 4) }] },
    human: { selected: 'a', candidates: [{ candidate: 'a', winRate: 0.5, stderr: Math.sqrt(1 / 3 / 4) }, { candidate: 'b', winRate: 0.25, stderr: 0.25 }] },
  })
  t.equal(v.methods.find((m) => m.method === 'bon')!.selection, undefined, 'a method without settings has no selection')
  t.match(formatValidation(v), /settings each world chose on its validation instructions:\ndpo \(simulated\): b chosen; validation win-rates by the pool: a 0\.250 ± 0\.250, b 0\.625 ± 0\.239\ndpo \(human\): a chosen; validation win-rates by gold: a 0\.500 ± 0\.289, b 0\.250 ± 0\.250/)

  const without = (name: string) => stages.filter((s) => s.name !== name)
  t.throws(() => pipelineValidation(without('select_human_dpo__b')), /validation: eval_human_dpo__b is a candidate setting of dpo but no select_human_dpo__b stage measures it on the validation instructions/)
  t.throws(() => pipelineValidation([...stages, ev('eval_human_dpo', [0, 0, 0, 0], [0, 0, 0, 0])]), /dpo in the human world has both eval_human_dpo and candidate settings \(eval_human_dpo__a, eval_human_dpo__b\)/)
  t.throws(() => pipelineValidation([...stages, stage('select_human_dpo__c', valPrompts, [0, 0, 0, 0], [1, 1, 1, 1])]), /validation: select_human_dpo__c measures a setting that no eval_human_dpo__c stage evaluates/)
  // Choosing on the evaluation instructions would be tuning on the test.
  const onTest = [...without('select_human_dpo__a'), stage('select_human_dpo__a', ['v1', 'e2', 'v3', 'v4'], [0, 0, 0, 0], [1, 1, 0, 0])]
  t.throws(() => pipelineValidation(onTest), /select_human_dpo__a chooses on the evaluation instruction "e2"; selection needs instructions apart from the evaluation ones/)
})

t.test('makeSplits: a validation split, drawn last, leaves the other splits as they were', async (t) => {
  const sizes = { sft: 300, preference: 100, unlabelled: 50, eval: 60 }
  const plain = makeSplits(4, sizes)
  const withValidation = makeSplits(4, { ...sizes, validation: 40 })
  t.same(plain.validation, [], 'none unless asked for')
  for (const split of ['sft', 'preference', 'unlabelled', 'eval'] as const) t.same(withValidation[split], plain[split], `${split} unchanged`)
  const v = withValidation.validation!
  t.equal(v.length, 40)
  const others = new Set([...plain.sft, ...plain.preference, ...plain.unlabelled, ...plain.eval].map((r) => r.prompt))
  t.equal(v.filter((r) => others.has(r.prompt)).length, 0, 'no validation instruction is in another split')
  t.equal(new Set(v.map((r) => r.prompt)).size, 40)
  t.ok(v.every((r) => typeof r.reference === 'string' && r.reference.length > 0), 'each with a reference output')
  const out = tempDir(t, 'validation-split')
  t.same(Object.keys(writeSplits(path.join(out, 'a'), plain)).sort(), ['eval', 'preference', 'sft', 'unlabelled'], 'no validation.jsonl without a validation split')
  const files = writeSplits(path.join(out, 'b'), withValidation)
  t.same(readJsonl(files.validation!), v)
})

t.test('rewardModelAccuracies and formatRewardModels: a reward stage and an eval of a reward model', async (t) => {
  const list = rewardModelAccuracies([
    { name: 'sft', metrics: { steps: 10 } },
    { name: 'reward', metrics: { eval_accuracy: 0.49, eval_gold_pair_accuracy: 0.66, eval_gold_pair_accuracy_stderr: 0.034, eval_gold_pairs: 190 } },
    { name: 'rm_on_gold', metrics: { accuracy: 0.7, gold_pair_accuracy: 0.7, gold_pair_accuracy_stderr: 0.01, gold_pairs: 2000 } },
  ])
  t.same(list, [
    { stage: 'reward', accuracy: 0.49, goldAccuracy: 0.66, goldStderr: 0.034, goldPairs: 190 },
    { stage: 'rm_on_gold', accuracy: 0.7, goldAccuracy: 0.7, goldStderr: 0.01, goldPairs: 2000 },
  ])
  t.equal(formatRewardModels(list.slice(0, 1)), 'reward model reward: held-out accuracy 0.490 on its training labels, 0.660 ± 0.034 on gold labels (190 pairs)')
})

t.test('judge.eval_label_noise: the evaluation pool without the training pool flips; unset, label_noise as before', async (t) => {
  const out = tempDir(t, 'validation-eval')
  const splits = makeSplits(5, { sft: 10, preference: 1, unlabelled: 1, eval: 200 })
  // Another demonstration per instruction as the judged response.
  const other = makeSplits(5, { sft: 10, preference: 1, unlabelled: 1, eval: 200 }, { chatter: 0.3, format: 0.5, accuracy: Object.fromEntries(splits.eval.map((r) => [r.family, 0.4])) })
  const items = splits.eval.map((r, i) => ({ prompt: r.prompt, response: other.eval[i].reference, reference: r.reference }))
  const file = path.join(out, 'judged.jsonl')
  writeJsonl(file, items)
  const evaluate = (judge: Record<string, unknown>) => train({ algorithm: 'eval', output_dir: out, name: `e${Object.keys(judge).length}`, judge, data: { prompts: file, chat_template: false, check_text: false }, logging: { progress: 'none' } })
  const noisy = await evaluate({ kind: 'pool' })
  const clean = await evaluate({ kind: 'pool', label_noise: 0.25, eval_label_noise: 0 })
  t.equal(noisy.metrics.pool_win_rate, poolWinRate(items, new AnnotatorPool({ p: 0.25 })).winRate, 'default: the training pool, flips included')
  t.equal(clean.metrics.pool_win_rate, poolWinRate(items, new AnnotatorPool({ p: 0 })).winRate, 'eval_label_noise 0: no flips')
  t.not(clean.metrics.pool_win_rate, noisy.metrics.pool_win_rate)
  t.equal(clean.metrics.win_rate, noisy.metrics.win_rate, 'gold is the same judge either way')
  const rows = readJsonl(path.join(clean.runDir, 'outputs.jsonl'))
  t.equal(winRateOf(rows.map((r) => r.pool_outcome)).winRate, clean.metrics.pool_win_rate, "each row's pool_outcome, averaged, is the pool win-rate")
  t.equal(winRateOf(rows.map((r) => r.gold_outcome)).winRate, clean.metrics.win_rate, "each row's gold_outcome, averaged, is gold's")
  await t.rejects(evaluate({ kind: 'pool', eval_label_noise: 0.7 }), /judge\.eval_label_noise/)
})

t.test('examples/validation.yaml, shrunk: rlfarm compare writes validation.json, both leaderboards and the plot', async (t) => {
  const out = tempDir(t, 'validation')
  const r = spawnSync(process.execPath, [BIN, 'compare', 'examples/validation.yaml', '--out', out, '--progress', 'none', ...shrinkValidation()], { cwd: ROOT, encoding: 'utf8', timeout: 900_000 })
  t.equal(r.status, 0, r.stderr)
  const dir = path.join(out, 'validation')
  const validation = JSON.parse(fs.readFileSync(path.join(dir, 'validation.json'), 'utf8'))
  const methods = ['sft', 'sft_small', 'best_of_4', 'best_of_16', 'best_of_64', 'expert_iteration', 'dpo', 'dpo_hinge', 'ppo', 'ppo_low_kl', 'grpo', 'best_of_16_won']
  t.same(Object.keys(validation).sort(), ['instructions', 'kendall', 'methods', 'resamples', 'spearman', 'spearmanInterval'])
  t.same(validation.methods.map((m: { method: string }) => m.method).sort(), [...methods].sort(), 'twelve methods, each in both worlds')
  t.equal(validation.instructions, 30)
  const tuned = ['dpo', 'dpo_hinge', 'ppo', 'ppo_low_kl']
  for (const m of validation.methods) {
    const keys = ['method', 'simulatedWinRate', 'simulatedStderr', 'humanWinRate', 'humanStderr']
    t.same(Object.keys(m), tuned.includes(m.method) ? [...keys, 'selection'] : keys, `${m.method}: ${tuned.includes(m.method) ? 'chosen among settings in each world' : 'one setting'}`)
  }

  // The figures, recomputed from the eval stages' own outputs.
  const outcomes = (stage: string, column: string) => readJsonl(path.join(dir, stage, 'outputs.jsonl')).map((row) => row[column] as number)
  const validationPrompts = new Set(readJsonl(path.join(dir, 'farm', 'validation.jsonl')).map((r) => r.prompt))
  t.equal(validationPrompts.size, 30)
  for (const m of validation.methods.filter((x: { method: string }) => tuned.includes(x.method))) {
    for (const [world, column] of [['simulated', 'pool_outcome'], ['human', 'gold_outcome']]) {
      const s = m.selection[world]
      const scores = s.candidates.map((c: { candidate: string; winRate: number }) => {
        const stage = `select_${world}_${m.method}__${c.candidate}`
        t.ok(readJsonl(path.join(dir, stage, 'outputs.jsonl')).every((r) => validationPrompts.has(r.prompt)), `${stage} answers the validation instructions`)
        t.equal(c.winRate, winRateOf(outcomes(stage, column)).winRate, `${stage}: chosen by ${column}`)
        return c.winRate
      })
      t.equal(s.candidates.length, 2)
      t.equal(s.selected, s.candidates[scores.indexOf(Math.max(...scores))].candidate, `${m.method} (${world}): the first best candidate`)
    }
  }
  const stageOf = (world: string, method: string) => {
    const selected = validation.methods.find((m: { method: string }) => m.method === method).selection?.[world]?.selected
    if (selected) return `eval_${world}_${method}__${selected}`
    return fs.existsSync(path.join(dir, `eval_${world}_${method}`)) ? `eval_${world}_${method}` : `eval_${method}`
  }
  for (const m of validation.methods) {
    t.equal(m.simulatedWinRate, winRateOf(outcomes(stageOf('simulated', m.method), 'pool_outcome')).winRate, `${m.method}: simulated = the noise-free pool's win-rate of the pool-trained method`)
    t.equal(m.humanWinRate, winRateOf(outcomes(stageOf('human', m.method), 'gold_outcome')).winRate, `${m.method}: human = gold's win-rate of the gold-trained method`)
  }
  const sims = validation.methods.map((m: { simulatedWinRate: number }) => m.simulatedWinRate)
  const hums = validation.methods.map((m: { humanWinRate: number }) => m.humanWinRate)
  t.equal(validation.spearman, spearman(sims, hums))
  t.equal(validation.kendall, kendall(sims, hums))
  const [lo, hi] = validation.spearmanInterval
  t.ok(lo <= hi && lo >= -1 && hi <= 1, `interval ${lo} to ${hi}`)

  // The human world learned from gold labels, the simulated one from the pool's.
  const summary = JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8'))
  const metrics = (name: string) => summary.stages.find((s: { name: string }) => s.name === name).metrics as Record<string, number>
  t.equal(metrics('label_human').gold_agreement, 1, 'gold labels agree with gold')
  t.ok(metrics('label_simulated').gold_agreement < 1, 'pool labels do not')

  t.match(r.stdout, /Validation, the same methods in two worlds:\nmethod\s+simulated \(pool labels, pool judge\)\s+rank\s+human \(gold labels, gold judge\)\s+rank/)
  t.match(r.stdout, /simulated vs human over 12 methods: Spearman -?[\d.]+ \(95% bootstrap interval over 30 instructions -?[\d.]+ to -?[\d.]+\), Kendall -?[\d.]+/)
  t.match(r.stdout, /reward model reward_human: held-out accuracy [\d.]+ on its training labels, [\d.]+ ± [\d.]+ on gold labels \(\d+ pairs\)/)
  t.match(r.stdout, /settings each world chose on its validation instructions:\n(dpo|dpo_hinge|ppo|ppo_low_kl) \((simulated|human)\): \w+ chosen; validation win-rates by (the pool|gold): /)
  t.match(r.stdout, /validation: .*validation\.json/)
  const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8')
  t.match(html, /<figcaption>Simulated against human win-rates<\/figcaption>\n<svg/)
  t.match(html, /<h2>Validation: simulated against human<\/h2>/)
  const board = JSON.parse(fs.readFileSync(path.join(dir, 'leaderboard.json'), 'utf8'))
  t.same(board.rewardModels.map((x: { stage: string }) => x.stage), ['reward_simulated', 'reward_human'], 'the leaderboard reports both reward models against gold')

  t.test("a reward model's gold accuracy is its accuracy on the held-out pairs relabelled by gold", async (t) => {
    const prefs = readJsonl(path.join(dir, 'label_simulated', 'preferences.jsonl'))
    const heldOut = prefs.slice(0, 40)
    const trainFile = path.join(out, 'train.jsonl')
    const heldFile = path.join(out, 'held.jsonl')
    const goldFile = path.join(out, 'gold.jsonl')
    writeJsonl(trainFile, prefs.slice(40))
    writeJsonl(heldFile, heldOut)
    const gold = heldOut.flatMap((p) => {
      const g = goldPreference(p.prompt, p.chosen, p.rejected)
      return g === 0.5 ? [] : [g === 0 ? p : { ...p, chosen: p.rejected, rejected: p.chosen }]
    })
    writeJsonl(goldFile, gold)
    t.ok(gold.length > 0, `${gold.length} of the 40 held-out pairs gold does not tie`)
    const data = { max_length: 64, chat_template: false, check_text: false }
    const rm = await train({ algorithm: 'reward', output_dir: out, name: 'rm', policy: { path: path.join(dir, 'sft', 'model') }, data: { train: trainFile, eval: heldFile, ...data }, training: { batch_size: 16, max_steps: 3 }, logging: { progress: 'none' } })
    t.equal(rm.metrics.eval_gold_pairs, gold.length)
    const onGold = await train({ algorithm: 'eval', output_dir: out, name: 'rm_on_gold', policy: { path: rm.model!, scalar_head: true }, data: { train: goldFile, ...data }, logging: { progress: 'none' } })
    t.equal(rm.metrics.eval_gold_pair_accuracy, onGold.metrics.accuracy, 'the same accuracy as an eval of the gold-labelled file')
    t.ok(close(rm.metrics.eval_gold_pair_accuracy_stderr, Math.sqrt((onGold.metrics.accuracy * (1 - onGold.metrics.accuracy)) / gold.length)))
    t.equal(onGold.metrics.gold_pair_accuracy, onGold.metrics.accuracy, 'pairs already gold-labelled relabel to themselves')
  })
})

t.test('the shrink covers every stage of examples/validation.yaml', async (t) => {
  const stages = exampleStages('validation.yaml')
  t.same(stages.slice(0, 2).map((s) => s.name), ['farm', 'sft'], 'the farm and SFT first')
  const sets = shrinkValidation()
  for (const [i, s] of stages.entries()) if (s.run.algorithm !== 'farm') t.ok(sets.some((x) => x.startsWith(`stages[${i}].run.`)), `${s.name} is shrunk`)
})
