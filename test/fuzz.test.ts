// The bounded run of the fuzz suite (test/fuzz/*.fuzz.ts, about two minutes
// in all): every property file runs in its own child process from a fixed
// seed, so a failure replays (RLFARM_FUZZ_SEED picks another seed; `npm run
// fuzz -- --minutes N` is the long run). Any failed property, crash or hang
// fails this test.
import t from 'tap'
import { fuzz, propertyFiles } from './fuzz/run'

const seed = Number(process.env.RLFARM_FUZZ_SEED ?? 15)
const seconds = Number(process.env.RLFARM_FUZZ_SECONDS ?? 120)

t.test(`fuzz suite: ${propertyFiles().join(', ')} for ${seconds} s from seed ${seed}`, async (t) => {
  const report = await fuzz({ budgetMs: seconds * 1000, seed, rounds: 1, graceMs: 90_000, log: (line) => t.comment(line) })
  const total = Object.values(report.runs).reduce((a, b) => a + b, 0)
  t.ok(total > 100, `${total} inputs tried over ${Object.keys(report.runs).length} properties`)
  for (const file of propertyFiles()) t.ok(Object.keys(report.runs).some((k) => k.startsWith(`${file}:`)), `${file}: its properties ran`)
  for (const f of report.failures) {
    const what = `${f.kind}: ${f.file}:${f.property ?? '?'} (replay: ${f.replay})\n${f.error?.split('\n')[0]}\ncounterexample: ${f.counterexample ?? '-'}`
    t.fail(what)
  }
})
