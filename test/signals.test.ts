// FIFOs and signals: a FIFO as a model file or data file never hangs a run,
// and a second SIGINT or SIGTERM ends the process at once even while a
// thread-pool thread is blocked (an open() of a FIFO with no writer).
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { Model } from 'rlfarm'
import { tempDir } from './helpers/common'
import { TINY_POLICY } from './helpers/toy-data'

const ROOT = path.join(__dirname, '..')
const BIN = path.join(ROOT, 'bin', 'rlfarm.js')

function mkfifo(file: string): string {
  const r = spawnSync('mkfifo', [file])
  if (r.status !== 0) throw new Error(`mkfifo ${file} failed: ${r.stderr}`)
  return file
}

/** Spawns node on `args`; resolves with how it ended, or 'hung' after `limitMs`. */
function run(args: string[], onStderr: (text: string, kill: (s: NodeJS.Signals) => void) => void, limitMs = 60_000) {
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; hung: boolean }>((resolve) => {
    const proc = spawn(process.execPath, args, { cwd: ROOT })
    let stderr = ''
    let hung = false
    const timer = setTimeout(() => {
      hung = true
      proc.kill('SIGKILL')
    }, limitMs)
    proc.stderr.on('data', (c: Buffer) => {
      stderr += c
      onStderr(stderr, (s) => proc.kill(s))
    })
    proc.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stderr, hung })
    })
  })
}

t.test('a FIFO as a model file: refused at once, not a hang', async (t) => {
  const dir = tempDir(t, 'signals')
  const model = Model.create({ arch: 'gpt2', vocab: 260, dim: 16, layers: 1, heads: 2, maxPositions: 16 }, { seed: 1 })
  const saved = path.join(dir, 'model')
  await model.save(saved)
  fs.rmSync(path.join(saved, 'model.safetensors'))
  mkfifo(path.join(saved, 'model.safetensors'))
  await t.rejects(Model.load(saved), { message: `cannot read ${path.join(saved, 'model.safetensors')}: it is a FIFO (named pipe), not a regular file` })
  fs.rmSync(path.join(saved, 'config.json'))
  mkfifo(path.join(saved, 'config.json'))
  await t.rejects(Model.load(saved), { message: `cannot read ${path.join(saved, 'config.json')}: it is a FIFO (named pipe), not a regular file` })
})

t.test('a FIFO with no writer as data (allowed): a second SIGTERM ends the run at once', async (t) => {
  const dir = tempDir(t, 'signals')
  const fifo = mkfifo(path.join(dir, 'rows.fifo'))
  const config = path.join(dir, 'fifo.yaml')
  fs.writeFileSync(config, `algorithm: sft\nname: fifo\npolicy: ${JSON.stringify(TINY_POLICY)}\ndata: { train: ${fifo}, allow_special_files: true, chat_template: false }\nlogging: { progress: lines }\n`)
  let sent = 0
  // The first SIGTERM once run.json exists (the run is under way, waiting on the FIFO); the second once it was heard.
  const r2 = await new Promise<Awaited<ReturnType<typeof run>>>((resolve) => {
    const proc = spawn(process.execPath, [BIN, 'train', config, '--output-dir', dir, '--name', 'fifo2'], { cwd: ROOT })
    let stderr = ''
    proc.stderr.on('data', (c: Buffer) => {
      stderr += c
      if (sent === 1 && /SIGTERM: stopping/.test(stderr)) {
        sent++
        proc.kill('SIGTERM')
      }
    })
    const waitForRunJson = setInterval(() => {
      if (sent === 0 && fs.existsSync(path.join(dir, 'fifo2', 'run.json'))) {
        sent++
        clearInterval(waitForRunJson)
        setTimeout(() => proc.kill('SIGTERM'), 500)
      }
    }, 50)
    const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000)
    proc.on('exit', (code, signal) => {
      clearTimeout(timer)
      clearInterval(waitForRunJson)
      resolve({ code, signal, stderr, hung: signal === 'SIGKILL' })
    })
  })
  t.equal(r2.hung, false, r2.stderr)
  t.equal(r2.signal, 'SIGTERM', 'ended by the second SIGTERM (status 143 in a shell)')
  t.match(r2.stderr, /SIGTERM again: exiting now, without a checkpoint/)
})

t.test('a second SIGINT exits at once while a thread-pool thread is blocked (process.exit would wait for it)', async (t) => {
  const dir = tempDir(t, 'signals')
  const fifo = mkfifo(path.join(dir, 'blocked.fifo'))
  const script = path.join(dir, 'blocked.js')
  fs.writeFileSync(
    script,
    `const { onInterrupt } = require(${JSON.stringify(path.join(ROOT, 'dist', 'index.js'))})
onInterrupt()
// A plain open of a FIFO with no writer: one thread-pool thread blocked for good.
require('node:fs').promises.open(${JSON.stringify(fifo)}, 'r')
setTimeout(() => process.stderr.write('ready\\n'), 200)`,
  )
  let sent = 0
  const r = await run([script], (text, kill) => {
    if (sent === 0 && text.includes('ready')) {
      sent++
      kill('SIGINT')
    } else if (sent === 1 && text.includes('SIGINT: stopping')) {
      sent++
      kill('SIGINT')
    }
  })
  t.equal(r.hung, false, 'the process ended')
  t.equal(r.signal, 'SIGINT', `ended by SIGINT (128 + ${os.constants.signals.SIGINT} in a shell)`)
  t.match(r.stderr, /SIGINT again: exiting now/)
})
