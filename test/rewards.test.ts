// Rewards as code (ts/rewards): the built-in verifiable rewards, how
// results are checked and combined (TRL's weighted sum, null left out), each
// failure's error (a throw, a wrong length, a non-number, NaN, a timeout) and
// reward.on_error: skip, module loading (.mjs, .cjs, .ts), worker threads
// with their timeout, and the code_tests sandbox against escape attempts.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { resolveConfig, RewardError, FAMILIES, Rng, type RewardBatch, type RewardFn, type RunConfigInput } from 'rlfarm'
import { extractAnswer, makeRewardCalls, normalizeAnswer, overlongPenalty, RewardFunctions, runCodeTests, sameAnswer, codeOf } from 'rlfarm/internal'
import { tempDir } from './helpers/common'

function batch(completions: string[], rows: Record<string, unknown>[] = completions.map(() => ({})), step = 0): RewardBatch {
  return { prompts: completions.map(() => 'p'), completions, completionIds: completions.map((c) => [...Buffer.from(c)]), rows, step }
}

async function functions(input: RunConfigInput, inProcess: Record<string, RewardFn> = {}, notes: string[] = []): Promise<RewardFunctions> {
  const config = resolveConfig({ algorithm: 'grpo', ...input })
  return new RewardFunctions(await makeRewardCalls(config, inProcess), config.reward.on_error as 'stop' | 'skip', (m) => notes.push(m))
}

async function scoreWith(spec: RunConfigInput['reward_function'], b: RewardBatch, extra: RunConfigInput = {}): Promise<(number | null)[]> {
  const f = await functions({ reward_function: spec, ...extra })
  try {
    const out = await f.score(b)
    return Object.values(out.perFunction)[0]
  } finally {
    await f.close()
  }
}

t.test('exact_match: normalised strings; null for rows without an answer', async (t) => {
  t.equal(normalizeAnswer('  The  Cat.\n'), 'the cat')
  const v = await scoreWith({ name: 'exact_match' }, batch(['Paris.', 'paris', 'Lyon', 'x'], [{ answer: 'Paris' }, { reference: 'PARIS ' }, { answer: 'Paris' }, {}]))
  t.same(v, [1, 1, 0, null])
  const keyed = await scoreWith({ name: 'exact_match', args: { keys: ['gold'] } }, batch(['a'], [{ gold: 'A', answer: 'b' }]))
  t.same(keyed, [1], 'args.keys picks the column')
})

t.test('math: the final answer by value (boxed, ####, last number; fractions, decimals, \\frac, percentages, units)', async (t) => {
  t.equal(extractAnswer('so \\boxed{\\frac{1}{2}} and then \\boxed{3}'), '3', 'the last \\boxed{}')
  t.equal(extractAnswer('x \\boxed{\\frac{a}{b+{c}}}'), '\\frac{a}{b+{c}}', 'nested braces')
  t.equal(extractAnswer('She pays 5+3=8 dollars.\n#### 8'), '8', 'GSM8K ####')
  t.equal(extractAnswer('first 12, then 1,250 apples'), '1,250', 'the last number')
  t.equal(extractAnswer('no numbers'), undefined)
  const pairs: [string, string, boolean][] = [
    ['0.5', '\\frac{1}{2}', true],
    ['1/2', '\\dfrac{1}{2}', true],
    ['\\frac12', '0.5', true],
    ['50%', '0.5', true],
    ['50\\%', '50', true],
    ['1,200 cm', '1200', true],
    ['$18', '18', true],
    ['x = 4', '4', true],
    ['2\\sqrt{2}', '\\sqrt{8}', true],
    ['0.33', '\\frac{1}{3}', false],
    ['7', '8', false],
    ['(A)', '(a)', true],
  ]
  for (const [a, b, same] of pairs) t.equal(sameAnswer(a, b), same, `${a} vs ${b}`)
  const rows = [
    { question: 'q', answer: 'Natalia sold 48/2 = 24 clips in May.\n#### 72' },
    { problem: 'p', solution: 'Thus the answer is $\\boxed{\\frac{3}{4}}$.' },
    { answer: '72' },
    { answer: '72' },
    {},
  ]
  const v = await scoreWith({ name: 'math' }, batch(['so 48 + 24 = 72', 'the answer is \\boxed{0.75}', 'about 72.0%', 'I think 71', '5'], rows))
  t.same(v, [1, 1, 1, 0, null])
})

t.test('format: a regex over the whole completion (default <think>...</think><answer>...</answer>)', async (t) => {
  const v = await scoreWith({ name: 'format' }, batch(['<think>a\nb</think> <answer>4</answer>', '<answer>4</answer>', '<think>x</think><answer>4</answer> extra']))
  t.same(v, [1, 0, 0])
  t.same(await scoreWith({ name: 'format', args: { pattern: '^\\d+$' } }, batch(['12', '1a'])), [1, 0])
  await t.rejects(functions({ reward_function: { name: 'format', args: { pattern: '(' } } }), { message: /reward_function 'format': args.pattern is not a valid regular expression/ })
  await t.rejects(functions({ reward_function: { name: 'format', args: { patern: 'x' } } }), { message: /unknown args key 'patern'; it takes pattern, flags/ })
})

t.test("overlong_penalty: DAPO's soft length penalty", async (t) => {
  // L_max 20, L_cache 8: 0 up to 12 tokens, then linear to -1 at 20, -1 beyond.
  t.equal(overlongPenalty(12, 20, 8), 0)
  t.equal(overlongPenalty(16, 20, 8), -0.5)
  t.equal(overlongPenalty(20, 20, 8), -1)
  t.equal(overlongPenalty(21, 20, 8), -1)
  const b = batch(['x'.repeat(4), 'x'.repeat(6), 'x'.repeat(8)])
  t.same(await scoreWith({ name: 'overlong_penalty', args: { cache: 4 } }, b, { generation: { max_new_tokens: 8 } }), [0, -0.5, -1], 'max_length defaults to generation.max_new_tokens')
  await t.rejects(functions({ reward_function: { name: 'overlong_penalty', args: { max_length: 4, cache: 8 } } }), { message: /args.cache \(8\) must be at most args.max_length \(4\)/ })
  await t.rejects(functions({ reward_function: { name: 'overlong_penalty' } }), { message: /args.cache must be an integer >= 1; got undefined/ })
})

t.test('count_token, length and unknown names', async (t) => {
  t.same(await scoreWith({ name: 'count_token', token: 97, scale: 2 }, batch(['aab', 'b'])), [4, 0], 'scale multiplies')
  t.same(await scoreWith({ name: 'length' }, batch(['abc', ''])), [3, 0])
  await t.rejects(functions({ reward_function: { name: 'fromat' } }), { message: /no reward named 'fromat'.*did you mean 'format'\?/ })
  await t.rejects(functions({ reward_function: { name: 'format', module: './x.mjs' } }), { message: /give name .* or module .*, not both/ })
})

t.test('weighted sum as TRL: null is left out, each function logged on its own', async (t) => {
  const half: RewardFn = ({ completions }) => completions.map((_, i) => (i % 2 ? null : 1))
  const two: RewardFn = ({ completions }) => completions.map(() => 2)
  const f = await functions({ reward_functions: [{ name: 'half', weight: 3 }, { name: 'two', weight: 0.5 }] }, { half, two })
  const out = await f.score(batch(['a', 'b', 'c']))
  t.same([...out.total], [4, 1, 4], '3 * 1 + 0.5 * 2, and 0.5 * 2 where half is null')
  t.same(out.perFunction, { half: [1, null, 1], two: [2, 2, 2] })
  t.equal(out.metrics['rewards/half/mean'], 1, 'a mean over the rows it applies to')
  t.equal(out.metrics['rewards/two/std'], 0)
  const none = await functions({ reward_function: { name: 'n' } }, { n: ({ completions }) => completions.map(() => null) })
  t.same([...(await none.score(batch(['a']))).total], [0], 'a row every function skips scores 0 (nansum)')
  const asyncFn = await functions({ reward_function: { name: 'a' } }, { a: async ({ completions, step }) => completions.map(() => step) })
  t.same([...(await asyncFn.score(batch(['a', 'b'], undefined, 7))).total], [7, 7], 'async functions are awaited; step is passed')
  const withArgs = await functions({ reward_function: { name: 'a', args: { bonus: 5 } } }, { a: ({ completions }, args) => completions.map(() => args.bonus as number) })
  t.same([...(await withArgs.score(batch(['a']))).total], [5], 'args reach the function')
})

t.test('each failure names the function, the row and what is wrong', async (t) => {
  const cases: [string, RewardFn, RegExp][] = [
    ['throws', ({ completions }) => completions.map((c) => { if (c === 'bad') throw new Error('no answer found'); return 1 }), /reward function 'throws', row 2 \(step 3\): threw: no answer found/],
    ['short', ({ completions }) => completions.slice(1).map(() => 1), /reward function 'short' \(step 3\): returned 3 values for 4 completions/],
    ['text', ({ completions }) => completions.map((_, i) => (i === 1 ? ('1' as never) : 1)), /reward function 'text', row 1 \(step 3\): returned string "1"; expected a number/],
    ['nan', ({ completions }) => completions.map((_, i) => (i === 3 ? NaN : 1)), /reward function 'nan', row 3 \(step 3\): returned NaN; expected a finite number/],
    ['notarray', () => 5 as never, /reward function 'notarray' \(step 3\): returned number 5; expected an array of 4 numbers/],
    ['undef', ({ completions }) => completions.map((_, i) => (i === 0 ? (undefined as never) : 1)), /'undef', row 0 .*returned undefined/],
  ]
  const b = batch(['a', 'b', 'bad', 'c'], undefined, 3)
  for (const [name, fn, message] of cases) {
    const f = await functions({ reward_function: { name } }, { [name]: fn })
    const err = await f.score(b).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof RewardError, `${name}: a RewardError`)
    t.match((err as Error).message, message, name)
  }
})

t.test('a call past reward.timeout fails (main thread, async)', async (t) => {
  const never: RewardFn = () => new Promise(() => {})
  const f = await functions({ reward_function: { name: 'never' }, reward: { timeout: 0.2 } }, { never })
  await t.rejects(f.score(batch(['a', 'b'])), { message: /reward function 'never' \(step 0\): timed out after 0.2 s \(reward.timeout\) \(all 2 rows of the batch\)/ })
})

t.test('reward.on_error: skip scores failed rows 0 and counts them', async (t) => {
  const notes: string[] = []
  const fn: RewardFn = ({ completions }) => completions.map((c) => { if (c === 'bad') throw new Error('boom'); return 2 })
  const f = await functions({ reward_functions: [{ name: 'fn' }, { name: 'length', weight: 0 }], reward: { on_error: 'skip' } }, { fn }, notes)
  const out = await f.score(batch(['a', 'bad', 'b']))
  t.same([...out.total], [2, 0, 2])
  t.equal(out.metrics.reward_errors, 1)
  t.match(notes[0], /reward function 'fn' \(step 0\): 1 row\(s\) scored 0 \(reward.on_error: skip\); first, row 1: threw: boom/)
})

function writeModules(dir: string): Record<string, string> {
  const files = {
    mjs: path.join(dir, 'rewards.mjs'),
    cjs: path.join(dir, 'rewards.cjs'),
    ts: path.join(dir, 'rewards.ts'),
  }
  fs.writeFileSync(
    files.mjs,
    [
      "export const hasA = ({ completions }) => completions.map((c) => (c.includes('a') ? 1 : 0))",
      'export default ({ rows }, args) => rows.map((r) => r.answer * (args.times ?? 1))',
      'export function spin() { for (;;) {} }',
      'export const sleepy = async ({ completions }) => { await new Promise((r) => setTimeout(r, 200)); return completions.map(() => 1) }',
      "import { threadId } from 'node:worker_threads'",
      'export const thread = ({ completions }) => completions.map(() => threadId)',
      'export const lengths = ({ completions }) => completions.map((c) => c.length)',
      'export const dropOne = ({ completions }) => completions.slice(1).map(() => 1)',
    ].join('\n'),
  )
  fs.writeFileSync(files.cjs, "exports.len = ({ completions }) => completions.map((c) => c.length)\n")
  fs.writeFileSync(
    files.ts,
    [
      "interface Batch { completions: string[]; rows: { answer?: string }[] }",
      'export function exact({ completions, rows }: Batch): (number | null)[] {',
      '  return completions.map((c: string, i: number): number | null => (rows[i].answer === undefined ? null : Number(c.trim() === rows[i].answer)))',
      '}',
    ].join('\n'),
  )
  return files
}

t.test('module rewards: .mjs (named and default exports, args), .cjs and TypeScript', async (t) => {
  const dir = tempDir(t, 'modules')
  const files = writeModules(dir)
  const b = batch(['abc', 'xyz'], [{ answer: 3 }, { answer: 4 }])
  t.same(await scoreWith({ module: files.mjs, export: 'hasA' }, b), [1, 0])
  t.same(await scoreWith({ module: files.mjs, args: { times: 2 } }, b), [6, 8], 'the default export, with args')
  t.same(await scoreWith({ module: files.cjs, export: 'len' }, b), [3, 3])
  t.same(await scoreWith({ module: files.ts, export: 'exact' }, batch([' 3', '5', 'x'], [{ answer: '3' }, { answer: '4' }, {}])), [1, 0, null], 'TypeScript through tsx')
  await t.rejects(functions({ reward_function: { module: files.mjs, export: 'nope' } }), { message: /reward_function 'nope': .*rewards.mjs has no function export 'nope' \(missing\); its function exports: .*hasA/ })
  await t.rejects(functions({ reward_function: { module: path.join(dir, 'missing.mjs') } }), { message: /missing.mjs does not exist/ })
  fs.writeFileSync(path.join(dir, 'r.py'), '')
  await t.rejects(functions({ reward_function: { module: path.join(dir, 'r.py') } }), { message: /must be a .js, .mjs, .cjs or .ts file; got '.py'/ })
  fs.writeFileSync(path.join(dir, 'broken.mjs'), 'export const = 1')
  await t.rejects(functions({ reward_function: { module: path.join(dir, 'broken.mjs') } }), { message: /loading .*broken.mjs failed/ })
})

t.test('reward.workers: calls run in worker threads; one past the timeout is ended and the worker replaced', async (t) => {
  const dir = tempDir(t, 'workers')
  const files = writeModules(dir)
  const pooled = await functions({ reward_functions: [{ module: files.mjs, export: 'hasA' }, { module: files.ts, export: 'exact' }], reward: { workers: 2 } })
  const out = await pooled.score(batch(['a', 'b'], [{ answer: 'a' }, {}]))
  t.same(out.perFunction, { hasA: [1, 0], exact: [1, null] }, 'module and TypeScript rewards in workers')
  await pooled.close()

  const spin = await functions({ reward_function: { module: files.mjs, export: 'spin' }, reward: { workers: 1, timeout: 0.5 } })
  await t.rejects(spin.score(batch(['a', 'b'])), { message: /reward function 'spin' \(step 0\): timed out after 0.5 s \(reward.timeout\); its worker was ended \(all 2 rows of the batch\)/ }, 'a synchronous infinite loop is stopped')
  await spin.close()

  // A batch is split among the workers, one contiguous part each, and put back in order.
  const split = await functions({ reward_functions: [{ module: files.mjs, export: 'thread' }, { module: files.mjs, export: 'lengths' }], reward: { workers: 2 } })
  const parts = await split.score(batch(['a', 'bb', 'ccc', 'dddd']))
  t.same(parts.perFunction.lengths, [1, 2, 3, 4], 'values in the batch order')
  const threads = parts.perFunction.thread as number[]
  t.ok(threads[0] === threads[1] && threads[2] === threads[3] && threads[0] !== threads[2] && threads[0] !== 0, `two worker threads, a part each: ${threads}`)
  await split.close()
  const drop = await functions({ reward_function: { module: files.mjs, export: 'dropOne' }, reward: { workers: 2 } })
  await t.rejects(drop.score(batch(['a', 'b', 'c', 'd'])), { message: /reward function 'dropOne' \(step 0\): returned 1 values for rows [02]-[13] \(one worker's part of the batch, 2 completions\)/ })
  await drop.close()

  // Two workers take two calls at once: four 200 ms calls finish in about two rounds, not four.
  const sleepy = await functions({ reward_function: { module: files.mjs, export: 'sleepy' }, reward: { workers: 2 } })
  const results = await Promise.all([0, 1, 2, 3].map(() => sleepy.score(batch(['a']))))
  t.same(results.map((r) => [...r.total]), [[1], [1], [1], [1]])
  await sleepy.close()

  const skip = await functions({ reward_function: { module: files.mjs, export: 'spin' }, reward: { workers: 1, timeout: 0.3, on_error: 'skip' } })
  const skipped = await skip.score(batch(['a', 'b']))
  t.same([...skipped.total], [0, 0])
  t.equal(skipped.metrics.reward_errors, 2, 'the timed-out rows are counted')
  const again = await skip.score(batch(['a']))
  t.equal(again.metrics.reward_errors, 1, 'the replacement worker takes the next call')
  await skip.close()
  await t.rejects(functions({ reward_function: { module: path.join(dir, 'nope.mjs') }, reward: { workers: 1 } }), { message: /nope.mjs does not exist/ }, 'a load error surfaces before training')
})

t.test('code_tests: the share of tests passed, in a locked-down child process', async (t) => {
  t.equal(codeOf('Here:\n```js\nfunction add(a, b) { return a + b }\n```\nDone.'), 'function add(a, b) { return a + b }\n')
  t.equal(codeOf('const x = 1'), 'const x = 1')
  const add = 'function add(a, b) { return a + b }'
  const tests = ['if (add(1, 2) !== 3) throw new Error("1+2")', 'if (add(-1, 1) !== 0) throw new Error("-1+1")', 'if (add(2, 2) !== 5) throw new Error("wrong test")']
  t.same(await runCodeTests(add, tests, { timeoutMs: 2000, memoryMb: 64 }), [true, true, false])
  const rows = [{ tests }, { tests: tests[0] }, {}]
  const v = await scoreWith({ name: 'code_tests' }, batch(['```js\n' + add + '\n```', 'function add(a, b) { return a - b }', add], rows))
  t.same(v, [2 / 3, 0, null])
  await t.rejects(scoreWith({ name: 'code_tests' }, batch([add], [{ tests: [1] }])), { message: /row 0: 'tests' must be a string of test code or a non-empty list of them/ })
})

t.test('code_tests: escape attempts fail their tests and harm nothing', async (t) => {
  const dir = tempDir(t, 'sandbox')
  const secret = path.join(dir, 'secret.txt')
  fs.writeFileSync(secret, 's3cret')
  const marker = path.join(dir, 'written.txt')
  const o = { timeoutMs: 1000, memoryMb: 64 }
  const ok = 'if (globalThis.__done !== true) throw new Error("not done")'
  const attempts: [string, string][] = [
    ['process.exit', 'process.exit(0); globalThis.__done = true'],
    ['an infinite loop', 'for (;;) {}'],
    ['require fs', `require('fs').readFileSync(${JSON.stringify(secret)}); globalThis.__done = true`],
    ['import fs', `import('fs').then((fs) => fs.writeFileSync(${JSON.stringify(marker)}, 'x')); globalThis.__done = true; throw new Error('async')`],
    ['escape the context for fs', `const p = this.constructor.constructor('return process')(); p.mainModule.require('fs').writeFileSync(${JSON.stringify(marker)}, 'x'); globalThis.__done = true`],
    ['escape for child_process', `const p = ({}).constructor.constructor('return process')(); p.binding('spawn_sync'); globalThis.__done = true`],
    ['process.kill of the parent', `const p = ({}).constructor.constructor('return process')(); p.kill(p.ppid, 'SIGKILL'); globalThis.__done = true`],
    ['network', `const p = ({}).constructor.constructor('return process')(); p.getBuiltinModule('net').connect(80, '127.0.0.1'); globalThis.__done = true`],
    ['fetch', `fetch('http://127.0.0.1:1/'); globalThis.__done = true`],
    ['a huge allocation', 'const xs = []; for (;;) xs.push(new Array(1e6).fill(1.5))'],
    ['a huge typed array', 'const a = new Uint8Array(2 ** 31); a.fill(1); globalThis.__done = true'],
    ['eval', 'eval("globalThis.__done = true")'],
  ]
  for (const [what, code] of attempts) {
    const passed = await runCodeTests(code, [ok], o)
    t.same(passed, [false], `${what}: the test fails`)
  }
  t.notOk(fs.existsSync(marker), 'no file was written')
  // A kill by the parent's own process id would have ended this test run; it is still here.
  t.same(await runCodeTests('globalThis.__done = true', [ok], o), [true], 'and a well-behaved completion still passes')
})

t.test('examples/rewards.mjs: 1 for exactly the right answer of a closed family, 0 otherwise, null on open ones', async (t) => {
  const rng = new Rng(5)
  const closed = FAMILIES.find((f) => f.kind === 'closed')!.make(rng)
  const open = FAMILIES.find((f) => f.kind === 'open')!.make(rng)
  const f = await functions({ reward_function: { module: path.join(__dirname, '..', 'examples', 'rewards.mjs'), export: 'accuracy' } })
  const b: RewardBatch = { ...batch([closed.answer, `${closed.answer}\nhope this helps`, `${closed.answer}x`, open.answer]), prompts: [closed.instruction, closed.instruction, closed.instruction, open.instruction] }
  t.same((await f.score(b)).perFunction.accuracy, [1, 0, 0, null])
})

t.test('code_tests: beneath the vm context, the child has no file, process, network or signal access', async (t) => {
  // What code that got out of the context would find: the lockdown, under the permission model.
  const { LOCKDOWN } = await import('../dist/rewards/code-tests.js')
  const probes = {
    readFile: "process.getBuiltinModule('fs').readFileSync('/etc/hostname')",
    writeFile: "process.getBuiltinModule('fs').writeFileSync('/tmp/rlfarm-sandbox-probe', 'x')",
    childProcess: "process.getBuiltinModule('child_process').execSync('true')",
    worker: "new (process.getBuiltinModule('worker_threads').Worker)('1', { eval: true })",
    binding: "process.binding('tcp_wrap')",
    netConnect: "process.getBuiltinModule('net').connect(80, '127.0.0.1')",
    socketConnect: "new (process.getBuiltinModule('net').Socket)().connect(80, '127.0.0.1')",
    httpGet: "process.getBuiltinModule('http').get('http://127.0.0.1:1/')",
    fetch: "fetch('http://127.0.0.1:1/')",
    dns: "process.getBuiltinModule('dns').lookup('localhost', () => {})",
    udp: "process.getBuiltinModule('dgram').createSocket('udp4')",
    kill: 'process.kill(process.ppid, 0)',
    rawKill: 'process._kill(process.ppid, 0)',
    require: "require('fs')",
  }
  const script = `${LOCKDOWN}\nconst probes = ${JSON.stringify(probes)}\nfor (const [name, code] of Object.entries(probes)) { let ok = true; try { (0, eval)(code) } catch { ok = false } write(name + ' ' + (ok ? 'ALLOWED' : 'denied') + '\\n') }\n`
  const flag = process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission'
  const r = spawnSync('/bin/sh', ['-c', 'unset NODE_OPTIONS; exec "$@"', 'sh', process.execPath, flag, '--no-warnings', '-e', script], { encoding: 'utf8', timeout: 60_000, env: {} })
  const lines = r.stdout.trim().split('\n')
  t.equal(lines.length, Object.keys(probes).length, `every probe ran (stderr: ${r.stderr.slice(0, 200)})`)
  for (const name of Object.keys(probes)) t.ok(lines.includes(`${name} denied`), `${name}: denied`)
  t.notOk(fs.existsSync('/tmp/rlfarm-sandbox-probe'), 'nothing was written')
})
