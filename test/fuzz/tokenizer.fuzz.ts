// Properties of tokenizer files and chat templates: a tokenizer.json or
// tokenizer_config.json with fields dropped or replaced gives a tokenizer
// whose encode/decode work, or a clear Error; a chat template built from
// Jinja pieces (loops, range, string growth, macros, filters, unknown names)
// rendered on random messages gives a string or an Error naming the
// template; never an abort, V8 running out of memory, or a hang.
import fs from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import { HfTokenizer } from 'rlfarm'
import { resultOrClearError, runProperties } from './harness'

const DIR = path.join(__dirname, '..', 'fixtures', 'tokenizers')
const fixtures = ['gpt2-bpe', 'llama-sp', 'qwen-bpe'].map((name) => ({
  name,
  tokenizer: JSON.parse(fs.readFileSync(path.join(DIR, name, 'tokenizer.json'), 'utf8')) as Record<string, unknown>,
  config: fs.existsSync(path.join(DIR, name, 'tokenizer_config.json')) ? (JSON.parse(fs.readFileSync(path.join(DIR, name, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>) : {},
}))

const junk = fc.oneof(fc.constantFrom(null, 0, -1, 1e9, '', 'x', true, [], {}, [[1]], { type: 'BPE' }), fc.jsonValue({ maxDepth: 2 }))
const SOURCE = 'fuzz-tokenizer'

/** Paths into a JSON object (up to two keys deep) to drop or replace. */
function edit(obj: Record<string, unknown>, keys: [number, number], value: unknown, drop: boolean): Record<string, unknown> {
  const copy = JSON.parse(JSON.stringify(obj)) as Record<string, unknown>
  const top = Object.keys(copy)
  if (top.length === 0) return copy
  const k1 = top[keys[0] % top.length]
  const inner = copy[k1]
  if (inner && typeof inner === 'object' && !Array.isArray(inner) && keys[1] % 2 === 0 && Object.keys(inner).length > 0) {
    const sub = Object.keys(inner)
    const k2 = sub[keys[1] % sub.length]
    if (drop) delete (inner as Record<string, unknown>)[k2]
    else (inner as Record<string, unknown>)[k2] = value
  } else if (drop) delete copy[k1]
  else copy[k1] = value
  return copy
}

const PIECES = [
  '{{ bos_token }}',
  '{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}',
  '{% if add_generation_prompt %}assistant: {% endif %}',
  '{% for i in range(100000000) %}x{% endfor %}',
  '{% for i in range(3000) %}{% for j in range(3000) %}y{% endfor %}{% endfor %}',
  "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
  '{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}',
  '{{ messages[0].content * 3 }}',
  "{{ 'x' | indent(50) }}",
  '{{ raise_exception("no system role") }}',
  '{{ undefined_name.attr }}',
  '{{ messages | tojson }}',
  '{% for m in messages %}{{ m.content | upper | trim }}{% endfor %}',
  '{{ range(5) | join(",") }}',
  '{{ "%s" % 5 }}',
  '{% if messages[0].role == "system" %}{{ messages[0].content }}{% endif %}',
  '{{ messages[-1]["content"][::-1] }}',
  '{%',
  '}}',
  '{{ 1 / 0 }}',
  '{{ eos_token }}',
]

export const properties = {
  'tokenizer.json and tokenizer_config.json edits': fc.property(
    fc.nat({ max: fixtures.length - 1 }),
    fc.boolean(),
    fc.tuple(fc.nat(), fc.nat()),
    junk,
    fc.boolean(),
    fc.string({ maxLength: 20 }),
    (which, onConfig, keys, value, drop, probe) => {
      const f = fixtures[which]
      const tokenizerJson = onConfig ? f.tokenizer : edit(f.tokenizer, keys, value, drop)
      const tokenizerConfig = onConfig ? edit(f.config, keys, value, drop) : f.config
      resultOrClearError(
        () => {
          const tok = HfTokenizer.fromJSON(tokenizerJson, { tokenizerConfig, source: SOURCE })
          const ids = tok.encode(probe)
          for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= tok.vocabSize) throw new Error(`encode gave id ${id}, outside the vocabulary of ${tok.vocabSize}`)
          tok.decode(ids)
          return tok
        },
        [SOURCE, /tokenizer/i],
      )
    },
  ),
  'chat templates from Jinja pieces': fc.property(
    fc.array(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...PIECES) }, { weight: 1, arbitrary: fc.string({ maxLength: 10 }) }), { minLength: 1, maxLength: 4 }),
    fc.array(fc.record({ role: fc.constantFrom('system', 'user', 'assistant', 'tool', ''), content: fc.string({ maxLength: 20 }) }), { maxLength: 4 }),
    fc.boolean(),
    (pieces, messages, generation) => {
      const template = pieces.join('')
      const tok = HfTokenizer.fromJSON(fixtures[0].tokenizer, { tokenizerConfig: { ...fixtures[0].config, chat_template: template }, source: SOURCE })
      resultOrClearError(() => tok.applyChatTemplate(messages, { tokenize: false, addGenerationPrompt: generation }), [SOURCE], (text) => {
        if (typeof text !== 'string') throw new Error(`applyChatTemplate gave ${typeof text}`)
      })
    },
  ),
}

if (require.main === module) void runProperties(properties)
