// What a comparison of methods reports: the table of win-rates an evaluated
// pipeline measured, the leaderboard, the Spearman rank correlation between
// the pool's and gold's rankings, and report.html with charts that vega-lite
// renders to SVG in Node.
import fs from 'node:fs'
import path from 'node:path'
import { Rng } from '../util/rng.js'
import { writeFileAtomic } from '../util/fs.js'
import { winRateOf } from './farm.js'
import { mean } from '../util/stats.js'

/** One evaluated policy: an `eval_<policy>` stage that measured win-rates against references. */
export interface PolicyRow {
  policy: string
  stage: string
  /** By the gold evaluator (farm instructions) or the configured judge. */
  winRate: number
  stderr: number
  n: number
  poolWinRate?: number
  poolStderr?: number
  judgeWinRate?: number
  judgeStderr?: number
  goldScore?: number
  /** Mean reward-model score of the evaluated responses, when the eval stage had a reward model. */
  reward?: number
  /** KL(policy || reference) per response, when the eval stage had a reference model. */
  kl?: number
  responseLength?: number
}

interface StageLike {
  name: string
  metrics: Record<string, number>
}

/** The policies a pipeline's eval stages measured (stages named eval_<policy> give <policy>). */
export function policyTable(stages: readonly StageLike[]): PolicyRow[] {
  const rows: PolicyRow[] = []
  for (const s of stages) {
    const m = s.metrics
    if (m.win_rate === undefined) continue
    const row: PolicyRow = { policy: s.name.replace(/^eval_/, ''), stage: s.name, winRate: m.win_rate, stderr: m.win_rate_stderr, n: m.n }
    const optional: [keyof PolicyRow, string][] = [
      ['poolWinRate', 'pool_win_rate'],
      ['poolStderr', 'pool_win_rate_stderr'],
      ['judgeWinRate', 'judge_win_rate'],
      ['judgeStderr', 'judge_win_rate_stderr'],
      ['goldScore', 'gold_score'],
      ['reward', 'reward'],
      ['kl', 'kl'],
      ['responseLength', 'response_length'],
    ]
    for (const [key, metric] of optional) if (m[metric] !== undefined) (row as unknown as Record<string, number>)[key] = m[metric]
    rows.push(row)
  }
  return rows
}

const fmt = (x: number | undefined, digits = 3) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits))

/** A plain-text table of win-rates (what quickstart and compare print); reward and KL columns when measured. */
export function formatPolicyTable(rows: readonly PolicyRow[], extra: { seconds?: Record<string, number> } = {}): string {
  const columns: { title: string; cell: (r: PolicyRow) => string }[] = [
    { title: 'policy', cell: (r) => r.policy },
    { title: 'win-rate (gold)', cell: (r) => `${fmt(r.winRate)} ± ${fmt(r.stderr)}` },
    { title: 'pool win-rate', cell: (r) => (r.poolWinRate === undefined ? '-' : `${fmt(r.poolWinRate)} ± ${fmt(r.poolStderr)}`) },
  ]
  if (rows.some((r) => r.reward !== undefined)) columns.push({ title: 'reward', cell: (r) => fmt(r.reward) })
  if (rows.some((r) => r.kl !== undefined)) columns.push({ title: 'KL', cell: (r) => fmt(r.kl, 2) })
  columns.push({ title: 'n', cell: (r) => String(r.n) })
  const seconds = extra.seconds
  if (seconds) columns.push({ title: 'wall s', cell: (r) => (seconds[r.policy] === undefined ? '-' : seconds[r.policy].toFixed(0)) })
  return textTable(
    columns.map((c) => c.title),
    rows.map((r) => columns.map((c) => c.cell(r))),
  )
}

/** A plain-text table: the first column left-aligned, the others right-aligned, a rule under the header. */
function textTable(header: readonly string[], lines: readonly string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)))
  const row = (cells: readonly string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')
  return [row(header), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.map(row)].join('\n')
}

/** Ranks with ties sharing their mean rank (1 = largest). */
/** A NaN would sort anywhere and count as a tie or a win at random: a correlation of such lists means nothing. */
function checkFinite(where: string, a: readonly number[], b: readonly number[]): void {
  for (const [name, xs] of [['a', a], ['b', b]] as const) {
    xs.forEach((x, i) => {
      if (typeof x !== 'number' || !Number.isFinite(x)) throw new Error(`${where}: ${name}[${i}] is ${typeof x === 'number' ? x : JSON.stringify(x)}; the lists must hold finite numbers`)
    })
  }
}

function ranks(xs: readonly number[]): number[] {
  const order = xs.map((x, i) => [x, i] as const).sort((a, b) => b[0] - a[0])
  const out = new Array<number>(xs.length)
  for (let i = 0; i < order.length; ) {
    let j = i
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++
    for (let k = i; k <= j; k++) out[order[k][1]] = (i + j) / 2 + 1
    i = j + 1
  }
  return out
}

/** Spearman's rank correlation (Pearson's r of the ranks; ties get mean ranks). */
export function spearman(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) throw new Error(`spearman: the two lists differ in length (${a.length} and ${b.length})`)
  if (a.length < 2) throw new Error('spearman: needs at least two items')
  checkFinite('spearman', a, b)
  const ra = ranks(a)
  const rb = ranks(b)
  const ma = mean(ra)
  const mb = mean(rb)
  let num = 0
  let da = 0
  let db = 0
  for (let i = 0; i < ra.length; i++) {
    num += (ra[i] - ma) * (rb[i] - mb)
    da += (ra[i] - ma) ** 2
    db += (rb[i] - mb) ** 2
  }
  return da === 0 || db === 0 ? 0 : num / Math.sqrt(da * db)
}

/**
 * Kendall's tau-b: (concordant - discordant pairs) / sqrt((n0 - ties in a)
 * (n0 - ties in b)), n0 = n(n-1)/2; 0 when either list is all ties.
 */
export function kendall(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) throw new Error(`kendall: the two lists differ in length (${a.length} and ${b.length})`)
  if (a.length < 2) throw new Error('kendall: needs at least two items')
  checkFinite('kendall', a, b)
  let concordant = 0
  let discordant = 0
  let tiesA = 0
  let tiesB = 0
  for (let i = 0; i < a.length; i++) {
    for (let j = i + 1; j < a.length; j++) {
      const da = Math.sign(a[i] - a[j])
      const db = Math.sign(b[i] - b[j])
      if (da === 0) tiesA++
      if (db === 0) tiesB++
      if (da * db > 0) concordant++
      else if (da * db < 0) discordant++
    }
  }
  const n0 = (a.length * (a.length - 1)) / 2
  const denominator = Math.sqrt((n0 - tiesA) * (n0 - tiesB))
  return denominator === 0 ? 0 : (concordant - discordant) / denominator
}

/** The q-quantile of the values (linear interpolation between order statistics, as R's type 7). */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) throw new Error('quantile: no values')
  if (!(q >= 0 && q <= 1)) throw new Error(`quantile: q must be in [0, 1]; got ${q}`)
  const sorted = [...values].sort((x, y) => x - y)
  const at = q * (sorted.length - 1)
  const lo = Math.floor(at)
  const hi = Math.min(lo + 1, sorted.length - 1)
  return sorted[lo] + (at - lo) * (sorted[hi] - sorted[lo])
}

/** One candidate setting of a method, measured on the validation instructions by one world's own judge. */
export interface SelectionCandidate {
  candidate: string
  winRate: number
  stderr: number
}

/** Which of a method's candidate settings a world chose, and what each scored on the validation instructions. */
export interface Selection {
  selected: string
  candidates: SelectionCandidate[]
}

/** Per world, for a method trained at several candidate settings: the setting that world's judge chose. */
export interface MethodSelection {
  simulated?: Selection
  human?: Selection
}

/** One method of a validation: its per-instruction outcomes (1 win, 0.5 tie, 0 loss) in each world. */
export interface ValidationOutcomes {
  method: string
  /** Trained on pool labels, judged by the evaluation pool. */
  simulated: readonly number[]
  /** Trained on gold labels, judged by gold. */
  human: readonly number[]
  selection?: MethodSelection
}

export interface ValidationMethod {
  method: string
  simulatedWinRate: number
  simulatedStderr: number
  humanWinRate: number
  humanStderr: number
  /** Only for a method chosen among candidate settings. */
  selection?: MethodSelection
}

/**
 * Chooses one of a method's candidate settings by its win-rate on the
 * validation instructions (AlpacaFarm's model selection: each world by its
 * own feedback, never on the evaluation instructions). The highest win-rate
 * wins; a tie goes to the candidate listed first.
 */
export function selectCandidate(candidates: readonly { candidate: string; outcomes: readonly number[] }[]): Selection {
  if (candidates.length === 0) throw new Error('selectCandidate: no candidates to choose from')
  const scored = candidates.map((c) => {
    if (c.outcomes.length === 0) throw new Error(`selectCandidate: candidate ${c.candidate} has no validation outcomes`)
    const w = winRateOf(c.outcomes)
    return { candidate: c.candidate, winRate: w.winRate, stderr: w.stderr }
  })
  const best = scored.reduce((a, b) => (b.winRate > a.winRate ? b : a))
  return { selected: best.candidate, candidates: scored }
}

/** AlpacaFarm's validation: how the simulated world's ranking of methods agrees with the human world's. */
export interface Validation {
  spearman: number
  kendall: number
  /** 95% percentile bootstrap interval of the Spearman correlation, resampling evaluation instructions. */
  spearmanInterval: [number, number]
  resamples: number
  instructions: number
  methods: ValidationMethod[]
}

/**
 * The validation of methods whose outcomes are aligned by instruction (item
 * i is the same evaluation instruction for every method in both worlds):
 * win-rates, Spearman and Kendall between the worlds' win-rates, and a
 * bootstrap interval of Spearman that resamples instructions (the same
 * resample for every method and both worlds).
 */
export function validationOf(outcomes: readonly ValidationOutcomes[], options: { resamples?: number; seed?: number } = {}): Validation {
  if (outcomes.length < 3) throw new Error(`validation: needs at least three methods to rank; got ${outcomes.length}`)
  const n = outcomes[0].simulated.length
  for (const o of outcomes) {
    if (o.simulated.length !== n || o.human.length !== n) {
      throw new Error(`validation: every method needs an outcome for each of the ${n} instructions in both worlds; ${o.method} has ${o.simulated.length} simulated and ${o.human.length} human`)
    }
  }
  const methods = outcomes.map((o) => {
    const sim = winRateOf(o.simulated)
    const hum = winRateOf(o.human)
    return { method: o.method, simulatedWinRate: sim.winRate, simulatedStderr: sim.stderr, humanWinRate: hum.winRate, humanStderr: hum.stderr, ...(o.selection ? { selection: o.selection } : {}) }
  })
  const sim = methods.map((m) => m.simulatedWinRate)
  const hum = methods.map((m) => m.humanWinRate)
  const resamples = options.resamples ?? 1000
  if (!Number.isInteger(resamples) || resamples < 1) throw new Error(`validation: resamples must be a positive integer; got ${resamples}`)
  const rng = new Rng(options.seed ?? 0)
  const draws: number[] = []
  const pick = new Int32Array(n)
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < n; i++) pick[i] = rng.int(n)
    const mean = (xs: readonly number[]) => {
      let sum = 0
      for (let i = 0; i < n; i++) sum += xs[pick[i]]
      return sum / n
    }
    draws.push(spearman(outcomes.map((o) => mean(o.simulated)), outcomes.map((o) => mean(o.human))))
  }
  return {
    spearman: spearman(sim, hum),
    kendall: kendall(sim, hum),
    spearmanInterval: [quantile(draws, 0.025), quantile(draws, 0.975)],
    resamples,
    instructions: n,
    methods,
  }
}

/** What a validation reads of an eval stage: its name and run directory (outputs.jsonl). */
interface EvalStageLike {
  name: string
  runDir: string
}

/** An eval stage on the evaluation instructions: eval_<world>_<method>, eval_<method> (both worlds), or eval_<world>_<method>__<candidate>. */
const WORLD_EVAL = /^eval_(simulated|human)_(.+?)(?:__(.+))?$/
/** A candidate's evaluation on the validation instructions, by which its world chooses it: select_<world>_<method>__<candidate>. */
const SELECTION_STAGE = /^select_(simulated|human)_(.+?)__(.+)$/

/** Per-prompt outcomes of one column (pool_outcome or gold_outcome) of an eval stage's outputs.jsonl. */
function stageOutcomes(stage: EvalStageLike, column: 'pool_outcome' | 'gold_outcome'): Map<string, number> {
  const file = path.join(stage.runDir, 'outputs.jsonl')
  if (!fs.existsSync(file)) throw new Error(`validation: ${stage.name} wrote no ${file}`)
  const out = new Map<string, number>()
  fs.readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (!line.trim()) return
      const row = JSON.parse(line) as Record<string, unknown>
      const v = row[column]
      if (typeof row.prompt !== 'string' || typeof v !== 'number') throw new Error(`${file}:${i + 1}: validation needs a prompt string and a ${column} number in each row (farm instructions with references)`)
      out.set(row.prompt, v)
    })
  return out
}

/**
 * The stage whose evaluation stands for `method` in one world, and, when the
 * method was trained at candidate settings, the world's choice among them:
 * eval_<world>_<method> (or eval_<method>, shared by both worlds), else the
 * eval_<world>_<method>__<candidate> whose select_<world>_<method>__<candidate>
 * won on the validation instructions by the world's own judge.
 */
function worldStage(evals: readonly EvalStageLike[], selections: readonly EvalStageLike[], world: 'simulated' | 'human', method: string): { stage: EvalStageLike; selection?: Selection } {
  const byName = new Map(evals.map((s) => [s.name, s]))
  const plain = byName.get(`eval_${world}_${method}`) ?? byName.get(`eval_${method}`)
  const candidates = evals.filter((s) => {
    const m = WORLD_EVAL.exec(s.name)
    return m !== null && m[1] === world && m[2] === method && m[3] !== undefined
  })
  if (plain && candidates.length > 0) throw new Error(`validation: ${method} in the ${world} world has both ${plain.name} and candidate settings (${candidates.map((c) => c.name).join(', ')}); give one or the other`)
  if (plain) return { stage: plain }
  if (candidates.length === 0) throw new Error(`validation: no stage evaluates ${method} in the ${world} world (name it eval_${world}_${method}, or eval_${method} when both worlds share the method)`)
  const column = world === 'simulated' ? 'pool_outcome' : 'gold_outcome'
  const selectionOf = new Map(selections.map((s) => [s.name, s]))
  const scored = candidates.map((c) => {
    const candidate = WORLD_EVAL.exec(c.name)![3]
    const name = `select_${world}_${method}__${candidate}`
    const sel = selectionOf.get(name)
    if (!sel) throw new Error(`validation: ${c.name} is a candidate setting of ${method} but no ${name} stage measures it on the validation instructions`)
    return { candidate, stage: c, outcomes: [...stageOutcomes(sel, column).values()] }
  })
  const selection = selectCandidate(scored)
  return { stage: scored.find((c) => c.candidate === selection.selected)!.stage, selection }
}

/**
 * The validation of a pipeline whose eval stages are named
 * eval_simulated_<method> and eval_human_<method> (and eval_<method> for a
 * method both worlds share): the simulated world's pool outcomes against the
 * human world's gold outcomes, aligned by evaluation instruction. A method
 * trained at several candidate settings has eval_<world>_<method>__<candidate>
 * stages, and select_<world>_<method>__<candidate> stages that evaluate the
 * same policies on validation instructions (farm.validation_size), apart from
 * the evaluation ones: each world takes the candidate its own judge (the
 * pool in the simulated world, gold in the human one) prefers there.
 * Undefined when the pipeline has no such stages.
 */
export function pipelineValidation(stages: readonly EvalStageLike[], options: { resamples?: number; seed?: number } = {}): Validation | undefined {
  const evals = stages.filter((s) => s.name.startsWith('eval_'))
  const selections = stages.filter((s) => SELECTION_STAGE.test(s.name))
  const worldNames = evals.map((s) => WORLD_EVAL.exec(s.name)).filter((m) => m !== null)
  if (worldNames.length === 0) return undefined
  const methods = [...new Set([...worldNames.map((m) => m[2]), ...evals.filter((s) => !WORLD_EVAL.test(s.name)).map((s) => s.name.slice('eval_'.length))])]
  const columns = methods.map((method) => {
    const simulated = worldStage(evals, selections, 'simulated', method)
    const human = worldStage(evals, selections, 'human', method)
    const selection: MethodSelection = { ...(simulated.selection ? { simulated: simulated.selection } : {}), ...(human.selection ? { human: human.selection } : {}) }
    return {
      method,
      simulated: stageOutcomes(simulated.stage, 'pool_outcome'),
      human: stageOutcomes(human.stage, 'gold_outcome'),
      ...(simulated.selection || human.selection ? { selection } : {}),
    }
  })
  const prompts = [...columns[0].simulated.keys()]
  const evalPrompts = new Set(prompts)
  // Choosing on the instructions the validation then measures would tune on the test.
  for (const s of selections) {
    const [, world, method, candidate] = SELECTION_STAGE.exec(s.name)!
    if (!evals.some((e) => e.name === `eval_${world}_${method}__${candidate}`)) throw new Error(`validation: ${s.name} measures a setting that no eval_${world}_${method}__${candidate} stage evaluates`)
    const overlap = [...stageOutcomes(s, 'gold_outcome').keys()].find((p) => evalPrompts.has(p))
    if (overlap !== undefined) throw new Error(`validation: ${s.name} chooses on the evaluation instruction ${JSON.stringify(overlap)}; selection needs instructions apart from the evaluation ones (farm.validation_size)`)
  }
  const aligned = columns.map((c) => {
    const pick = (m: Map<string, number>, world: string) =>
      prompts.map((p) => {
        const v = m.get(p)
        if (v === undefined) throw new Error(`validation: ${c.method} (${world}) has no outcome for the evaluation instruction ${JSON.stringify(p)}; every method must be evaluated on the same instructions`)
        return v
      })
    return { method: c.method, simulated: pick(c.simulated, 'simulated'), human: pick(c.human, 'human'), ...(c.selection ? { selection: c.selection } : {}) }
  })
  return validationOf(aligned, options)
}

/** One line per method and world that chose among candidate settings: the choice and each candidate's validation win-rate. */
export function selectionLines(v: Validation): string[] {
  return v.methods.flatMap((m) =>
    (['simulated', 'human'] as const).flatMap((world) => {
      const s = m.selection?.[world]
      if (!s) return []
      const judge = world === 'simulated' ? 'the pool' : 'gold'
      return [`${m.method} (${world}): ${s.selected} chosen; validation win-rates by ${judge}: ${s.candidates.map((c) => `${c.candidate} ${fmt(c.winRate)} ± ${fmt(c.stderr)}`).join(', ')}`]
    }),
  )
}

/** Both worlds' leaderboards side by side (sorted by the human world's win-rate), with the rank correlations. */
export function formatValidation(v: Validation): string {
  const simRanks = ranks(v.methods.map((m) => m.simulatedWinRate))
  const humRanks = ranks(v.methods.map((m) => m.humanWinRate))
  const rows = v.methods.map((m, i) => ({ m, sim: simRanks[i], hum: humRanks[i] })).sort((a, b) => b.m.humanWinRate - a.m.humanWinRate)
  const header = ['method', 'simulated (pool labels, pool judge)', 'rank', 'human (gold labels, gold judge)', 'rank']
  const lines = rows.map((r) => [r.m.method, `${fmt(r.m.simulatedWinRate)} ± ${fmt(r.m.simulatedStderr)}`, String(r.sim), `${fmt(r.m.humanWinRate)} ± ${fmt(r.m.humanStderr)}`, String(r.hum)])
  return [
    textTable(header, lines),
    '',
    `simulated vs human over ${v.methods.length} methods: Spearman ${v.spearman.toFixed(3)} (95% bootstrap interval over ${v.instructions} instructions ${v.spearmanInterval[0].toFixed(3)} to ${v.spearmanInterval[1].toFixed(3)}), Kendall ${v.kendall.toFixed(3)}`,
    ...(selectionLines(v).length > 0 ? ['', 'settings each world chose on its validation instructions:', ...selectionLines(v)] : []),
  ].join('\n')
}

/** Simulated against human win-rates, one labelled point per method (AlpacaFarm's validation figure). */
export function validationChart(v: Validation): Record<string, unknown> {
  const values = v.methods.map((m) => ({ ...m, simLo: m.simulatedWinRate - 1.96 * m.simulatedStderr, simHi: m.simulatedWinRate + 1.96 * m.simulatedStderr, humLo: m.humanWinRate - 1.96 * m.humanStderr, humHi: m.humanWinRate + 1.96 * m.humanStderr }))
  const x = { field: 'humanWinRate', type: 'quantitative', title: 'human world: win-rate (gold labels, gold judge)', scale: { zero: false } }
  const y = { field: 'simulatedWinRate', type: 'quantitative', title: 'simulated world: win-rate (pool labels, pool judge)', scale: { zero: false } }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: `Simulated against human win-rates (Spearman ${v.spearman.toFixed(3)}, Kendall ${v.kendall.toFixed(3)}; 95% intervals)`,
    width: 420,
    height: 420,
    data: { values },
    layer: [
      { mark: { type: 'errorbar', ticks: false }, encoding: { x: { ...x, field: 'humLo' }, x2: { field: 'humHi' }, y, color: { value: '#999' } } },
      { mark: { type: 'errorbar', ticks: false }, encoding: { y: { ...y, field: 'simLo' }, y2: { field: 'simHi' }, x, color: { value: '#999' } } },
      { mark: { type: 'point', filled: true, size: 60 }, encoding: { x, y } },
      { mark: { type: 'text', align: 'left', dx: 6, dy: -6, fontSize: 10 }, encoding: { x, y, text: { field: 'method' } } },
    ],
  }
}

/** A reward model's held-out accuracy: on the labels it was trained from (the pool's, noisy) and on gold-labelled pairs. */
export interface RewardModelAccuracy {
  stage: string
  accuracy?: number
  goldAccuracy: number
  goldStderr: number
  goldPairs: number
}

/** The reward models a pipeline trained or evaluated that were measured against gold-labelled pairs. */
export function rewardModelAccuracies(stages: readonly StageLike[]): RewardModelAccuracy[] {
  return stages.flatMap((s) => {
    const m = s.metrics
    // A reward stage's held-out metrics are eval_*; an eval stage of a reward model has them bare.
    const p = m.eval_gold_pair_accuracy !== undefined ? 'eval_' : m.gold_pair_accuracy !== undefined ? '' : undefined
    if (p === undefined) return []
    const accuracy = m[`${p}accuracy`]
    return [{ stage: s.name, ...(accuracy === undefined ? {} : { accuracy }), goldAccuracy: m[`${p}gold_pair_accuracy`], goldStderr: m[`${p}gold_pair_accuracy_stderr`], goldPairs: m[`${p}gold_pairs`] }]
  })
}

/** One line per reward model: held-out accuracy on the pool's labels beside accuracy on gold labels. */
export function formatRewardModels(list: readonly RewardModelAccuracy[]): string {
  return list
    .map((r) => `reward model ${r.stage}: held-out accuracy ${fmt(r.accuracy)} on its training labels, ${fmt(r.goldAccuracy)} ± ${fmt(r.goldStderr)} on gold labels (${r.goldPairs} pairs)`)
    .join('\n')
}

export interface LeaderboardEntry {
  method: string
  winRate: number
  stderr: number
  poolWinRate?: number
  poolStderr?: number
  reward?: number
  kl?: number
  seconds?: number
  n: number
}

export interface Leaderboard {
  name: string
  entries: LeaderboardEntry[]
  /** Spearman rank correlation between the pool's and gold's rankings of the methods (three methods or more). */
  poolGoldSpearman?: number
  /** Methods whose gold win-rate is above the baseline's by more than two standard errors of the difference. */
  baseline?: string
  aboveBaseline?: string[]
  /** Reward models' held-out accuracy on their training labels and on gold-labelled pairs. */
  rewardModels?: RewardModelAccuracy[]
}

/**
 * The leaderboard of a compare pipeline: one entry per evaluated policy,
 * sorted by gold win-rate; a method's wall time is its training stage's
 * (the stage named like the method); `kl` and `reward` fall back on that
 * stage's kl_bound (best-of-n's analytic log n - (n - 1)/n) and best_score.
 */
export function makeLeaderboard(name: string, stages: readonly (StageLike & { seconds?: number })[], baseline = 'sft'): Leaderboard {
  const byName = new Map(stages.map((s) => [s.name, s]))
  // Selection stages measure other instructions (the validation split): not the leaderboard's.
  const entries: LeaderboardEntry[] = policyTable(stages.filter((s) => !SELECTION_STAGE.test(s.name))).map((r) => {
    const trained = byName.get(r.policy)
    const e: LeaderboardEntry = { method: r.policy, winRate: r.winRate, stderr: r.stderr, n: r.n }
    if (r.poolWinRate !== undefined) Object.assign(e, { poolWinRate: r.poolWinRate, poolStderr: r.poolStderr })
    // Best-of-n's responses are judged from a file: its reward is the stage's best_score.
    const reward = r.reward ?? trained?.metrics.best_score
    if (reward !== undefined) e.reward = reward
    const kl = r.kl ?? trained?.metrics.kl_bound
    if (kl !== undefined) e.kl = kl
    if (trained?.seconds !== undefined) e.seconds = trained.seconds
    return e
  })
  entries.sort((a, b) => b.winRate - a.winRate)
  const board: Leaderboard = { name, entries }
  const rewardModels = rewardModelAccuracies(stages)
  if (rewardModels.length > 0) board.rewardModels = rewardModels
  const pooled = entries.filter((e) => e.poolWinRate !== undefined)
  // Two methods' ranks correlate at +1 or -1 and nothing between: too few to say anything.
  if (pooled.length >= 3) board.poolGoldSpearman = spearman(pooled.map((e) => e.winRate), pooled.map((e) => e.poolWinRate!))
  const base = entries.find((e) => e.method === baseline)
  if (base) {
    board.baseline = baseline
    board.aboveBaseline = entries.filter((e) => e !== base && e.winRate - base.winRate > 2 * Math.hypot(e.stderr, base.stderr)).map((e) => e.method)
  }
  return board
}

/** A vega-lite spec rendered to an SVG string (vega's headless renderer). */
export async function renderSvg(spec: Record<string, unknown>): Promise<string> {
  const vega = await import('vega')
  const vl = await import('vega-lite')
  const view = new vega.View(vega.parse(vl.compile(spec as never).spec), { renderer: 'none' })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}

/** Win-rates by gold and by the pool, with ± 1.96 standard-error bars. */
export function winRateChart(entries: readonly LeaderboardEntry[]): Record<string, unknown> {
  const values = entries.flatMap((e) => [
    { method: e.method, judge: 'gold', winRate: e.winRate, lo: e.winRate - 1.96 * e.stderr, hi: e.winRate + 1.96 * e.stderr },
    ...(e.poolWinRate !== undefined ? [{ method: e.method, judge: 'pool', winRate: e.poolWinRate, lo: e.poolWinRate - 1.96 * e.poolStderr!, hi: e.poolWinRate + 1.96 * e.poolStderr! }] : []),
  ])
  const x = { field: 'method', type: 'nominal', sort: entries.map((e) => e.method), title: null }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Win-rate against the reference outputs (95% intervals)',
    width: 60 * Math.max(entries.length, 3),
    height: 260,
    data: { values },
    encoding: { x, xOffset: { field: 'judge' }, color: { field: 'judge', type: 'nominal', title: 'judged by' } },
    layer: [
      { mark: 'bar', encoding: { y: { field: 'winRate', type: 'quantitative', title: 'win-rate', scale: { domain: [0, 1] } } } },
      { mark: { type: 'errorbar', ticks: true }, encoding: { y: { field: 'lo', type: 'quantitative', title: 'win-rate' }, y2: { field: 'hi' }, color: { value: 'black' } } },
      { mark: { type: 'rule', strokeDash: [4, 4] }, data: { values: [{ half: 0.5 }] }, encoding: { y: { field: 'half', type: 'quantitative' }, color: { value: 'gray' }, x: null, xOffset: null } },
    ],
  }
}

/** Curves of a training run's metrics.jsonl (one panel per metric, steps on x). */
export function curvesChart(title: string, points: readonly { step: number; metric: string; value: number }[]): Record<string, unknown> {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values: points },
    facet: { field: 'metric', type: 'nominal', title: null },
    columns: 3,
    spec: { width: 220, height: 140, mark: { type: 'line', point: false }, encoding: { x: { field: 'step', type: 'quantitative' }, y: { field: 'value', type: 'quantitative', scale: { zero: false } } } },
    resolve: { scale: { y: 'independent' } },
  }
}

/** Points of the named metrics from a run's metrics.jsonl. */
export function readCurves(metricsFile: string, names: readonly string[]): { step: number; metric: string; value: number }[] {
  if (!fs.existsSync(metricsFile)) return []
  const points: { step: number; metric: string; value: number }[] = []
  for (const line of fs.readFileSync(metricsFile, 'utf8').split('\n')) {
    if (!line.trim()) continue
    const row = JSON.parse(line) as Record<string, number>
    for (const n of names) if (typeof row[n] === 'number' && Number.isFinite(row[n])) points.push({ step: row.step, metric: n, value: row[n] })
  }
  return points
}

const escapeHtml = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)

/** report.html: the leaderboard table and the charts (inline SVG, no scripts). */
export function reportHtml(board: Leaderboard, charts: { title: string; svg: string }[], validation?: Validation): string {
  const rows = board.entries
    .map(
      (e) =>
        `<tr><td>${escapeHtml(e.method)}</td><td>${fmt(e.winRate)} ± ${fmt(e.stderr)}</td><td>${e.poolWinRate === undefined ? '-' : `${fmt(e.poolWinRate)} ± ${fmt(e.poolStderr)}`}</td><td>${fmt(e.reward)}</td><td>${fmt(e.kl, 2)}</td><td>${e.seconds === undefined ? '-' : e.seconds.toFixed(0)}</td><td>${e.n}</td></tr>`,
    )
    .join('\n')
  const spearmanLine = board.poolGoldSpearman === undefined ? '' : `<p>Spearman rank correlation between the pool's and gold's rankings: <b>${board.poolGoldSpearman.toFixed(3)}</b></p>`
  const rewardLines = (board.rewardModels ?? []).map((r) => `<p>${escapeHtml(formatRewardModels([r]))}</p>`).join('\n')
  const validationSection = validation
    ? `<h2>Validation: simulated against human</h2>
<table><thead><tr><th>method</th><th>simulated win-rate</th><th>human win-rate</th></tr></thead>
<tbody>
${validation.methods.map((m) => `<tr><td>${escapeHtml(m.method)}</td><td>${fmt(m.simulatedWinRate)} ± ${fmt(m.simulatedStderr)}</td><td>${fmt(m.humanWinRate)} ± ${fmt(m.humanStderr)}</td></tr>`).join('\n')}
</tbody></table>
<p>Spearman <b>${validation.spearman.toFixed(3)}</b> (95% bootstrap interval over ${validation.instructions} evaluation instructions: ${validation.spearmanInterval[0].toFixed(3)} to ${validation.spearmanInterval[1].toFixed(3)}), Kendall <b>${validation.kendall.toFixed(3)}</b>, over ${validation.methods.length} methods</p>${
        selectionLines(validation).length > 0 ? `\n<p>Settings each world chose on its validation instructions:</p>\n<ul>${selectionLines(validation).map((l) => `<li>${escapeHtml(l)}</li>`).join('')}</ul>` : ''
      }`
    : ''
  const baselineLine = board.baseline ? `<p>Above ${escapeHtml(board.baseline)} by more than two standard errors (gold): ${board.aboveBaseline!.map(escapeHtml).join(', ') || 'none'}</p>` : ''
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rlfarm: ${escapeHtml(board.name)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:72em}table{border-collapse:collapse}td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}figure{margin:2em 0}</style>
</head><body>
<h1>rlfarm: ${escapeHtml(board.name)}</h1>
<table><thead><tr><th>method</th><th>win-rate (gold)</th><th>win-rate (pool)</th><th>reward</th><th>KL to SFT</th><th>wall s</th><th>n</th></tr></thead>
<tbody>
${rows}
</tbody></table>
${spearmanLine}
${baselineLine}
${rewardLines}
${validationSection}
${charts.map((c) => `<figure><figcaption>${escapeHtml(c.title)}</figcaption>\n${c.svg}\n</figure>`).join('\n')}
</body></html>
`
}

/** Writes leaderboard.json, report.html and, for a validation, validation.json into `dir`; returns their paths. */
export async function writeReport(
  dir: string,
  board: Leaderboard,
  curves: { title: string; metricsFile: string; metrics: string[] }[],
  validation?: Validation,
): Promise<{ leaderboard: string; report: string; validation?: string }> {
  const charts = [{ title: 'Win-rates', svg: await renderSvg(winRateChart(board.entries)) }]
  if (validation) charts.unshift({ title: 'Simulated against human win-rates', svg: await renderSvg(validationChart(validation)) })
  for (const c of curves) {
    const points = readCurves(c.metricsFile, c.metrics)
    if (points.length > 0) charts.push({ title: c.title, svg: await renderSvg(curvesChart(c.title, points)) })
  }
  const leaderboard = path.join(dir, 'leaderboard.json')
  const report = path.join(dir, 'report.html')
  writeFileAtomic(leaderboard, `${JSON.stringify(board, null, 2)}\n`)
  writeFileAtomic(report, reportHtml(board, charts, validation))
  if (!validation) return { leaderboard, report }
  const validationFile = path.join(dir, 'validation.json')
  writeFileAtomic(validationFile, `${JSON.stringify(validation, null, 2)}\n`)
  return { leaderboard, report, validation: validationFile }
}
