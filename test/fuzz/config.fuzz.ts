// Properties of the config loader on mutated YAML: the example configs with
// lines dropped, duplicated or swapped, characters changed, random keys and
// values inserted, and YAML's hostile features (anchors, aliases, tags)
// either load or fail with a ConfigError naming the file; never another
// exception, an abort or a hang.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import { ConfigError, loadConfig } from 'rlfarm'
import { assertClearError, runProperties } from './harness'

const EXAMPLES = path.join(__dirname, '..', '..', 'examples')
const sources = ['sft.yaml', 'ppo.yaml', 'dpo.yaml', 'grpo.yaml', 'pipeline.yaml', 'quickstart.yaml'].map((f) => ({ name: f, text: fs.readFileSync(path.join(EXAMPLES, f), 'utf8') }))
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rlfarm-fuzz-config-'))
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))

const SNIPPETS = [
  'x: &a [1, 2]\ny: *a',
  '!!js/function "f"',
  '!!binary aGk=',
  'training: { batch_size: 1e400 }',
  'seed: -1',
  '"\\u0000": 1',
  'data: { train: "\\ud800" }',
  'optimizer: { lr: .nan }',
  'stages: [{ name: a }, { name: a }]',
  '<<: { seed: 2 }',
  '? [1, 2]\n: 3',
  'policy: { init: { layers: 100000000 } }',
  'extends: ../../etc/passwd',
  `${'a'.repeat(5000)}: 1`,
  '- - - - - - - -',
  '{',
  '\t\tseed: 1',
]

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('drop' as const), line: fc.nat() }),
  fc.record({ kind: fc.constant('dup' as const), line: fc.nat() }),
  fc.record({ kind: fc.constant('swap' as const), line: fc.nat(), other: fc.nat() }),
  fc.record({ kind: fc.constant('char' as const), at: fc.nat(), char: fc.constantFrom(':', ' ', '\t', '-', '{', '}', '[', ']', '#', '&', '*', '!', '|', '>', '"', "'", '%', '@', '`', '\n', '\0', '0', 'x') }),
  fc.record({ kind: fc.constant('insert' as const), line: fc.nat(), text: fc.oneof(fc.constantFrom(...SNIPPETS), fc.string({ maxLength: 30 }), fc.tuple(fc.string({ minLength: 1, maxLength: 8 }), fc.jsonValue({ maxDepth: 2 })).map(([k, v]) => `${k}: ${JSON.stringify(v)}`)) }),
)

function mutate(text: string, m: fc.Arbitrary<unknown> extends never ? never : { kind: string; line?: number; other?: number; at?: number; char?: string; text?: string }): string {
  const lines = text.split('\n')
  const i = (m.line ?? 0) % lines.length
  switch (m.kind) {
    case 'drop':
      lines.splice(i, 1)
      return lines.join('\n')
    case 'dup':
      lines.splice(i, 0, lines[i])
      return lines.join('\n')
    case 'swap': {
      const j = (m.other ?? 0) % lines.length
      ;[lines[i], lines[j]] = [lines[j], lines[i]]
      return lines.join('\n')
    }
    case 'char': {
      const at = (m.at ?? 0) % Math.max(1, text.length)
      return text.slice(0, at) + m.char + text.slice(at + 1)
    }
    default:
      lines.splice(i, 0, m.text ?? '')
      return lines.join('\n')
  }
}

let n = 0
export const properties = {
  'mutated example configs': fc.asyncProperty(fc.nat({ max: sources.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 4 }), async (which, mutations) => {
    const source = sources[which]
    const text = mutations.reduce((t, m) => mutate(t, m), source.text)
    const file = path.join(dir, `${n++ % 8}-${source.name}`)
    fs.writeFileSync(file, text)
    const type = source.name === 'pipeline.yaml' || source.name === 'quickstart.yaml' ? 'PipelineConfig' : 'RunConfig'
    try {
      await loadConfig(file, { type } as never)
    } catch (err) {
      assertClearError(err, [file])
      if (!(err instanceof ConfigError)) throw new Error(`a bad config gave ${(err as Error).name}, not a ConfigError: ${(err as Error).message}`)
    }
  }),
}

if (require.main === module) void runProperties(properties)
