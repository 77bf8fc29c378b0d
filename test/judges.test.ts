// Judges of response pairs (gold, the pool, a local LLM, an OpenAI-compatible
// endpoint on loopback) and the comparison report (Spearman, leaderboard,
// report.html with vega-lite SVG).
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { AnnotatorPool, ByteTokenizer, FAMILIES, GoldJudge, HttpJudge, LlmJudge, Model, PoolJudge, Rng, Tensor, goldScore, judgeWinRate, makeLeaderboard, poolWinRate, spearman, writeReport } from 'rlfarm'
import { judgePrompt, parseVerdict } from 'rlfarm/internal'
import { tempDir } from './helpers/common'

const rng = new Rng(3)
const tasks = Array.from({ length: 120 }, (_, i) => FAMILIES[i % FAMILIES.length].make(rng))
const rightVsWrong = tasks
  .map((task) => ({ prompt: task.instruction, a: ` ${task.answer}`, b: ` ${task.mistake(rng)}` }))
  .filter((p) => goldScore(p.prompt, p.a) > goldScore(p.prompt, p.b))

t.test('gold judge: the better gold score wins, equal scores tie', async (t) => {
  const judge = new GoldJudge()
  t.same(await judge.compare([{ prompt: 'add 2 and 3', a: ' 5', b: ' 6' }, { prompt: 'add 2 and 3', a: ' 7', b: ' 5' }, { prompt: 'add 2 and 3', a: ' 5', b: ' Answer: 5.' }]), [0, 1, 0.5])
  await t.rejects(judge.compare([{ prompt: 'write a poem', a: 'x', b: 'y' }]), /farm instructions only/)
})

t.test('pool judge: shown in a seeded random order, so position bias favours no side', async (t) => {
  const first = new AnnotatorPool({ annotators: [{ name: 'first', lengthBias: 0, positionBias: 1, formatBias: 0, noise: 0 }], p: 0, seed: 4 })
  // Two responses of equal gold score: only position decides, and the order is random.
  const equal = tasks.map((task) => ({ prompt: task.instruction, a: ` ${task.answer}`, b: ` Answer: ${task.answer}.` }))
  const prefs = await new PoolJudge(first).compare(equal)
  const aWins = prefs.filter((p) => p === 0).length / prefs.length
  t.ok(aWins > 0.35 && aWins < 0.65, `a wins about half: ${aWins}`)
  t.same(await new PoolJudge(first).compare(equal), prefs, 'deterministic')
  const clean = await new PoolJudge(new AnnotatorPool({ p: 0 })).compare(rightVsWrong)
  t.ok(clean.filter((p) => p === 0).length / clean.length > 0.85, 'without label noise the pool mostly picks the right answer')
  const items = rightVsWrong.map((p) => ({ prompt: p.prompt, response: p.a, reference: p.b }))
  const pool = new AnnotatorPool({ seed: 2 })
  t.same((await judgeWinRate(new PoolJudge(pool), items)).winRate, poolWinRate(items, pool).winRate, 'judgeWinRate over the pool judge = poolWinRate')
})

t.test('parseVerdict reads a and b in the forms judges answer', async (t) => {
  t.equal(parseVerdict('a'), 0)
  t.equal(parseVerdict(' b.'), 1)
  t.equal(parseVerdict('Output (b)'), 1)
  t.equal(parseVerdict('(a) is better'), 0)
  t.equal(parseVerdict('I prefer Output (a) because it is correct.'), 0)
  t.equal(parseVerdict('neither'), undefined)
})

t.test('LLM judge: the verdict is the more likely of "a" and "b" after the question', async (t) => {
  const tokenizer = new ByteTokenizer()
  const model = Model.create({ arch: 'gpt2', vocab: tokenizer.vocabSize, dim: 32, layers: 1, heads: 2, maxPositions: 512 }, { seed: 5 })
  const judge = new LlmJudge(model, tokenizer, { seed: 1, chatTemplate: false, batchSize: 3 })
  const pairs = rightVsWrong.slice(0, 7)
  const prefs = await judge.compare(pairs)
  t.equal(prefs.length, pairs.length)
  // The same decision by hand: log p("a") vs log p("b") after the question, in the order shown.
  const { aShownFirst } = await import('rlfarm/internal')
  for (const [i, p] of pairs.entries()) {
    const firstIsA = aShownFirst(p.prompt, p.a, p.b, 1)
    const shown = firstIsA ? p : { prompt: p.prompt, a: p.b, b: p.a }
    const q = judgePrompt(shown)
    const ids = tokenizer.encode(`${q.system}\n\n${q.user}\n\nThe better output is Output (`)
    const lp = async (letter: string) => {
      const seq = [...ids, letter.charCodeAt(0)]
      const out = await model.logprobs(Tensor.from(Int32Array.from(seq), [1, seq.length]))
      return (out.data as Float32Array)[seq.length - 2]
    }
    const [la, lb] = [await lp('a'), await lp('b')]
    const shownVerdict = la > lb ? 0 : lb > la ? 1 : 0.5
    const expected = firstIsA || shownVerdict === 0.5 ? shownVerdict : 1 - shownVerdict
    t.equal(prefs[i], expected, `pair ${i}`)
  }
  const small = Model.create({ arch: 'gpt2', vocab: tokenizer.vocabSize, dim: 16, layers: 1, heads: 2, maxPositions: 32 }, { seed: 5 })
  await t.rejects(new LlmJudge(small, tokenizer, { chatTemplate: false }).compare(pairs.slice(0, 1)), /longer than the judge model's 32 positions/)
})

/** An OpenAI-compatible endpoint that judges by the farm's gold evaluator. */
async function goldServer(t: { teardown(fn: () => Promise<void>): void }, behaviour: { failFirst?: number; status?: number; reply?: string } = {}) {
  const seen: { auth?: string; body: { model: string; messages: { role: string; content: string }[] } }[] = []
  let failures = behaviour.failFirst ?? 0
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      if (req.url !== '/v1/chat/completions' || req.method !== 'POST') {
        res.writeHead(404).end('not found')
        return
      }
      const parsed = JSON.parse(body)
      seen.push({ auth: req.headers.authorization, body: parsed })
      if (failures > 0) {
        failures--
        res.writeHead(503).end('busy')
        return
      }
      if (behaviour.status) {
        res.writeHead(behaviour.status).end('bad request: no such model')
        return
      }
      const user = parsed.messages.find((m: { role: string }) => m.role === 'user').content as string
      const m = /## Instruction\n([\s\S]*?)\n\n## Output \(a\)\n([\s\S]*?)\n\n## Output \(b\)\n([\s\S]*?)\n\n/.exec(user)!
      const verdict = goldScore(m[1], ` ${m[2]}`) >= goldScore(m[1], ` ${m[3]}`) ? 'Output (a)' : 'Output (b)'
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ choices: [{ message: { role: 'assistant', content: behaviour.reply ?? verdict } }] }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, seen }
}

t.test('HTTP judge: an OpenAI-compatible endpoint on loopback', async (t) => {
  const { url, seen } = await goldServer(t)
  const judge = new HttpJudge({ url, model: 'judge-1', apiKey: 'sk-test', seed: 3, concurrency: 3 })
  const items = rightVsWrong.map((p) => ({ prompt: p.prompt, response: p.a, reference: p.b }))
  const w = await judgeWinRate(judge, items)
  t.equal(w.winRate, 1, 'a judge that knows gold: right answers win every time, whichever side they are shown on')
  t.equal(seen.length, items.length)
  t.ok(seen.every((s) => s.auth === 'Bearer sk-test' && s.body.model === 'judge-1'), 'the key and model are sent')
  const shownFirst = seen.filter((s) => s.body.messages[1].content.includes(`## Output (a)\n${items.find((it) => s.body.messages[1].content.includes(it.prompt))!.response.trim()}`)).length
  t.ok(shownFirst > 0 && shownFirst < seen.length, `the order is randomised (${shownFirst}/${seen.length} shown first)`)
})

t.test('HTTP judge: retries 5xx, names a 4xx, rejects an unreadable reply', async (t) => {
  const pair = [{ prompt: 'add 2 and 3', a: ' 5', b: ' 6' }]
  const flaky = await goldServer(t, { failFirst: 1 })
  t.same(await new HttpJudge({ url: flaky.url, model: 'm', retries: 2 }).compare(pair), [0], 'one 503, then an answer')
  const bad = await goldServer(t, { status: 400 })
  await t.rejects(new HttpJudge({ url: bad.url, model: 'm' }).compare(pair), /answered HTTP 400: bad request/)
  const odd = await goldServer(t, { reply: 'it depends' })
  const oddJudge = new HttpJudge({ url: odd.url, model: 'm', retries: 1 })
  t.same(await oddJudge.compare(pair), [null], 'an unreadable reply, retried, leaves the pair out')
  t.equal(odd.seen.length, 2, 'it was retried once')
  t.same(oddJudge.skipped, { count: 1, reasons: ['cannot read "a" or "b" from the reply "it depends"'] })
  const down = await goldServer(t, { failFirst: 10 })
  await t.rejects(new HttpJudge({ url: down.url, model: 'm', retries: 1 }).compare(pair), /failed after 2 tries: HTTP 503/)
  t.throws(() => new HttpJudge({ url: 'localhost:8000', model: 'm' }), /must be an http\(s\) URL/)
})

t.test('spearman: rank correlation with ties', async (t) => {
  t.equal(spearman([1, 2, 3, 4], [10, 20, 30, 40]), 1)
  t.equal(spearman([1, 2, 3, 4], [4, 3, 2, 1]), -1)
  t.ok(Math.abs(spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) - 0.8) < 1e-12)
  t.ok(Math.abs(spearman([1, 1, 2, 3], [1, 2, 3, 4]) - 0.9486832980505138) < 1e-12, 'ties share their mean rank')
  t.throws(() => spearman([1], [1]), /at least two/)
})

t.test('leaderboard and report.html: sorted by gold, pool rank agreement, SVG charts', async (t) => {
  const stage = (name: string, m: Record<string, number>, seconds?: number) => ({ name, metrics: m, seconds })
  const w = (win: number, pool: number) => ({ win_rate: win, win_rate_stderr: 0.02, pool_win_rate: pool, pool_win_rate_stderr: 0.02, n: 500 })
  const stages = [
    stage('sft', { steps: 10 }, 100),
    stage('ppo', { steps: 10 }, 60),
    stage('best_of_16', { best_score: 0.7, kl_bound: Math.log(16) - 15 / 16 }, 20),
    stage('eval_sft', { ...w(0.45, 0.48), reward: 0.1, kl: 0 }),
    stage('eval_ppo', { ...w(0.65, 0.55), reward: 0.5, kl: 1.2 }),
    stage('eval_best_of_16', w(0.47, 0.6)),
  ]
  const board = makeLeaderboard('demo', stages)
  t.same(board.entries.map((e) => e.method), ['ppo', 'best_of_16', 'sft'])
  t.same(board.aboveBaseline, ['ppo'], 'only PPO is more than two standard errors above SFT')
  t.equal(board.poolGoldSpearman, 0.5)
  const bon = board.entries.find((e) => e.method === 'best_of_16')!
  t.ok(Math.abs(bon.kl! - (Math.log(16) - 15 / 16)) < 1e-12 && bon.reward === 0.7 && bon.seconds === 20, "best-of-n's KL bound, score and time come from its stage")
  const dir = tempDir(t, 'report')
  const out = await writeReport(dir, board, [{ title: 'ppo: curves', metricsFile: path.join(dir, 'metrics.jsonl'), metrics: ['score', 'kl'] }])
  const json = JSON.parse(fs.readFileSync(out.leaderboard, 'utf8'))
  t.equal(json.entries.length, 3)
  fs.writeFileSync(path.join(dir, 'metrics.jsonl'), [1, 2, 3].map((s) => JSON.stringify({ step: s, score: s / 10, kl: s / 5 })).join('\n'))
  await writeReport(dir, board, [{ title: 'ppo: curves', metricsFile: path.join(dir, 'metrics.jsonl'), metrics: ['score', 'kl'] }])
  const html = fs.readFileSync(out.report, 'utf8')
  t.equal((html.match(/<svg/g) ?? []).length, 2, 'a win-rate chart and the curves, as inline SVG')
  t.match(html, /Spearman rank correlation between the pool's and gold's rankings: <b>0.500<\/b>/)
  t.notMatch(html, /<script/, 'no scripts: the charts are rendered in Node')
  const two = makeLeaderboard('two', stages.filter((s) => !s.name.includes('best_of_16')))
  t.equal(two.entries.length, 2)
  t.equal(two.poolGoldSpearman, undefined, 'two methods: no rank correlation (it could only be +1 or -1)')
  await writeReport(dir, two, [])
  t.notMatch(fs.readFileSync(out.report, 'utf8'), /Spearman/, 'nor in the report')
})
