// UltraFeedback-style ratings on the farm (label.mode: rate): gold's exact
// ratings and critiques by hand, the pool's noisy ones, and a small pipeline
// farm -> two SFT models -> rate -> reward model whose ratings.jsonl
// data.format ultrafeedback reads back, and a critique model trained on them
// (data.format ultrafeedback_critique).
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { AnnotatorPool, goldScore, makeSplits, parsePreferenceRow, parseSftRow, readDataset, spearman, train } from 'rlfarm'
import { ASPECTS, critiquePrompt, goldRating, parseCritiqueScore, poolRating } from 'rlfarm/internal'
import { tempDir } from './helpers/common'

const ROOT = path.join(__dirname, '..')
const BIN = path.join(ROOT, 'bin', 'rlfarm.js')

t.test('goldRating: exact ratings, overall score and a critique naming the fault', async (t) => {
  const right = goldRating('add 2 and 3', ' 5')
  t.same(right.ratings, { instruction_following: 5, honesty: 5, truthfulness: 5, helpfulness: 5 })
  t.equal(right.overall, 10)
  t.equal(right.critique, 'The answer is right and nothing else is said.')
  // ' 6' is half right (gold 0.5); the chatter costs 0.1 + 2 * 0.02 more: gold 0.36.
  const chatty = goldRating('add 2 and 3', ' 6\nok')
  t.ok(Math.abs(goldScore('add 2 and 3', ' 6\nok') - 0.36) < 1e-12)
  t.same(chatty.ratings, { instruction_following: 2, honesty: 3, truthfulness: 3, helpfulness: 2 })
  t.equal(chatty.overall, 4, '1 + 9 * 0.36 = 4.24, in halves 4')
  t.equal(chatty.critique, 'The answer "6" is partly right; a right answer is "5". It adds text after the answer ("ok"), which the instruction did not ask for.')
  t.match(goldRating('reverse abc', ' xyz').critique, /^The answer "xyz" is wrong; a right answer is "cba"\.$/)
  t.throws(() => goldRating('what is love', ' baby'), /faultsOf: not a farm instruction: "what is love"/)
})

t.test("poolRating: gold plus the annotator's biases and noise; AlpacaFarm's p randomises ratings; gold's critique", async (t) => {
  const splits = makeSplits(2, { sft: 400, preference: 1, unlabelled: 1, eval: 1 })
  const items = splits.sft.map((r) => ({ prompt: r.prompt, response: r.response }))
  const clean = new AnnotatorPool({ p: 0 })
  const noisy = new AnnotatorPool({ p: 0.25 })
  const golds = items.map((it) => goldScore(it.prompt, it.response))
  const rated = items.map((it) => poolRating(clean, it.prompt, it.response))
  t.ok(rated.every((r) => ASPECTS.every((a) => Number.isInteger(r.ratings[a]) && r.ratings[a] >= 1 && r.ratings[a] <= 5) && r.overall >= 1 && r.overall <= 10), 'ratings 1 to 5, overall 1 to 10')
  t.ok(items.every((it, i) => rated[i].critique === goldRating(it.prompt, it.response).critique), "the pool's critique is gold's, so it can be checked")
  t.same(poolRating(clean, items[0].prompt, items[0].response), rated[0], 'deterministic')
  const cleanRho = spearman(rated.map((r) => r.overall), golds)
  t.ok(cleanRho > 0.5 && cleanRho < 1, `overall scores rank like gold, not exactly: Spearman ${cleanRho.toFixed(3)}`)
  const cleanHelp = spearman(rated.map((r) => r.ratings.helpfulness), golds)
  const noisyHelp = spearman(items.map((it) => poolRating(noisy, it.prompt, it.response).ratings.helpfulness), golds)
  t.ok(noisyHelp < cleanHelp, `p = 0.25 randomises half the aspect ratings: helpfulness Spearman with gold ${cleanHelp.toFixed(3)} -> ${noisyHelp.toFixed(3)}`)
})

t.test('label.mode rate: a pool of two SFT models rated by the pool; data.format ultrafeedback reads ratings.jsonl back', async (t) => {
  const out = tempDir(t, 'ratings')
  const data = { max_length: 64, chat_template: false }
  const sft = (steps: number) => ({ algorithm: 'sft', policy: { tokenizer: 'byte', init: { hidden_size: 48, layers: 1, heads: 2, max_positions: 64 } }, data: { train: '${farm.sft}', ...data }, optimizer: { lr: 3e-3 }, training: { batch_size: 16, max_steps: steps } })
  const pipeline = {
    name: 'rate',
    seed: 1,
    stages: [
      { name: 'farm', run: { algorithm: 'farm', farm: { sft_size: 1000, preference_size: 40, unlabelled_size: 8, eval_size: 8 } } },
      { name: 'sft', run: sft(300) },
      { name: 'sft_small', run: sft(60) },
      {
        name: 'rate',
        run: {
          algorithm: 'label',
          policy: { path: '${sft}' },
          label: { mode: 'rate', policies: [{ path: '${sft}' }, { path: '${sft_small}' }], completions_per_prompt: 4 },
          data: { prompts: '${farm.preference}', ...data },
          generation: { max_new_tokens: 12, temperature: 1 },
          training: { batch_size: 32 },
        },
      },
      { name: 'reward', run: { algorithm: 'reward', policy: { path: '${sft}' }, data: { train: '${rate.ratings}', format: 'ultrafeedback', on_bad_row: 'skip', ...data, check_text: false }, training: { batch_size: 8, max_steps: 3 } } },
      {
        name: 'critic',
        run: {
          algorithm: 'sft',
          policy: { tokenizer: 'byte', init: { hidden_size: 32, layers: 1, heads: 2, max_positions: 320 } },
          data: { train: '${rate.ratings}', format: 'ultrafeedback_critique', max_length: 320, max_prompt_length: 200, chat_template: false, check_text: false },
          training: { batch_size: 8, max_steps: 3 },
        },
      },
    ],
  }
  const file = path.join(out, 'rate.json')
  fs.writeFileSync(file, JSON.stringify(pipeline))
  const r = spawnSync(process.execPath, [BIN, 'run', file, '--out', out, '--progress', 'none'], { cwd: ROOT, encoding: 'utf8', timeout: 600_000 })
  t.equal(r.status, 0, r.stderr)
  const ratings = path.join(out, 'rate', 'rate', 'ratings.jsonl')
  const rows = fs.readFileSync(ratings, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  t.equal(rows.length, 40, 'a row per instruction')
  for (const row of rows) {
    t.equal(row.completions.length, 4)
    t.same([...row.models].sort(), ['sft', 'sft', 'sft_small', 'sft_small'], 'four completions, two from each policy in turn')
    for (const c of row.completions) {
      t.same(Object.keys(c.annotations).sort(), ['helpfulness', 'honesty', 'instruction_following', 'truthfulness'])
      t.ok(['1', '2', '3', '4', '5'].includes(c.annotations.truthfulness.Rating) && typeof c.annotations.truthfulness.Rationale === 'string')
      t.equal(c.critique, goldRating(row.instruction, c.response).critique)
    }
  }
  const back = await readDataset(ratings, parsePreferenceRow, { format: 'ultrafeedback', onBadRow: 'skip', checkText: false })
  t.equal(back.rows.length + back.skipped, 40, 'every row binarised, or skipped and counted where the best scores tie')
  t.ok(back.rows.length > 0)
  for (const p of back.rows) {
    const row = rows.find((x) => x.instruction === (p.prompt as { content: string }[])[0].content)
    const best = Math.max(...row.completions.map((c: { overall_score: number }) => c.overall_score))
    t.equal(row.completions.find((c: { response: string }) => c.response === p.chosen).overall_score, best, 'chosen: the highest overall score')
  }
  const summary = JSON.parse(fs.readFileSync(path.join(out, 'rate', 'summary.json'), 'utf8'))
  const m = summary.stages.find((s: { name: string }) => s.name === 'rate').metrics
  t.equal(m.completions, 160)
  t.ok(m.gold_spearman > 0, `overall scores agree with gold: Spearman ${m.gold_spearman}`)
  t.ok(fs.existsSync(path.join(out, 'rate', 'reward', 'model')), 'a reward model trained on the binarised ratings')

  const critiques = await readDataset(ratings, parseSftRow, { format: 'ultrafeedback_critique', checkText: false })
  t.equal(critiques.rows.length, 160, 'a critique row per rated completion')
  const first = rows[0].completions[0]
  t.same(critiques.rows[0], { prompt: critiquePrompt(rows[0].instruction, first.response), response: ` ${first.critique}\nOverall score: ${first.overall_score}` })
  t.equal(parseCritiqueScore(critiques.rows[0].response), first.overall_score, 'the score reads back from the answer')
  t.ok(fs.existsSync(path.join(out, 'rate', 'critic', 'model')), 'a critique model trained on them')
  const bad = path.join(out, 'bad.jsonl')
  fs.writeFileSync(bad, `${JSON.stringify({ instruction: 'add 1 and 2', completions: [{ response: ' 3', overall_score: 10 }] })}\n`)
  await t.rejects(readDataset(bad, parseSftRow, { format: 'ultrafeedback_critique' }), /bad\.jsonl:1: .*completions\[0\]\.critique must be a non-empty string/)

  const poem = path.join(out, 'poem.jsonl')
  fs.writeFileSync(poem, `${JSON.stringify({ prompt: 'write a poem' })}\n`)
  const notFarm = await train({ algorithm: 'label', output_dir: out, name: 'bad', policy: { path: path.join(out, 'rate', 'sft', 'model') }, label: { mode: 'rate' }, judge: { kind: 'pool' }, data: { prompts: poem, ...data }, logging: { progress: 'none' } }).catch((e: Error) => e)
  t.match(String(notFarm), /the pool judge rates responses to farm instructions only; prompt 1 is "write a poem" \(use judge\.kind llm, http or critic for other prompts\)/)
})

t.test('parseCritiqueScore: the score after "Overall score:", 1 to 10, or nothing', async (t) => {
  t.equal(parseCritiqueScore(' Fine.\nOverall score: 7.5'), 7.5)
  t.equal(parseCritiqueScore('overall SCORE:3'), 3)
  t.equal(parseCritiqueScore('Overall score: 11'), undefined, 'out of the scale')
  t.equal(parseCritiqueScore('Overall score: high'), undefined)
  t.equal(parseCritiqueScore('no score'), undefined)
})
