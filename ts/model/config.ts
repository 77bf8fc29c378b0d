// Hugging Face config.json <-> rlfarm's model config. GPT-2 and the Llama
// family (Llama, Mistral, Qwen2, SmolLM) are read; anything the engine would
// compute differently is refused with the file and the field named.
import type { NativeModelConfig } from '../native.js'

export type ModelConfig = NativeModelConfig

type Json = Record<string, unknown>

const LLAMA_FAMILY = ['llama', 'mistral', 'qwen2']

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
export function configFromHf(json: Json, file: string, scalarHead = false): ModelConfig {
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
    return {
      arch: 'gpt2',
      vocab: r.int('vocab_size'),
      dim,
      layers: r.int('n_layer'),
      heads,
      kvHeads: heads,
      headDim: dim / heads,
      hidden: r.int('n_inner', 4 * dim),
      maxPositions: r.int('n_positions', r.int('n_ctx', 1024)),
      normEps: r.num('layer_norm_epsilon', 1e-5),
      ropeTheta: 10000,
      ropeScaling: 'none',
      ropeFactor: 1,
      ropeLowFreqFactor: 1,
      ropeHighFreqFactor: 4,
      ropeOriginalMaxPositions: 0,
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
    let ropeScaling: ModelConfig['ropeScaling'] = 'none'
    let ropeFactor = 1
    let low = 1
    let high = 4
    let original = 0
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
      kvHeads: r.int('num_key_value_heads', heads),
      headDim: r.int('head_dim', Math.floor(dim / heads)),
      hidden: r.int('intermediate_size'),
      maxPositions: r.int('max_position_embeddings', 2048),
      normEps: r.num('rms_norm_eps', 1e-6),
      ropeTheta: r.num('rope_theta', 10000),
      ropeScaling,
      ropeFactor,
      ropeLowFreqFactor: low,
      ropeHighFreqFactor: high,
      ropeOriginalMaxPositions: original,
      tieEmbeddings: r.bool('tie_word_embeddings', false),
      // Qwen2 always has q/k/v biases (its configs do not say so).
      qkvBias: type === 'qwen2' ? true : r.bool('attention_bias', false),
      scalarHead,
    }
  }
  throw new Error(
    `${file}: model_type ${JSON.stringify(json.model_type)} is not supported; rlfarm runs gpt2 and the llama family (${LLAMA_FAMILY.join(', ')})`,
  )
}

/** A Hugging Face config.json for a config (used when saving a model made with Model.create). */
export function configToHf(c: ModelConfig): Json {
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

/** Fills the defaults of a partly given config (for Model.create). */
export function completeConfig(given: Partial<ModelConfig> & Pick<ModelConfig, 'arch' | 'vocab' | 'dim' | 'layers' | 'heads'>): ModelConfig {
  const heads = given.heads
  const gpt2 = given.arch === 'gpt2'
  return {
    kvHeads: heads,
    headDim: Math.floor(given.dim / heads),
    hidden: gpt2 ? 4 * given.dim : Math.ceil((8 * given.dim) / 3 / 32) * 32,
    maxPositions: gpt2 ? 1024 : 2048,
    normEps: gpt2 ? 1e-5 : 1e-6,
    ropeTheta: 10000,
    ropeScaling: 'none',
    ropeFactor: 1,
    ropeLowFreqFactor: 1,
    ropeHighFreqFactor: 4,
    ropeOriginalMaxPositions: 0,
    tieEmbeddings: true,
    qkvBias: gpt2,
    scalarHead: false,
    ...given,
  }
}
