// npm run check:cuda on a machine without a GPU: the stages that need no GPU
// run and pass (the addon, the CUDA plan, the PyTorch peer's PPO shapes
// against rlfarm's PPO run), the others say they need one, and the log ends
// with one summary line. And what keeps a GPU run within its lease
// (scripts/check-cuda-run.mjs): the time budget, the kill of a command's whole
// process tree at its limit, and no needless rebuild of the addon.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { backend } from 'rlfarm'
import { tempDir } from './helpers/common'
// @ts-expect-error: a plain ES module script, without types
import { archRuns, createRunner } from '../scripts/check-cuda-run.mjs'

const ROOT = path.resolve(__dirname, '..')

t.test('check:cuda without a GPU runs what it can and says what needs one', { skip: backend().cudaDevices > 0 ? 'a GPU is present (check:cuda runs every stage)' : false }, async (t) => {
  const log = path.join(tempDir(t, 'check-cuda'), 'check.log')
  const r = spawnSync(process.execPath, ['scripts/check-cuda.mjs', '--log', log], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 })
  t.equal(r.status, backend().cudaCompiled ? 0 : 1, r.stderr)
  const lines = fs.readFileSync(log, 'utf8').trim().split('\n')
  for (const stage of ['plan', 'peer-shapes']) t.match(lines.find((l) => l.startsWith(`stage ${stage}:`)) ?? '', new RegExp(`^stage ${stage}: ok`), `${stage} ran and passed`)
  for (const stage of ['checks', 'trainers', 'generate', 'kernels', 'peak', 'train', 'ppo']) {
    t.equal(lines.find((l) => l.startsWith(`stage ${stage}:`)), `stage ${stage}: skipped (needs a GPU: ${backend().cudaUnavailableReason})`, `${stage} needs a GPU`)
  }
  // A build without the CUDA backend fails the addon stage, and only it.
  const failed = backend().cudaCompiled ? 0 : 1
  t.match(lines.at(-1)!, new RegExp(`^check:cuda: no GPU: \\d+ ok, ${failed} failed, 7 skipped \\(checks, trainers, generate, kernels, peak, train and ppo need a GPU\\); \\d+ of 480 s; log `), 'one summary line last')
  t.equal(r.stdout.trim().split('\n').at(-1), lines.at(-1), 'and on stdout')
})

t.test('check:cuda keeps to its budget: a stage cut short fails or is skipped, and the summary line still comes', async (t) => {
  const log = path.join(tempDir(t, 'check-cuda-budget'), 'check.log')
  const budget = 16 // the addon probe and the plan, then too little for the PPO run of peer-shapes
  const started = Date.now()
  const r = spawnSync(process.execPath, ['scripts/check-cuda.mjs', '--log', log, '--budget', String(budget)], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 })
  const seconds = (Date.now() - started) / 1000
  t.ok(seconds < budget + 10, `ran ${seconds.toFixed(1)} s on a ${budget} s budget`)
  const lines = fs.readFileSync(log, 'utf8').trim().split('\n')
  t.match(lines[0], /^check:cuda: budget 16 s/)
  for (const name of ['addon', 'plan', 'peer-shapes']) t.ok(lines.some((l) => l.startsWith(`stage ${name}: `)), `stage ${name} reported`)
  t.match(lines.find((l) => l.startsWith('stage peer-shapes: ')) ?? '', /^stage peer-shapes: (skipped \(out of time: \d+ s of the 16 s budget left\)|FAIL \(.*killed at its time limit)/, 'cut by the budget')
  t.match(lines.at(-1)!, /^check:cuda: no GPU: \d+ ok, \d+ failed, \d+ skipped .*; \d+ of 16 s; log /, 'the summary line, last')
  t.equal(r.stdout.trim().split('\n').at(-1), lines.at(-1))
  const bad = spawnSync(process.execPath, ['scripts/check-cuda.mjs', '--log', log, '--budget', 'soon'], { cwd: ROOT, encoding: 'utf8' })
  t.equal(bad.status, 2)
  t.match(bad.stderr, /--budget must be a number of seconds > 0; got soon/)
})

t.test("check:cuda's runner: a command past its limit is killed with its children; no time left, nothing starts", async (t) => {
  const dir = tempDir(t, 'check-cuda-runner')
  const logFile = path.join(dir, 'run.log')
  const log = fs.openSync(logFile, 'w')
  const said: string[] = []
  const runner = createRunner({ budget: 60, log, say: (l: string) => said.push(l), reserve: 1, minStage: 2, cwd: dir })
  t.ok(runner.killsTree, 'timeout(1) is here (coreutils)')
  // A child that leaves a grandchild running, as a bench's node leaves python: both go at the limit.
  const pidFile = path.join(dir, 'grandchild.pid')
  const started = Date.now()
  const slow = runner.run('bash', ['-c', `sleep 30 & echo $! > ${pidFile}; echo started; wait`], { timeout: 2 })
  const took = (Date.now() - started) / 1000
  t.equal(slow.ok, false)
  t.equal(slow.skipped, false)
  t.match(slow.why, /^killed at its time limit \(2 s\)/)
  t.ok(took >= 2 && took < 10, `killed after ${took.toFixed(1)} s`)
  t.match(slow.out, /started/)
  const grandchild = Number(fs.readFileSync(pidFile, 'utf8'))
  await new Promise((resolve) => setTimeout(resolve, 300))
  // Gone, or dead and waiting to be reaped (a zombie, where the container's init reaps no orphans).
  const state = (() => {
    try {
      return fs.readFileSync(`/proc/${grandchild}/stat`, 'utf8').replace(/^.*\) /s, '')[0]
    } catch {
      return 'gone'
    }
  })()
  t.ok(state === 'gone' || state === 'Z', `the grandchild was killed too (state ${state})`)
  // A failing command: its exit code, and the next command still runs.
  const failing = runner.run('bash', ['-c', 'echo oops >&2; exit 3'], { timeout: 10 })
  t.same({ ok: failing.ok, why: failing.why, skipped: failing.skipped }, { ok: false, why: 'exit code 3', skipped: false })
  const fine = runner.run('bash', ['-c', 'echo \'{"x":1}\''], { timeout: 10 })
  t.same({ ok: fine.ok, why: fine.why }, { ok: true, why: '' })
  fs.closeSync(log)
  t.match(fs.readFileSync(logFile, 'utf8'), /started\n[^]*oops\n[^]*\{"x":1\}\n/, 'every output in the log')

  // A budget nearly spent: a command's limit is cut to what is left; none starts without time for it.
  let clock = 0
  const tight = createRunner({ budget: 10, say: (l: string) => said.push(l), reserve: 1, minStage: 2, cwd: dir, now: () => clock })
  clock = 6000
  const cut = tight.run('bash', ['-c', 'sleep 5'], { timeout: 60 })
  t.match(cut.why, /^killed at its time limit \(3 s, the rest of the budget\)/)
  t.match(said.at(-1)!, /\(cut to the budget: 3 s\)$/)
  clock = 8500
  const none = tight.run('bash', ['-c', 'echo never'], { timeout: 60 })
  t.same({ ok: none.ok, skipped: none.skipped, why: none.why }, { ok: false, skipped: true, why: 'out of time: 2 s of the 10 s budget left' })
  t.match(said.at(-1)!, /# not run, out of time/)
})

t.test("check:cuda rebuilds the addon only where it cannot run: machine code of the GPU's major version, or an older arch's PTX", async (t) => {
  t.equal(archRuns('80,86,89,90', '90'), true, 'H100/H200: sm_90')
  t.equal(archRuns('90', '90'), true)
  t.equal(archRuns('80,86,89,90', '89'), true, 'L4/L40: sm_89')
  t.equal(archRuns('80', '86'), true, 'sm_80 machine code runs on sm_86 (same major, newer minor)')
  t.equal(archRuns('86', '80'), false, 'not on an older minor')
  t.equal(archRuns('80,86,89,90', '100'), true, 'B200: the PTX of compute_90 compiles at load time')
  t.equal(archRuns('90', '80'), false, 'A100 needs sm_80 code')
  t.equal(archRuns('', '90'), false, 'nothing compiled')
  t.equal(archRuns('80,86', '90'), true, "the build's last arch carries PTX (CMakeLists.txt), which a newer GPU compiles")
})
