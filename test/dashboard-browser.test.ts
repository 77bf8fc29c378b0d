// rlfarm dashboard in a real headless browser (Debian's chromium, driven by
// puppeteer-core): the page loads, the runs table, the curves chart, the
// sample outputs and the compare chart render, and a line appended to a
// run's metrics.jsonl shows on the chart without a reload. Skipped, saying
// why, where no chromium is installed (.ci/run installs it).
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { RunDirectory, startDashboard } from 'rlfarm'
import { tempDir } from './helpers/common'
import { makeLeaderboard, writeReport } from '../dist/farm/report.js'

const CANDIDATES = [process.env.RLFARM_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].filter((p): p is string => !!p)
const browserPath = CANDIDATES.find((p) => fs.existsSync(p))
let puppeteer: typeof import('puppeteer-core') | undefined
try {
  puppeteer = require('puppeteer-core')
} catch {
  puppeteer = undefined
}
const skip = !browserPath ? `no chromium found (looked for ${CANDIDATES.join(', ')}; apt-get install chromium, or set RLFARM_CHROMIUM)` : !puppeteer ? 'puppeteer-core is not installed (npm install)' : false

t.test('the dashboard in chromium: charts render and follow a run live', { skip }, async (t) => {
  const root = tempDir(t, 'dash-browser')
  const sft = RunDirectory.create(path.join(root, 'pipe'), { name: 'sft', algorithm: 'sft' })
  const sftLog = sft.metrics({ tensorboard: false })
  for (let s = 1; s <= 10; s++) sftLog.log(s, { loss: 2 / s })
  sftLog.close()
  sft.update({ state: 'finished', step: 10 })
  const ppo = RunDirectory.create(path.join(root, 'pipe'), { name: 'ppo', algorithm: 'ppo' })
  const ppoLog = ppo.metrics({ tensorboard: false, flushMs: 0 })
  for (let s = 1; s <= 5; s++) ppoLog.log(s, { loss: 1 / s, score: s / 10 })
  ppoLog.flush()
  ppo.update({ step: 5 })
  ppo.appendOutputs([{ prompt: 'reverse: abc', response: '<b>cba</b>', reward: 0.75 }])
  await writeReport(path.join(root, 'pipe'), makeLeaderboard('pipe', [
    { name: 'eval_sft', metrics: { win_rate: 0.4, win_rate_stderr: 0.02, n: 100, pool_win_rate: 0.45, pool_win_rate_stderr: 0.02 } },
    { name: 'eval_ppo', metrics: { win_rate: 0.6, win_rate_stderr: 0.02, n: 100, pool_win_rate: 0.62, pool_win_rate_stderr: 0.02 } },
  ]), [])

  const dashboard = await startDashboard({ dir: root, port: 0, intervalMs: 200 })
  t.teardown(() => dashboard.close())
  const browser = await puppeteer!.launch({
    executablePath: browserPath,
    headless: true,
    // As root (CI), chromium needs --no-sandbox; /dev/shm is small in containers.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  })
  t.teardown(() => browser.close())
  const page = await browser.newPage()
  const errors: string[] = []
  page.on('pageerror', (e) => errors.push(String(e)))
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`))
  await page.setViewport({ width: 1280, height: 1400 })
  await page.goto(dashboard.url, { waitUntil: 'load', timeout: 120_000 })

  // The curves chart: an SVG with one line per run, drawn by vega from the bundles the server serves.
  await page.waitForSelector('#chart svg .mark-line path', { timeout: 60_000 })
  t.equal(await page.$$eval('#chart svg .mark-line path', (p) => p.length), 2, 'a line for each run')
  t.equal(await page.$eval('#metric', (s) => (s as HTMLSelectElement).value), 'loss', 'the metric both runs have')
  const rows = await page.$$eval('#runs tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].slice(1).map((td) => td.textContent!.trim().split('\n')[0])))
  t.same(rows.map((r) => r.slice(0, 4)), [['pipe/ppo', 'ppo', 'running', '5'], ['pipe/sft', 'sft', 'finished', '10']], 'runs with algorithm, state and step')
  await page.waitForSelector('#outputs table', { timeout: 30_000 })
  t.equal(await page.$eval('#outputs tbody td:nth-child(2)', (td) => td.textContent), '<b>cba</b>', 'sample outputs, shown as text')
  await page.waitForSelector('.compare-chart svg path[aria-roledescription="bar"]', { timeout: 30_000 })
  t.equal(await page.$$eval('.compare-chart svg path[aria-roledescription="bar"]', (p) => p.length), 4, "the leaderboard's win-rate bars (2 methods x gold, pool)")
  t.same(await page.$$eval('.compare tbody td:first-child', (tds) => tds.map((td) => td.textContent)), ['ppo', 'sft'], 'the leaderboard')

  // Live: append a line to metrics.jsonl and watch it arrive, with no reload.
  await page.evaluate(() => ((window as any).notReloaded = true))
  const linePaths = () => page.$$eval('#chart svg .mark-line path', (ps) => ps.map((p) => p.getAttribute('d')))
  const linesBefore = await linePaths()
  const pointsBefore = await page.evaluate(() => (window as any).rlfarmDashboard.chartPoints().length)
  t.equal(pointsBefore, 15, '10 + 5 points of loss')
  ppoLog.log(6, { loss: 0.05, score: 0.9 })
  ppoLog.flush()
  ppo.update({ step: 6 })
  await page.waitForFunction(() => (window as any).rlfarmDashboard.chartPoints().some((p: any) => p.run === 'pipe/ppo' && p.step === 6 && p.value === 0.05), { timeout: 60_000 })
  await page.waitForFunction(() => document.querySelector('#runs tr[data-run="pipe/ppo"] .step')?.textContent === '6', { timeout: 60_000 })
  t.ok(await page.evaluate(() => (window as any).notReloaded), 'the page was not reloaded')
  t.equal(await page.evaluate(() => (window as any).rlfarmDashboard.chartPoints().length), 16, 'one more point')
  t.notSame(await linePaths(), linesBefore, 'the drawn lines changed')

  // Switching the metric redraws from what the page holds.
  await page.select('#metric', 'score')
  await page.waitForFunction(() => (window as any).rlfarmDashboard.chartPoints().length === 6, { timeout: 30_000 })
  t.equal(await page.$$eval('#chart svg .mark-line path', (p) => p.length), 1, 'score: only the PPO run has it')

  // Smoothing: a debiased exponential moving average (weight 0.9) of score = 0.1, 0.2, ...
  await page.select('#smoothing', '0.9')
  await page.waitForFunction(() => (window as any).rlfarmDashboard.chartPoints()[1]?.value !== 0.2, { timeout: 30_000 })
  const smoothed = await page.evaluate(() => (window as any).rlfarmDashboard.chartPoints().map((p: any) => p.value))
  t.ok(Math.abs(smoothed[0] - 0.1) < 1e-12 && Math.abs(smoothed[1] - (0.9 * 0.1 * 0.1 + 0.1 * 0.2) / (1 - 0.81)) < 1e-12, `smoothed: ${smoothed.slice(0, 2)}`)

  if (process.env.RLFARM_DASHBOARD_SCREENSHOT) await page.screenshot({ path: process.env.RLFARM_DASHBOARD_SCREENSHOT, fullPage: true })
  t.same(errors, [], 'no script errors and no failed requests')
})
