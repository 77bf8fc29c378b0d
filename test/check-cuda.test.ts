// npm run check:cuda on a machine without a GPU: the stages that need no GPU
// run and pass (the addon, the CUDA plan, the PyTorch peer's PPO shapes
// against rlfarm's PPO run), the others say they need one, and the log ends
// with one summary line.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { backend } from 'rlfarm'
import { tempDir } from './helpers/common'

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
  t.match(lines.at(-1)!, new RegExp(`^check:cuda: no GPU: \\d+ ok, ${failed} failed, 7 skipped \\(checks, trainers, generate, kernels, peak, train and ppo need a GPU\\); log `), 'one summary line last')
  t.equal(r.stdout.trim().split('\n').at(-1), lines.at(-1), 'and on stdout')
})
