// The models a config names: loading a directory or creating a shape, with
// the tokenizer that reads its text, and the encoder of a run's data.
import fs from 'node:fs'
import path from 'node:path'
import type { DataConfig, ModelSpec, RunConfig } from '../config/types.generated.js'
import { ConfigError, type ConfigProblem } from '../config/errors.js'
import { SequenceEncoder } from '../data/encode.js'
import { checkDevice, Model } from '../model/model.js'
import type { Device } from '../tensor.js'
import { loadTokenizer, type Tokenizer } from '../tokenizers/index.js'
import { isDirectory, readRegularFileSync } from '../util/fs.js'
import { parseJson } from '../util/json.js'

/** A model with the tokenizer that reads its text, and where that tokenizer came from. */
export interface LoadedModel {
  model: Model
  tokenizer: Tokenizer
  /** 'byte' or the directory the tokenizer was read from (saved next to trained models). */
  tokenizerSource: string
}

// A model directory saved by rlfarm records a byte tokenizer here, since the
// byte tokenizer has no tokenizer.json.
export const RLFARM_META = 'rlfarm.json'

/** Where a model's tokenizer comes from: the spec, the model directory, or its rlfarm.json. */
export function tokenizerSourceFor(spec: ModelSpec, what: string): string {
  // A missing model directory is the problem to name, not the tokenizer it would have held.
  if (spec.path && !isDirectory(spec.path)) throw new Error(`${what}.path: ${spec.path} is not a model directory (${fs.existsSync(spec.path) ? 'it is a file' : 'nothing is there'})`)
  if (spec.tokenizer) return spec.tokenizer
  if (spec.path) {
    if (fs.existsSync(path.join(spec.path, 'tokenizer.json'))) return spec.path
    const meta = path.join(spec.path, RLFARM_META)
    if (fs.existsSync(meta)) {
      const json = parseJson(readRegularFileSync(meta, 'utf8'), meta)
      const tokenizer = json !== null && typeof json === 'object' ? (json as { tokenizer?: unknown }).tokenizer : undefined
      if (tokenizer !== undefined && (typeof tokenizer !== 'string' || tokenizer === '')) throw new Error(`${meta}: tokenizer must be 'byte' or a tokenizer directory; got ${JSON.stringify(tokenizer)}`)
      if (tokenizer) return tokenizer
    }
  }
  throw new Error(`${what}: no tokenizer: set ${what}.tokenizer to a tokenizer directory or 'byte' (the model directory has no tokenizer.json)`)
}

/** Whether a config names this model: a directory to load or a shape to create. */
export function isGiven(spec: ModelSpec): boolean {
  return Boolean(spec.path || spec.init)
}

/** The frozen reference model: `reference` when given, else the starting policy. */
export function referenceSpec(config: RunConfig): ModelSpec {
  return isGiven(config.reference) ? config.reference : config.policy
}

/**
 * Every model spec's device in a config (policy.device, reference.device,
 * judge.model.device, ...), checked before a run does any work: a GPU that
 * this build or machine lacks is a ConfigError naming the field.
 */
export function checkModelDevices(config: object, source: string): void {
  const problems: ConfigProblem[] = []
  const walk = (value: unknown, at: string) => {
    if (Array.isArray(value)) value.forEach((v, i) => walk(v, `${at}[${i}]`))
    else if (value !== null && typeof value === 'object') {
      for (const [key, v] of Object.entries(value)) {
        const field = at ? `${at}.${key}` : key
        if (key !== 'device') walk(v, field)
        else if (v !== 'cpu') {
          try {
            checkDevice(field, v, undefined)
          } catch (err) {
            problems.push({ file: source, path: field, message: (err as Error).message.slice(field.length + 2) })
          }
        }
      }
    }
  }
  walk(config, '')
  if (problems.length > 0) throw new ConfigError(problems)
}

/** Loads (or creates, with `init`) the model a ModelSpec names. */
export async function loadModelSpec(
  spec: ModelSpec,
  what: string,
  options: { scalarHead?: boolean; seed: number; tokenizer?: LoadedModel },
): Promise<LoadedModel> {
  if (!spec?.path && !spec?.init) throw new ConfigError([{ path: what, message: `give ${what}.path (a model directory) or ${what}.init (a new model's shape)` }])
  const tokenizerSource = options.tokenizer?.tokenizerSource ?? tokenizerSourceFor(spec, what)
  const tokenizer = options.tokenizer?.tokenizer ?? (await loadTokenizer(tokenizerSource))
  const scalarHead = options.scalarHead ?? spec.scalar_head
  let model: Model
  // A spec made in code rather than read from a config may lack the defaults: cpu, and bf16 on cuda.
  const device = (spec.device ?? 'cpu') as Device
  const placement = device === 'cpu' ? {} : { device, precision: (spec.precision ?? 'bf16') as 'f32' | 'bf16' }
  if (spec.path) {
    model = await Model.load(spec.path, { scalarHead, seed: options.seed, ...placement })
  } else {
    const s = spec.init!
    const vocab = s.vocab_size ?? tokenizer.vocabSize
    if (vocab < tokenizer.vocabSize) {
      throw new Error(`${what}.init.vocab_size (${vocab}) is smaller than the tokenizer's vocabulary (${tokenizer.vocabSize})`)
    }
    const create = (...args: Parameters<typeof Model.create>) => {
      try {
        return Model.create(...args)
      } catch (err) {
        throw new Error(`${what}.init: ${(err as Error).message}`, { cause: err })
      }
    }
    model = create(
      {
        arch: s.arch,
        vocab,
        dim: s.hidden_size,
        layers: s.layers,
        heads: s.heads,
        kvHeads: s.kv_heads ?? s.heads,
        ...(s.intermediate_size !== undefined ? { hidden: s.intermediate_size } : {}),
        maxPositions: s.max_positions,
      },
      { seed: options.seed, scalarHead, ...placement },
    )
  }
  if (model.config.vocab < tokenizer.vocabSize) {
    throw new Error(`${what}: the model's vocabulary (${model.config.vocab}) is smaller than its tokenizer's (${tokenizer.vocabSize})`)
  }
  return { model, tokenizer, tokenizerSource }
}

/**
 * The encoder of the run's data for a model and its tokenizer. Sequences are cut
 * to data.max_length and to the model's context (maxPositions), as PPO's
 * rollouts are: a longer one would stop the run at the first batch that holds
 * it (GPT-2 has no position past its n_positions), after steps were spent.
 */
export function encoderFor(tokenizer: Tokenizer, data: DataConfig, model: Model): SequenceEncoder {
  const maxLength = Math.min(data.max_length, model.config.maxPositions)
  return new SequenceEncoder({ tokenizer, maxLength, maxPromptLength: data.max_prompt_length, chatTemplate: data.chat_template })
}

/** The config's policy, the encoder of the run's data for its tokenizer, and its pad id: where most stages start. */
export async function loadPolicy(config: RunConfig): Promise<{ policy: LoadedModel; encoder: SequenceEncoder; pad: number }> {
  const policy = await loadModelSpec(config.policy, 'policy', { seed: config.seed })
  return { policy, encoder: encoderFor(policy.tokenizer, config.data, policy.model), pad: padIdOf(policy.tokenizer) }
}

/** The pad id of a tokenizer (its pad, else its EOS, else 0). */
export function padIdOf(tokenizer: Tokenizer): number {
  return tokenizer.padId ?? tokenizer.eosId ?? 0
}

/** Models trained together must read the same tokens: reuse the policy's tokenizer unless one is named. */
export function sameTokenizer(spec: ModelSpec, policy: LoadedModel): LoadedModel | undefined {
  return spec.tokenizer ? undefined : policy
}
