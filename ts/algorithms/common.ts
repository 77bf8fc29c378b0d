// Pieces every trainer shares: loading the models a config names, reading its
// data, iterating batches in a resumable seeded order, sampling responses,
// scoring them, and the optimizer with its schedule.
import fs from 'node:fs'
import path from 'node:path'
import type { DataConfig, GenerationConfig, ModelSpec, OptimizerConfig, RewardFunction, RunConfig } from '../config/types.generated.js'
import { ConfigError } from '../config/errors.js'
import { collatePrompts, lastPositionMask, type PromptBatch } from '../data/batch.js'
import { SequenceEncoder } from '../data/encode.js'
import { readDataset, type Binarize, type DataFormat } from '../data/formats.js'
import { parsePromptRow, type Prompt, type PromptExample, type RowRules } from '../data/examples.js'
import { Model } from '../model/model.js'
import type { Device } from '../tensor.js'
import { AdamW, learningRate } from '../model/optim.js'
import { loadTokenizer, type Tokenizer } from '../tokenizers/index.js'
import * as ops from '../ops.js'
import { Rng, type RngState } from '../util/rng.js'
import { hasRewardFunctions, makeRewardCalls, RewardFunctions } from '../rewards/scorer.js'
import { Tensor } from '../tensor.js'
import type { DataParallel } from '../distributed/data-parallel.js'
import type { TrainerContext } from './context.js'

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
      const tokenizer = (JSON.parse(fs.readFileSync(meta, 'utf8')) as { tokenizer?: string }).tokenizer
      if (tokenizer) return tokenizer
    }
  }
  throw new Error(`${what}: no tokenizer: set ${what}.tokenizer to a tokenizer directory or 'byte' (the model directory has no tokenizer.json)`)
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory()
  } catch {
    return false
  }
}

/** Whether a config names this model: a directory to load or a shape to create. */
export function isGiven(spec: ModelSpec): boolean {
  return Boolean(spec.path || spec.init)
}

/** The frozen reference model: `reference` when given, else the starting policy. */
export function referenceSpec(config: RunConfig): ModelSpec {
  return isGiven(config.reference) ? config.reference : config.policy
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

export function encoderFor(tokenizer: Tokenizer, data: DataConfig): SequenceEncoder {
  return new SequenceEncoder({ tokenizer, maxLength: data.max_length, maxPromptLength: data.max_prompt_length, chatTemplate: data.chat_template })
}

/** The pad id of a tokenizer (its pad, else its EOS, else 0). */
export function padIdOf(tokenizer: Tokenizer): number {
  return tokenizer.padId ?? tokenizer.eosId ?? 0
}

/** Reads a file of rows (JSONL or Parquet, in data.format's shape); reports skipped rows through `note`. */
export async function readRows<T>(
  file: string | undefined,
  what: string,
  parse: (value: unknown, rules: RowRules) => T,
  data: DataConfig,
  note: (message: string) => void,
): Promise<T[]> {
  if (!file) throw new ConfigError([{ path: `data.${what}`, message: 'is required for this algorithm' }])
  const result = await readDataset(file, parse, {
    format: data.format as DataFormat,
    binarize: data.binarize as Binarize,
    onBadRow: data.on_bad_row,
    maxRowBytes: data.max_row_bytes,
    allowSpecialFiles: data.allow_special_files,
    checkText: data.check_text,
  })
  if (result.skipped > 0) note(`${file}: skipped ${result.skipped} bad rows (first: ${result.skippedReasons[0]})`)
  if (result.rows.length === 0) throw new Error(`${file}: no usable rows`)
  return result.rows
}

/** The prompts a sampling trainer reads: data.prompts, else data.train (rows keep their other fields). */
export function readPrompts(ctx: TrainerContext, file = ctx.config.data.prompts ?? ctx.config.data.train): Promise<PromptExample[]> {
  return readRows(file, 'prompts', parsePromptRow, ctx.config.data, (m) => ctx.note(m))
}

/** Splits off `evalSize` rows for evaluation when no eval file is given (seeded). */
export function splitEval<T>(rows: T[], evalSize: number, rng: Rng): { train: T[]; eval: T[] } {
  if (evalSize <= 0) return { train: rows, eval: [] }
  if (evalSize >= rows.length) throw new Error(`data.eval_size (${evalSize}) must be smaller than the ${rows.length} training rows`)
  const order = rows.map((_, i) => i)
  rng.shuffle(order)
  const held = new Set(order.slice(0, evalSize))
  return { train: rows.filter((_, i) => !held.has(i)), eval: rows.filter((_, i) => held.has(i)) }
}

/**
 * Batches of row indices in a seeded order, epoch after epoch, resumable: the
 * state is the epoch, the position in it, and the RNG state at its start. It
 * owns its RNG, so restoring the order leaves the trainer's RNG alone.
 */
export class EpochBatches {
  readonly #rng: Rng
  #order: number[] = []
  #epoch = 0
  #position = 0
  #epochStart: RngState

  constructor(
    readonly size: number,
    readonly batchSize: number,
    seed: number,
    state?: { epoch: number; position: number; rng: RngState },
  ) {
    if (size === 0) throw new Error('no rows to train on')
    this.#rng = new Rng(seed)
    this.#epochStart = this.#rng.state()
    if (state) {
      this.#rng.restore(state.rng)
      this.#startEpoch(state.epoch)
      this.#position = state.position
    } else {
      this.#startEpoch(0)
    }
  }

  #startEpoch(epoch: number): void {
    this.#epoch = epoch
    this.#position = 0
    this.#epochStart = this.#rng.state()
    this.#order = Array.from({ length: this.size }, (_, i) => i)
    this.#rng.shuffle(this.#order)
  }

  get epoch(): number {
    return this.#epoch
  }

  /** The next batch (a short one ends an epoch; the next call starts another). */
  next(): number[] {
    if (this.#position >= this.size) this.#startEpoch(this.#epoch + 1)
    const batch = this.#order.slice(this.#position, this.#position + this.batchSize)
    this.#position += batch.length
    return batch
  }

  state(): { epoch: number; position: number; rng: RngState } {
    return { epoch: this.#epoch, position: this.#position, rng: this.#epochStart }
  }
}

/** Optimizer steps for a run: max_steps, or the epochs' worth of batches. */
export function totalSteps(config: RunConfig, rows: number): number {
  const perStep = config.training.batch_size * config.training.gradient_accumulation
  const fromEpochs = Math.ceil(rows / perStep) * config.training.epochs
  return config.training.max_steps > 0 ? config.training.max_steps : fromEpochs
}

/** Rollout steps of an on-policy trainer: max_steps, or the epochs' worth of prompt batches. */
export function rolloutSteps(config: RunConfig, prompts: number): number {
  return config.training.max_steps > 0 ? config.training.max_steps : Math.ceil(prompts / config.training.batch_size) * config.training.epochs
}

export function makeOptimizer(model: Model, o: OptimizerConfig): AdamW {
  return new AdamW(model, { lr: o.lr, betas: [o.beta1, o.beta2], eps: o.eps, weightDecay: o.weight_decay })
}

/** One AdamW step at the schedule's learning rate for `step` (0-based). */
export async function optimizerStep(opt: AdamW, o: OptimizerConfig, step: number, total: number): Promise<{ gradNorm: number; lr: number }> {
  const lr = learningRate({ kind: o.schedule, lr: o.lr, warmupSteps: o.warmup_steps, totalSteps: Math.max(total, o.warmup_steps + 1), minLr: o.min_lr }, step)
  return opt.step({ lr, maxGradNorm: o.max_grad_norm })
}

/** Sum over rows of a per-row tensor (B values; not per-token work). */
export function total(x: Tensor): number {
  let s = 0
  for (const v of x.data as Float32Array) s += v
  return s
}

/** Mean over the mask of a [B, T] tensor, computed natively. */
export function maskedMean(x: Tensor, mask: Tensor): number {
  const count = total(ops.rowSum(mask))
  return count > 0 ? total(ops.rowSum(x, mask)) / count : 0
}

// ---- sampling and scoring ----

export interface Rollout {
  /** [B, P + n] i32: left-padded prompts, then the responses (padded after they stop). */
  tokens: Tensor
  /** [B, P + n] u8 */
  attentionMask: Tensor
  /** [B, P + n - 1] f32: 1 at log-prob positions of response tokens. */
  actionMask: Tensor
  /** [B, P + n - 1] f32: 1 at each row's last response token (where a sequence score goes). */
  lastMask: Tensor
  /** Prompt width P. */
  promptWidth: number
  /** Response tokens per row (stop token included). */
  lengths: number[]
  /** Whether each response ended with a stop token. */
  stopped: boolean[]
  /** Log-probs of the sampled tokens under the sampling distribution, [B, n]. */
  sampleLogprobs: Tensor
  /** Response texts (special tokens left out). */
  texts: string[]
  /** Prompt texts, when the caller gave them (a farm reward reads the instruction). */
  prompts?: string[]
}

/** Where a rank's rows sit in the batch one process would sample (see sampleResponses). */
export interface GlobalRows {
  /** Each prompt's index in the whole batch: its sample's seed comes from it. */
  rowIndices: readonly number[]
  /** The whole batch's prompt width: every rank left-pads to it, so a row's padding is the same on any rank. */
  promptWidth: number
}

/** The positions of a batch of n rows this rank takes: rank, rank + N, ... (all n with one process). */
export function rowsOfRank(n: number, dp: DataParallel | undefined): number[] {
  const all = Array.from({ length: n }, (_, i) => i)
  return dp ? dp.shard(all) : all
}

/** sampleResponses' options for a rank's rows of a batch (none with one process): their indices in it, and its prompt width. */
export function shareOf(dp: DataParallel | undefined, rowIndices: readonly number[], batch: readonly (readonly number[])[]): { global?: GlobalRows } {
  return dp ? { global: { rowIndices, promptWidth: Math.max(1, ...batch.map((p) => p.length)) } } : {}
}

/**
 * Samples a response for each prompt (prompts already encoded). Seeds come
 * from (seed, row), row being the prompt's index in this call or, with
 * `global` (a data-parallel rank's shard), in the whole batch: a prompt gets
 * the same sample whichever rank draws it. With `onCap`, a batch whose
 * prompts leave less context than max_new_tokens gets fewer new tokens, and
 * onCap is told why; without it, such a batch is an error.
 */
export async function sampleResponses(
  policy: Model,
  encoder: SequenceEncoder,
  prompts: number[][],
  generation: GenerationConfig,
  seed: number,
  promptTexts?: string[],
  options: { onCap?: (message: string) => void; global?: GlobalRows } = {},
): Promise<Rollout> {
  const tokenizer = encoder.tokenizer
  const pad = padIdOf(tokenizer)
  const rowIndices = options.global?.rowIndices
  if (rowIndices && rowIndices.length !== prompts.length) throw new RangeError(`sampleResponses: ${rowIndices.length} row indices for ${prompts.length} prompts`)
  const batch: PromptBatch = collatePrompts(prompts, pad, options.global?.promptWidth)
  const stops = generation.stop_at_eos && tokenizer.eosId !== undefined ? [tokenizer.eosId] : []
  let maxNewTokens = generation.max_new_tokens
  const left = policy.config.maxPositions - batch.width
  if (options.onCap && maxNewTokens > left) {
    if (left < 1) throw new Error(`a prompt of ${batch.width} tokens fills the model's context (${policy.config.maxPositions} positions); shorten it`)
    options.onCap(`max new tokens cut from ${maxNewTokens} to ${left}: prompts of ${batch.width} tokens leave ${left} of the model's ${policy.config.maxPositions} positions`)
    maxNewTokens = left
  }
  const out = await policy.generate(batch.tokens, {
    attentionMask: batch.attentionMask,
    maxNewTokens,
    temperature: generation.temperature,
    topK: generation.top_k,
    topP: generation.top_p,
    stopTokens: stops,
    padToken: pad,
    seeds: prompts.map((_, b) => (seed * 4096 + (rowIndices ? rowIndices[b] : b)) % 2 ** 52),
  })
  const B = prompts.length
  const P = batch.width
  const width = out.tokens.shape[1]
  const lengths = out.lengths.toArray()
  const seqs = out.tokens.data as Int32Array
  // The masks come from generate; what is left per row is its text and whether it stopped.
  const stopped: boolean[] = []
  const texts: string[] = []
  for (let b = 0; b < B; b++) {
    const response = seqs.subarray(b * width + P, b * width + P + lengths[b])
    stopped.push(lengths[b] > 0 && stops.includes(response[lengths[b] - 1]))
    texts.push(encoder.decodeResponse(response, lengths[b]))
  }
  return {
    tokens: out.tokens,
    attentionMask: out.attentionMask,
    actionMask: out.actionMask,
    lastMask: out.lastMask,
    promptWidth: P,
    lengths,
    stopped,
    sampleLogprobs: out.logprobs,
    texts,
    ...(promptTexts ? { prompts: promptTexts } : {}),
  }
}

/** What a scorer reads besides the tokens: the responses, their prompts and dataset rows, and the step. */
export interface ScoreInput {
  texts: string[]
  lengths: number[]
  /** Where responses start in `tokens` (0: the rows are responses alone). */
  promptWidth?: number
  /** Prompt texts (a farm reward reads the instruction). */
  prompts?: string[]
  /** The dataset row of each response, all its columns (reward functions read e.g. `answer`). */
  rows?: Record<string, unknown>[]
  /** The trainer's step. */
  step?: number
}

/** Something that scores sequences: a reward model, reward functions, or both summed. */
export interface Scorer {
  /** One score per row of a rollout (or of right-padded sequences with their masks). */
  score(tokens: Tensor, attentionMask: Tensor, responses: ScoreInput): Promise<Float32Array>
  /** The last call's metrics (each reward function's mean and std ...), for the log. */
  metrics?(): Record<string, number>
}

/** A reward model: the scalar head's value at each row's last real token. */
export class RewardModelScorer implements Scorer {
  #mean = NaN

  constructor(readonly model: Model) {}

  async score(tokens: Tensor, attentionMask: Tensor): Promise<Float32Array> {
    const { values } = await this.model.forward(tokens, { attentionMask, logprobs: false, values: true })
    const lengths = realLengths(attentionMask)
    const scores = ops.rowSum(values!, lastPositionMask(lengths.map((l) => l.last + 1), tokens.shape[1])).data as Float32Array
    this.#mean = meanOf(scores)
    return scores
  }

  metrics(): Record<string, number> {
    return { 'rewards/reward_model/mean': this.#mean }
  }
}

/** Per row: the index of the last real token (attention mask 1). */
export function realLengths(attentionMask: Tensor): { last: number }[] {
  const [B, T] = attentionMask.shape
  const m = attentionMask.cast('u8').data as Uint8Array
  return Array.from({ length: B }, (_, b) => {
    let last = 0
    for (let t = T - 1; t >= 0; t--) {
      if (m[b * T + t]) {
        last = t
        break
      }
    }
    return { last }
  })
}

/** Reward functions (ts/rewards): their weighted sum per response, each one's mean and std in the metrics. */
export class FunctionScorer implements Scorer {
  #metrics: Record<string, number> = {}

  constructor(readonly functions: RewardFunctions) {}

  async score(tokens: Tensor, _attentionMask: Tensor, r: ScoreInput): Promise<Float32Array> {
    const [B, T] = tokens.shape
    const ids = tokens.data as Int32Array
    const start = r.promptWidth ?? 0
    const completionIds = Array.from({ length: B }, (_, b) => Array.from(ids.subarray(b * T + start, b * T + start + r.lengths[b])))
    const prompts = r.prompts ?? new Array<string>(B).fill('')
    const out = await this.functions.score({
      prompts,
      completions: r.texts,
      completionIds,
      rows: r.rows ?? prompts.map((prompt) => ({ prompt })),
      step: r.step ?? 0,
    })
    this.#metrics = out.metrics
    return out.total
  }

  metrics(): Record<string, number> {
    return this.#metrics
  }
}

/** A reward model's score plus reward functions' weighted sum (ppo's "added to a reward model"). */
export class SumScorer implements Scorer {
  #metrics: Record<string, number> = {}

  constructor(readonly parts: Scorer[]) {}

  async score(tokens: Tensor, attentionMask: Tensor, r: ScoreInput): Promise<Float32Array> {
    const out = new Float32Array(tokens.shape[0])
    this.#metrics = {}
    for (const part of this.parts) {
      const s = await part.score(tokens, attentionMask, r)
      s.forEach((v, i) => (out[i] += v))
      Object.assign(this.#metrics, part.metrics?.())
    }
    return out
  }

  metrics(): Record<string, number> {
    return this.#metrics
  }
}

/** The text a judge or the farm reads for a prompt: the prompt itself, or a chat's last user message. */
export function promptText(p: Prompt): string {
  if (typeof p === 'string') return p
  for (let i = p.length - 1; i >= 0; i--) if (p[i].role === 'user') return p[i].content
  return p.map((m) => m.content).join('\n')
}

/** Whether the config names something to score responses with: a reward model or reward functions. */
export function hasScorer(config: RunConfig): boolean {
  return isGiven(config.reward_model) || hasRewardFunctions(config)
}

/**
 * The scorer a config names: reward_model (loaded with a scalar head), reward
 * functions (reward_function, reward_functions), or both, summed. Worker
 * threads of reward functions end with the run.
 */
export async function scorerFor(ctx: TrainerContext, policy: LoadedModel): Promise<{ scorer: Scorer; model?: LoadedModel }> {
  const { config } = ctx
  let rm: LoadedModel | undefined
  const parts: Scorer[] = []
  if (isGiven(config.reward_model)) {
    rm = await loadModelSpec(config.reward_model, 'reward_model', { scalarHead: true, seed: config.seed + 2, tokenizer: sameTokenizer(config.reward_model, policy) })
    parts.push(new RewardModelScorer(rm.model))
  }
  if (hasRewardFunctions(config)) {
    const functions = new RewardFunctions(await makeRewardCalls(config, ctx.rewards), config.reward.on_error as 'stop' | 'skip', (m) => ctx.note(m))
    ctx.defer(() => functions.close())
    parts.push(new FunctionScorer(functions))
  }
  if (parts.length === 0) throw new Error('give reward_model (a reward model directory) or reward_function / reward_functions (rewards as code)')
  return { scorer: parts.length === 1 ? parts[0] : new SumScorer(parts), model: rm }
}

/** Models trained together must read the same tokens: reuse the policy's tokenizer unless one is named. */
export function sameTokenizer(spec: ModelSpec, policy: LoadedModel): LoadedModel | undefined {
  return spec.tokenizer ? undefined : policy
}

/** Log-probs of sequences under a model without keeping activations. */
export async function sequenceLogprobs(model: Model, tokens: Tensor, attentionMask: Tensor, temperature = 1): Promise<Tensor> {
  return model.logprobs(tokens, { attentionMask, temperature })
}

export type { Prompt }

/** Rows `rows` of a [B, ...] host tensor, copied (row by row) into a new tensor. */
export function selectRows(t: Tensor, rows: readonly number[]): Tensor {
  const width = t.numel / t.shape[0]
  const src = t.data
  const out = Tensor.empty([rows.length, ...t.shape.slice(1)], { dtype: t.dtype })
  const dst = out.data
  rows.forEach((r, i) => dst.set(src.subarray(r * width, (r + 1) * width), i * width))
  return out
}

/** The first `keep` columns of a [B, T] host tensor (values [B, T] -> [B, T - 1] for log-prob alignment). */
export function leadingColumns(t: Tensor, keep: number): Tensor {
  const [B, T] = t.shape
  const src = t.data as Float32Array
  const out = new Float32Array(B * keep)
  for (let b = 0; b < B; b++) out.set(src.subarray(b * T, b * T + keep), b * keep)
  return Tensor.from(out, [B, keep])
}

/** [B, T - 1] -> [B, T] with a zero last column (a log-prob-space gradient for per-position values). */
export function padLastColumn(t: Tensor): Tensor {
  const [B, K] = t.shape
  const src = t.data as Float32Array
  const out = new Float32Array(B * (K + 1))
  for (let b = 0; b < B; b++) out.set(src.subarray(b * K, (b + 1) * K), b * (K + 1))
  return Tensor.from(out, [B, K + 1])
}

/** Mean of a host f32 tensor's values (per-row results, not per-token work). */
export function meanOf(t: Tensor | Float32Array | number[]): number {
  const d = t instanceof Tensor ? (t.data as Float32Array) : t
  let s = 0
  for (const v of d) s += v
  return d.length > 0 ? s / d.length : 0
}
