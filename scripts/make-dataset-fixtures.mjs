// Writes small files in the public preference datasets' formats (JSONL, and
// Parquet for the flat ones) under test/fixtures/datasets, for the loaders'
// tests and the real-data examples: `node scripts/make-dataset-fixtures.mjs`.
// The rows are written here, in the datasets' shapes; no data is downloaded.
import fs from 'node:fs'
import path from 'node:path'
import { parquetWriteBuffer } from 'hyparquet-writer'

const dir = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'test', 'fixtures', 'datasets')
fs.mkdirSync(dir, { recursive: true })
const jsonl = (name, rows) => fs.writeFileSync(path.join(dir, name), rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n')

const aspects = (h, o, i, t) => ({
  helpfulness: { Rating: String(h), Rationale: 'r' },
  honesty: { Rating: String(o), Rationale: 'r' },
  instruction_following: { Rating: String(i), Rationale: 'r' },
  truthfulness: { Rating: t === null ? 'N/A' : String(t), Rationale: 'r' },
})
const completion = (model, response, overall, a) => ({ model, response, overall_score: overall, annotations: a, critique: 'c', custom_system_prompt: '', principle: 'helpfulness', 'fine-grained_score': 0 })
jsonl('ultrafeedback.jsonl', [
  {
    source: 'evol_instruct',
    instruction: 'Name a primary colour.',
    models: ['a', 'b', 'c', 'd'],
    completions: [
      completion('a', 'Red.', 9, aspects(5, 5, 5, 5)),
      completion('b', 'Green is a colour.', 6, aspects(3, 4, 3, 4)),
      completion('c', 'I like turtles.', 2, aspects(1, 2, 1, null)),
      completion('d', 'Blue, one of the three primaries.', 8.5, aspects(5, 5, 4, 5)),
    ],
  },
  {
    source: 'flan',
    instruction: 'Add 2 and 3.',
    models: ['a', 'b', 'c', 'd'],
    completions: [
      completion('a', '6', 3, aspects(2, 2, 3, 1)),
      completion('b', '5', 7, aspects(5, 5, 5, 5)),
      completion('c', 'Five, since 2 + 3 = 5.', 8, aspects(4, 4, 4, 4)),
      completion('d', 'I cannot do maths.', 1, aspects(1, 3, 1, null)),
    ],
  },
  { source: 'sharegpt', instruction: 'A row with one completion.', models: ['a'], completions: [completion('a', 'Only one.', 5, aspects(3, 3, 3, 3))] },
])
jsonl('ultrafeedback_binarized.jsonl', [
  {
    prompt: 'Name a primary colour.',
    prompt_id: 'p1',
    chosen: [{ role: 'user', content: 'Name a primary colour.' }, { role: 'assistant', content: 'Red.' }],
    rejected: [{ role: 'user', content: 'Name a primary colour.' }, { role: 'assistant', content: 'I like turtles.' }],
    messages: [{ role: 'user', content: 'Name a primary colour.' }, { role: 'assistant', content: 'Red.' }],
    score_chosen: 9,
    score_rejected: 2,
  },
  {
    prompt: 'Add 2 and 3.',
    prompt_id: 'p2',
    chosen: [{ role: 'user', content: 'Add 2 and 3.' }, { role: 'assistant', content: 'Five.' }],
    rejected: [{ role: 'user', content: 'Add 2 and 3.' }, { role: 'assistant', content: '6' }],
    messages: [],
    score_chosen: 8,
    score_rejected: 3,
  },
  { prompt: 'broken', prompt_id: 'p3', chosen: 'not a list', rejected: [] },
])
const hh = [
  {
    chosen: '\n\nHuman: What is the capital of France?\n\nAssistant: Paris.',
    rejected: '\n\nHuman: What is the capital of France?\n\nAssistant: I would rather not say.',
  },
  {
    chosen: '\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a fact.\n\nAssistant: Honey never spoils.',
    rejected: '\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a fact.\n\nAssistant: No.',
  },
]
jsonl('hh_rlhf.jsonl', [...hh, { chosen: 'Human: missing the blank lines', rejected: '\n\nHuman: x\n\nAssistant: y' }])
const alpaca = [
  { instruction: 'Give a synonym.', input: 'happy', output_1: 'glad', output_2: 'sad', preference: 1 },
  { instruction: 'Translate to French.', input: 'cat', output_1: 'dog', output_2: 'chat', preference: 2 },
  { instruction: 'Say hi.', input: '', output_1: 'hi', output_2: 'hello there', preference: 2 },
]
jsonl('alpacafarm.jsonl', [...alpaca, { instruction: 'Bad preference.', input: '', output_1: 'a', output_2: 'b', preference: 3 }])

const parquet = (name, rows, types) => {
  const columns = Object.keys(rows[0]).map((key) => ({ name: key, data: rows.map((r) => (types[key] === 'INT64' ? BigInt(r[key]) : r[key])), type: types[key] ?? 'STRING' }))
  fs.writeFileSync(path.join(dir, name), Buffer.from(parquetWriteBuffer({ columnData: columns })))
}
parquet('alpacafarm.parquet', [...alpaca, { instruction: 'Bad preference.', input: '', output_1: 'a', output_2: 'b', preference: 3 }], { preference: 'INT64' })
parquet('hh_rlhf.parquet', hh, {})

// Math items as openai/gsm8k ({question, answer ending '#### n'}) and
// hendrycks MATH ({problem, solution with \boxed{}}) publish them.
const gsm8k = [
  { question: 'Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?', answer: 'Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72' },
  { question: 'Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?', answer: 'Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10' },
]
const math = [
  { problem: 'What is $\\frac{1}{2} + \\frac{1}{4}$?', solution: 'We have $\\frac{1}{2} + \\frac{1}{4} = \\frac{2}{4} + \\frac{1}{4} = \\boxed{\\frac{3}{4}}$.', level: 'Level 1', type: 'Prealgebra' },
  { problem: 'Compute $2^5$.', solution: '$2^5 = \\boxed{32}$.', level: 'Level 1', type: 'Algebra' },
]
jsonl('gsm8k.jsonl', gsm8k)
jsonl('math.jsonl', math)
parquet('gsm8k.parquet', gsm8k, {})
parquet('math.parquet', math, {})
console.log(`wrote ${fs.readdirSync(dir).join(', ')} in ${dir}`)
