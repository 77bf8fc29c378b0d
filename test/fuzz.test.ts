// The bounded run of the fuzz suite (test/fuzz/*.fuzz.ts, about two minutes
// in all): every property file runs in its own child process from a fixed
// seed, so a failure replays (RLFARM_FUZZ_SEED picks another seed; `npm run
// fuzz -- --minutes N` is the long run). Any failed property, crash or hang
// fails this test, except the failures listed in KNOWN: bugs the suite found
// in code another change is fixing (issue 15), reported as todo until then.
import t from 'tap'
import { fuzz, propertyFiles } from './fuzz/run'

const seed = Number(process.env.RLFARM_FUZZ_SEED ?? 15)
const seconds = Number(process.env.RLFARM_FUZZ_SECONDS ?? 120)

/** Failures found by the suite in code under repair elsewhere (issue 15: items 3 and 10, the safetensors rules and null arguments). */
const KNOWN: { file: string; error: RegExp; owner: string }[] = [
  { file: 'tensor-ops', error: /Cannot read properties of null \(reading '(dtype|device)'\)|\bis not iterable/, owner: 'issue 15 item 10 (null arguments, Tensor.from/zeros coercion): harden-model' },
  { file: 'safetensors', error: /loaded as .*, not .*\(header length [+-]\d/, owner: 'issue 15 item 3 (a header length a byte or two short loads shifted values): harden-model' },
  { file: 'model', error: /Cannot read properties of null \(reading '(device|dtype)'\)/, owner: 'issue 15 item 10 (null options to Model.create): harden-model' },
]

t.test(`fuzz suite: ${propertyFiles().join(', ')} for ${seconds} s from seed ${seed}`, async (t) => {
  const report = await fuzz({ budgetMs: seconds * 1000, seed, rounds: 1, graceMs: 90_000, log: (line) => t.comment(line) })
  const total = Object.values(report.runs).reduce((a, b) => a + b, 0)
  t.ok(total > 100, `${total} inputs tried over ${Object.keys(report.runs).length} properties`)
  for (const file of propertyFiles()) t.ok(Object.keys(report.runs).some((k) => k.startsWith(`${file}:`)), `${file}: its properties ran`)
  for (const f of report.failures) {
    const known = KNOWN.find((k) => k.file === f.file && f.kind === 'failed' && k.error.test(f.error ?? ''))
    const what = `${f.kind}: ${f.file}:${f.property ?? '?'} (replay: ${f.replay})\n${f.error?.split('\n')[0]}\ncounterexample: ${f.counterexample ?? '-'}`
    if (known) t.fail(what, { todo: known.owner })
    else t.fail(what)
  }
})
