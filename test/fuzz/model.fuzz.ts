// Properties of Model.create, Model.load and generate's options: any config
// and options (small sizes, junk values, unknown keys) give a model or a
// clear Error naming the field; generate returns tokens inside the
// vocabulary and masks of the right shape, or a clear Error.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import { Model, Tensor } from 'rlfarm'
import { resultOrClearError, resultOrClearErrorAsync, runProperties } from './harness'

// Sizes stay small (this runs on shared CPUs): huge sizes are the memory check's tests, not a fuzz input.
const junk = fc.constantFrom(-1, 0, 0.5, NaN, Infinity, -Infinity, '4', null, undefined, true, [2], {})
const size = (max: number) => fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 1, max }) }, { weight: 1, arbitrary: junk })

const config = fc.record(
  {
    arch: fc.oneof(fc.constantFrom('gpt2', 'llama', 'qwen2'), fc.string({ maxLength: 6 }), junk),
    vocab: size(300),
    dim: size(32),
    layers: size(2),
    heads: size(4),
    kvHeads: size(4),
    hidden: size(64),
    maxPositions: size(32),
    norm: fc.oneof(fc.double(), junk),
  },
  { requiredKeys: ['arch', 'vocab', 'dim', 'layers', 'heads'] },
)
const extraKey = fc.option(fc.tuple(fc.constantFrom('hiddn', 'layer', 'vocab_size', '__proto__', 'constructor'), fc.integer({ min: 0, max: 9 })), { nil: undefined })
const createOptions = fc.oneof(fc.record({ seed: fc.oneof(fc.integer(), junk), scalarHead: fc.oneof(fc.boolean(), junk), device: fc.oneof(fc.constantFrom('cpu', 'cuda', 'tpu'), junk) }, { requiredKeys: [] }), junk)

const WHERE = /Model\.create|Model\.load|model\.|config|must|expected/

let tiny: Model | undefined
function tinyModel(): Model {
  tiny ??= Model.create({ arch: 'gpt2', vocab: 64, dim: 16, layers: 1, heads: 2, maxPositions: 24 }, { seed: 1 })
  return tiny
}

export const properties = {
  'Model.create on any small config': fc.property(config, extraKey, createOptions, (c, extra, options) => {
    const input: Record<string, unknown> = { ...c }
    if (extra) input[extra[0]] = extra[1]
    resultOrClearError(() => Model.create(input as never, options as never), [WHERE], (m) => {
      if (!(m.config.vocab >= 1 && m.config.layers >= 1)) throw new Error(`a model with config ${JSON.stringify(m.config)}`)
    })
  }),
  'generate with any options': fc.asyncProperty(
    fc.array(fc.array(fc.integer({ min: -2, max: 70 }), { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 3 }),
    fc.record(
      {
        maxNewTokens: fc.oneof(fc.integer({ min: 0, max: 10 }), junk, fc.constant(1e9)),
        temperature: fc.oneof(fc.double({ min: 0, max: 3, noNaN: true }), junk),
        topK: fc.oneof(fc.integer({ min: 0, max: 80 }), junk),
        topP: fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), junk),
        seed: fc.oneof(fc.integer(), junk),
        padToken: fc.oneof(fc.integer({ min: -1, max: 70 }), junk),
        stopTokens: fc.oneof(fc.array(fc.integer({ min: -1, max: 70 }), { maxLength: 3 }), junk),
      },
      { requiredKeys: [] },
    ),
    async (rows, options) => {
      const model = tinyModel()
      const width = Math.max(...rows.map((r) => r.length))
      const prompts = Tensor.from(new Int32Array(rows.flatMap((r) => [...r, ...new Array(width - r.length).fill(0)])), [rows.length, width])
      await resultOrClearErrorAsync(() => model.generate(prompts, options as never), [WHERE, /generate/], (out) => {
        const tokens = out.tokens.data as Int32Array
        for (const id of tokens) if (id < 0 || id >= model.config.vocab) throw new Error(`generate returned token ${id} outside the vocabulary of ${model.config.vocab}`)
      })
    },
  ),
  'Model.load of a directory with a mutated config.json': fc.asyncProperty(fc.dictionary(fc.constantFrom('n_embd', 'n_layer', 'n_head', 'vocab_size', 'n_positions', 'model_type', 'architectures', 'hidden_size', 'num_hidden_layers'), fc.oneof(fc.integer({ min: -2, max: 40 }), junk, fc.string({ maxLength: 4 })), { maxKeys: 4 }), async (edits) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rlfarm-fuzz-model-'))
    try {
      await tinyModel().save(dir)
      const file = path.join(dir, 'config.json')
      const json = JSON.parse(fs.readFileSync(file, 'utf8'))
      fs.writeFileSync(file, JSON.stringify({ ...json, ...edits }))
      await resultOrClearErrorAsync(() => Model.load(dir), [WHERE, dir])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }),
}

if (require.main === module) void runProperties(properties)
