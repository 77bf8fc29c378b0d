// Judges that rate single completions (label.mode rate): the rubric replies'
// readers, a local model rating by its log-probs, an OpenAI-compatible
// endpoint (a real HTTP server on 127.0.0.1 that answers from gold's
// ratings, garbles some replies and some completions for good) asked through
// the label stage, and a critique model (judge.kind critic) whose scores rate
// and compare.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { ByteTokenizer, Model, train } from 'rlfarm'
import { ASPECTS, CriticJudge, GoldRater, HttpRater, LlmRater, critiqueOf, faultKindsOf, faultsNamed, faultsOf, goldRating, overallOfRatings, parseCritiqueReply, parseRatingReply, PoolRater, ratingPrompt } from 'rlfarm/internal'
import { tempDir } from './helpers/common'

t.test('parseRatingReply: "Rating: N" (1 to 5) and a rationale, else why not', async (t) => {
  t.same(parseRatingReply('Rating: 4\nRationale: Right but padded.'), { rating: 4, rationale: 'Right but padded.' })
  t.same(parseRatingReply('rating:5/5. rationale: fine'), { rating: 5, rationale: 'fine' })
  t.match(parseRatingReply('Rating: 7\nRationale: x'), /the rating "7" is not a whole number from 1 to 5/)
  t.match(parseRatingReply('Rating: 3.5\nRationale: x'), /not a whole number/)
  t.match(parseRatingReply('Rating: four\nRationale: x'), /not a whole number/)
  t.match(parseRatingReply('I would say 4'), /no "Rating:"/)
  t.match(parseRatingReply('Rating: 4\nRating: 2\nRationale: x'), /more than one "Rating:"/)
  t.match(parseRatingReply('Rating: 4'), /no rationale/)
})

t.test('parseCritiqueReply: a critique and "Overall score: N" (1 to 10), else why not', async (t) => {
  t.same(parseCritiqueReply('Critique: The answer is wrong.\nOverall score: 2.5'), { critique: 'The answer is wrong.', overall: 2.5 })
  t.match(parseCritiqueReply('Critique: fine\nOverall score: 11'), /the overall score "11" is not a number from 1 to 10/)
  t.match(parseCritiqueReply('Critique: fine\nOverall score: high'), /not a number from 1 to 10/)
  t.match(parseCritiqueReply('Critique: fine'), /no "Overall score:"/)
  t.match(parseCritiqueReply('Overall score: 7'), /no critique/)
})

t.test("faultsNamed reads back the faults a critique names, as critiqueOf writes them", async (t) => {
  const cases: [string, string][] = [['add 2 and 3', ' 5'], ['add 2 and 3', ' 6'], ['add 2 and 3', ' 5\nok'], ['add 2 and 3', ' 6\nok'], ['add 2 and 3', ''], ['reverse abc', ' xyz\nhope this helps']]
  for (const [prompt, response] of cases) {
    const faults = faultsOf(prompt, response)
    t.same(faultsNamed(critiqueOf(faults)), faultKindsOf(faults), JSON.stringify(response))
  }
  t.same(faultsNamed('The answer is right and nothing else is said.'), { wrongAnswer: false, chatter: false })
  t.same(faultsNamed('The answer "1" is wrong; a right answer is ".'), { wrongAnswer: true, chatter: false }, "a critic's garbled critique still names a wrong answer")
})

t.test("gold and pool raters rate as goldRating and poolRating; other prompts are refused", async (t) => {
  const items = [{ prompt: 'add 2 and 3', response: ' 5' }, { prompt: 'reverse abc', response: ' cab\nok' }]
  t.same(await new GoldRater().rate(items), items.map((it) => goldRating(it.prompt, it.response)))
  const { AnnotatorPool } = await import('rlfarm')
  t.equal((await new PoolRater(new AnnotatorPool({ p: 0 })).rate(items)).length, 2)
  await t.rejects(new GoldRater().rate([{ prompt: 'write a poem', response: 'x' }]), /the gold judge rates responses to farm instructions only; prompt 1 is "write a poem"/)
})

t.test('LLM rater: per aspect the likeliest of "1" to "5" after "Rating: "; overall from the mean rating', async (t) => {
  const tokenizer = new ByteTokenizer()
  const model = Model.create({ arch: 'gpt2', vocab: tokenizer.vocabSize, dim: 32, layers: 1, heads: 2, maxPositions: 768 }, { seed: 5 })
  const rater = new LlmRater(model, tokenizer, { chatTemplate: false, batchSize: 3 })
  const items = [{ prompt: 'add 2 and 3', response: ' 5' }, { prompt: 'add 2 and 3', response: ' 6\nok' }, { prompt: 'write a poem', response: ' roses' }]
  const rated = await rater.rate(items)
  t.equal(rated.length, 3, 'any instruction: a model reads them all')
  for (const r of rated) {
    for (const a of ASPECTS) {
      t.ok(Number.isInteger(r.ratings[a]) && r.ratings[a] >= 1 && r.ratings[a] <= 5)
      const probs = /ratings 1 to 5: (.*)\.$/.exec(r.rationales[a])![1].split(', ').map(Number)
      t.equal(probs.length, 5)
      t.ok(Math.abs(probs.reduce((s, p) => s + p, 0) - 1) < 0.02, 'the probabilities of the five ratings')
      t.equal(probs[r.ratings[a] - 1], Math.max(...probs), 'the rating is the likeliest (to the two decimals shown)')
    }
    t.equal(r.overall, overallOfRatings(r.ratings))
  }
  // The same rating by hand for one aspect: log p(digit) after the question.
  const q = ratingPrompt('honesty', items[0])
  const ids = tokenizer.encode(`${q.system}\n\n${q.user}\n\nRating: `)
  const lps: number[] = []
  for (const d of ['1', '2', '3', '4', '5']) {
    const row = [...ids, d.charCodeAt(0) + 0]
    const enc = tokenizer.encode(d, { addSpecialTokens: false })
    row[row.length - 1] = enc[0]
    const { Tensor } = await import('rlfarm')
    const lp = await model.logprobs(Tensor.from(new Int32Array(row), [1, row.length]))
    lps.push((lp.data as Float32Array)[row.length - 2])
  }
  t.equal(rated[0].ratings.honesty, lps.indexOf(Math.max(...lps)) + 1, 'matches the log-probs read by hand')
  t.same(await rater.rate(items), rated, 'deterministic')
})

/** A chat-completions server on 127.0.0.1 that rates as gold does, with `garble` deciding replies to spoil. */
async function ratingServer(t: Tap.Test, garble: (item: { prompt: string; response: string }, n: number) => string | undefined) {
  const asked = new Map<string, number>()
  let requests = 0
  const s = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      requests++
      if (req.url !== '/v1/chat/completions') return void res.writeHead(400).end(`no such path ${req.url}`)
      const user: string = JSON.parse(body).messages[1].content
      const m = /## Instruction\n([\s\S]*?)\n\n## Response\n([\s\S]*?)\n\n(?:Answer in two lines)/.exec(user)
      if (!m) return void res.writeHead(400).end('not a rating question')
      const item = { prompt: m[1], response: ` ${m[2]}` }
      const n = asked.get(user) ?? 0
      asked.set(user, n + 1)
      const spoilt = garble(item, n)
      const gold = goldRating(item.prompt, item.response)
      const aspect = /## Aspect: (.*)\n/.exec(user)?.[1]
      const key = ASPECTS.find((a) => a.replace('_', ' ') === aspect?.toLowerCase())
      const content = spoilt ?? (key ? `Rating: ${gold.ratings[key]}\nRationale: ${gold.rationales[key]}` : `Critique: ${gold.critique}\nOverall score: ${gold.overall}`)
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ choices: [{ message: { role: 'assistant', content } }] }))
    })
  })
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => s.close(() => resolve())))
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}/v1`, requests: () => requests }
}

t.test('HTTP rater: a question per aspect and one for the critique; unreadable replies retried, then the completion left out and counted', async (t) => {
  // Every question's first reply is prose without a rating (retried); "reverse abc" is always rated 7 of 5.
  const s = await ratingServer(t, (item, n) => (item.prompt === 'reverse abc' ? 'Rating: 7\nRationale: great\nCritique: ok\nOverall score: 7' : n === 0 ? 'Looks good to me!' : undefined))
  const rater = new HttpRater({ url: s.url, model: 'm', retries: 1 })
  const items = [{ prompt: 'add 2 and 3', response: ' 5' }, { prompt: 'reverse abc', response: ' cba' }, { prompt: 'add 2 and 3', response: ' 6\nok' }]
  const rated = await rater.rate(items)
  t.same(rated[0], goldRating('add 2 and 3', ' 5'), 'the second reply read: ratings, rationales, overall score and critique')
  t.same(rated[2], goldRating('add 2 and 3', ' 6\nok'))
  t.equal(rated[1], null, 'a rating out of the scale is never read as a score')
  t.equal(rater.skipped.count, 4, "the four aspect questions of the spoilt completion (its critique's 7 is in the scale)")
  t.match(rater.skipped.reasons[0], /the rating "7" is not a whole number from 1 to 5/)
  t.equal(s.requests(), 2 * 5 * 2 + 4 * 2 + 1, "five questions per completion, each asked twice; the spoilt completion's critique read at once")

  const refused = await ratingServer(t, () => undefined)
  await t.rejects(new HttpRater({ url: `${refused.url}/none`, model: 'm' }).rate([{ prompt: 'write a poem', response: 'x' }]), /^http judge: http:\/\/127\.0\.0\.1:\d+\/v1\/none\/chat\/completions answered HTTP 400: no such path/, 'a 4xx fails at once')
})

t.test('label.mode rate with judge.kind http: ratings.jsonl from the endpoint; spoilt completions left out and counted; a row with fewer than two rated completions dropped', async (t) => {
  const out = tempDir(t, 'rate-http')
  const prompts = path.join(out, 'prompts.jsonl')
  fs.writeFileSync(prompts, ['add 2 and 3', 'reverse abc', 'add 4 and 4'].map((p) => JSON.stringify({ prompt: p })).join('\n') + '\n')
  const s = await ratingServer(t, (item) => (item.prompt === 'reverse abc' ? 'no idea' : undefined))
  const result = await train({
    algorithm: 'label',
    output_dir: out,
    name: 'rate',
    seed: 2,
    policy: { tokenizer: 'byte', init: { hidden_size: 32, layers: 1, heads: 2, max_positions: 64 } },
    label: { mode: 'rate', completions_per_prompt: 2 },
    judge: { kind: 'http', url: s.url, model_name: 'm', retries: 1 },
    data: { prompts, max_length: 48, chat_template: false, check_text: false },
    generation: { max_new_tokens: 8, temperature: 1 },
    logging: { progress: 'none' },
  })
  t.equal(result.metrics.judge_skipped, 2, 'both completions of "reverse abc"')
  t.equal(result.metrics.completions, 4)
  const rows = fs.readFileSync(path.join(out, 'rate', 'ratings.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  t.same(rows.map((r) => r.instruction), ['add 2 and 3', 'add 4 and 4'], 'the spoilt row is left out')
  for (const row of rows) {
    for (const c of row.completions) {
      const gold = goldRating(row.instruction, c.response)
      t.equal(c.annotations.honesty.Rating, String(gold.ratings.honesty), "the endpoint's rating")
      t.equal(c.critique, gold.critique)
      t.equal(c.overall_score, gold.overall)
    }
  }
})

t.test('critic judge: no readable score is retried, then left out and counted; a bad question length is refused', async (t) => {
  const tokenizer = new ByteTokenizer()
  const model = Model.create({ arch: 'gpt2', vocab: tokenizer.vocabSize, dim: 32, layers: 1, heads: 2, maxPositions: 256 }, { seed: 9 })
  const critic = new CriticJudge(model, tokenizer, { chatTemplate: false, retries: 1, maxNewTokens: 16 })
  // An untrained model writes bytes at random: never "Overall score: N".
  const rated = await critic.rate([{ prompt: 'add 2 and 3', response: ' 5' }])
  t.same(rated, [null])
  t.equal(critic.skipped.count, 1)
  t.match(critic.skipped.reasons[0], /^no "Overall score: N" \(1 to 10\) in /)
  t.same(await critic.compare([{ prompt: 'add 2 and 3', a: ' 5', b: ' 6' }]), [null], 'a pair without both scores has no verdict')
  await t.rejects(critic.rate([{ prompt: 'add 2 and 3', response: 'x'.repeat(300) }]), /critic judge: item 1's question is \d+ tokens; the critique model has 256 positions/)
})

t.test('rlfarm run examples/ultrafeedback.yaml, shrunk: farm, SFT at two sizes, ratings, reward model, critique model, best-of-n, eval', async (t) => {
  const { spawnSync } = await import('node:child_process')
  const ROOT = path.join(__dirname, '..')
  const out = tempDir(t, 'uf-example')
  const set = [
    'stages[0].run.farm={"sft_size":2000,"preference_size":40,"unlabelled_size":8,"eval_size":8}',
    'stages[1].run.training.max_steps=30',
    'stages[2].run.training.max_steps=10',
    'stages[4].run.data.eval_size=4',
    'stages[4].run.training.epochs=1',
    'stages[5].run.training.max_steps=10',
    // A critique model of ten steps writes no readable score (the stage would stop: nothing rated); gold rates here, the critic in bench/ultrafeedback.ts.
    'stages[6].run.judge={"kind":"gold"}',
  ].flatMap((s) => ['--set', s])
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'rlfarm.js'), 'run', 'examples/ultrafeedback.yaml', '--out', out, '--progress', 'none', ...set], { cwd: ROOT, encoding: 'utf8', timeout: 900_000 })
  t.equal(r.status, 0, r.stderr)
  const summary = JSON.parse(fs.readFileSync(path.join(out, 'ultrafeedback', 'summary.json'), 'utf8')) as { stages: { name: string; metrics: Record<string, number> }[] }
  t.same(summary.stages.map((s) => s.name), ['farm', 'sft', 'sft_small', 'rate', 'reward', 'critic', 'critic_rate', 'best_of_1', 'best_of_4', 'best_of_16', 'eval_best_of_1', 'eval_best_of_4', 'eval_best_of_16'])
  const m = (name: string) => summary.stages.find((s) => s.name === name)!.metrics
  t.equal(m('rate').completions, 160, '40 instructions x 4 completions rated')
  t.ok(fs.existsSync(path.join(out, 'ultrafeedback', 'critic', 'model')), 'a critique model')
  for (const n of [1, 4, 16]) t.ok(m(`eval_best_of_${n}`).win_rate >= 0 && m(`eval_best_of_${n}`).n === 8, `best-of-${n} evaluated by gold on the 8 held-out instructions`)
})

t.test('critic judge: a critique model trained on ultrafeedback_critique rows rates with its critique and score, and compares by the scores', async (t) => {
  const out = tempDir(t, 'critic')
  const items = [{ prompt: 'add 2 and 3', response: ' 5' }, { prompt: 'add 2 and 3', response: ' 6\nok' }]
  const golds = items.map((it) => goldRating(it.prompt, it.response))
  const rows = path.join(out, 'ratings.jsonl')
  fs.writeFileSync(rows, `${JSON.stringify({ instruction: 'add 2 and 3', completions: items.map((it, i) => ({ response: it.response, critique: golds[i].critique, overall_score: golds[i].overall })) })}\n`)
  const { model } = await train({
    algorithm: 'sft',
    output_dir: out,
    name: 'critic',
    seed: 3,
    policy: { tokenizer: 'byte', init: { hidden_size: 64, layers: 1, heads: 2, max_positions: 320 } },
    data: { train: rows, format: 'ultrafeedback_critique', max_length: 320, chat_template: false, check_text: false },
    optimizer: { lr: 1e-2 },
    training: { batch_size: 2, max_steps: 200 },
    logging: { progress: 'none' },
  })
  const critic = new CriticJudge(await Model.load(model!), new ByteTokenizer(), { chatTemplate: false })
  const rated = await critic.rate(items)
  t.same(rated.map((r) => r?.overall), golds.map((g) => g.overall), 'the scores it was trained to write (10 and 4)')
  t.same(rated.map((r) => r?.critique), golds.map((g) => g.critique), 'its critiques, without the score line')
  t.same(rated[1]!.ratings, { instruction_following: 2, honesty: 2, truthfulness: 2, helpfulness: 2 }, 'each aspect: the overall score on 1 to 5')
  t.same(await critic.compare([{ prompt: 'add 2 and 3', a: ' 6\nok', b: ' 5' }]), [1], 'the higher score wins')
  t.equal(critic.skipped.count, 0)
  // As an eval stage's judge (judge.kind critic): the rows' own responses against their references.
  const rowsFile = path.join(out, 'eval.jsonl')
  fs.writeFileSync(rowsFile, [{ prompt: 'add 2 and 3', response: ' 5', reference: ' 6\nok' }, { prompt: 'add 2 and 3', response: ' 6\nok', reference: ' 5' }].map((r) => JSON.stringify(r)).join('\n') + '\n')
  const e = await train({ algorithm: 'eval', output_dir: out, name: 'eval', judge: { kind: 'critic', model: { path: model! } }, data: { prompts: rowsFile, max_length: 64, chat_template: false, check_text: false }, logging: { progress: 'none' } })
  t.equal(e.metrics.judge_win_rate, 0.5, 'one win, one loss by the critic')
  t.equal(e.metrics.win_rate, 0.5, 'as gold judges them')
})

t.test('label.mode rate with judge.kind llm: a local model rates each aspect; a judge model too short for the rubric is refused by name', async (t) => {
  const out = tempDir(t, 'rate-llm')
  const sftRows = path.join(out, 'sft.jsonl')
  fs.writeFileSync(sftRows, `${JSON.stringify({ prompt: 'add 2 and 3', response: ' 5' })}\n`)
  const judgeModel = async (name: string, positions: number) =>
    (await train({ algorithm: 'sft', output_dir: out, name, policy: { tokenizer: 'byte', init: { hidden_size: 32, layers: 1, heads: 2, max_positions: positions } }, data: { train: sftRows, max_length: 32, chat_template: false }, training: { batch_size: 1, max_steps: 1 }, logging: { progress: 'none' } })).model!
  const prompts = path.join(out, 'prompts.jsonl')
  fs.writeFileSync(prompts, ['add 2 and 3', 'reverse abc'].map((p) => JSON.stringify({ prompt: p })).join('\n') + '\n')
  const rate = (name: string, judge: string) =>
    train({
      algorithm: 'label',
      output_dir: out,
      name,
      policy: { path: judge },
      label: { mode: 'rate', completions_per_prompt: 2 },
      judge: { kind: 'llm', model: { path: judge } },
      data: { prompts, max_length: 48, chat_template: false, check_text: false },
      generation: { max_new_tokens: 6, temperature: 1 },
      logging: { progress: 'none' },
    })
  const long = await judgeModel('judge', 1024)
  const r = await rate('rate', long)
  t.equal(r.metrics.completions, 4)
  const rows = fs.readFileSync(path.join(out, 'rate', 'ratings.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  t.equal(rows.length, 2)
  for (const c of rows.flatMap((row) => row.completions)) {
    t.match(c.annotations.honesty.Rationale, /^The judge model's probabilities of the ratings 1 to 5: /)
    t.ok(['1', '2', '3', '4', '5'].includes(c.annotations.helpfulness.Rating))
  }
  const short = await judgeModel('short', 256)
  await t.rejects(rate('rate_short', short), /LlmRater: a question is \d+ tokens, longer than the judge model's 256 positions/)
})
