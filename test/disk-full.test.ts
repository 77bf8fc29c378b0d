// A full disk and a resume with nothing to resume: run.json ends 'failed'
// with the error even when no new file can be written (it is rewritten in
// place), and --resume of a run that never started begins it and says so.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { RunDirectory, train } from 'rlfarm'
import { tempDir } from './helpers/common'
import { TINY_POLICY, toyData } from './helpers/toy-data'

const ROOT = path.join(__dirname, '..')
const BIN = path.join(ROOT, 'bin', 'rlfarm.js')

t.test('run.json: when the atomic write cannot make its temporary file, it is rewritten in place', async (t) => {
  const out = tempDir(t, 'disk-full')
  const run = RunDirectory.create(out, { name: 'r', algorithm: 'sft' })
  // A directory where the temporary file goes: the atomic write fails, as it does when the disk is full.
  fs.mkdirSync(path.join(run.path, `.run.json.tmp-${process.pid}`))
  run.update({ state: 'failed', error: new Error('ENOSPC: no space left on device, write') })
  const status = run.status()
  t.equal(status.state, 'failed')
  t.equal(status.error, 'ENOSPC: no space left on device, write')
  t.same(JSON.parse(fs.readFileSync(run.statusFile, 'utf8')), status, 'the file holds exactly the new status (truncated after it)')
})

t.test('a run on a full disk (a tmpfs filled to the last byte): run.json ends failed with the error', async (t) => {
  const mount = tempDir(t, 'disk-full-mnt')
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mount])
  if (mounted.status !== 0) {
    t.skip(`cannot mount a tmpfs here (${mounted.stderr?.toString().trim() || 'not root'}); the in-place rewrite is tested above`)
    return
  }
  t.teardown(() => void spawnSync('umount', ['-l', mount]))
  const data = toyData()
  t.teardown(() => fs.rmSync(data.dir, { recursive: true, force: true }))
  RunDirectory.create(mount, { name: 'full', algorithm: 'sft' })
  // Fill every byte left: no new file, not even a temporary run.json, can be written.
  const filler = fs.openSync(path.join(mount, 'filler'), 'w')
  const block = Buffer.alloc(4096, 1)
  for (let size = block.length; size > 0; ) {
    try {
      fs.writeSync(filler, block, 0, size)
    } catch {
      size >>= 1
    }
  }
  fs.closeSync(filler)
  const err = await train(
    { algorithm: 'sft', name: 'full', output_dir: mount, policy: TINY_POLICY, data: { train: data.sft, chat_template: false, max_length: 40 }, training: { max_steps: 2 }, logging: { progress: 'none' } },
    { resume: true },
  ).catch((e: Error) => e)
  t.ok(err instanceof Error, 'the run failed')
  t.match((err as Error).message, /ENOSPC|no space/i)
  const status = JSON.parse(fs.readFileSync(path.join(mount, 'full', 'run.json'), 'utf8'))
  t.equal(status.state, 'failed', 'run.json says failed, not running')
  t.match(status.error, /ENOSPC|no space/i)
})

t.test('--resume of a run that never started begins it and says so; a directory that is not a run is refused', async (t) => {
  const out = tempDir(t, 'disk-full')
  const args = ['train', 'examples/sft.yaml', '--output-dir', out, '--name', 'never', '--resume', '--set', 'training.max_steps=1', '--progress', 'lines']
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 })
  t.equal(r.status, 0, r.stderr)
  t.match(r.stderr + r.stdout, `${path.join(out, 'never')}: nothing to resume yet (no checkpoint: the run had not begun, or stopped before its first one); starting from the beginning`)
  t.equal(JSON.parse(fs.readFileSync(path.join(out, 'never', 'run.json'), 'utf8')).state, 'finished', 'and it ran')
  fs.mkdirSync(path.join(out, 'other'))
  fs.writeFileSync(path.join(out, 'other', 'notes.txt'), 'keep me\n')
  const other = spawnSync(process.execPath, [BIN, ...args.map((a) => (a === 'never' ? 'other' : a))], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 })
  t.equal(other.status, 1)
  t.equal(other.stderr, `rlfarm train: RunDirectory.create: cannot resume ${path.join(out, 'other')}: it is not a run directory (no run.json)\n`)
  t.equal(fs.readFileSync(path.join(out, 'other', 'notes.txt'), 'utf8'), 'keep me\n', 'its files are left alone')
})
