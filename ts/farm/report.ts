// What a comparison of methods reports: the table of win-rates an evaluated
// pipeline measured, the leaderboard, the Spearman rank correlation between
// the pool's and gold's rankings, and report.html with charts that vega-lite
// renders to SVG in Node.
import fs from 'node:fs'
import path from 'node:path'
import { writeFileAtomic } from '../util/fs.js'

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
  const lines = rows.map((r) => columns.map((c) => c.cell(r)))
  const header = columns.map((c) => c.title)
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)))
  const row = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')
  return [row(header), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.map(row)].join('\n')
}

/** Ranks with ties sharing their mean rank (1 = largest). */
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
  const ra = ranks(a)
  const rb = ranks(b)
  const mean = (x: number[]) => x.reduce((s, v) => s + v, 0) / x.length
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
}

/**
 * The leaderboard of a compare pipeline: one entry per evaluated policy,
 * sorted by gold win-rate; a method's wall time is its training stage's
 * (the stage named like the method); `kl` and `reward` fall back on that
 * stage's kl_bound (best-of-n's analytic log n - (n - 1)/n) and best_score.
 */
export function makeLeaderboard(name: string, stages: readonly (StageLike & { seconds?: number })[], baseline = 'sft'): Leaderboard {
  const byName = new Map(stages.map((s) => [s.name, s]))
  const entries: LeaderboardEntry[] = policyTable(stages).map((r) => {
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
export function reportHtml(board: Leaderboard, charts: { title: string; svg: string }[]): string {
  const rows = board.entries
    .map(
      (e) =>
        `<tr><td>${escapeHtml(e.method)}</td><td>${fmt(e.winRate)} ± ${fmt(e.stderr)}</td><td>${e.poolWinRate === undefined ? '-' : `${fmt(e.poolWinRate)} ± ${fmt(e.poolStderr)}`}</td><td>${fmt(e.reward)}</td><td>${fmt(e.kl, 2)}</td><td>${e.seconds === undefined ? '-' : e.seconds.toFixed(0)}</td><td>${e.n}</td></tr>`,
    )
    .join('\n')
  const spearmanLine = board.poolGoldSpearman === undefined ? '' : `<p>Spearman rank correlation between the pool's and gold's rankings: <b>${board.poolGoldSpearman.toFixed(3)}</b></p>`
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
${charts.map((c) => `<figure><figcaption>${escapeHtml(c.title)}</figcaption>\n${c.svg}\n</figure>`).join('\n')}
</body></html>
`
}

/** Writes leaderboard.json and report.html into `dir`; returns their paths. */
export async function writeReport(dir: string, board: Leaderboard, curves: { title: string; metricsFile: string; metrics: string[] }[]): Promise<{ leaderboard: string; report: string }> {
  const charts = [{ title: 'Win-rates', svg: await renderSvg(winRateChart(board.entries)) }]
  for (const c of curves) {
    const points = readCurves(c.metricsFile, c.metrics)
    if (points.length > 0) charts.push({ title: c.title, svg: await renderSvg(curvesChart(c.title, points)) })
  }
  const leaderboard = path.join(dir, 'leaderboard.json')
  const report = path.join(dir, 'report.html')
  writeFileAtomic(leaderboard, `${JSON.stringify(board, null, 2)}\n`)
  writeFileAtomic(report, reportHtml(board, charts))
  return { leaderboard, report }
}
