// Properties of the data readers: JSONL files of random rows (any JSON, the
// dataset shapes with fields missing or of the wrong type, invalid UTF-8,
// NUL, lone surrogates, over-long lines) and Parquet files of random string
// columns, in every format and with both on_bad_row policies, give rows that
// parse again, or a BadRowError naming file:line (stop), or a count of
// skipped rows (skip); never another exception, an abort or a hang.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import { parsePreferenceRow, parsePromptRow, parseSftRow, readDataset, type DataFormat } from 'rlfarm'
import { assertClearError, runProperties } from './harness'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { parquetWriteBuffer } = require('hyparquet-writer') as { parquetWriteBuffer(o: { columnData: { name: string; data: unknown[]; type: string }[] }): ArrayBuffer }

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rlfarm-fuzz-data-'))
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))

const FORMATS: DataFormat[] = ['auto', 'ultrafeedback', 'ultrafeedback_binarized', 'hh_rlhf', 'alpacafarm']
const PARSERS = { sft: parseSftRow, preference: parsePreferenceRow, prompt: parsePromptRow }
const KEYS = ['prompt', 'response', 'completion', 'chosen', 'rejected', 'messages', 'instruction', 'input', 'output', 'text', 'margin', 'completions', 'output_1', 'output_2', 'preference', 'role', 'content', 'overall_score', 'annotations']

const text = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: 'binary', maxLength: 8 }), fc.constantFrom('', ' ', '\u0000', '\ud800', '\n\nHuman: hi\n\nAssistant: yo', 'a\u0000b'))
const message = fc.record({ role: fc.oneof(fc.constantFrom('user', 'assistant', 'system'), text), content: fc.oneof(text, fc.integer()) }, { requiredKeys: [] })
const leaf = fc.oneof(text, fc.integer({ min: -3, max: 5 }), fc.double(), fc.boolean(), fc.constant(null), fc.array(message, { maxLength: 3 }))
const row = fc.oneof(
  fc.dictionary(fc.constantFrom(...KEYS), fc.oneof(leaf, fc.array(fc.record({ response: text, overall_score: fc.oneof(fc.double(), text) }, { requiredKeys: [] }), { maxLength: 3 })), { maxKeys: 6 }),
  fc.jsonValue({ maxDepth: 3 }),
)
const line = fc.oneof(
  { weight: 8, arbitrary: row.map((r) => Buffer.from(JSON.stringify(r) ?? 'null')) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b.filter((x) => x !== 10))) },
  { weight: 1, arbitrary: fc.constantFrom(Buffer.from('{"prompt":"p","response":"\xff"}', 'latin1'), Buffer.from(`{"text":"${'x'.repeat(3000)}"}`), Buffer.from(''), Buffer.from('\r'), Buffer.from('\ufeff{"text":"bom"}')) },
)

const WHERE = (file: string) => [file]

const isText = (v: unknown) => typeof v === 'string' && !/\u0000/.test(v) && !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(v)
const isPrompt = (v: unknown, emptyOk: boolean) =>
  (isText(v) && (emptyOk || (v as string).trim() !== '')) || (Array.isArray(v) && v.length > 0 && v.every((m) => isText(m?.role) && isText(m?.content)))

/** A row that was read is what the trainers expect: prompts and responses of clean, non-empty text; a pair that prefers something. */
function validRow(kind: keyof typeof PARSERS, row: Record<string, unknown>): void {
  const bad = (why: string) => new Error(`a ${kind} row was read that ${why}: ${JSON.stringify(row).slice(0, 200)}`)
  // SFT {text} rows have an empty prompt by design.
  if (!isPrompt(row.prompt, kind === 'sft')) throw bad('has no usable prompt')
  for (const key of kind === 'sft' ? ['response'] : kind === 'preference' ? ['chosen', 'rejected'] : []) {
    if (!isText(row[key]) || (row[key] as string).trim() === '') throw bad(`has no usable ${key}`)
  }
  if (kind === 'preference' && row.chosen === row.rejected) throw bad('prefers nothing')
}

async function check(file: string, kind: keyof typeof PARSERS, format: DataFormat, onBadRow: 'stop' | 'skip') {
  try {
    const r = await readDataset(file, PARSERS[kind] as (v: unknown) => unknown, { format, onBadRow, maxRowBytes: 2048, parquetTimeoutMs: 5000 })
    if (onBadRow === 'stop' && r.skipped !== 0) throw new Error(`skipped ${r.skipped} rows under 'stop'`)
    for (const row of r.rows) validRow(kind, row as Record<string, unknown>)
    if (r.skippedReasons.some((m) => !m.startsWith(file))) throw new Error(`a skip reason does not name the file: ${r.skippedReasons.find((m) => !m.startsWith(file))}`)
  } catch (err) {
    assertClearError(err, WHERE(file))
    if (onBadRow === 'skip' && (err as Error).name === 'BadRowError') throw new Error(`'skip' stopped at a bad row: ${(err as Error).message}`)
  }
}

let n = 0
export const properties = {
  'JSONL rows': fc.asyncProperty(fc.array(line, { maxLength: 8 }), fc.constantFrom('sft', 'preference', 'prompt' as const), fc.constantFrom(...FORMATS), fc.constantFrom('stop' as const, 'skip' as const), fc.constantFrom('\n', '\r\n'), async (lines, kind, format, onBadRow, eol) => {
    const file = path.join(dir, `rows-${n++ % 8}.jsonl`)
    fs.writeFileSync(file, Buffer.concat(lines.flatMap((l) => [l, Buffer.from(eol)])))
    await check(file, kind, format, onBadRow)
  }),
  'Parquet rows': fc.asyncProperty(
    fc.uniqueArray(fc.constantFrom(...KEYS), { minLength: 1, maxLength: 5 }),
    fc.integer({ min: 1, max: 6 }),
    fc.array(text.filter((s) => !/[\ud800-\udfff]/.test(s)), { minLength: 30, maxLength: 30 }),
    fc.constantFrom('sft', 'preference', 'prompt' as const),
    fc.constantFrom(...FORMATS),
    fc.constantFrom('stop' as const, 'skip' as const),
    async (keys, rows, pool, kind, format, onBadRow) => {
      const file = path.join(dir, `rows-${n++ % 8}.parquet`)
      const columns = keys.map((name, k) => ({ name, data: Array.from({ length: rows }, (_, i) => pool[(i * 7 + k * 3) % pool.length]), type: 'STRING' }))
      fs.writeFileSync(file, Buffer.from(parquetWriteBuffer({ columnData: columns })))
      await check(file, kind, format, onBadRow)
    },
  ),
  'Parquet bytes flipped': fc.asyncProperty(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), async (flips) => {
    const file = path.join(dir, `flipped-${n++ % 8}.parquet`)
    const bytes = Buffer.from(parquetWriteBuffer({ columnData: [{ name: 'prompt', data: ['a', 'b', 'c'], type: 'STRING' }, { name: 'response', data: ['x', 'y', 'z'], type: 'STRING' }] }))
    for (const [at, v] of flips) bytes[at % bytes.length] = v
    fs.writeFileSync(file, bytes)
    await check(file, 'sft', 'auto', 'stop')
  }),
}

if (require.main === module) void runProperties(properties)
