// The farm's world: instruction families, the gold evaluator, the noisy
// demonstrator, the biased annotator pool with AlpacaFarm's label noise,
// the splits and the win-rate.
import t from 'tap'
import { AnnotatorPool, FAMILIES, Rng, goldScore, goldWinRate, makeSplits, parseTask, poolWinRate, winRateOf, type Annotator } from 'rlfarm'
import { DEFAULT_POOL, demonstrate } from 'rlfarm/internal'

t.test('at least eight families, closed and open; each reads its own instructions back', async (t) => {
  t.ok(FAMILIES.length >= 8, `${FAMILIES.length} families`)
  t.ok(FAMILIES.some((f) => f.kind === 'open') && FAMILIES.some((f) => f.kind === 'closed'))
  const rng = new Rng(5)
  for (const family of FAMILIES) {
    let mistakes = 0
    for (let i = 0; i < 50; i++) {
      const task = family.make(rng)
      t.ok(task.instruction.length <= 32, 'short instructions for a byte-level model')
      const parsed = parseTask(task.instruction)
      if (parsed?.family !== family.name || parsed.answer !== task.answer) t.fail(`${family.name}: ${task.instruction} does not parse back`)
      if (goldScore(task.instruction, ` ${task.answer}`) !== 1) t.fail(`${family.name}: the right answer to ${task.instruction} scores below 1`)
      if (goldScore(task.instruction, ` ${task.mistake(rng)}`) < 1) mistakes++
    }
    t.ok(mistakes >= 40, `${family.name}: mistakes score below 1 (${mistakes}/50)`)
  }
})

t.test('the gold evaluator: partial credit, junk costs, format is free, deterministic', async (t) => {
  t.equal(goldScore('add 2 and 3', ' 5'), 1)
  t.equal(goldScore('add 2 and 3', ' Answer: 5.'), 1, '"Answer: x." is format, not an error')
  t.equal(goldScore('add 2 and 3', ' 6'), 0.5, 'off by one: half credit')
  t.equal(goldScore('add 2 and 3', ' five'), 0)
  t.ok(goldScore('add 2 and 3', ' 5\nhope this helps') < 1, 'junk after the answer costs')
  t.ok(goldScore('add 2 and 3', ' 5\nhope this helps') > goldScore('add 2 and 3', ' 6'), 'but less than a wrong answer')
  t.equal(goldScore('reverse abcd', ' dcba'), 1)
  t.ok(goldScore('reverse abcd', ' dcbx') > 0 && goldScore('reverse abcd', ' dcbx') < 1, 'partial credit by position')
  t.equal(goldScore('name 2 words with c, not cup', ' cat cow'), 1)
  t.equal(goldScore('name 2 words with c, not cup', ' cat cat'), 0.5, 'distinct words count')
  t.equal(goldScore('name 2 words with c, not cup', ' cat dog'), 0.5)
  t.equal(goldScore('name 2 words with c, not cup', ' cat cup'), 0.5, 'the excluded word does not count')
  t.equal(goldScore('a rhyme for cat', ' bat'), 1)
  t.equal(goldScore('a rhyme for cat', ' cat'), 0, 'the word itself is no rhyme')
  t.equal(goldScore('2 rhymes for cat', ' bat hat'), 1)
  t.equal(goldScore('a rhyme for cat', ' zat'), 0.3, 'a made-up word that ends alike earns a little')
  t.equal(goldScore('sort cab', ' abc'), 1)
  t.equal(goldScore('sort cab', ' abd'), 0, 'other letters: no credit')
  t.throws(() => goldScore('write a poem', ' roses'), /not a farm instruction/)
})

t.test('splits: disjoint, sized as asked, >= 500 evaluation instructions, seeded', async (t) => {
  const s = makeSplits(3)
  t.equal(s.eval.length, 500)
  t.ok(s.sft.length >= 1000 && s.preference.length >= 1000 && s.unlabelled.length >= 1000)
  const all = [...s.sft, ...s.preference, ...s.unlabelled, ...s.eval].map((r) => r.prompt)
  t.equal(new Set(all).size, all.length, 'no instruction in two splits')
  t.same(makeSplits(3, { sft: 50, preference: 10, unlabelled: 10, eval: 20 }), makeSplits(3, { sft: 50, preference: 10, unlabelled: 10, eval: 20 }), 'the same seed, the same farm')
  t.notSame(makeSplits(4, { eval: 20, sft: 5, preference: 5, unlabelled: 5 }).eval, makeSplits(3, { eval: 20, sft: 5, preference: 5, unlabelled: 5 }).eval)
  // Families with few instructions (the open ones) give each split its share.
  for (const family of FAMILIES) {
    const overall = all.filter((p) => parseTask(p)!.family === family.name).length / all.length
    for (const split of ['sft', 'preference', 'unlabelled', 'eval'] as const) {
      const share = s[split].filter((r) => r.family === family.name).length / s[split].length
      t.ok(share > 0.6 * overall && share > 0.01, `${split} covers ${family.name}: ${(share * 100).toFixed(1)}% (${(overall * 100).toFixed(1)}% overall)`)
    }
  }
  t.ok(s.eval.every((r) => typeof r.reference === 'string' && r.reference.length > 0), 'fixed reference outputs')
})

t.test('the demonstrator: right with its accuracy, verbose sometimes', async (t) => {
  const rng = new Rng(1)
  const tasks = Array.from({ length: 2000 }, (_, i) => FAMILIES[i % FAMILIES.length].make(rng))
  const demos = tasks.map((task) => ({ task, text: demonstrate(task, rng, { accuracy: Object.fromEntries(FAMILIES.map((f) => [f.name, 0.6])) }) }))
  const right = demos.filter((d) => d.text.includes(d.task.answer)).length / demos.length
  t.ok(right > 0.55 && right < 0.7, `right about 60% of the time: ${right}`)
  const chatty = demos.filter((d) => d.text.includes('\n')).length / demos.length
  t.ok(chatty > 0.55 && chatty < 0.65, `chatty about 60% of the time: ${chatty}`)
  const formal = demos.filter((d) => d.text.startsWith(' Answer:')).length / demos.length
  t.ok(formal > 0.15 && formal < 0.25, `formal about 20% of the time: ${formal}`)
})

t.test('the annotator pool: label noise 2p, biases toward length, position and format', async (t) => {
  const rng = new Rng(2)
  const pairs = Array.from({ length: 3000 }, (_, i) => {
    const task = FAMILIES[i % FAMILIES.length].make(rng)
    return { prompt: task.instruction, good: ` ${task.answer}`, bad: ` ${task.mistake(rng)}` }
  }).filter((p) => goldScore(p.prompt, p.good) > goldScore(p.prompt, p.bad) + 0.3)
  const agreement = (pool: AnnotatorPool) => pairs.filter((p, i) => (i % 2 === 0 ? pool.prefer(p.prompt, p.good, p.bad) === 0 : pool.prefer(p.prompt, p.bad, p.good) === 1)).length / pairs.length
  const clean = agreement(new AnnotatorPool({ p: 0 }))
  const noisy = agreement(new AnnotatorPool({ p: 0.25 }))
  t.ok(clean > 0.9, `without label noise the pool mostly agrees with gold: ${clean}`)
  // A coin flip with probability 2p = 0.5 halves the margin: agreement ~ 0.25 + 0.5 * clean.
  t.ok(Math.abs(noisy - (0.25 + 0.5 * clean)) < 0.04, `p = 0.25: agreement ${noisy}, expected about ${0.25 + 0.5 * clean}`)

  const only = (a: Annotator) => new AnnotatorPool({ annotators: [a], p: 0, seed: 1 })
  const base: Annotator = { name: 'x', lengthBias: 0, positionBias: 0, formatBias: 0, noise: 0.1 }
  const tasks = Array.from({ length: 400 }, () => FAMILIES[0].make(rng))
  const share = (pool: AnnotatorPool, a: (t: (typeof tasks)[0]) => string, b: (t: (typeof tasks)[0]) => string) =>
    tasks.filter((task) => pool.prefer(task.instruction, a(task), b(task)) === 0).length / tasks.length
  t.ok(share(only({ ...base, positionBias: 0.2 }), (x) => ` ${x.answer}`, (x) => ` ${x.answer}`) > 0.85, 'position bias: the first of two equal answers wins')
  t.ok(share(only({ ...base, formatBias: 0.3 }), (x) => ` Answer: ${x.answer}.`, (x) => ` ${x.answer}`) > 0.85, 'format bias')
  t.ok(share(only({ ...base, lengthBias: 0.1 }), (x) => ` ${x.answer}\nok`, (x) => ` ${x.answer}`) > 0.7, 'length bias outweighs a little junk')
  t.ok(share(only(base), (x) => ` ${x.answer}\nhope this helps`, (x) => ` ${x.answer}`) < 0.3, 'an unbiased annotator dislikes the junk')
  t.ok(DEFAULT_POOL.length >= 4 && new Set(DEFAULT_POOL.map((a) => a.name)).size === DEFAULT_POOL.length, 'four distinct default annotators')
  const pool = new AnnotatorPool({ seed: 9 })
  t.equal(pool.prefer('add 1 and 2', ' 3', ' 4'), pool.prefer('add 1 and 2', ' 3', ' 4'), 'labels are deterministic')
  t.throws(() => new AnnotatorPool({ p: 0.7 }), /p must be in \[0, 0.5\]/)
})

t.test('win-rate: (wins + ties/2)/N with its standard error, by gold and by the pool', async (t) => {
  const w = winRateOf([1, 0.5, 0])
  t.equal(w.winRate, 0.5)
  t.ok(Math.abs(w.stderr - 0.5 / Math.sqrt(3)) < 1e-12)
  t.same([w.n, w.wins, w.ties], [3, 1, 1])
  t.throws(() => winRateOf([]), /no outcomes/)
  t.throws(() => winRateOf([0.3]), /0, 0.5 or 1/)

  const s = makeSplits(7, { sft: 10, preference: 10, unlabelled: 10, eval: 500 })
  const self = goldWinRate(s.eval.map((r) => ({ prompt: r.prompt, response: r.reference, reference: r.reference })))
  t.equal(self.winRate, 0.5, 'the references against themselves: all ties')
  const perfect = s.eval.map((r) => ({ prompt: r.prompt, response: ` ${parseTask(r.prompt)!.answer}`, reference: r.reference }))
  const gold = goldWinRate(perfect)
  t.ok(gold.winRate > 0.6 && gold.stderr > 0 && gold.stderr < 0.03, `right answers beat the demonstrator: ${gold.winRate} ± ${gold.stderr}`)
  const byPool = poolWinRate(perfect, new AnnotatorPool({ seed: 1 }))
  t.ok(byPool.winRate > 0.5 && byPool.winRate < gold.winRate + 0.1, `the noisy pool agrees, less sharply: ${byPool.winRate}`)
})

t.test('bad input to the farm helpers: errors naming the argument, never a hang', async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { answerOf, kendall, spearman } = require('rlfarm') as typeof import('rlfarm')
  t.throws(() => makeSplits(0, { sft: 1e9 }), { message: 'makeSplits: sizes.sft must be an integer in [0, 1000000]; got 1000000000' }, 'a huge split (was: ran for hours)')
  t.throws(() => makeSplits(0, { sft: -1 }), { message: /sizes\.sft must be an integer in \[0, 1000000\]; got -1/ }, 'a negative split (was: an empty one)')
  t.throws(() => makeSplits(0, { eval: NaN }), { message: /sizes\.eval must be an integer .*; got NaN/ })
  t.throws(() => makeSplits(0, { sfft: 2 } as never), { message: /unknown option 'sfft'. Did you mean 'sft'\?/ }, 'a misspelt size (was: ignored)')
  t.throws(() => makeSplits({ sft: 2 } as never), { message: /makeSplits: seed must be a non-negative integer; got Object/ }, 'sizes given as the seed')
  t.throws(() => parseTask(5 as never), { message: 'parseTask: instruction must be a string; got number' }, 'was: instruction.trim is not a function')
  t.throws(() => goldScore('copy: ab', null as never), { message: 'goldScore: response must be a string; got null' })
  t.throws(() => answerOf(undefined as never), { message: 'answerOf: response must be a string; got undefined' })
  t.throws(() => kendall([1, NaN, 3], [1, 2, 3]), { message: 'kendall: a[1] is NaN; the lists must hold finite numbers' }, 'was: 0.333')
  t.throws(() => spearman([1, 2, 3], [1, Infinity, 3]), { message: 'spearman: b[1] is Infinity; the lists must hold finite numbers' })
  t.equal(spearman([1, 2, 3], [1, 2, 3]), 1)
})
