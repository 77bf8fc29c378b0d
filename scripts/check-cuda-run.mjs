// What scripts/check-cuda.mjs needs to spend a GPU lease well, apart so that
// test/check-cuda.test.ts can run it on any machine:
//  - a runner that gives every command the smaller of its own limit and what
//    is left of the whole check's time budget, kills the command's whole
//    process tree when the limit passes (a benchmark's python or node
//    grandchild must not keep the GPU busy under the next stage), and says
//    "out of time" instead of starting a command that has no time left;
//  - whether an addon compiled for some architectures runs on a GPU of a
//    given compute capability (so that no stage rebuilds it needlessly).
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'

/** coreutils timeout(1): it runs the command in a process group of its own and signals the whole group. */
function findTimeout() {
  for (const p of ['/usr/bin/timeout', '/bin/timeout']) if (fs.existsSync(p)) return p
  const r = spawnSync('timeout', ['--version'], { stdio: 'ignore' })
  return !r.error && r.status === 0 ? 'timeout' : undefined
}

/**
 * A runner over one time budget. run(cmd, argv, { timeout, env, cwd }) runs a
 * command to completion, its output appended to the log, within
 * min(timeout, seconds left - reserve); returns { ok, why, out, stdout,
 * skipped }, skipped true (and nothing run) when fewer than minStage seconds
 * are left.
 */
export function createRunner({ budget, log, say = () => {}, reserve = 5, minStage = 10, cwd = process.cwd(), now = () => Date.now() }) {
  const start = now()
  const timeoutBin = findTimeout()
  const left = () => budget - (now() - start) / 1000
  function run(cmd, argv, { timeout = 300, env = {}, dir = cwd } = {}) {
    const spare = left() - reserve
    if (spare < minStage) {
      const why = `out of time: ${Math.max(0, left()).toFixed(0)} s of the ${budget} s budget left`
      say(`$ ${[cmd, ...argv].join(' ')}  # not run, ${why}`)
      return { ok: false, skipped: true, why, out: '', stdout: '' }
    }
    const limit = Math.max(1, Math.floor(Math.min(timeout, spare)))
    const cut = limit < timeout ? ` (cut to the budget: ${limit} s)` : ''
    say(`$ ${[cmd, ...argv].join(' ')}${cut}`)
    // timeout(1) kills the tree (TERM, then KILL 5 s later); spawnSync's own limit is the backstop.
    const [file, args] = timeoutBin ? [timeoutBin, ['-k', '5', String(limit), cmd, ...argv]] : [cmd, argv]
    const r = spawnSync(file, args, {
      cwd: dir,
      encoding: 'utf8',
      timeout: (limit + (timeoutBin ? 15 : 0)) * 1000,
      killSignal: 'SIGKILL',
      env: { ...process.env, ...env },
      maxBuffer: 1 << 26,
    })
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`
    if (log !== undefined) fs.writeSync(log, out.endsWith('\n') || out === '' ? out : `${out}\n`)
    const timedOut = (timeoutBin && (r.status === 124 || r.status === 137)) || r.signal === 'SIGKILL' || r.error?.code === 'ETIMEDOUT'
    const why = timedOut
      ? `killed at its time limit (${limit} s${cut ? ', the rest of the budget' : ''})`
      : r.error
        ? r.error.message
        : r.signal
          ? `killed by ${r.signal}`
          : r.status !== 0
            ? `exit code ${r.status}`
            : ''
    return { ok: !why, why, out, stdout: r.stdout ?? '', skipped: false }
  }
  return { run, left, budget, killsTree: timeoutBin !== undefined }
}

/**
 * Whether code compiled for `archs` (nvcc's list, e.g. "80,86,89,90": machine
 * code for each, PTX of the last) runs on compute capability `cc` ("90",
 * "89", "100"): machine code for sm_XY runs on sm_XZ with Z >= Y, and the
 * PTX of the last compiles at load time for any later GPU.
 */
export function archRuns(archs, cc) {
  const list = String(archs).split(',').map((a) => a.trim()).filter(Boolean).map(Number)
  const c = Number(cc)
  if (!list.length || !Number.isFinite(c)) return false
  const major = (x) => Math.floor(x / 10)
  if (list.some((a) => major(a) === major(c) && a <= c)) return true
  return c >= list[list.length - 1]
}
