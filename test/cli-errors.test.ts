// How the rlfarm command reports failures: one line and exit code 1 for a
// failed run whatever was thrown (an error whose code is a number, a thrown
// string, an error nobody awaited), exit code 2 for every config error.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { tempDir } from './helpers/common'

const ROOT = path.join(__dirname, '..')
const BIN = path.join(ROOT, 'bin', 'rlfarm.js')
// eslint-disable-next-line @typescript-eslint/no-require-imports
const cli = require(path.join(ROOT, 'dist', 'cli', 'index.js')) as typeof import('../ts/cli/index')

function rlfarm(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

t.test('describeFailure: any thrown value becomes a message and a string code', async (t) => {
  const numeric = Object.assign(new Error('the server hung up'), { code: 5 })
  t.same(cli.describeFailure(numeric).code, '5', 'a numeric code is a string')
  t.equal(cli.describeFailure(numeric).message, 'the server hung up')
  t.match(cli.describeFailure(new RangeError('')).message, /^RangeError without a message$/)
  t.match(cli.describeFailure('plain text').message, /thrown string: plain text/)
  t.match(cli.describeFailure(null).message, /thrown null/)
  t.match(cli.describeFailure(undefined).message, /thrown undefined/)
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  t.match(cli.describeFailure(cyclic).message, /thrown object/)
})

t.test('the main handler: an error with a numeric code is one line and exit 1 (it crashed on e.code.startsWith)', async (t) => {
  const dir = tempDir(t, 'cli-errors')
  const script = path.join(dir, 'numeric.js')
  // A run that fails with an error whose code is a number (as undici's and some native errors are).
  fs.writeFileSync(
    script,
    `const cli = require(${JSON.stringify(path.join(ROOT, 'dist', 'cli', 'index.js'))})
const session = require(${JSON.stringify(path.join(ROOT, 'dist', 'run', 'session.js'))})
session.runPipeline = async () => { throw Object.assign(new Error('stalled socket'), { code: 7 }) }
cli.main(['run', 'pipeline.yaml']).then((code) => { process.exitCode = code })`,
  )
  const r = spawnSync(process.execPath, [script], { cwd: dir, encoding: 'utf8', timeout: 120_000 })
  t.equal(r.status, 1, r.stderr)
  t.equal(r.stderr, 'rlfarm run: stalled socket\n', 'one line naming the command and the error')
})

t.test('errors that escape every handler: one line, exit 1', async (t) => {
  const dir = tempDir(t, 'cli-errors')
  for (const [name, body] of [
    ['thrown', "setTimeout(() => { throw Object.assign(new Error('emitter broke'), { code: 12 }) }, 10)"],
    ['rejected', "Promise.reject(Object.assign(new Error('emitter broke'), { code: 12 }))"],
  ]) {
    const script = path.join(dir, `${name}.js`)
    fs.writeFileSync(script, `require(${JSON.stringify(path.join(ROOT, 'dist', 'cli', 'index.js'))}).installFatalHandlers(['train'])\n${body}\nsetTimeout(() => {}, 5000)\n`)
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 60_000 })
    t.equal(r.status, 1, `${name}: exit 1`)
    t.equal(r.stderr, 'rlfarm train: emitter broke\n', `${name}: one line, no stack`)
  }
})

t.test('config errors all exit 2: a missing algorithm, a missing policy, a bad name', async (t) => {
  const dir = tempDir(t, 'cli-errors')
  fs.mkdirSync(path.join(dir, 'data'))
  fs.writeFileSync(path.join(dir, 'data', 'sft.jsonl'), '{"prompt":"a","response":"b"}\n')
  const write = (name: string, text: string) => {
    fs.writeFileSync(path.join(dir, name), text)
    return path.join(dir, name)
  }
  const noAlgorithm = rlfarm(['train', write('no-algorithm.yaml', 'name: x\ndata: { train: data/sft.jsonl }\n'), '--output-dir', dir])
  t.equal(noAlgorithm.code, 2, noAlgorithm.stderr)
  t.match(noAlgorithm.stderr, /no-algorithm\.yaml: algorithm: is required \(one of sft, /)
  const noPolicy = rlfarm(['train', write('no-policy.yaml', 'algorithm: sft\nname: np\ndata: { train: data/sft.jsonl }\n'), '--output-dir', dir])
  t.equal(noPolicy.code, 2, noPolicy.stderr)
  t.match(noPolicy.stderr, /policy: give policy\.path \(a model directory\) or policy\.init/)
  for (const name of ['a/b', '..', '.']) {
    const badName = rlfarm(['train', 'examples/sft.yaml', '--output-dir', dir, '--name', name])
    t.equal(badName.code, 2, `name ${name}: ${badName.stderr}`)
    t.match(badName.stderr, /sft\.yaml: name: must be a directory name/)
  }
  t.equal(fs.existsSync(path.join(dir, 'a')), false, 'nothing was created for the bad name')
})

t.test('the http judge without a usable url or model_name: a ConfigError naming the field', async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { judgeFor } = require(path.join(ROOT, 'dist', 'training', 'judges.js')) as typeof import('../ts/training/judges')
  const base = { kind: 'http', label_noise: 0.25, seed: 0, api_key_env: 'X', concurrency: 1, timeout_ms: 1000, retries: 0, max_reply_bytes: 1024, max_retry_after_ms: 0 }
  const options = { seed: 0, chatTemplate: false }
  await t.rejects(judgeFor({ ...base, model_name: 'm' } as never, options), { name: 'ConfigError', message: /judge\.url: must be the http\(s\) base URL .*; got null/ })
  await t.rejects(judgeFor({ ...base, url: 'localhost:8000', model_name: 'm' } as never, options), { name: 'ConfigError', message: /got "localhost:8000"/ })
  await t.rejects(judgeFor({ ...base, url: 'http://127.0.0.1:9/v1' } as never, options), { name: 'ConfigError', message: /judge\.model_name: is required for the http judge/ })
})

t.test('generate: a sampling flag out of range is a usage error (exit 2) naming the flag, before the model loads', async (t) => {
  const missing = path.join(tempDir(t, 'cli-errors'), 'no-model')
  for (const [flag, value, expected] of [
    ['--top-p', '0', "--top-p must be a number in (0, 1]; got '0'"],
    ['--top-p', '1.5', "--top-p must be a number in (0, 1]; got '1.5'"],
    ['--max-new-tokens', '3.5', "--max-new-tokens must be a non-negative integer; got '3.5'"],
    ['--top-k', '2.5', "--top-k must be a non-negative integer; got '2.5'"],
    ['--temperature', '', "--temperature must be a non-negative number; got ''"],
    ['--seed', '1e20', "--seed must be a non-negative integer up to 4294967295; got '1e20'"],
  ]) {
    const r = rlfarm(['generate', '-m', missing, '-p', 'hi', `${flag}=${value}`])
    t.equal(r.code, 2, `${flag} ${value}: ${r.stderr}`)
    t.match(r.stderr, `rlfarm generate: ${expected}\n`, `${flag} ${value}: names the flag`)
  }
})
