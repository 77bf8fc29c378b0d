// One source for model config defaults (ts/model/config.ts MODEL_DEFAULTS):
// a model made through each path (Model.create, Model.load of a config.json
// that gives only the shape, a config file's `init:`) has the same config, and
// the engine takes no config with a field missing (it has no defaults of its own).
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Model, loadConfig } from 'rlfarm'
import { MODEL_DEFAULTS } from '../dist/model/config.js'
import { loadModelSpec } from '../dist/training/models.js'
import { native } from '../dist/native.js'
import { assertThrowsWith } from './helpers/common'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rlfarm-model-config-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

// The shape each path is given; everything else comes from the defaults.
const SHAPES = {
  gpt2: { arch: 'gpt2' as const, vocab: 264, dim: 32, layers: 2, heads: 4, maxPositions: 64 },
  llama: { arch: 'llama' as const, vocab: 264, dim: 32, layers: 2, heads: 4, kvHeads: 2, maxPositions: 64 },
}

// config.json with the shape only, in Hugging Face's names.
function minimalHfConfig(arch: 'gpt2' | 'llama', hidden: number): Record<string, unknown> {
  const s = SHAPES[arch]
  if (arch === 'gpt2') return { model_type: 'gpt2', vocab_size: s.vocab, n_embd: s.dim, n_layer: s.layers, n_head: s.heads, n_positions: s.maxPositions }
  return {
    model_type: 'llama',
    vocab_size: s.vocab,
    hidden_size: s.dim,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: SHAPES.llama.kvHeads,
    intermediate_size: hidden, // transformers' LlamaConfig default (11008) is not a small model's
    max_position_embeddings: s.maxPositions,
    // transformers' LlamaConfig default is False; a model made here is tied (see HF_FILE_DEFAULTS).
    tie_word_embeddings: true,
  }
}

for (const arch of ['gpt2', 'llama'] as const) {
  t.test(`${arch}: Model.create, Model.load and a config file's init give the same config`, async (t) => {
    const created = Model.create(SHAPES[arch], { seed: 1 })
    // The defaults are those of the table, and those documented for each family.
    t.equal(created.config.normEps, arch === 'gpt2' ? 1e-5 : 1e-6, 'normEps: GPT2Config 1e-5, LlamaConfig 1e-6')
    t.equal(created.config.qkvBias, arch === 'gpt2', 'q/k/v biases: GPT-2 has them, Llama does not')
    t.equal(created.config.hidden, arch === 'gpt2' ? 128 : 96, 'MLP width: 4 x dim (GPT-2), 8/3 x dim rounded up to 32 (Llama)')
    t.equal(created.config.normEps, MODEL_DEFAULTS[arch].normEps, 'Model.create reads MODEL_DEFAULTS')

    const modelDir = path.join(dir, arch)
    await created.save(modelDir)
    fs.writeFileSync(path.join(modelDir, 'config.json'), JSON.stringify(minimalHfConfig(arch, created.config.hidden)))
    const loaded = await Model.load(modelDir)
    t.same(loaded.config, created.config, 'Model.load of a config.json with the shape only')

    const yaml = path.join(dir, `${arch}.yaml`)
    fs.writeFileSync(
      yaml,
      [
        'algorithm: sft',
        'policy:',
        '  tokenizer: byte',
        '  init:',
        `    arch: ${arch}`,
        `    vocab_size: ${SHAPES[arch].vocab}`,
        `    hidden_size: ${SHAPES[arch].dim}`,
        `    layers: ${SHAPES[arch].layers}`,
        `    heads: ${SHAPES[arch].heads}`,
        ...(arch === 'llama' ? [`    kv_heads: ${SHAPES.llama.kvHeads}`] : []),
        `    max_positions: ${SHAPES[arch].maxPositions}`,
        '',
      ].join('\n'),
    )
    const config = await loadConfig(yaml)
    const fromInit = await loadModelSpec(config.policy, 'policy', { seed: 1 })
    t.same(fromInit.model.config, created.config, "a config file's policy.init")
  })
}

t.test("a Llama config.json without tie_word_embeddings is untied, as transformers reads it", async (t) => {
  const created = Model.create({ ...SHAPES.llama, tieEmbeddings: false }, { seed: 2 })
  const modelDir = path.join(dir, 'llama-untied')
  await created.save(modelDir)
  const json = minimalHfConfig('llama', created.config.hidden)
  delete json.tie_word_embeddings
  fs.writeFileSync(path.join(modelDir, 'config.json'), JSON.stringify(json))
  const loaded = await Model.load(modelDir)
  t.equal(loaded.config.tieEmbeddings, false)
  t.same(loaded.config, created.config)
  t.same(loaded.unusedTensors, [], 'lm_head.weight was read, not dropped')
})

t.test('the engine has no defaults of its own: a config with a field missing is refused, naming it', async (t) => {
  const full = Model.create(SHAPES.llama).config
  for (const field of ['normEps', 'qkvBias', 'tieEmbeddings', 'kvHeads', 'ropeScaling'] as const) {
    const partial: Record<string, unknown> = { ...full }
    delete partial[field]
    assertThrowsWith(t, () => new native.NativeModel(partial as never), [`model config: ${field} is required`], `without ${field}`)
  }
  t.doesNotThrow(() => new native.NativeModel(full), 'the full config is taken')
})

t.test("a model directory's rlfarm.json that is not JSON, or names no tokenizer: an error naming the file", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rlfarm-meta-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  await Model.create({ arch: 'gpt2', vocab: 259, dim: 8, layers: 1, heads: 2 }).save(dir)
  const meta = path.join(dir, 'rlfarm.json')
  const spec = { path: dir, scalar_head: false, device: 'cpu', precision: 'bf16' } as never
  fs.writeFileSync(meta, '{')
  await t.rejects(loadModelSpec(spec, 'policy', {}), { message: new RegExp(`^${meta.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not valid JSON`) }, "was: JSON.parse's message without the file")
  fs.writeFileSync(meta, '{"tokenizer": 5}')
  await t.rejects(loadModelSpec(spec, 'policy', {}), { message: `${meta}: tokenizer must be 'byte' or a tokenizer directory; got 5` })
  fs.writeFileSync(meta, '{"tokenizer": "byte"}')
  t.equal((await loadModelSpec(spec, 'policy', {})).tokenizer.vocabSize, 259, 'a good one names the byte tokenizer')
})
