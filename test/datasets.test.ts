// Loaders for the public preference datasets' formats, from JSONL and
// Parquet (fixtures made by scripts/make-dataset-fixtures.mjs), and the
// real-data example configs run on those fixtures with a tiny model.
import fs from 'node:fs'
import path from 'node:path'
import zlib from 'node:zlib'
import t from 'tap'
import { loadConfig, loadTokenizer, resolvePaths, parsePreferenceRow, parsePromptRow, readDataset, train, type PreferenceExample } from 'rlfarm'
import { SequenceEncoder } from 'rlfarm/internal'
import { tempDir } from './helpers/common'

const ROOT = path.join(__dirname, '..')
const DATA = path.join(__dirname, 'fixtures', 'datasets')
const file = (name: string) => path.join(DATA, name)
const reply = (p: PreferenceExample) => [p.chosen, p.rejected]

t.test('UltraFeedback raw, binarised as Zephyr did: chosen = highest overall_score, rejected = a random other (seed 42)', async (t) => {
  await t.rejects(readDataset(file('ultrafeedback.jsonl'), parsePreferenceRow, { format: 'ultrafeedback' }), /ultrafeedback\.jsonl:3: 'completions' must be a list of at least two completions/)
  const r = await readDataset(file('ultrafeedback.jsonl'), parsePreferenceRow, { format: 'ultrafeedback', onBadRow: 'skip' })
  t.equal(r.rows.length, 2)
  t.equal(r.skipped, 1)
  t.same(r.rows[0].prompt, [{ role: 'user', content: 'Name a primary colour.' }], 'the instruction as a user message, for the chat template')
  t.equal(r.rows[0].chosen, 'Red.')
  t.equal(r.rows[1].chosen, 'Five, since 2 + 3 = 5.')
  t.ok(r.rows.every((p) => p.rejected !== p.chosen))
  const again = await readDataset(file('ultrafeedback.jsonl'), parsePreferenceRow, { format: 'ultrafeedback', onBadRow: 'skip' })
  t.same(again.rows.map(reply), r.rows.map(reply), 'the random rejected is seeded: the same pairs on every read')
  const byRating = await readDataset(file('ultrafeedback.jsonl'), parsePreferenceRow, { format: 'ultrafeedback', binarize: 'mean_rating', onBadRow: 'skip' })
  t.equal(byRating.rows[1].chosen, '5', 'by the mean fine-grained rating the terse right answer wins (5.0 against 4.0)')
})

t.test('ultrafeedback_binarized: prompt/chosen/rejected message lists', async (t) => {
  await t.rejects(readDataset(file('ultrafeedback_binarized.jsonl'), parsePreferenceRow, { format: 'ultrafeedback_binarized' }), /ultrafeedback_binarized\.jsonl:3: ultrafeedback_binarized rows need 'chosen' and 'rejected' message lists/)
  const r = await readDataset(file('ultrafeedback_binarized.jsonl'), parsePreferenceRow, { format: 'ultrafeedback_binarized', onBadRow: 'skip' })
  t.same(r.rows.map(reply), [['Red.', 'I like turtles.'], ['Five.', '6']])
  t.same(r.rows[0].prompt, [{ role: 'user', content: 'Name a primary colour.' }])
})

t.test('Anthropic HH-RLHF transcripts become chats sharing their history', async (t) => {
  await t.rejects(readDataset(file('hh_rlhf.jsonl'), parsePreferenceRow, { format: 'hh_rlhf' }), /hh_rlhf\.jsonl:3: 'chosen' must start with "\\n\\nHuman: "/)
  const r = await readDataset(file('hh_rlhf.jsonl'), parsePreferenceRow, { format: 'hh_rlhf', onBadRow: 'skip' })
  t.same(r.rows.map(reply), [['Paris.', 'I would rather not say.'], ['Honey never spoils.', 'No.']])
  t.same(r.rows[1].prompt, [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello! How can I help?' },
    { role: 'user', content: 'Tell me a fact.' },
  ])
})

t.test('AlpacaFarm: instruction/input/output_1/output_2/preference', async (t) => {
  await t.rejects(readDataset(file('alpacafarm.jsonl'), parsePreferenceRow, { format: 'alpacafarm' }), /alpacafarm\.jsonl:4: 'preference' must be 1 or 2; got 3/)
  const r = await readDataset(file('alpacafarm.jsonl'), parsePreferenceRow, { format: 'alpacafarm', onBadRow: 'skip' })
  t.same(r.rows.map(reply), [['glad', 'sad'], ['chat', 'dog'], ['hello there', 'hi']])
  t.same(r.rows[0].prompt, [{ role: 'user', content: 'Give a synonym.\n\nhappy' }])
  t.same(r.rows[2].prompt, [{ role: 'user', content: 'Say hi.' }], 'an empty input adds nothing')
  const prompts = await readDataset(file('alpacafarm.jsonl'), parsePromptRow, { format: 'alpacafarm', onBadRow: 'skip' })
  t.equal(prompts.rows.length, 3, 'a preference file serves as prompts too')
})

t.test('Parquet (hyparquet): the same rows as the JSONL, bad rows named by file and row', async (t) => {
  const fromJsonl = await readDataset(file('alpacafarm.jsonl'), parsePreferenceRow, { format: 'alpacafarm', onBadRow: 'skip' })
  const fromParquet = await readDataset(file('alpacafarm.parquet'), parsePreferenceRow, { format: 'alpacafarm', onBadRow: 'skip' })
  t.same(fromParquet.rows, fromJsonl.rows)
  t.equal(fromParquet.skipped, 1)
  await t.rejects(readDataset(file('alpacafarm.parquet'), parsePreferenceRow, { format: 'alpacafarm' }), /alpacafarm\.parquet: row 4: 'preference' must be 1 or 2/)
  const hh = await readDataset(file('hh_rlhf.parquet'), parsePreferenceRow, { format: 'hh_rlhf' })
  t.same(hh.rows.map(reply), [['Paris.', 'I would rather not say.'], ['Honey never spoils.', 'No.']])
  const dir = tempDir(t, 'datasets')
  fs.writeFileSync(path.join(dir, 'broken.parquet'), 'PAR1 not really')
  await t.rejects(readDataset(path.join(dir, 'broken.parquet'), parsePreferenceRow), /broken\.parquet: not a readable Parquet file/)
  await t.rejects(readDataset(path.join(dir, 'missing.parquet'), parsePreferenceRow), /missing\.parquet: no such file/)
})

t.test('gzipped JSON Lines, and a directory or a glob of shards, wherever a data file is read', async (t) => {
  const dir = tempDir(t, 'datasets')
  const hh = await readDataset(file('hh_rlhf.jsonl'), parsePreferenceRow, { format: 'hh_rlhf', onBadRow: 'skip' })
  fs.writeFileSync(path.join(dir, 'train.jsonl.gz'), zlib.gzipSync(fs.readFileSync(file('hh_rlhf.jsonl'))))
  const gz = await readDataset(path.join(dir, 'train.jsonl.gz'), parsePreferenceRow, { format: 'hh_rlhf', onBadRow: 'skip' })
  t.same(gz.rows, hh.rows, '.jsonl.gz: the rows of the plain file')
  t.equal(gz.skipped, hh.skipped)
  await t.rejects(readDataset(path.join(dir, 'train.jsonl.gz'), parsePreferenceRow, { format: 'hh_rlhf' }), /train\.jsonl\.gz:3: 'chosen' must start with/, 'a bad row is named by file and line')

  fs.writeFileSync(path.join(dir, 'hidden.jsonl'), zlib.gzipSync(fs.readFileSync(file('hh_rlhf.jsonl'))))
  await t.rejects(readDataset(path.join(dir, 'hidden.jsonl'), parsePreferenceRow), /hidden\.jsonl: it is gzip-compressed but not named \.gz/, 'a gzip file not named .gz says so')
  fs.writeFileSync(path.join(dir, 'torn.jsonl.gz'), zlib.gzipSync(fs.readFileSync(file('hh_rlhf.jsonl'))).subarray(0, 60))
  await t.rejects(readDataset(path.join(dir, 'torn.jsonl.gz'), parsePreferenceRow, { format: 'hh_rlhf', onBadRow: 'skip' }), /torn\.jsonl\.gz: not valid gzip data/, 'a torn gzip file')
  fs.writeFileSync(path.join(dir, 'plain.jsonl.gz'), 'not gzip at all\n')
  await t.rejects(readDataset(path.join(dir, 'plain.jsonl.gz'), parsePreferenceRow), /plain\.jsonl\.gz: not valid gzip data/, 'a .gz that is not gzip')

  // Shards as the Hub names them; a directory reads every data file in it, in name order.
  const shards = path.join(dir, 'data')
  fs.mkdirSync(shards)
  fs.copyFileSync(file('alpacafarm.parquet'), path.join(shards, 'train-00000-of-00002.parquet'))
  fs.copyFileSync(file('alpacafarm.parquet'), path.join(shards, 'train-00001-of-00002.parquet'))
  fs.copyFileSync(file('alpacafarm.parquet'), path.join(shards, 'test-00000-of-00001.parquet'))
  const one = await readDataset(file('alpacafarm.parquet'), parsePreferenceRow, { format: 'alpacafarm', onBadRow: 'skip' })
  const glob = await readDataset(path.join(shards, 'train-*.parquet'), parsePreferenceRow, { format: 'alpacafarm', onBadRow: 'skip' })
  t.same(glob.rows, [...one.rows, ...one.rows], 'a glob: the shards it matches, in order')
  t.equal(glob.skipped, 2, 'skipped rows counted over the shards')
  t.equal((await readDataset(shards, parsePreferenceRow, { format: 'alpacafarm', onBadRow: 'skip' })).rows.length, 3 * one.rows.length, 'a directory: every shard')
  t.equal((await readDataset(path.join(shards, 'train-0000[1]-of-*.parquet'), parsePreferenceRow, { format: 'alpacafarm', onBadRow: 'skip' })).rows.length, one.rows.length, '[...] classes')
  await t.rejects(readDataset(path.join(shards, 'train-*.parquet'), parsePreferenceRow, { format: 'alpacafarm' }), /train-00000-of-00002\.parquet: row 4:/, 'a bad row names its shard')
  await t.rejects(readDataset(path.join(shards, 'valid-*.parquet'), parsePreferenceRow), /no file in .*data matches valid-\*\.parquet/)
  await t.rejects(readDataset(path.join(dir, 'nowhere', '*.jsonl'), parsePreferenceRow), /no directory .*nowhere/)
  fs.mkdirSync(path.join(dir, 'empty'))
  await t.rejects(readDataset(path.join(dir, 'empty'), parsePreferenceRow), /empty: a directory with no data files/)

  // In a config: a glob for data.train, taken from the config's directory.
  fs.writeFileSync(path.join(dir, 'sft.yaml'), 'algorithm: sft\npolicy: { tokenizer: byte, init: { hidden_size: 16, layers: 1, heads: 2, max_positions: 64 } }\ndata: { train: "sft-*.jsonl.gz", chat_template: false, max_length: 64 }\ntraining: { batch_size: 4, max_steps: 2 }\ncheckpoint: { every: 0 }\n')
  const sft = fs.readFileSync(path.join(ROOT, 'examples', 'data', 'sft.jsonl'))
  fs.writeFileSync(path.join(dir, 'sft-00000-of-00002.jsonl.gz'), zlib.gzipSync(sft))
  fs.writeFileSync(path.join(dir, 'sft-00001-of-00002.jsonl.gz'), zlib.gzipSync(sft))
  const result = await train(path.join(dir, 'sft.yaml'), { set: [`output_dir=${dir}`], progress: 'none' })
  t.equal(result.step, 2, 'SFT on gzipped shards named by a glob')
})

t.test("chat templates: a dataset's messages are rendered by the tokenizer's template", async (t) => {
  const tokenizer = await loadTokenizer(path.join(__dirname, 'fixtures', 'tokenizers', 'qwen-bpe'))
  const encoder = new SequenceEncoder({ tokenizer, maxLength: 256, maxPromptLength: 200, chatTemplate: true })
  const [row] = (await readDataset(file('hh_rlhf.jsonl'), parsePreferenceRow, { format: 'hh_rlhf', onBadRow: 'skip' })).rows
  const text = tokenizer.decode(encoder.prompt(row.prompt))
  t.match(text, /<\|im_start\|>user\nWhat is the capital of France\?<\|im_end\|>\n<\|im_start\|>assistant\n$/)
})

t.test('the real-data example configs: paths relative to each config, and each runs on the fixtures with a tiny model', async (t) => {
  const dir = tempDir(t, 'datasets')
  const real = path.join(ROOT, 'examples', 'real')
  const tokenizer = path.join(__dirname, 'fixtures', 'tokenizers', 'qwen-bpe')
  const tiny = { tokenizer, init: { arch: 'llama', hidden_size: 32, layers: 1, heads: 2, max_positions: 256 } }
  // The Hub's shapes: no_robots' {messages} shards, HH-RLHF's .jsonl.gz.
  const chats = fs.readFileSync(file('ultrafeedback_binarized.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => Array.isArray(r.chosen))
  for (const shard of ['train-00000-of-00002', 'train-00001-of-00002', 'test-00000-of-00001']) {
    fs.writeFileSync(path.join(dir, `${shard}.jsonl.gz`), zlib.gzipSync(chats.map((r) => JSON.stringify({ prompt: r.prompt, messages: r.chosen })).join('\n')))
  }
  fs.writeFileSync(path.join(dir, 'hh.jsonl.gz'), zlib.gzipSync(fs.readFileSync(file('hh_rlhf.jsonl'))))
  const cases: [string, string[]][] = [
    ['sft-no-robots.yaml', [`data.train=${path.join(dir, 'train-*.jsonl.gz')}`, `data.eval=${path.join(dir, 'test-*.jsonl.gz')}`, 'training.batch_size=2', 'training.gradient_accumulation=1']],
    ['reward-hh-rlhf.yaml', [`data.train=${path.join(dir, 'hh.jsonl.gz')}`, `data.eval=${file('hh_rlhf.parquet')}`]],
    ['dpo-ultrafeedback.yaml', [`data.train=${file('ultrafeedback_binarized.jsonl')}`, `data.eval=${file('ultrafeedback_binarized.jsonl')}`, 'training.gradient_accumulation=1', 'training.batch_size=2']],
    ['ppo-smollm.yaml', [`data.prompts=${path.join(dir, 'hh.jsonl.gz')}`, 'reward_function.name=length', 'training.batch_size=2', 'ppo.minibatch_size=2', 'generation.max_new_tokens=4']],
  ]
  t.same(fs.readdirSync(real).filter((f) => f.endsWith('.yaml')).sort(), cases.map(([name]) => name).sort(), 'every config of examples/real is run here')
  for (const [name, set] of cases) {
    const config = path.join(real, name)
    const loaded = resolvePaths(await loadConfig(config), real)
    const paths = [loaded.policy.path, loaded.policy.tokenizer, loaded.reward_model.path, loaded.data.train, loaded.data.eval, loaded.data.prompts].filter((p): p is string => Boolean(p))
    t.ok(paths.length > 0 && paths.every((p) => p.startsWith(path.join(real, 'models') + path.sep) || p.startsWith(path.join(real, 'data') + path.sep)), `${name}: its files are under examples/real/models and examples/real/data: ${paths.map((p) => path.relative(real, p)).join(', ')}`)
    // The user's model directory is swapped for a tiny random model; the data for the fixtures.
    const overrides = [...set, 'policy.path=null', `policy.tokenizer=${tokenizer}`, `policy.init=${JSON.stringify(tiny.init)}`, 'training.max_steps=2', 'training.eval_every=0', `output_dir=${dir}`, 'checkpoint.every=0']
    if (name.startsWith('ppo')) overrides.push('reward_model.path=null')
    const result = await train(config, { set: overrides, progress: 'none' })
    t.equal(result.step, 2, `${name}: two steps on the fixture`)
  }
})
