// What the benchmarks share: the median of timings, and running a PyTorch peer
// script with the settings every peer uses.
import { spawnSync } from 'node:child_process'
import path from 'node:path'

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/**
 * Runs bench/<script> with RLFARM_BENCH_PYTHON (default /usr/bin/python3) and
 * OPENBLAS_NUM_THREADS=2 unless set (PyTorch's fastest setting here); returns
 * the JSON of its last stdout line, or the last lines of its stderr.
 */
export function runPython<T>(script: string, args: readonly (string | number)[]): T | { error: string } {
  const python = process.env.RLFARM_BENCH_PYTHON ?? '/usr/bin/python3'
  const r = spawnSync(python, [path.join(__dirname, script), ...args.map(String)], {
    encoding: 'utf8',
    env: { ...process.env, OPENBLAS_NUM_THREADS: process.env.OPENBLAS_NUM_THREADS ?? '2' },
    maxBuffer: 1 << 24,
  })
  if (r.status !== 0) return { error: (r.stderr || r.error?.message || 'failed').trim().split('\n').slice(-3).join(' ') }
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T
}
