// The run infrastructure: TensorBoard event files (read back with a TFRecord
// reader written here, checking every CRC), metrics.jsonl, run directories,
// the seeded RNG, progress output and interrupt handling.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawn } from 'node:child_process'
import protobuf from 'protobufjs'
import { MetricsLogger, onInterrupt, Progress, Rng, RunDirectory, TensorBoardWriter, type ProgressStream, type RngState } from 'rlfarm'
// Internals, from the same compiled module the package exports.
import { crc32c, maskedCrc32c } from '../dist/run/tensorboard.js'
import { assertThrowsWith, tempDir } from './helpers/common'


// --- TensorBoard ---------------------------------------------------------------

interface DecodedEvent {
  wallTime: number
  step: number
  fileVersion?: string
  summary?: { value: { tag: string; simpleValue: number }[] }
}

const EventType = protobuf.loadSync(path.resolve(__dirname, '../proto/tensorboard.proto')).lookupType('tensorflow.Event')

/** Reads a TFRecord file, checking both CRCs of every record. */
function readRecords(file: string): Buffer[] {
  const bytes = fs.readFileSync(file)
  const records: Buffer[] = []
  for (let at = 0; at < bytes.length; ) {
    if (at + 12 > bytes.length) throw new Error(`${file}: truncated record header at byte ${at}`)
    const length = Number(bytes.readBigUInt64LE(at))
    if (bytes.readUInt32LE(at + 8) !== maskedCrc32c(bytes.subarray(at, at + 8))) throw new Error(`${file}: bad length CRC at byte ${at}`)
    const data = bytes.subarray(at + 12, at + 12 + length)
    if (data.length !== length || at + 16 + length > bytes.length) throw new Error(`${file}: truncated record at byte ${at}`)
    if (bytes.readUInt32LE(at + 12 + length) !== maskedCrc32c(data)) throw new Error(`${file}: bad data CRC at byte ${at}`)
    records.push(data)
    at += 16 + length
  }
  return records
}

function readEvents(file: string): DecodedEvent[] {
  return readRecords(file).map((r) => EventType.toObject(EventType.decode(r), { longs: Number, defaults: true }) as DecodedEvent)
}

t.test('crc32c: known vectors (RFC 3720 B.4) and the TFRecord mask', async (t) => {
  const hex = (b: Uint8Array) => crc32c(b).toString(16).padStart(8, '0')
  t.equal(hex(Buffer.from('123456789')), 'e3069283', 'crc32c("123456789")')
  t.equal(hex(Buffer.alloc(0)), '00000000', 'empty input')
  t.equal(hex(Buffer.alloc(32, 0)), '8a9136aa', '32 zero bytes')
  t.equal(hex(Buffer.alloc(32, 0xff)), '62a8ab43', '32 0xff bytes')
  t.equal(hex(Uint8Array.from({ length: 32 }, (_, i) => i)), '46dd794e', '0, 1, ..., 31')
  t.equal(hex(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), '113fdb5c', '31, 30, ..., 0')
  const crc = 0xe3069283
  t.equal(maskedCrc32c(Buffer.from('123456789')), (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0, 'mask: rotate right 15, add 0xa282ead8')
})

t.test('TensorBoard: file name, version record, scalar events read back', async (t) => {
  const dir = tempDir(t, 'tb')
  let clock = 1_700_000_000_500
  const writer = new TensorBoardWriter(dir, { now: () => clock })
  t.equal(path.basename(writer.path), `events.out.tfevents.1700000000.${os.hostname()}`, 'events.out.tfevents.<seconds>.<hostname>')
  writer.scalar('loss/policy', 0.25, 1)
  clock += 1000
  writer.scalars({ 'loss/policy': 0.125, kl: 0.1, reward: -3 }, 2)
  writer.scalar('zero', 0, 3) // a 0 is still written (oneof presence)
  writer.close()

  const events = readEvents(writer.path)
  t.equal(events.length, 4, 'the version record, then one event per call')
  t.equal(events[0].fileVersion, 'brain.Event:2', 'first record: file_version brain.Event:2')
  t.equal(events[0].step, 0)
  t.equal(events[1].step, 1)
  t.equal(events[1].wallTime, 1_700_000_000.5, 'wall_time in seconds')
  t.same(events[1].summary!.value, [{ tag: 'loss/policy', simpleValue: 0.25 }])
  t.equal(events[2].step, 2)
  t.same(
    events[2].summary!.value.map((v) => [v.tag, v.simpleValue]),
    [['loss/policy', 0.125], ['kl', Math.fround(0.1)], ['reward', -3]],
    'several values in one event, as float32',
  )
  t.same(events[3].summary!.value, [{ tag: 'zero', simpleValue: 0 }])
  t.equal(events[3].step, 3)

  const again = new TensorBoardWriter(dir, { now: () => 1_700_000_000_900 })
  again.close()
  t.equal(path.basename(again.path), `events.out.tfevents.1700000000.${os.hostname()}.1`, 'a second file in the same second gets a suffix, never reuses the first')
  t.throws(() => writer.scalar('x', 1, 4), /after close/, 'no writes after close')
})

t.test('TensorBoard: appends are buffered until flush or the interval', async (t) => {
  const dir = tempDir(t, 'tb-buffer')
  let clock = 0
  const writer = new TensorBoardWriter(dir, { now: () => clock, flushMs: 1000 })
  const size = () => fs.statSync(writer.path).size
  const versionOnly = size()
  t.ok(versionOnly > 0, 'the version record is written at once')
  writer.scalar('a', 1, 1)
  writer.scalar('a', 2, 2)
  t.equal(size(), versionOnly, 'scalars wait in memory')
  writer.flush()
  t.equal(readEvents(writer.path).length, 3, 'flush() writes them, whole')
  writer.scalar('a', 3, 3)
  t.equal(readEvents(writer.path).length, 3, 'buffered again')
  clock += 1500
  writer.scalar('a', 4, 4)
  t.equal(readEvents(writer.path).length, 5, 'a record after the flush interval writes everything waiting')
  writer.close()
  const open = new TensorBoardWriter(dir, { now: () => 5000 })
  assertThrowsWith(t, () => open.scalars({ a: 1 }, -1), ['TensorBoardWriter: step must be a non-negative integer', '-1'], 'bad steps')
  assertThrowsWith(t, () => open.scalar('a', '1' as never, 1), ["the value of 'a' must be a number"], 'bad values')
  open.close()
})

// --- Metrics -------------------------------------------------------------------

t.test('MetricsLogger: JSONL and TensorBoard, non-finite values', async (t) => {
  const dir = tempDir(t, 'metrics')
  const logger = new MetricsLogger(dir, { now: () => 1_000_000 })
  logger.log(1, { loss: 0.5, kl: 0.01 })
  logger.log(2, { loss: NaN, kl: Infinity, reward: 1 })
  logger.close()
  const lines = fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  t.same(lines[0], { step: 1, time: 1000, loss: 0.5, kl: 0.01 }, 'step, time (s), metrics')
  t.same(lines[1], { step: 2, time: 1000, loss: null, kl: null, reward: 1, nonfinite: ['loss', 'kl'] }, 'NaN and Infinity: null, named in nonfinite')
  const events = readEvents(logger.tensorboardPath!)
  t.same(events.slice(1).map((e) => [e.step, e.summary!.value.map((v) => v.tag)]), [[1, ['loss', 'kl']], [2, ['reward']]], 'TensorBoard skips non-finite values')

  assertThrowsWith(t, () => new MetricsLogger(dir, { tensorbord: false } as never), ["unknown option 'tensorbord'", "Did you mean 'tensorboard'"], 'unknown option')
  const closed = new MetricsLogger(tempDir(t, 'metrics-bad'), { tensorboard: false })
  assertThrowsWith(t, () => closed.log(1, { step: 3 }), ["'step' is a reserved field"], 'reserved names')
  assertThrowsWith(t, () => closed.log(1, { loss: '0.5' as unknown as number }), ["metric 'loss' must be a number", "'0.5'"], 'non-numbers')
  assertThrowsWith(t, () => closed.log(1.5, {}), ['step must be a non-negative integer'], 'fractional steps')
  closed.close()
})

t.test('MetricsLogger: jsonl / tensorboard switches, and resuming', async (t) => {
  const onlyJsonl = tempDir(t, 'metrics-jsonl')
  new MetricsLogger(onlyJsonl, { tensorboard: false }).close()
  t.same(fs.readdirSync(onlyJsonl), ['metrics.jsonl'], 'tensorboard: false writes no event file')
  const onlyTb = tempDir(t, 'metrics-tb')
  const tb = new MetricsLogger(onlyTb, { jsonl: false })
  tb.close()
  t.same(fs.readdirSync(onlyTb), [path.basename(tb.tensorboardPath!)], 'jsonl: false writes no metrics.jsonl')
  t.equal(tb.jsonlPath, undefined)

  const dir = tempDir(t, 'metrics-resume')
  const first = new MetricsLogger(dir, { tensorboard: false })
  for (let step = 1; step <= 5; step++) first.log(step, { loss: step })
  first.close()
  fs.appendFileSync(path.join(dir, 'metrics.jsonl'), '{"step": 6, "lo') // torn by a crash
  const resumed = new MetricsLogger(dir, { tensorboard: false, resumeStep: 3 })
  resumed.log(4, { loss: 40 })
  resumed.close()
  const steps = fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  t.same(steps.map((r) => [r.step, r.loss]), [[1, 1], [2, 2], [3, 3], [4, 40]], 'records after the resumed step and the torn line are dropped')
})

// --- Run directory -------------------------------------------------------------

t.test('RunDirectory: layout, default names, refusing to reuse, run.json', async (t) => {
  const out = tempDir(t, 'runs')
  const now = () => new Date(2024, 0, 2, 3, 4, 5)
  const run = RunDirectory.create(out, { algorithm: 'ppo', now })
  t.equal(run.name, 'ppo-20240102-030405', '<algorithm>-<yyyymmdd-hhmmss>')
  t.equal(run.path, path.join(out, 'ppo-20240102-030405'))
  t.equal(run.checkpointDir(123), path.join(run.path, 'checkpoints', 'step-000123'))
  t.equal(run.checkpointDir(1234567), path.join(run.path, 'checkpoints', 'step-1234567'))
  t.same(
    [run.configFile, run.metricsFile, run.modelDir, run.outputsFile, run.statusFile].map((p) => path.relative(run.path, p)),
    ['config.yaml', 'metrics.jsonl', 'model', 'outputs.jsonl', 'run.json'],
  )
  const status = run.status()
  t.match(status, { name: 'ppo-20240102-030405', algorithm: 'ppo', state: 'running', step: 0, pid: process.pid, host: os.hostname() })

  const second = RunDirectory.create(out, { algorithm: 'ppo', now })
  t.equal(second.name, 'ppo-20240102-030405-2', 'a default name taken in the same second gets a suffix')

  fs.mkdirSync(path.join(out, 'empty'))
  t.equal(RunDirectory.create(out, { name: 'empty' }).path, path.join(out, 'empty'), 'an empty directory may be used')
  assertThrowsWith(t, () => RunDirectory.create(out, { name: run.name }), [run.path, 'a run still running', `pid ${process.pid}`], 'a running run is refused')
  assertThrowsWith(t, () => RunDirectory.create(out, { name: run.name, overwrite: true }), [run.path, 'a run still running'], 'even with overwrite')
  assertThrowsWith(t, () => RunDirectory.create(out, { name: '../escape' }), ['name must be a directory name'], 'names with a slash')
  fs.mkdirSync(path.join(out, 'other'))
  fs.writeFileSync(path.join(out, 'other', 'notes.txt'), '')
  assertThrowsWith(t, () => RunDirectory.create(out, { name: 'other', resume: true }), [path.join(out, 'other'), 'not a run directory'], 'not a run to resume')
  const begun = RunDirectory.create(out, { name: 'nothing', resume: true })
  t.equal(begun.resumed, false, 'resuming a run that has not begun begins it')
  t.match(begun.status(), { state: 'running', step: 0 })
  assertThrowsWith(t, () => RunDirectory.create(out, { resume: true }), ['resume needs the name'], 'resume without a name')

  run.writeConfig('algorithm: ppo\n')
  t.equal(fs.readFileSync(run.configFile, 'utf8'), 'algorithm: ppo\n')
  run.appendOutputs([{ prompt: 'a', response: 'b' }, { prompt: 'c', response: 'd' }])
  run.appendOutputs([{ prompt: 'e', response: 'f' }])
  t.same(fs.readFileSync(run.outputsFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l).prompt), ['a', 'c', 'e'], 'outputs.jsonl')

  run.update({ step: 7 })
  run.update({ state: 'failed', step: 8, error: new Error('loss is NaN at step 8') })
  t.match(run.status(), { state: 'failed', step: 8, error: 'loss is NaN at step 8' }, 'state, step and error in run.json')
  assertThrowsWith(t, () => run.update({ state: 'done' as never }), ["state must be one of 'running', 'finished', 'failed', 'interrupted'"], 'unknown states')
  t.same(fs.readdirSync(run.path).filter((f) => f.startsWith('.')), [], 'no temporary files left behind')

  const resumed = RunDirectory.create(out, { name: run.name, resume: true })
  t.ok(resumed.resumed)
  const after = resumed.status()
  t.match(after, { state: 'running', step: 8, startedAt: status.startedAt }, 'resuming: running again, same step and start')
  t.equal(after.error, undefined, 'the old error is cleared')
  t.type(after.resumedAt, 'string')
  resumed.update({ state: 'finished', step: 10 })
  t.match(resumed.status(), { state: 'finished', step: 10 })

  const logger = resumed.metrics({ tensorboard: false })
  logger.log(10, { loss: 1 })
  logger.close()
  t.ok(fs.existsSync(resumed.metricsFile), 'metrics() logs into the run directory')
  fs.writeFileSync(resumed.statusFile, '{"state": "running",')
  assertThrowsWith(t, () => resumed.status(), [resumed.statusFile, 'is not valid JSON'], 'a broken run.json names the file')
})

// --- Rng -----------------------------------------------------------------------

t.test('Rng: xoshiro128** known values, reproducible, resumable', async (t) => {
  const known = Rng.fromState({ algorithm: 'xoshiro128**', s: [1, 2, 3, 4] })
  t.same([known.uint32(), known.uint32(), known.uint32()], [11520, 0, 5927040], 'the reference outputs from state [1, 2, 3, 4]')

  const draw = (rng: Rng, n: number) => Array.from({ length: n }, () => rng.next())
  t.same(draw(new Rng(42), 100), draw(new Rng(42), 100), 'same seed, same stream')
  t.not(draw(new Rng(42), 5).join(), draw(new Rng(43), 5).join(), 'different seeds, different streams')

  const a = new Rng(7)
  draw(a, 1000)
  const saved: RngState = JSON.parse(JSON.stringify(a.state()))
  const expected = [draw(a, 50), a.int(1000), a.shuffle([1, 2, 3, 4, 5, 6, 7, 8])]
  const b = Rng.fromState(saved)
  t.same([draw(b, 50), b.int(1000), b.shuffle([1, 2, 3, 4, 5, 6, 7, 8])], expected, 'a restored state (through JSON) continues the exact stream')

  const items = Array.from({ length: 100 }, (_, i) => i)
  const shuffled = new Rng(3).shuffle([...items])
  t.same([...shuffled].sort((x, y) => x - y), items, 'shuffle is a permutation')
  t.not(shuffled.join(), items.join(), 'that moves things')
  t.same(new Rng(3).shuffle([...items]), shuffled, 'reproducibly')

  assertThrowsWith(t, () => new Rng(1).int(0), ['n must be an integer in [1, 2^32]'], 'int(0)')
  assertThrowsWith(t, () => new Rng(1).restore({ algorithm: 'xoshiro128**', s: [0, 0, 0, 0] }), ['not all 0'], 'the all-zero state')
  assertThrowsWith(t, () => new Rng(1).restore({ s: [1, 2, 3] } as never), ['Rng.restore', 'four 32-bit'], 'a malformed state')
})

t.test('Rng: uniformity', async (t) => {
  const rng = new Rng(2024)
  const n = 100_000
  const counts = new Array<number>(10).fill(0)
  let sum = 0
  for (let i = 0; i < n; i++) {
    counts[rng.int(10)]++
    sum += rng.next()
  }
  const expected = n / 10
  const chi2 = counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0)
  t.ok(chi2 < 27.88, `int(10): chi-square ${chi2.toFixed(2)} below 27.88 (9 degrees of freedom, p = 0.001)`)
  t.ok(Math.abs(sum / n - 0.5) < 0.005, `next(): mean ${(sum / n).toFixed(4)} is 0.5 ± 0.005`)
  const big = Array.from({ length: 1000 }, () => rng.int(2 ** 32))
  t.ok(big.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32) && big.some((x) => x >= 2 ** 31), 'int(2^32) covers the whole range')
})

t.test('RunDirectory: running a name again: refused with the three ways on, reused after a failure at step 0, overwrite', async (t) => {
  const out = tempDir(t, 'runs')
  const finished = RunDirectory.create(out, { name: 'done' })
  finished.update({ state: 'finished', step: 40 })
  fs.mkdirSync(path.join(finished.path, 'model'))
  const refusal = [finished.path, 'already exists: a finished run (step 40)', '--resume', '--overwrite', '--name NEW']
  assertThrowsWith(t, () => RunDirectory.create(out, { name: 'done' }), refusal, 'a finished run names the three ways on')
  t.throws(() => RunDirectory.create(out, { name: 'done' }), { message: /^(?!.*resume: true)/ }, 'the flag, not the option object')

  const interrupted = RunDirectory.create(out, { name: 'cut' })
  interrupted.update({ state: 'interrupted', step: 5 })
  assertThrowsWith(t, () => RunDirectory.create(out, { name: 'cut' }), ['an interrupted run (step 5)', '--resume'], 'a run with steps done is kept')

  for (const [name, state] of [['failed-early', 'failed'], ['stopped-early', 'interrupted']] as const) {
    const early = RunDirectory.create(out, { name })
    early.writeConfig('algorithm: sft\n')
    early.update({ state, step: 0, error: 'cannot read data.train' })
    const again = RunDirectory.create(out, { name })
    t.equal(again.path, early.path, `a run ${state} at step 0 is reused`)
    t.same(fs.readdirSync(again.path), ['run.json'], 'what it left is cleared')
    t.match(again.status(), { state: 'running', step: 0 })
    t.equal(again.status().error, undefined)
  }
  const withCheckpoint = RunDirectory.create(out, { name: 'ckpt' })
  withCheckpoint.update({ state: 'failed', step: 0 })
  fs.mkdirSync(path.join(withCheckpoint.checkpointDir(0)), { recursive: true })
  fs.writeFileSync(path.join(withCheckpoint.checkpointDir(0), 'state.json'), '{}')
  t.throws(() => RunDirectory.create(out, { name: 'ckpt' }), /already exists/, 'a failed run that left a checkpoint is kept')

  // A run whose process died (run.json says running, no such process): its steps decide.
  const dead = RunDirectory.create(out, { name: 'dead' })
  const status = JSON.parse(fs.readFileSync(dead.statusFile, 'utf8'))
  fs.writeFileSync(dead.statusFile, JSON.stringify({ ...status, pid: 2 ** 22 + 12345 }))
  t.equal(RunDirectory.create(out, { name: 'dead' }).path, dead.path, 'a run that died at step 0 is reused')

  const over = RunDirectory.create(out, { name: 'done', overwrite: true })
  t.same(fs.readdirSync(over.path), ['run.json'], 'overwrite empties the old run')
  t.match(over.status(), { state: 'running', step: 0 })
  fs.mkdirSync(path.join(out, 'mine'))
  fs.writeFileSync(path.join(out, 'mine', 'notes.txt'), 'keep me')
  assertThrowsWith(t, () => RunDirectory.create(out, { name: 'mine', overwrite: true }), ['not a run directory', '--name NEW'], 'overwrite deletes only run directories')
  t.ok(fs.existsSync(path.join(out, 'mine', 'notes.txt')))
  assertThrowsWith(t, () => RunDirectory.create(out, { name: 'done', overwrite: true, resume: true }), ['resume and overwrite exclude each other'], 'not both')

  // A run name that is a link to another run (outside output_dir): overwrite does not empty the target.
  const elsewhere = tempDir(t, 'run-elsewhere')
  const theirs = RunDirectory.create(elsewhere, { name: 'theirs' })
  theirs.update({ state: 'finished', step: 7 })
  fs.symlinkSync(theirs.path, path.join(out, 'linked'))
  assertThrowsWith(t, () => RunDirectory.create(out, { name: 'linked', overwrite: true }), [path.join(out, 'linked'), 'is a symbolic link to', 'not deleted through a link'], 'overwrite through a link')
  t.ok(fs.existsSync(theirs.statusFile), "the linked run's files are still there")
})

// --- Progress ------------------------------------------------------------------

function fakeStream(isTTY: boolean, columns = 100): ProgressStream & { writes: string[] } {
  const writes: string[] = []
  return { writes, isTTY, columns, write: (s: string) => writes.push(s) }
}

t.test('Progress: a bar on a terminal, redrawn on one line at most every 100 ms', async (t) => {
  const stream = fakeStream(true)
  let clock = 0
  const progress = new Progress({ total: 10, stream, now: () => clock, label: 'ppo', metrics: ['loss', 'kl'] })
  t.equal(progress.mode, 'bar', 'auto: a bar on a TTY')
  for (let step = 1; step <= 10; step++) {
    clock += 30
    progress.update(step, { tokens: 300, metrics: { loss: 0.5 / step, kl: 0.0123456, ignored: 1 } })
  }
  t.ok(stream.writes.length <= 5 && stream.writes.length >= 3, `${stream.writes.length} redraws for 10 steps over 300 ms`)
  t.ok(stream.writes.every((w) => w.startsWith('\r') && w.endsWith('\x1b[K') && !w.includes('\n')), 'each redraw returns to the line start and clears it')
  const last = stream.writes.at(-1)!
  t.match(last, /^\rppo \[#+\] 10\/10 {2}100% {2}10\.0k tok\/s {2}ETA 0s {2}loss 0\.05 {2}kl 0\.01235\x1b\[K$/, `the last step is always drawn: ${JSON.stringify(last)}`)
  t.notMatch(last, /ignored/, 'only the chosen metrics')
  progress.log('checkpoint saved')
  t.equal(stream.writes.at(-2), '\r\x1b[Kcheckpoint saved\n', 'log() clears the bar, writes its line...')
  t.match(stream.writes.at(-1)!, /^\rppo \[/, '...and redraws the bar')
  progress.done()
  t.equal(stream.writes.at(-1), '\n', 'done() ends the line')

  const narrow = fakeStream(true, 40)
  const small = new Progress({ total: 100, stream: narrow, now: () => 0, metrics: ['loss'] })
  small.update(50, { metrics: { loss: 1 } })
  t.ok(narrow.writes[0].replace('\r', '').replace('\x1b[K', '').length < 40, 'never wider than the terminal')
  const [, filled, empty] = /\[(#+)(\.+)\] 50\/100/.exec(narrow.writes[0]) ?? ['', '', '']
  t.ok(filled.length >= 5 && Math.abs(filled.length - empty.length) <= 1, `half filled at half way: ${narrow.writes[0]}`)
})

t.test('Progress: plain lines every N steps when not a terminal', async (t) => {
  const stream = fakeStream(false)
  let clock = 0
  const progress = new Progress({ total: 100, every: 10, stream, now: () => clock })
  t.equal(progress.mode, 'lines', 'auto: lines when not a TTY')
  for (let step = 1; step <= 95; step++) {
    clock += 1000
    progress.update(step, { tokens: 500, metrics: { loss: 2 } })
  }
  t.equal(stream.writes.length, 9, 'one line every 10 steps')
  t.equal(stream.writes[0], 'step 10/100  10%  500 tok/s  ETA 1m30s  loss 2\n', 'step/total, percentage, tokens/s, ETA, metrics')
  t.ok(stream.writes.every((w) => w.endsWith('\n') && !w.includes('\r')), 'plain lines')
  progress.done()
  t.equal(stream.writes.at(-1), 'step 95/100  95%  500 tok/s  ETA 5s  loss 2\n', 'done() writes the last step if it was not written')
  progress.done()
  t.equal(stream.writes.length, 10, 'once')

  const resumed = fakeStream(false)
  let c2 = 0
  const p2 = new Progress({ total: 100, start: 50, every: 10, stream: resumed, now: () => c2, mode: 'lines' })
  c2 += 10_000
  p2.update(60)
  t.equal(resumed.writes[0], 'step 60/100  60%  ETA 40s\n', 'a resumed run counts its rate from the start step')

  const none = fakeStream(true)
  const quiet = new Progress({ total: 10, stream: none, mode: 'none' })
  quiet.update(10)
  quiet.log('x')
  quiet.done()
  t.same(none.writes, [], "mode 'none' writes nothing")
  const forced = fakeStream(true)
  t.equal(new Progress({ stream: forced, mode: 'lines' }).mode, 'lines', 'a mode can be forced')
  assertThrowsWith(t, () => new Progress({ mode: 'bars' as never }), ["mode must be one of 'auto', 'bar', 'lines', 'none'", "Did you mean 'bar'"], 'unknown modes')
})

t.test('Progress: a total learnt after the start, and an overall ETA', async (t) => {
  const stream = fakeStream(false)
  let clock = 0
  // As DPO and the reward model do: a baseline evaluation at step 0, before the trainer reports its total.
  const progress = new Progress({ stream, now: () => clock, label: 'dpo', overall: (projected) => ({ label: 'pipeline', secondsAfter: 2 * projected }) })
  progress.update(0, { metrics: { eval_loss: 0.69 } })
  t.equal(stream.writes[0], 'dpo step 0  eval_loss 0.69\n', 'no total yet: no percentage or ETA')
  progress.setTotal(40)
  clock += 10_000
  progress.update(2, { metrics: { loss: 0.5 } })
  t.equal(stream.writes[1], 'dpo step 2/40  5%  ETA 3m10s  pipeline ETA 9m50s  loss 0.5\n', 'total, ETA, and the overall ETA after it')
  assertThrowsWith(t, () => progress.setTotal(-1), ['Progress.setTotal'], 'a bad total')
  assertThrowsWith(t, () => new Progress({ overall: 3 as never }), ['overall must be a function'], 'overall is a function')
  // Was: 'dpo step NaN' printed, and a negative total or an every of 0 taken.
  assertThrowsWith(t, () => progress.update(NaN), ['Progress.update: step must be a non-negative integer; got NaN'], 'a NaN step')
  assertThrowsWith(t, () => progress.update(3, { tokens: -5 }), ['Progress.update: tokens must be a finite number >= 0; got -5'], 'negative tokens')
  assertThrowsWith(t, () => new Progress({ total: -5 }), ['Progress: total must be an integer >= 0; got -5'], 'a negative total')
  assertThrowsWith(t, () => new Progress({ every: 0 }), ['Progress: every must be an integer >= 1; got 0'], 'every 0')
})

// --- Interrupts ----------------------------------------------------------------

t.test('onInterrupt: AbortSignal and in-process signals, no leaked listeners', async (t) => {
  const counts = () => [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')]
  const before = counts()
  const controller = new AbortController()
  const reasons: string[] = []
  const interrupt = onInterrupt((why) => reasons.push(why), { signal: controller.signal, quiet: true })
  t.same(counts(), [before[0] + 1, before[1] + 1], 'SIGINT and SIGTERM handlers installed')
  t.notOk(interrupt.requested)
  controller.abort()
  t.ok(interrupt.requested, 'aborting the signal stops the run')
  t.equal(interrupt.reason, 'abort')
  t.ok(interrupt.signal.aborted, 'and aborts the run signal')
  interrupt.dispose()
  interrupt.dispose()
  t.same(counts(), before, 'dispose() removes the handlers (twice is fine)')
  t.same(reasons, ['abort'], 'the handler ran once')

  const sigterm = onInterrupt(undefined, { quiet: true })
  process.emit('SIGTERM', 'SIGTERM')
  t.equal(sigterm.reason, 'SIGTERM', 'SIGTERM stops the run')
  sigterm.dispose()
  t.same(counts(), before)

  const already = new AbortController()
  already.abort()
  const early = onInterrupt(undefined, { signal: already.signal, quiet: true })
  t.ok(early.requested, 'an already aborted signal stops the run at once')
  early.dispose()
  t.same(counts(), before)
})

t.test('onInterrupt: a handler that is not a function, unknown signal names, a signal that is no AbortSignal are refused at the call', async (t) => {
  const counts = () => [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')]
  const before = counts()
  // Was: accepted, the AbortSignal ignored, and the first Ctrl-C threw 'handler is not a function' inside the signal handler.
  t.throws(() => onInterrupt({ signal: new AbortController().signal } as never), { message: /onInterrupt: handler must be a function \(reason\) => void; got Object \(options go second/ })
  t.throws(() => onInterrupt(undefined, { signals: ['SIGFOO' as NodeJS.Signals] }), { message: /onInterrupt: signals must be a list of signal names/ }, 'was: listened for, never came')
  t.throws(() => onInterrupt(undefined, { signals: 'SIGINT' as never }), { message: /signals must be a list of signal names .*; got 'SIGINT'/ })
  t.throws(() => onInterrupt(undefined, { signal: 'SIGINT' as never }), { message: "onInterrupt: signal must be an AbortSignal; got 'SIGINT'" })
  t.same(counts(), before, 'no handler was left installed')
})

/** Runs a script in a child process; resolves with its exit code and output once it exits. */
function child(script: string, onLine: (line: string, kill: (signal: NodeJS.Signals) => void) => void): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['-e', script], { env: { ...process.env, RLFARM_PACKAGE: require.resolve('rlfarm') } })
    let out = ''
    let err = ''
    let pending = ''
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk
      pending += chunk
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
        onLine(pending.slice(0, nl), (signal) => proc.kill(signal))
        pending = pending.slice(nl + 1)
      }
    })
    proc.stderr.on('data', (chunk: Buffer) => (err += chunk))
    proc.on('error', reject)
    // A process ended by a signal reports as a shell does: 128 + the signal's number.
    proc.on('exit', (code, signal) => resolve({ code: code ?? (signal ? 128 + os.constants.signals[signal] : null), out, err }))
  })
}

const TRAINER = `
  const { onInterrupt } = require(process.env.RLFARM_PACKAGE)
  const before = process.listenerCount('SIGINT')
  const interrupt = onInterrupt((why) => console.log('handler ' + why))
  console.log('ready')
  let step = 0
  const timer = setInterval(() => {
    step++ // a training step
    if (!interrupt.requested || process.argv.includes('stubborn')) return
    clearInterval(timer)
    console.log('checkpoint at step ' + step + ', reason ' + interrupt.reason + ', signal aborted ' + interrupt.signal.aborted)
    interrupt.dispose()
    console.log('extra listeners ' + (process.listenerCount('SIGINT') - before))
  }, 5)
`

t.test('onInterrupt: Ctrl-C in a child process stops it cleanly between steps', async (t) => {
  const { code, out, err } = await child(TRAINER, (line, kill) => line === 'ready' && setTimeout(() => kill('SIGINT'), 50))
  t.equal(code, 0, 'the process exits by itself, with status 0')
  t.match(out, /handler SIGINT\ncheckpoint at step \d+, reason SIGINT, signal aborted true\nextra listeners 0\n/, 'the loop saw the flag, saved, and uninstalled the handlers')
  t.match(err, /SIGINT: stopping after this step and saving a checkpoint \(Ctrl-C again exits at once\)/, 'and told the user')
})

t.test('onInterrupt: a second Ctrl-C exits at once', async (t) => {
  const { code, err } = await child(`process.argv.push('stubborn');${TRAINER}`, (line, kill) => {
    if (line === 'ready') kill('SIGINT')
    if (line === 'handler SIGINT') setTimeout(() => kill('SIGINT'), 20)
  })
  t.equal(code, 130, 'exit status 128 + SIGINT')
  t.match(err, /SIGINT again: exiting now, without a checkpoint/)
})
