// Data files that are hostile or broken: a row over data.max_row_bytes,
// /dev/zero, a FIFO, invalid UTF-8, NUL and lone surrogates, empty prompts
// and responses, a pair whose two sides are equal, a prompt of the wrong
// type. Each is a named error (file:line) or a counted skip as on_bad_row
// says; a run that fails on one ends with run.json 'failed'.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { parsePreferenceRow, parsePromptRow, parseSftRow, readDataset, train } from 'rlfarm'
import { tempDir } from './helpers/common'
import { TINY_POLICY } from './helpers/toy-data'

const ROOT = path.join(__dirname, '..')
const BIN = path.join(ROOT, 'bin', 'rlfarm.js')

const rows = (n: number) => Array.from({ length: n }, (_, i) => JSON.stringify({ prompt: `p${i}`, response: `r${i}` })).join('\n')

t.test('a row over maxRowBytes is a bad row named by file:line, held no further than the limit', async (t) => {
  const dir = tempDir(t, 'data-limits')
  const file = path.join(dir, 'long.jsonl')
  fs.writeFileSync(file, `${rows(1)}\n${JSON.stringify({ prompt: 'x'.repeat(5000), response: 'y' })}\n${rows(2)}\n`)
  await t.rejects(readDataset(file, parseSftRow, { maxRowBytes: 1000 }), { name: 'BadRowError', message: `${file}:2: the row is over 1000 bytes (data.max_row_bytes)` })
  const skipped = await readDataset(file, parseSftRow, { maxRowBytes: 1000, onBadRow: 'skip' })
  t.equal(skipped.rows.length, 3, 'the rows around it are read')
  t.equal(skipped.skipped, 1)
  t.equal((await readDataset(file, parseSftRow, { maxRowBytes: 6000 })).rows.length, 4, 'under a higher limit it is a row')
  // \r\n line ends and a last line without a newline
  fs.writeFileSync(file, `${rows(2).replace('\n', '\r\n')}\r\n{"prompt":"q","response":"s"}`)
  t.same((await readDataset(file, parseSftRow)).rows.map((r) => r.response), ['r0', 'r1', 's'])
})

t.test('/dev/zero and other special files: refused unless allowed, and then capped', async (t) => {
  await t.rejects(readDataset('/dev/zero', parseSftRow), { message: 'cannot read /dev/zero: it is a character device, not a regular file (data.allow_special_files: true reads one)' })
  await t.rejects(readDataset(ROOT, parseSftRow), { message: `${ROOT}: a directory with no data files (.parquet, .jsonl, .jsonl.gz)` }, 'a directory is read as shards; this one has none')
  await t.rejects(readDataset('/dev/zero', parseSftRow, { allowSpecialFiles: true, maxRowBytes: 1 << 20 }), { message: '/dev/zero:1: the row is over 1048576 bytes (data.max_row_bytes)' })
})

t.test('a FIFO: refused at once by default; when allowed, read without blocking a thread', async (t) => {
  const dir = tempDir(t, 'data-limits')
  const fifo = path.join(dir, 'rows.fifo')
  t.equal(spawnSync('mkfifo', [fifo]).status, 0)
  // No writer: a plain open() would block forever.
  await t.rejects(readDataset(fifo, parseSftRow), { message: `cannot read ${fifo}: it is a FIFO (named pipe), not a regular file (data.allow_special_files: true reads one)` })
  // The writer comes after the reader has opened: the read waits for it (in the event loop, no thread held).
  const writer = spawn('sh', ['-c', `sleep 0.5; printf '%s\\n' '{"prompt":"a","response":"b"}' '{"prompt":"c","response":"d"}' > '${fifo}'`])
  t.teardown(() => writer.kill())
  const read = await readDataset(fifo, parseSftRow, { allowSpecialFiles: true })
  t.same(read.rows.map((r) => r.response), ['b', 'd'])
})

t.test('text no tokenizer should see silently: invalid UTF-8, NUL, lone surrogates', async (t) => {
  const dir = tempDir(t, 'data-limits')
  const file = path.join(dir, 'bad.jsonl')
  const good = Buffer.from('{"prompt":"p","response":"r"}\n')
  fs.writeFileSync(file, Buffer.concat([good, Buffer.from('{"prompt":"p","response":"\xff\xfe"}\n', 'latin1'), good, Buffer.from('{"prompt":"a\\u0000b","response":"r"}\n'), Buffer.from('{"prompt":"p","response":"x\\ud800y"}\n'), Buffer.from('{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"\\udc00"}]}\n')]))
  await t.rejects(readDataset(file, parseSftRow), { message: `${file}:2: the row is not valid UTF-8` })
  const r = await readDataset(file, parseSftRow, { onBadRow: 'skip' })
  t.equal(r.rows.length, 2)
  t.equal(r.skipped, 4)
  t.same(r.skippedReasons, [
    `${file}:2: the row is not valid UTF-8`,
    `${file}:4: 'prompt' contains a NUL character (U+0000) at character 1`,
    `${file}:5: 'response' contains a lone surrogate (U+D800, half of a UTF-16 pair: not text) at character 1`,
    `${file}:6: 'messages[1].content' contains a lone surrogate (U+DC00, half of a UTF-16 pair: not text) at character 0`,
  ])
})

t.test('rows that teach nothing or are the wrong shape: each named', async (t) => {
  t.throws(() => parseSftRow({ prompt: 5, response: 'r' }), { message: "'prompt' must be a string or a non-empty list of {role, content} messages; got 5" })
  t.throws(() => parsePromptRow({ prompt: { text: 'x' } }), { message: `'prompt' must be a string or a non-empty list of {role, content} messages; got an object with keys ["text"]` })
  t.throws(() => parseSftRow({ prompt: '', response: 'r' }), { message: "'prompt' is empty" })
  t.throws(() => parseSftRow({ prompt: 'p', response: '  ' }), { message: "'response' is empty (only whitespace)" })
  t.throws(() => parseSftRow({ text: '' }), { message: "'text' is empty" })
  t.throws(() => parseSftRow({ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: '' }] }), { message: "'messages[1].content' is empty" })
  t.throws(() => parsePreferenceRow({ prompt: 'p', chosen: 'same', rejected: 'same' }), { message: "'chosen' and 'rejected' are the same text: the pair prefers nothing" })
  t.throws(() => parsePreferenceRow({ prompt: 'p', chosen: 'c', rejected: '' }), { message: "'rejected' is empty" })
  const chat = [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }]
  t.throws(() => parsePreferenceRow({ chosen: chat, rejected: chat }), { message: "'chosen' and 'rejected' are the same text: the pair prefers nothing" })
  t.throws(() => parsePromptRow({ prompt: '' }), { message: "'prompt' is empty" })
  t.same(parseSftRow({ prompt: 'p', response: 'r' }), { prompt: 'p', response: 'r' }, 'a good row still reads')
})

t.test('a run whose data is /dev/zero: one line, exit 1, run.json failed with the error', async (t) => {
  const dir = tempDir(t, 'data-limits')
  const config = path.join(dir, 'zero.yaml')
  const policy = JSON.stringify(TINY_POLICY)
  fs.writeFileSync(config, `algorithm: sft\nname: zero\npolicy: ${policy}\ndata: { train: /dev/zero, chat_template: false }\nlogging: { progress: none }\n`)
  const refused = spawnSync(process.execPath, [BIN, 'train', config, '--output-dir', dir], { encoding: 'utf8', timeout: 120_000 })
  t.equal(refused.status, 1, refused.stderr)
  t.equal(refused.stderr, 'rlfarm train: cannot read /dev/zero: it is a character device, not a regular file (data.allow_special_files: true reads one)\n')
  const status = JSON.parse(fs.readFileSync(path.join(dir, 'zero', 'run.json'), 'utf8'))
  t.equal(status.state, 'failed')
  t.match(status.error, /character device/)
  // Allowed: the 1 MB cap ends the read of an endless line.
  const capped = spawnSync(process.execPath, [BIN, 'train', config, '--output-dir', dir, '--name', 'zero2', '--set', 'data.allow_special_files=true', '--set', 'data.max_row_bytes=1048576'], { encoding: 'utf8', timeout: 120_000 })
  t.equal(capped.status, 1, capped.stderr)
  t.equal(capped.stderr, 'rlfarm train: /dev/zero:1: the row is over 1048576 bytes (data.max_row_bytes)\n')
  t.equal(JSON.parse(fs.readFileSync(path.join(dir, 'zero2', 'run.json'), 'utf8')).state, 'failed')
})

t.test('train(): data.max_row_bytes and on_bad_row: skip count an over-long row', async (t) => {
  const dir = tempDir(t, 'data-limits')
  const file = path.join(dir, 'sft.jsonl')
  fs.writeFileSync(file, `${rows(30)}\n${JSON.stringify({ prompt: 'x'.repeat(3000), response: 'y' })}\n`)
  const r = await train({ algorithm: 'sft', output_dir: dir, name: 'skip', policy: TINY_POLICY, data: { train: file, chat_template: false, max_row_bytes: 2000, on_bad_row: 'skip' }, training: { max_steps: 1 }, logging: { progress: 'none' } })
  t.equal(r.step, 1)
  t.match(fs.readFileSync(path.join(dir, 'skip', 'run.log'), 'utf8'), /skipped 1 bad rows \(first: .*sft\.jsonl:31: the row is over 2000 bytes/)
})

t.test('a corrupt Parquet file that sends the decoder into an endless loop: a bounded read and a clear error', async (t) => {
  const dir = tempDir(t, 'data-limits')
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { parquetWriteBuffer } = require('hyparquet-writer')
  const bytes = Buffer.from(parquetWriteBuffer({ columnData: [{ name: 'prompt', data: ['a', 'b', 'c'], type: 'STRING' }, { name: 'response', data: ['x', 'y', 'z'], type: 'STRING' }] }))
  const good = path.join(dir, 'good.parquet')
  fs.writeFileSync(good, bytes)
  t.same((await readDataset(good, parseSftRow)).rows.map((r) => r.response), ['x', 'y', 'z'])
  // Byte 11 is in the first data page's header (found by the fuzz suite, seed in bench/RESULTS.md): hyparquet loops on it.
  bytes[11] = 0
  const looping = path.join(dir, 'looping.parquet')
  fs.writeFileSync(looping, bytes)
  const started = Date.now()
  await t.rejects(readDataset(looping, parseSftRow, { parquetTimeoutMs: 2000 }), { message: `cannot read ${looping}: reading it took over 2 s; a corrupt Parquet file can make the decoder loop` })
  t.ok(Date.now() - started < 30_000, 'bounded')
  const fifo = path.join(dir, 'rows.parquet')
  spawnSync('mkfifo', [fifo])
  await t.rejects(readDataset(fifo, parseSftRow, { allowSpecialFiles: true }), { message: `cannot read ${fifo}: it is a FIFO (named pipe), not a regular file` }, 'Parquet needs random access: never a FIFO')
})

t.test('checkText: false (data.check_text) keeps NUL and empty text a model sampled; invalid text is still refused', async (t) => {
  const dir = tempDir(t, 'data-limits')
  const file = path.join(dir, 'sampled.jsonl')
  fs.writeFileSync(file, `${JSON.stringify({ prompt: 'p', chosen: 'a\u0000b', rejected: '' })}\n${JSON.stringify({ prompt: 'p', chosen: 'x\ud800', rejected: 'y' })}\n`)
  await t.rejects(readDataset(file, parsePreferenceRow), { message: `${file}:1: 'chosen' contains a NUL character (U+0000) at character 1` })
  const r = await readDataset(file, parsePreferenceRow, { checkText: false, onBadRow: 'skip' })
  t.same(r.rows, [{ prompt: 'p', chosen: 'a\u0000b', rejected: '', margin: undefined }])
  t.same(r.skippedReasons, [`${file}:2: 'chosen' contains a lone surrogate (U+D800, half of a UTF-16 pair: not text) at character 1`])
  t.throws(() => parseSftRow({ prompt: 'p', response: '' }, { checkText: false }) && parsePreferenceRow({ prompt: 'p', chosen: 's', rejected: 's' }, { checkText: false }), { message: "'chosen' and 'rejected' are the same text: the pair prefers nothing" })
})

t.test("rows longer than the model's context are cut to it, as data.max_length cuts them: no failure at the batch that holds one", async (t) => {
  const dir = tempDir(t, 'data-limits')
  const gpt2 = { tokenizer: 'byte', init: { arch: 'gpt2' as const, hidden_size: 16, layers: 1, heads: 2, max_positions: 32 } }
  const short = Array.from({ length: 7 }, () => ({ prompt: 'copy: ab', response: ' ab ab', chosen: ' ab ab', rejected: ' ba' }))
  const long = { prompt: `copy: ${'x'.repeat(40)}`, response: ` ${'x'.repeat(40)}`, chosen: ` ${'x'.repeat(40)}`, rejected: 'y'.repeat(40) }
  const file = path.join(dir, 'long.jsonl')
  fs.writeFileSync(file, [...short, long].map((r) => `${JSON.stringify(r)}\n`).join(''))
  // data.max_length is its default, 512; the model has 32 positions (GPT-2 has none past its n_positions).
  for (const [algorithm, extra] of [['sft', {}], ['sft', { sft: { packing: true } }], ['reward', {}], ['dpo', {}]] as const) {
    const name = `${algorithm}${'sft' in extra ? '-packed' : ''}`
    const r = await train({ algorithm, output_dir: dir, name, policy: gpt2, data: { train: file, chat_template: false }, training: { batch_size: 4, max_steps: 4 }, logging: { progress: 'none' }, ...extra })
    t.equal(r.step, 4, `${name}: every step ran`)
  }
})

t.test('a row that gives a key twice is a bad row naming the key (JSON.parse would keep the last silently)', async (t) => {
  const dir = tempDir(t, 'data-limits')
  const file = path.join(dir, 'twice.jsonl')
  const cases: [string, (value: unknown) => unknown, string][] = [
    ['{"prompt":"a","response":"b","response":"c"}', parseSftRow, "the key 'response' is given twice"],
    ['{"prompt":"a","chosen":"b","rejected":"c","chosen":"c"}', parsePreferenceRow, "the key 'chosen' is given twice"],
    ['{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y","content":"z"}]}', parseSftRow, "the key 'messages[1].content' is given twice"],
    ['{"\\u0070rompt":"a","prompt":"b"}', parsePromptRow, "the key 'prompt' is given twice"],
  ]
  for (const [row, parse, expected] of cases) {
    fs.writeFileSync(file, `{"prompt":"p","response":"r","chosen":"c","rejected":"d"}\n${row}\n`)
    await t.rejects(readDataset(file, parse as never), { name: 'BadRowError', message: `${file}:2: ${expected}; JSON would keep only the last` }, expected)
  }
  fs.writeFileSync(file, '{"prompt":"a \\"prompt\\": x","response":"b","meta":{"prompt":1},"turns":[{"k":1},{"k":2}]}\n')
  t.same((await readDataset(file, parseSftRow)).rows.map((r) => r.response), ['b'], 'the same key in other objects, and in a string, is no duplicate')
})

t.test("readDataset's options are checked: unknown keys, values outside a choice, a parse that is not a function", async (t) => {
  const dir = tempDir(t, 'data-limits')
  const file = path.join(dir, 'rows.jsonl')
  fs.writeFileSync(file, `${rows(2)}\nnot json\n`)
  await t.rejects(readDataset(file, parseSftRow, { onBadRow: 'ignore' } as never), { message: "readDataset: onBadRow must be one of 'stop', 'skip'; got 'ignore'." }, 'was: read as skip')
  await t.rejects(readDataset(file, parseSftRow, { maxRowByte: 5 } as never), { message: /unknown option 'maxRowByte'. Did you mean 'maxRowBytes'\?/ }, 'was: ignored')
  await t.rejects(readDataset(file, parseSftRow, { format: 'csv' } as never), { message: /readDataset: format must be one of 'auto', .*; got 'csv'/ }, "was: every row 'expected a JSON object; got undefined'")
  await t.rejects(readDataset(file, parseSftRow, { binarize: 'max' } as never), { message: /binarize must be one of 'overall', 'mean_rating'/ })
  await t.rejects(readDataset(file, parseSftRow, { checkText: 'no' } as never), { message: "readDataset: checkText must be true or false; got 'no'" })
  await t.rejects(readDataset(file, parseSftRow, null as never), { message: 'readDataset: options must be an object; got null' }, 'was: Cannot read properties of null')
  await t.rejects(readDataset(file, 'sft' as never), { message: /readDataset: parse must be a function/ }, 'was: a bad row per row')
  await t.rejects(readDataset(5 as never, parseSftRow), { message: 'readDataset: file must be a path; got 5' })
})
