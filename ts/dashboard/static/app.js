// The dashboard page: runs, live curves, sample outputs and comparisons.
// State comes from the server's event stream (/api/events): a `runs` event
// with every run and comparison, `metrics` events with the rows appended to a
// run's metrics.jsonl. The chart is a vega-lite spec; new rows go into its
// data with a changeset, so it grows without being rebuilt.
/* global vega, vegaLite */
'use strict'

const state = {
  runs: new Map(), // id -> summary
  rows: new Map(), // id -> [{ step, metric: value ... }]
  selected: new Set(),
  touched: false, // the user chose runs: stop selecting new ones automatically
  metric: '',
  metricChosen: false, // the user picked the metric: keep it while the selected runs have it
  compares: [],
  outputsRun: '',
  view: null,
  smoothing: 0, // EMA weight, as TensorBoard's smoothing slider
  ema: new Map(), // id -> { last, n }: the smoothing state of each charted run
  viewKey: '',
}

const PREFERRED = ['score', 'reward', 'loss', 'kl', 'eval_win_rate', 'accuracy']
const $ = (sel) => document.querySelector(sel)

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v)
    else if (v !== undefined && v !== false) e.setAttribute(k, v === true ? '' : v)
  }
  for (const c of children) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c))
  return e
}

const fileUrl = (id, name) => `/files/${(id === '.' ? [name] : [...id.split('/'), name]).map(encodeURIComponent).join('/')}`
const fmt = (x, digits = 3) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(digits) : '-')

function ago(iso) {
  if (!iso) return ''
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000)
  if (s < 60) return `${s.toFixed(0)} s ago`
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`
  if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`
  return new Date(iso).toLocaleString()
}

// ---- runs table ----

function renderRuns() {
  const body = $('#runs tbody')
  body.replaceChildren()
  const runs = [...state.runs.values()]
  $('#no-runs').hidden = runs.length > 0
  for (const r of runs) {
    const box = el('input', { type: 'checkbox', 'data-run': r.id, disabled: r.rows === 0 ? true : undefined })
    box.checked = state.selected.has(r.id)
    box.addEventListener('change', () => {
      state.touched = true
      if (box.checked) state.selected.add(r.id)
      else state.selected.delete(r.id)
      renderMetricChoices()
      renderChart()
    })
    const name = el('td', {}, el('span', { title: r.id }, r.id === '.' ? r.name : r.id))
    if (r.hasConfig) name.append(' ', el('a', { href: fileUrl(r.id, 'config.yaml'), target: '_blank' }, 'config'))
    if (r.error) name.append(el('div', { class: 'problem' }, r.error))
    if (r.problem) name.append(el('div', { class: 'problem' }, r.problem))
    body.append(
      el('tr', { 'data-run': r.id },
        el('td', {}, box),
        name,
        el('td', {}, r.algorithm || '-'),
        el('td', {}, el('span', { class: `badge ${r.state}` }, r.state)),
        el('td', { class: 'num step' }, String(r.step)),
        el('td', { class: 'updated' }, ago(r.updatedAt)),
      ),
    )
  }
}

// ---- curves ----

function metricNames() {
  const names = []
  const seen = new Set()
  for (const id of state.selected) for (const m of state.runs.get(id)?.metrics ?? []) if (!seen.has(m)) (seen.add(m), names.push(m))
  return names
}

// The metric most selected runs have; among those, a usual one (PREFERRED), else the first logged.
function defaultMetric(names) {
  const count = (m) => [...state.selected].filter((id) => state.runs.get(id)?.metrics.includes(m)).length
  const rank = (m) => (PREFERRED.includes(m) ? PREFERRED.indexOf(m) : PREFERRED.length + names.indexOf(m))
  return [...names].sort((a, b) => count(b) - count(a) || rank(a) - rank(b))[0] ?? ''
}

function renderMetricChoices() {
  const names = metricNames()
  if (!state.metricChosen || !names.includes(state.metric)) (state.metric = defaultMetric(names)), (state.metricChosen = false)
  const select = $('#metric')
  const current = [...select.options].map((o) => o.value).join('\n')
  if (current !== names.join('\n')) select.replaceChildren(...names.map((m) => el('option', { value: m }, m)))
  select.value = state.metric
}

// Chart points of a run's rows; with smoothing, a debiased exponential moving average that continues across calls.
function pointsOf(id, rows) {
  const points = []
  const w = state.smoothing
  let ema = state.ema.get(id) ?? { last: 0, n: 0 }
  for (const row of rows) {
    const raw = row[state.metric]
    if (typeof raw !== 'number') continue
    ema = { last: ema.last * w + (1 - w) * raw, n: ema.n + 1 }
    points.push({ run: id, step: row.step, value: w > 0 ? ema.last / (1 - w ** ema.n) : raw, raw })
  }
  state.ema.set(id, ema)
  return points
}

// The selected runs that have logged the chosen metric, and a key that changes when they or it do.
function chartRuns() {
  const ids = [...state.selected].filter((id) => state.rows.get(id)?.length && state.runs.get(id)?.metrics.includes(state.metric))
  return { ids, key: `${state.metric}\n${ids.join('\n')}` }
}

function renderChart() {
  const { ids, key } = chartRuns()
  if (key === state.viewKey) return
  state.viewKey = key
  if (state.view) state.view.finalize()
  state.view = null
  const container = $('#chart')
  container.replaceChildren()
  state.ema.clear()
  const points = state.metric ? ids.flatMap((id) => pointsOf(id, state.rows.get(id))) : []
  $('#no-curves').hidden = points.length > 0
  if (!state.metric || ids.length === 0) return
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: Math.max(400, Math.min(1100, container.clientWidth - 200)),
    height: 300,
    data: { name: 'points' },
    // Dots only where there are few points: on a long run they hide the line.
    mark: { type: 'line', point: points.length <= 200 * ids.length ? { size: 18 } : false, tooltip: true },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'value', type: 'quantitative', title: state.metric, scale: { zero: false } },
      color: { field: 'run', type: 'nominal', title: 'run', scale: { domain: ids } },
    },
  }
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'svg', container, hover: true })
  state.view = view
  view.insert('points', points).runAsync()
}

function appendRows(id, rows, reset) {
  if (reset || !state.rows.has(id)) state.rows.set(id, [])
  state.rows.get(id).push(...rows)
  if (!state.touched && rows.length && !state.selected.has(id) && state.selected.size < 8) {
    state.selected.add(id)
    const box = document.querySelector(`#runs input[data-run="${CSS.escape(id)}"]`)
    if (box) (box.checked = true), (box.disabled = false)
  }
  renderMetricChoices()
  if (!reset && state.view && chartRuns().key === state.viewKey) {
    if (state.selected.has(id)) {
      const points = pointsOf(id, rows)
      if (points.length) state.view.insert('points', points).runAsync()
    }
  } else {
    state.viewKey = ''
    renderChart()
  }
  if (id === state.outputsRun) loadOutputs()
}

// ---- sample outputs ----

function renderOutputChoices() {
  const withOutputs = [...state.runs.values()].filter((r) => r.hasOutputs)
  const select = $('#outputs-run')
  const ids = withOutputs.map((r) => r.id)
  if (!ids.includes(state.outputsRun)) state.outputsRun = ids[ids.length - 1] ?? ''
  const current = [...select.options].map((o) => o.value).join('\n')
  if (current !== ids.join('\n')) select.replaceChildren(...ids.map((id) => el('option', { value: id }, id)))
  select.value = state.outputsRun
  if (!ids.length) $('#outputs').replaceChildren(el('p', {}, 'No run has written outputs.jsonl yet.'))
}

let outputsToken = 0
async function loadOutputs() {
  const id = state.outputsRun
  if (!id) return
  const token = ++outputsToken
  const res = await fetch(`/api/outputs?run=${encodeURIComponent(id)}&limit=20`)
  if (token !== outputsToken) return
  if (!res.ok) return $('#outputs').replaceChildren(el('p', { class: 'problem' }, await res.text()))
  const { rows } = await res.json()
  const keys = []
  for (const r of rows) for (const k of Object.keys(r)) if (!keys.includes(k) && keys.length < 8) keys.push(k)
  const cell = (v) => {
    if (typeof v === 'number') return el('td', { class: 'num' }, Number.isInteger(v) ? String(v) : v.toFixed(4))
    const text = typeof v === 'string' ? v : JSON.stringify(v)
    return el('td', {}, text === undefined ? '' : text.length > 2000 ? `${text.slice(0, 2000)}…` : text)
  }
  $('#outputs').replaceChildren(
    el('p', { class: 'hint' }, `the last ${rows.length === 1 ? 'row' : `${rows.length} rows`} of ${id}/outputs.jsonl`),
    el('table', {}, el('thead', {}, el('tr', {}, ...keys.map((k) => el('th', {}, k)))), el('tbody', {}, ...rows.map((r) => el('tr', {}, ...keys.map((k) => cell(r[k])))))),
  )
}

// ---- comparisons ----

const compareViews = []
function renderCompares() {
  $('#compare-section').hidden = state.compares.length === 0
  for (const v of compareViews.splice(0)) v.finalize()
  const holder = $('#compares')
  holder.replaceChildren()
  for (const c of state.compares) {
    const b = c.leaderboard
    const rows = b.entries.map((e) =>
      el('tr', {},
        el('td', {}, e.method),
        el('td', { class: 'num' }, `${fmt(e.winRate)} ± ${fmt(e.stderr)}`),
        el('td', { class: 'num' }, e.poolWinRate === undefined ? '-' : `${fmt(e.poolWinRate)} ± ${fmt(e.poolStderr)}`),
        el('td', { class: 'num' }, fmt(e.reward)),
        el('td', { class: 'num' }, fmt(e.kl, 2)),
        el('td', { class: 'num' }, e.seconds === undefined ? '-' : e.seconds.toFixed(0)),
        el('td', { class: 'num' }, String(e.n)),
      ),
    )
    const chart = el('div', { class: 'chart compare-chart' })
    const box = el('div', { class: 'compare', 'data-compare': c.id },
      el('h3', {}, c.name, ' ', c.hasReport ? el('a', { href: fileUrl(c.id, 'report.html'), target: '_blank' }, 'report.html') : undefined),
      el('table', {},
        el('thead', {}, el('tr', {}, ...['method', 'win-rate (gold)', 'win-rate (pool)', 'reward', 'KL to SFT', 'wall s', 'n'].map((t) => el('th', {}, t)))),
        el('tbody', {}, ...rows),
      ),
      b.poolGoldSpearman === undefined ? undefined : el('p', {}, `Spearman rank correlation between the pool's and gold's rankings: ${b.poolGoldSpearman.toFixed(3)}`),
      b.baseline ? el('p', {}, `Above ${b.baseline} by more than two standard errors (gold): ${b.aboveBaseline.join(', ') || 'none'}`) : undefined,
      chart,
    )
    holder.append(box)
    const view = new vega.View(vega.parse(vegaLite.compile(c.winRateSpec).spec), { renderer: 'svg', container: chart })
    compareViews.push(view)
    view.runAsync()
  }
}

// ---- the event stream ----

function onRuns(data) {
  $('#root').textContent = data.root
  const before = JSON.stringify([...state.runs.values()])
  state.runs = new Map(data.runs.map((r) => [r.id, r]))
  for (const id of [...state.selected]) if (!state.runs.has(id)) state.selected.delete(id)
  for (const id of [...state.rows.keys()]) if (!state.runs.has(id)) state.rows.delete(id)
  if (JSON.stringify(data.runs) !== before) renderRuns()
  const comparesKey = JSON.stringify(data.compares)
  if (comparesKey !== JSON.stringify(state.compares)) {
    state.compares = data.compares
    renderCompares()
  }
  renderMetricChoices()
  renderChart()
  const had = state.outputsRun
  renderOutputChoices()
  if (state.outputsRun && state.outputsRun !== had) loadOutputs()
}

function connect() {
  const live = $('#live')
  const events = new EventSource('/api/events')
  events.addEventListener('open', () => ((live.textContent = 'live'), (live.className = 'badge live')))
  events.addEventListener('error', () => ((live.textContent = 'reconnecting'), (live.className = 'badge')))
  events.addEventListener('runs', (e) => onRuns(JSON.parse(e.data)))
  events.addEventListener('metrics', (e) => {
    const { run, rows, reset } = JSON.parse(e.data)
    appendRows(run, rows, reset)
  })
}

$('#metric').addEventListener('change', (e) => {
  state.metric = e.target.value
  state.metricChosen = true
  renderChart()
})
$('#smoothing').addEventListener('change', (e) => {
  state.smoothing = Number(e.target.value)
  state.viewKey = ''
  renderChart()
})
$('#outputs-run').addEventListener('change', (e) => {
  state.outputsRun = e.target.value
  loadOutputs()
})
setInterval(() => {
  for (const row of document.querySelectorAll('#runs tr[data-run]')) row.querySelector('.updated').textContent = ago(state.runs.get(row.dataset.run)?.updatedAt)
}, 5000)

// For tests and the console: the chart's data as it stands.
window.rlfarmDashboard = { state, chartPoints: () => (state.view ? state.view.data('points') : []) }
connect()
