// Hugging Face config.json <-> rlfarm's model config. GPT-2 and the Llama
// family (Llama, Mistral, Qwen2, SmolLM) are read; anything the engine would
// compute differently is refused with the file and the field named.
import os from 'node:os'
import type { NativeModelConfig } from '../native.js'

export type ModelConfig = NativeModelConfig

type Json = Record<string, unknown>

const LLAMA_FAMILY = ['llama', 'mistral', 'qwen2']

type Arch = ModelConfig['arch']
type DefaultedField = Exclude<keyof ModelConfig, 'arch' | 'vocab' | 'dim' | 'layers' | 'heads'>

type Defaults = { [K in DefaultedField]: ModelConfig[K] | ((shape: { dim: number; heads: number }) => ModelConfig[K]) }

// What both families share: one key/value head per head, head size dim / heads, no rope scaling.
const HEADS_DEFAULTS = { kvHeads: ({ heads }: { heads: number }) => heads, headDim: ({ dim, heads }: { dim: number; heads: number }) => Math.floor(dim / heads) }
const ROPE_DEFAULTS = { ropeTheta: 10000, ropeScaling: 'none' as const, ropeFactor: 1, ropeLowFreqFactor: 1, ropeHighFreqFactor: 4, ropeOriginalMaxPositions: 0 }

/**
 * Every default of a model config, in one place. Model.create, Model.load
 * (a config.json field that is absent) and a config file's `init:` all take
 * them from here; the native engine has none of its own. Fields that depend
 * on the shape are functions of it. The values are Hugging Face's
 * (GPT2Config, LlamaConfig) except `tieEmbeddings` for a Llama made here; see
 * HF_FILE_DEFAULTS.
 */
export const MODEL_DEFAULTS: Record<Arch, Defaults> = {
  gpt2: {
    ...HEADS_DEFAULTS,
    hidden: ({ dim }) => 4 * dim,
    maxPositions: 1024,
    normEps: 1e-5,
    ...ROPE_DEFAULTS,
    tieEmbeddings: true,
    qkvBias: true,
    scalarHead: false,
  },
  llama: {
    ...HEADS_DEFAULTS,
    // About 8/3 of the width (SwiGLU keeps the MLP's parameter count), rounded up to 32.
    hidden: ({ dim }) => Math.ceil((8 * dim) / 3 / 32) * 32,
    maxPositions: 2048,
    normEps: 1e-6,
    ...ROPE_DEFAULTS,
    tieEmbeddings: true,
    qkvBias: false,
    scalarHead: false,
  },
}

/**
 * Where a config.json that lacks a field means something other than
 * MODEL_DEFAULTS: transformers' LlamaConfig unties the LM head
 * (tie_word_embeddings=False), and reading such a file as tied would drop its
 * lm_head.weight. A Llama made by Model.create is tied (a small model's head
 * is most of its parameters); its config.json says so explicitly.
 */
const HF_FILE_DEFAULTS: Partial<Record<Arch, Partial<ModelConfig>>> = { llama: { tieEmbeddings: false } }

/** The default of `field` for a model of this architecture and shape. */
export function modelDefault<K extends DefaultedField>(arch: Arch, field: K, shape: { dim: number; heads: number }): ModelConfig[K] {
  const d = MODEL_DEFAULTS[arch][field] as ModelConfig[K] | ((s: { dim: number; heads: number }) => ModelConfig[K])
  return typeof d === 'function' ? (d as (s: { dim: number; heads: number }) => ModelConfig[K])(shape) : d
}

/** The default of a field absent from a config.json (HF_FILE_DEFAULTS, else MODEL_DEFAULTS). */
function fileDefault<K extends DefaultedField>(arch: Arch, field: K, shape: { dim: number; heads: number }): ModelConfig[K] {
  const own = HF_FILE_DEFAULTS[arch]?.[field]
  return own !== undefined ? (own as ModelConfig[K]) : modelDefault(arch, field, shape)
}

class ConfigReader {
  constructor(readonly file: string, readonly json: Json) {}

  fail(field: string, message: string): never {
    throw new Error(`${this.file}: ${field} ${message}`)
  }

  has(field: string): boolean {
    return this.json[field] !== undefined && this.json[field] !== null
  }

  int(field: string, fallback?: number): number {
    const v = this.json[field]
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback
      this.fail(field, 'is required')
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) this.fail(field, `must be a positive integer; got ${JSON.stringify(v)}`)
    return v
  }

  num(field: string, fallback: number): number {
    const v = this.json[field]
    if (v === undefined || v === null) return fallback
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(field, `must be a number; got ${JSON.stringify(v)}`)
    return v
  }

  bool(field: string, fallback: boolean): boolean {
    const v = this.json[field]
    if (v === undefined || v === null) return fallback
    if (typeof v !== 'boolean') this.fail(field, `must be true or false; got ${JSON.stringify(v)}`)
    return v
  }

  str(field: string, fallback: string): string {
    const v = this.json[field]
    if (v === undefined || v === null) return fallback
    if (typeof v !== 'string') this.fail(field, `must be a string; got ${JSON.stringify(v)}`)
    return v
  }
}

/** Reads a parsed config.json; `file` names it in errors. */
export function configFromHf(json: Json, file = 'configFromHf', scalarHead = false): ModelConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`${file}: expected a JSON object (a Hugging Face config.json); got ${json === null ? 'null' : Array.isArray(json) ? 'an array' : typeof json}`)
  }
  const r = new ConfigReader(file, json)
  const type = r.str('model_type', '')
  if (type === 'gpt2') {
    const activation = r.str('activation_function', 'gelu_new')
    if (activation !== 'gelu_new' && activation !== 'gelu_pytorch_tanh') {
      r.fail('activation_function', `'${activation}' is not supported (GPT-2's tanh GELU, 'gelu_new', is)`)
    }
    if (r.bool('scale_attn_by_inverse_layer_idx', false)) r.fail('scale_attn_by_inverse_layer_idx', 'true is not supported')
    const dim = r.int('n_embd')
    const heads = r.int('n_head')
    if (dim % heads !== 0) r.fail('n_embd', `(${dim}) must be a multiple of n_head (${heads})`)
    if (!r.bool('tie_word_embeddings', true)) r.fail('tie_word_embeddings', 'false is not supported for GPT-2')
    const shape = { dim, heads }
    const d = <K extends DefaultedField>(field: K) => fileDefault('gpt2', field, shape)
    return {
      arch: 'gpt2',
      vocab: r.int('vocab_size'),
      dim,
      layers: r.int('n_layer'),
      heads,
      kvHeads: heads,
      headDim: dim / heads,
      hidden: r.int('n_inner', d('hidden')),
      maxPositions: r.int('n_positions', r.int('n_ctx', d('maxPositions'))),
      normEps: r.num('layer_norm_epsilon', d('normEps')),
      ropeTheta: d('ropeTheta'),
      ropeScaling: d('ropeScaling'),
      ropeFactor: d('ropeFactor'),
      ropeLowFreqFactor: d('ropeLowFreqFactor'),
      ropeHighFreqFactor: d('ropeHighFreqFactor'),
      ropeOriginalMaxPositions: d('ropeOriginalMaxPositions'),
      tieEmbeddings: true,
      qkvBias: true,
      scalarHead,
    }
  }
  if (LLAMA_FAMILY.includes(type)) {
    const act = r.str('hidden_act', 'silu')
    if (act !== 'silu') r.fail('hidden_act', `'${act}' is not supported (SwiGLU with 'silu' is)`)
    if (r.bool('mlp_bias', false)) r.fail('mlp_bias', 'true is not supported')
    const dim = r.int('hidden_size')
    const heads = r.int('num_attention_heads')
    const shape = { dim, heads }
    const d = <K extends DefaultedField>(field: K) => fileDefault('llama', field, shape)
    let ropeScaling = d('ropeScaling')
    let ropeFactor = d('ropeFactor')
    let low = d('ropeLowFreqFactor')
    let high = d('ropeHighFreqFactor')
    let original = d('ropeOriginalMaxPositions')
    const scaling = json.rope_scaling as Json | null | undefined
    if (scaling) {
      const sr = new ConfigReader(file, scaling)
      const kind = sr.str('rope_type', sr.str('type', 'default'))
      if (kind === 'llama3') {
        ropeScaling = 'llama3'
        ropeFactor = sr.num('factor', 8)
        low = sr.num('low_freq_factor', 1)
        high = sr.num('high_freq_factor', 4)
        original = sr.int('original_max_position_embeddings', 8192)
      } else if (kind === 'linear') {
        ropeScaling = 'linear'
        ropeFactor = sr.num('factor', 1)
      } else if (kind !== 'default') {
        r.fail('rope_scaling', `type '${kind}' is not supported ('linear' and 'llama3' are)`)
      }
    }
    return {
      arch: 'llama',
      vocab: r.int('vocab_size'),
      dim,
      layers: r.int('num_hidden_layers'),
      heads,
      kvHeads: r.int('num_key_value_heads', d('kvHeads')),
      headDim: r.int('head_dim', d('headDim')),
      hidden: r.int('intermediate_size'),
      maxPositions: r.int('max_position_embeddings', d('maxPositions')),
      normEps: r.num('rms_norm_eps', d('normEps')),
      ropeTheta: r.num('rope_theta', d('ropeTheta')),
      ropeScaling,
      ropeFactor,
      ropeLowFreqFactor: low,
      ropeHighFreqFactor: high,
      ropeOriginalMaxPositions: original,
      tieEmbeddings: r.bool('tie_word_embeddings', d('tieEmbeddings')),
      // Qwen2 always has q/k/v biases (its configs do not say so).
      qkvBias: type === 'qwen2' ? true : r.bool('attention_bias', d('qkvBias')),
      scalarHead,
    }
  }
  throw new Error(
    `${file}: model_type ${JSON.stringify(json.model_type)} is not supported; rlfarm runs gpt2 and the llama family (${LLAMA_FAMILY.join(', ')})`,
  )
}

/** A Hugging Face config.json for a config (used when saving a model made with Model.create). */
export function configToHf(c: ModelConfig): Json {
  // A config.json that left out a size, or wrote another arch as llama, would load as another model or not at all.
  if (c === null || typeof c !== 'object' || (c.arch !== 'gpt2' && c.arch !== 'llama')) {
    throw new TypeError(`configToHf: expected a complete ModelConfig with arch 'gpt2' or 'llama'; got ${c === null || typeof c !== 'object' ? String(c) : `arch ${JSON.stringify(c.arch)}`}`)
  }
  // Present and numbers; their ranges are checkModelSize's (Model.create names them).
  for (const key of Object.keys(MODEL_SIZE_LIMITS) as SizeKey[]) {
    const v = c[key] as unknown
    if (typeof v !== 'number') throw new TypeError(`configToHf: ${key} must be a number; got ${JSON.stringify(v)}`)
  }
  if (c.arch === 'gpt2') {
    return {
      model_type: 'gpt2',
      architectures: ['GPT2LMHeadModel'],
      vocab_size: c.vocab,
      n_positions: c.maxPositions,
      n_embd: c.dim,
      n_layer: c.layers,
      n_head: c.heads,
      n_inner: c.hidden,
      layer_norm_epsilon: c.normEps,
      activation_function: 'gelu_new',
      tie_word_embeddings: true,
      torch_dtype: 'float32',
    }
  }
  const json: Json = {
    model_type: 'llama',
    architectures: ['LlamaForCausalLM'],
    vocab_size: c.vocab,
    hidden_size: c.dim,
    num_hidden_layers: c.layers,
    num_attention_heads: c.heads,
    num_key_value_heads: c.kvHeads,
    head_dim: c.headDim,
    intermediate_size: c.hidden,
    max_position_embeddings: c.maxPositions,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tieEmbeddings,
    attention_bias: c.qkvBias,
    hidden_act: 'silu',
    torch_dtype: 'float32',
  }
  if (c.ropeScaling === 'llama3') {
    json.rope_scaling = {
      rope_type: 'llama3',
      factor: c.ropeFactor,
      low_freq_factor: c.ropeLowFreqFactor,
      high_freq_factor: c.ropeHighFreqFactor,
      original_max_position_embeddings: c.ropeOriginalMaxPositions,
    }
  } else if (c.ropeScaling === 'linear') {
    json.rope_scaling = { rope_type: 'linear', factor: c.ropeFactor }
  }
  return json
}

/** Fills the defaults of a partly given config (for Model.create), from MODEL_DEFAULTS. */
export function completeConfig(given: Partial<ModelConfig> & Pick<ModelConfig, 'arch' | 'vocab' | 'dim' | 'layers' | 'heads'>): ModelConfig {
  // An arch other than these two is refused by the engine, naming it.
  const arch: Arch = given.arch === 'gpt2' ? 'gpt2' : 'llama'
  const shape = { dim: given.dim, heads: given.heads }
  const fields = Object.keys(MODEL_DEFAULTS[arch]) as DefaultedField[]
  const defaults = Object.fromEntries(fields.map((field) => [field, modelDefault(arch, field, shape)])) as { [K in DefaultedField]: ModelConfig[K] }
  return { ...defaults, ...given }
}

/** Every key of a model config (Model.create refuses others). */
export const MODEL_CONFIG_KEYS: readonly (keyof ModelConfig)[] = [
  'arch', 'vocab', 'dim', 'layers', 'heads', 'kvHeads', 'headDim', 'hidden', 'maxPositions', 'normEps', 'ropeTheta',
  'ropeScaling', 'ropeFactor', 'ropeLowFreqFactor', 'ropeHighFreqFactor', 'ropeOriginalMaxPositions', 'tieEmbeddings', 'qkvBias', 'scalarHead',
]

type SizeKey = 'vocab' | 'dim' | 'layers' | 'heads' | 'kvHeads' | 'headDim' | 'hidden' | 'maxPositions'

/**
 * The largest value of each size: far above any released model (vocabularies
 * reach 256k, widths 16k, depths 126, contexts 1M), and low enough that a
 * config cannot describe a model whose bookkeeping alone exhausts memory.
 */
export const MODEL_SIZE_LIMITS: Readonly<Record<SizeKey, number>> = {
  vocab: 2 ** 24,
  dim: 2 ** 17,
  layers: 2 ** 12,
  heads: 2 ** 12,
  kvHeads: 2 ** 12,
  headDim: 2 ** 12,
  hidden: 2 ** 20,
  maxPositions: 2 ** 24,
}

/** Hugging Face's names for the sizes, as config.json gives them. */
const HF_SIZE_NAMES: Record<ModelConfig['arch'], Record<SizeKey, string>> = {
  gpt2: { vocab: 'vocab_size', dim: 'n_embd', layers: 'n_layer', heads: 'n_head', kvHeads: 'n_head', headDim: 'n_embd / n_head', hidden: 'n_inner', maxPositions: 'n_positions' },
  llama: {
    vocab: 'vocab_size', dim: 'hidden_size', layers: 'num_hidden_layers', heads: 'num_attention_heads', kvHeads: 'num_key_value_heads',
    headDim: 'head_dim', hidden: 'intermediate_size', maxPositions: 'max_position_embeddings',
  },
}

/** Parameters of a model of this config, as the engine lays them out (a tied head counted once). */
export function parameterCountOf(c: ModelConfig): number {
  const d = c.dim
  let n: number
  if (c.arch === 'gpt2') {
    const layer = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (c.hidden * d + c.hidden) + (d * c.hidden + d)
    n = c.vocab * d + c.maxPositions * d + c.layers * layer + 2 * d
  } else {
    const q = c.heads * c.headDim
    const kv = c.kvHeads * c.headDim
    const layer = 2 * d + q * d + 2 * kv * d + (c.qkvBias ? q + 2 * kv : 0) + d * q + 3 * c.hidden * d
    n = c.vocab * d + c.layers * layer + d + (c.tieEmbeddings ? 0 : c.vocab * d)
  }
  return n + (c.scalarHead ? d : 0)
}

/** The most bytes a model may need: RLFARM_MAX_MODEL_BYTES, else the machine's memory. */
export function maxModelBytes(): number {
  const raw = process.env.RLFARM_MAX_MODEL_BYTES
  if (raw === undefined || raw === '') return os.totalmem()
  const value = Number(raw)
  if (!/^\s*\d+(\.\d+)?(e\d+)?\s*$/i.test(raw) || !Number.isSafeInteger(value) || value <= 0) {
    throw new Error(`RLFARM_MAX_MODEL_BYTES must be a positive whole number of bytes; got ${JSON.stringify(raw)}`)
  }
  return value
}

const GIB = 2 ** 30

function showBytes(n: number): string {
  return n >= GIB / 10 ? `${n.toLocaleString('en-US')} bytes (${(n / GIB).toFixed(1)} GiB)` : `${n.toLocaleString('en-US')} bytes`
}

/**
 * Checks a model config before anything is allocated: each size a positive
 * integer within MODEL_SIZE_LIMITS, and the weights, which the engine
 * allocates when the model is made (4 bytes a parameter), within maxModelBytes(). `where` names the source (a
 * config.json, or Model.create); with `hfNames` the fields are named as
 * config.json names them.
 */
export function checkModelSize(c: ModelConfig, where: string, hfNames = false): void {
  const name = (key: SizeKey) => (hfNames ? (HF_SIZE_NAMES[c.arch]?.[key] ?? key) : key)
  for (const key of Object.keys(MODEL_SIZE_LIMITS) as SizeKey[]) {
    const v = c[key] as unknown
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`${where}: ${name(key)} must be a positive integer; got ${typeof v === 'number' ? String(v) : JSON.stringify(v)}`)
    if (v > MODEL_SIZE_LIMITS[key]) throw new Error(`${where}: ${name(key)} is ${v}, over the largest rlfarm accepts (${MODEL_SIZE_LIMITS[key]})`)
  }
  const needed = parameterCountOf(c) * 4
  const limit = maxModelBytes()
  if (needed > limit) {
    throw new Error(
      `${where}: this model needs ${showBytes(needed)} for its weights (${parameterCountOf(c).toLocaleString('en-US')} parameters), over the limit of ${showBytes(limit)} ` +
        `(RLFARM_MAX_MODEL_BYTES${process.env.RLFARM_MAX_MODEL_BYTES ? '' : ', by default the machine\'s memory'}); check ${name('layers')}, ${name('dim')}, ${name('vocab')} and ${name('hidden')}`,
    )
  }
}
