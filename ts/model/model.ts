// Model: a GPT-2 or Llama-family transformer in the native engine, loaded
// from (and saved to) a Hugging Face directory or created from a config.
// forward/backward/generate run off the event loop and return Promises.
import fs from 'node:fs'
import path from 'node:path'
import { native, type GradientReduceTimes, type NativeModel, type NativeParameterInfo, type NativeProcessGroup } from '../native.js'
import { Tensor, type Device } from '../tensor.js'
import { readRegularFileSync, resolveInside, writeFileAtomic } from '../util/fs.js'
import { parseJson } from '../util/json.js'
import { NonFiniteError } from '../util/non-finite.js'
import { booleanOption, checkKeys, describe, numberOption, rangedOption } from '../util/options.js'
import {
  ppoPolicyLossArgs,
  ppoPolicyLossResult,
  valueLossArgs,
  valueLossResult,
  type PpoPolicyLossOptions,
  type PpoPolicyLossResult,
  type ValueLossOptions,
  type ValueLossResult,
} from '../op-args.js'
import { checkModelSize, completeConfig, configFromHf, configToHf, MODEL_CONFIG_KEYS, type ModelConfig } from './config.js'
import { OperationQueue } from './operation-queue.js'
import { SafetensorsFile, writeSafetensors } from './safetensors.js'

export type { ModelConfig }

export interface LoadOptions {
  /**
   * 'cpu' (default), or 'cuda' / 'cuda:N': the parameters, gradients and AdamW
   * moments live on that GPU, and forward, backward and optimizer steps run
   * there (generation samples on the host from the current weights). The
   * CUDA engine has not yet run on a GPU: see README.md, "CUDA".
   */
  device?: Device
  /** On cuda: 'bf16' (default: bf16 weights and tensor-core GEMMs, fp32 master weights and moments) or 'f32'. */
  precision?: 'f32' | 'bf16'
  /** Add a [1, hidden] scalar head ("score") for reward and value models. */
  scalarHead?: boolean
  /** Seed for parameters the checkpoint lacks (a new scalar head). */
  seed?: number
}

export interface CreateOptions {
  device?: Device
  precision?: 'f32' | 'bf16'
  scalarHead?: boolean
  seed?: number
}

export interface ParameterInfo {
  /** Hugging Face name. */
  name: string
  /** Shape as Hugging Face stores it. */
  shape: number[]
  /** Weight decay applies by default (matrices other than embeddings). */
  decay: boolean
}

export interface ForwardOptions {
  /** 1 for real tokens, 0 for padding; positions follow it (cumsum - 1), as Hugging Face's. */
  attentionMask?: Tensor
  /** Keep activations for backward(). Default false. */
  train?: boolean
  /** Next-token log-probs [B, T-1]. Default true. */
  logprobs?: boolean
  /** Entropy of each next-token distribution [B, T-1]. Default false. */
  entropy?: boolean
  /** Log-probs and entropy of softmax(logits / temperature). Default 1. */
  temperature?: number
  /** All logits [B, T, V] (large). Default false. */
  logits?: boolean
  /**
   * The scalar head at every position [B, T] (needs scalarHead); 'actions': at
   * the positions that have a log-prob only, [B, T-1], value t beside logp[t]
   * (a PPO value model's grid; backward's gradValues is then [B, T-1] too).
   * Default false.
   */
  values?: boolean | 'actions'
  /**
   * On a cuda model: logp, entropy and values come back as cuda tensors on its
   * device, so that a loss computed there with ops (ops.ppoPolicyLoss, ...) and
   * model.backward (which takes gradients on that device) keep [B, T] tensors
   * off the host. Default false: cpu tensors. A cpu model ignores it.
   */
  onDevice?: boolean
  /**
   * PPO's clipped policy loss (ops.ppoPolicyLoss) on this forward's log-probs,
   * computed in the same native call: out.ppoLoss, whose grad is backward's
   * gradLogp. With entropy: true, its masked mean is measured too. As Hugging
   * Face's forward takes labels: a training loop needs no separate loss call.
   */
  ppoLoss?: PpoLossInputs
  /** The clipped value loss (ops.valueLoss) on this forward's values, likewise: out.valueLoss (needs values). */
  valueLoss?: ValueLossInputs
}

/** ops.ppoPolicyLoss's inputs besides logp, and its options (but entropy: the forward's own). */
export interface PpoLossInputs extends Omit<PpoPolicyLossOptions, 'entropy'> {
  oldLogp: Tensor
  advantages: Tensor
  /** Default: all ones. */
  mask?: Tensor
}

/** ops.valueLoss's inputs besides values, and its options. */
export interface ValueLossInputs extends ValueLossOptions {
  oldValues: Tensor
  returns: Tensor
  /** Default: all ones. */
  mask?: Tensor
}

const PPO_LOSS_KEYS = ['oldLogp', 'advantages', 'mask', 'clipLow', 'clipHigh', 'dualClip', 'aggregate', 'gradScale'] as const
const VALUE_LOSS_KEYS = ['oldValues', 'returns', 'mask', 'clip', 'gradScale'] as const

// A forward's loss inputs, checked before the forward runs: keys, the ops' own
// argument checks, and each tensor's shape against the output's (`shape`).
// Undefined when not asked for. The default mask takes the shape of `first`.
function lossArgs<I extends object, A>(
  where: string,
  name: string,
  inputs: I | undefined,
  keys: readonly string[],
  shape: number[],
  args: (inputs: I, like: Tensor) => A,
  first: keyof I,
): A | undefined {
  if (inputs === undefined) return undefined
  if (typeof inputs !== 'object' || inputs === null || Array.isArray(inputs)) throw new TypeError(`${where}: ${name} must be an object; got ${describe(inputs)}`)
  checkKeys(`${where}: ${name}`, inputs as Record<string, unknown>, keys)
  const out = args(inputs, inputs[first] as Tensor)
  for (const [key, value] of Object.entries(inputs)) {
    if (value instanceof Tensor && value.shape.join() !== shape.join()) {
      throw new RangeError(`${where}: ${name}.${key} must be shaped like the output it goes with, [${shape}]; got [${value.shape}]`)
    }
  }
  return out
}

export interface ForwardOutput {
  logp?: Tensor
  entropy?: Tensor
  logits?: Tensor
  values?: Tensor
  ppoLoss?: PpoPolicyLossResult
  valueLoss?: ValueLossResult
}

export interface BackwardGradients {
  /** d loss / d logp, [B, T-1]. */
  gradLogp?: Tensor
  /** d loss / d entropy, [B, T-1] (the forward must have had entropy: true). */
  gradEntropy?: Tensor
  /** d loss / d values, [B, T] (or [B, T-1] after a forward with values: 'actions'). */
  gradValues?: Tensor
}

export interface GenerateOptions {
  /** 1 for prompt tokens, 0 for padding (left or right). Default: all ones. */
  attentionMask?: Tensor
  /** Default 16. */
  maxNewTokens?: number
  /** 0 picks the most likely token (greedy). Default 1. */
  temperature?: number
  /** Keep the k most likely tokens; 0 is off. Default 0. */
  topK?: number
  /** Keep the smallest set of tokens with this much probability; 1 is off. Default 1. */
  topP?: number
  /** A row stops after producing one of these (it is kept). Default none. */
  stopTokens?: number[]
  /** Written after a row has stopped. Default 0. */
  padToken?: number
  /** Seed of row b is seed + b, unless `seeds` gives one per row. Default 0. */
  seed?: number
  seeds?: number[]
}

export interface GenerateOutput {
  /** [B, P + n]: the prompts, then the new tokens (padToken after a stop). */
  tokens: Tensor
  /** [B, n]: log-prob of each new token under softmax(logits / temperature); 0 after a stop. */
  logprobs: Tensor
  /** [B] i32: new tokens per row, the stop token included. */
  lengths: Tensor
  /** [B, P + n] u8: the prompt's attention mask, then 1 for each new token of the row (0 after a stop). */
  attentionMask: Tensor
  /** [B, P + n - 1] f32: 1 at the log-prob positions of the new tokens (the response), as forward's logp is laid out. */
  actionMask: Tensor
  /** [B, P + n - 1] f32: 1 at the log-prob position of each row's last new token (where a sequence score goes). */
  lastMask: Tensor
}

/** Runs an async native call and, if it fails, gives the error the caller's stack. */
async function withCallerStack<T>(call: () => Promise<T>): Promise<T> {
  const site = new Error()
  try {
    return await call()
  } catch (err) {
    if (err instanceof Error && site.stack) {
      err.stack = `${err.name}: ${err.message}\n${site.stack.split('\n').slice(2).join('\n')}`
    }
    throw err
  }
}

// Tensors that checkpoints carry but that are not parameters.
const BUFFERS = [/\.attn\.bias$/, /\.attn\.masked_bias$/, /rotary_emb\.inv_freq$/]

interface Placement {
  device: Device
  precision: 'f32' | 'bf16'
}

/** The device and precision a model is asked for; a GPU that is not there is an error saying why. */
export function checkDevice(where: string, device: unknown, precision: unknown): Placement {
  if (precision !== undefined && precision !== 'f32' && precision !== 'bf16') {
    throw new TypeError(`${where}: precision must be 'f32' or 'bf16'; got ${describe(precision)}`)
  }
  if (device === undefined || device === 'cpu') {
    if (precision !== undefined && precision !== 'f32') throw new Error(`${where}: precision '${precision}' is for device 'cuda'; a cpu model computes in f32`)
    return { device: 'cpu', precision: 'f32' }
  }
  if (typeof device !== 'string' || !/^cuda(:(0|[1-9][0-9]*))?$/.test(device)) {
    throw new TypeError(`${where}: device must be 'cpu', 'cuda' or 'cuda:N'; got ${describe(device)}`)
  }
  const b = native.backend()
  if (b.cudaDevices === 0) throw new Error(`${where}: device '${device}' is not available: ${b.cudaUnavailableReason}`)
  const index = device === 'cuda' ? 0 : Number(device.slice(5))
  if (index >= b.cudaDevices) throw new Error(`${where}: device '${device}' does not exist (${b.cudaDevices} CUDA device(s))`)
  return { device: `cuda:${index}`, precision: (precision as 'f32' | 'bf16' | undefined) ?? 'bf16' }
}

function readJson(file: string): Record<string, unknown> {
  // Never a plain read: a FIFO would block the main thread, and every signal with it.
  const text = readRegularFileSync(file, 'utf8')
  return parseJson(text, file) as Record<string, unknown>
}

/** A file of the model directory `dir`, which must not lead out of it (a link elsewhere). */
function modelFile(dir: string, name: string): string {
  return resolveInside(dir, name, `${dir}: model file`)
}

/**
 * The safetensors files of a Hugging Face directory: one file, or shards
 * listed by an index, each of which must lie inside the directory.
 */
function openWeights(dir: string): SafetensorsFile[] {
  const single = modelFile(dir, 'model.safetensors')
  const index = modelFile(dir, 'model.safetensors.index.json')
  if (fs.existsSync(single)) return [SafetensorsFile.open(single)]
  if (fs.existsSync(index)) {
    const map = readJson(index).weight_map
    if (map === null || typeof map !== 'object' || Array.isArray(map)) throw new Error(`${index}: weight_map is missing, or not an object { tensor: file }`)
    const files = new Set<string>()
    for (const [tensor, file] of Object.entries(map)) {
      if (typeof file !== 'string') throw new Error(`${index}: weight_map['${tensor}'] must be a file name; got ${describe(file)}`)
      files.add(resolveInside(dir, file, `${index}: weight_map['${tensor}']`))
    }
    return [...files].map((file) => SafetensorsFile.open(file))
  }
  // A link there that leads nowhere (or in a loop) is a broken file, not a missing one.
  for (const file of [single, index]) {
    let target: string | undefined
    try {
      if (fs.lstatSync(file).isSymbolicLink()) target = fs.readlinkSync(file)
    } catch {
      continue
    }
    if (target !== undefined) throw new Error(`cannot read ${file}: it is a symbolic link to ${target}, which does not exist or links in a loop`)
  }
  const bin = ['pytorch_model.bin', 'model.bin'].find((f) => fs.existsSync(path.join(dir, f)))
  throw new Error(
    `${dir}: no model.safetensors or model.safetensors.index.json` +
      (bin ? ` (found ${bin}; rlfarm reads safetensors only: convert it with transformers' save_pretrained(safe_serialization=True))` : ''),
  )
}

export class Model {
  readonly config: ModelConfig
  /** The config.json this model was loaded from, or one made for it. */
  readonly hfConfig: Record<string, unknown>
  /** Checkpoint tensors the model did not use (other than known buffers). */
  readonly unusedTensors: string[] = []
  readonly #native: NativeModel
  readonly #info: NativeParameterInfo[]
  readonly #queue = new OperationQueue()

  /** `where` names the config's source in errors; `hfNames`: it is a config.json, name its fields so. */
  private constructor(config: ModelConfig, hfConfig: Record<string, unknown>, where: string, hfNames: boolean) {
    checkModelSize(config, where, hfNames)
    this.config = config
    this.hfConfig = hfConfig
    this.#native = new native.NativeModel(config)
    this.#info = this.#native.parameterInfo()
  }

  /** A model with random weights (normal(0, 0.02), norms 1, biases 0), deterministic in `seed`. */
  static create(config: Partial<ModelConfig> & Pick<ModelConfig, 'arch' | 'vocab' | 'dim' | 'layers' | 'heads'>, options: CreateOptions = {}): Model {
    checkKeys('Model.create', options, ['device', 'precision', 'scalarHead', 'seed'])
    const placement = checkDevice('Model.create', options.device, options.precision)
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      throw new TypeError(`Model.create: config must be an object { arch, vocab, dim, layers, heads, ... }; got ${describe(config)}`)
    }
    checkKeys('Model.create config', config, MODEL_CONFIG_KEYS)
    const full = completeConfig({ ...config, scalarHead: options.scalarHead ?? config.scalarHead ?? false })
    const model = new Model(full, configToHf(full), 'Model.create', false)
    model.#native.initRandom(rangedOption('Model.create', 'seed', options.seed, 0, { integer: true, min: 0 }))
    if (placement.device !== 'cpu') model.#native.toDevice(placement.device, placement.precision)
    return model
  }

  /** Loads a Hugging Face directory: config.json and model.safetensors (or shards with an index). */
  static async load(dir: string, options: LoadOptions = {}): Promise<Model> {
    checkKeys('Model.load', options, ['device', 'precision', 'scalarHead', 'seed'])
    const placement = checkDevice('Model.load', options.device, options.precision)
    const configFile = modelFile(dir, 'config.json')
    if (!fs.existsSync(configFile)) {
      throw new Error(`${dir}: no config.json (a Hugging Face model directory holds config.json and model.safetensors)`)
    }
    const hf = readJson(configFile)
    const scalarHead = booleanOption('Model.load', 'scalarHead', options.scalarHead, false)
    const model = new Model(configFromHf(hf, configFile, scalarHead), hf, configFile, true)
    model.unusedTensors.push(...model.#loadWeights(dir, rangedOption('Model.load', 'seed', options.seed, 0, { integer: true, min: 0 })))
    if (placement.device !== 'cpu') model.#native.toDevice(placement.device, placement.precision)
    return model
  }

  /**
   * Loads the weights of a directory written by save() (or any Hugging Face
   * directory of the same architecture and shapes) into this model, in place.
   * Returns the names of the tensors it did not use. A tensor that does not
   * fit throws an error naming the file, and leaves the model partly loaded.
   */
  async loadWeightsFrom(dir: string): Promise<string[]> {
    return this.#queue.enqueue('loadWeightsFrom', () => this.#loadWeights(dir))
  }

  /** Reads every parameter from `dir`; a missing scalar head is initialised from `seed`, or is an error without one. */
  #loadWeights(dir: string, seed?: number): string[] {
    const files = openWeights(dir)
    const scoreFile = modelFile(dir, 'score.safetensors')
    if (this.config.scalarHead && fs.existsSync(scoreFile)) files.push(SafetensorsFile.open(scoreFile))
    const used = new Set<string>()
    for (const p of this.#info) {
      const names = this.config.arch === 'gpt2' ? [p.name, p.name.replace(/^transformer\./, '')] : [p.name]
      const found = files.flatMap((f) => names.filter((n) => f.entries.has(n)).map((n) => ({ f, n })))[0]
      if (!found) {
        if (p.name === 'score.weight' && seed !== undefined) {
          this.#initScore(seed)
          continue
        }
        throw new Error(`${files[0].path}: tensor ${names.join(' (or ')}${names.length > 1 ? ')' : ''} is missing`)
      }
      const entry = found.f.entry(found.n)
      try {
        this.#native.loadParameter(p.name, found.f.rawBytes(found.n).native, entry.dtype, entry.shape, p.hfTransposed)
      } catch (err) {
        throw new Error(`${found.f.path}: ${(err as Error).message}`)
      }
      used.add(`${found.f.path}\0${found.n}`)
    }
    const unused: string[] = []
    for (const f of files) {
      for (const name of f.entries.keys()) {
        if (used.has(`${f.path}\0${name}`) || BUFFERS.some((re) => re.test(name))) continue
        if (name === 'lm_head.weight' && this.config.tieEmbeddings) continue // a tied head saved anyway
        unused.push(name)
      }
    }
    return unused
  }

  #initScore(seed: number): void {
    // A small random head, as Hugging Face initialises a new classification head.
    const w = new Tensor(this.#native.readParameter('score.weight', false)).data as Float32Array
    let s = (seed ^ 0x5bd1e995) >>> 0 || 1
    for (let i = 0; i < w.length; i++) {
      s ^= s << 13
      s ^= s >>> 17
      s ^= s << 5
      const u1 = ((s >>> 0) + 1) / 4294967297
      s ^= s << 13
      s ^= s >>> 17
      s ^= s << 5
      const u2 = (s >>> 0) / 4294967296
      w[i] = 0.02 * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2)
    }
  }

  /** 'cpu', or 'cuda:N' where the CUDA engine holds the model. */
  get device(): Device {
    return this.#native.device().device as Device
  }

  /** 'f32' on the cpu; on cuda the precision it was given ('bf16' by default). */
  get precision(): 'f32' | 'bf16' {
    return this.#native.device().precision as 'f32' | 'bf16'
  }

  /** Every parameter, with its Hugging Face name and shape. */
  parameters(): ParameterInfo[] {
    return this.#info.map((p) => ({ name: p.name, shape: p.hfTransposed ? [...p.shape].reverse() : [...p.shape], decay: p.decay }))
  }

  /** Number of parameters (a tied head counted once). */
  get parameterCount(): number {
    return this.#info.reduce((n, p) => n + p.numel, 0)
  }

  /**
   * A parameter in Hugging Face's orientation: a zero-copy view of the model's
   * buffer (writes change the model), except for GPT-2's Conv1D weights, which
   * are stored transposed and come back as a copy.
   */
  parameter(name: string): Tensor {
    this.#queue.checkIdle('model.parameter')
    return this.#parameter(name)
  }

  #parameter(name: string): Tensor {
    return new Tensor(this.#native.readParameter(name, this.#find(name).hfTransposed))
  }

  /** The accumulated gradient of a parameter, shaped like parameter(name). */
  gradient(name: string): Tensor {
    this.#queue.checkIdle('model.gradient', { besideWeightReaders: true })
    return new Tensor(this.#native.readParameter(name, this.#find(name).hfTransposed, true))
  }

  /** All parameters as one flat f32 tensor (a view), in the engine's layout. */
  flatParameters(): Tensor {
    this.#queue.checkIdle('model.flatParameters')
    return new Tensor(this.#native.params())
  }

  /** All gradients as one flat f32 tensor (a view). */
  flatGradients(): Tensor {
    this.#queue.checkIdle('model.flatGradients', { besideWeightReaders: true })
    return new Tensor(this.#native.grads())
  }

  /** @internal A cuda model's gradients as one flat f32 tensor on its device (a view, not a copy), for NCCL. */
  deviceGradients(): Tensor {
    this.#queue.checkIdle('model.deviceGradients', { besideWeightReaders: true })
    return new Tensor(this.#native.deviceGrads())
  }

  #find(name: string): NativeParameterInfo {
    const p = this.#info.find((q) => q.name === name)
    if (!p) throw new Error(`Model: no parameter named ${describe(name)}`)
    return p
  }

  /** @internal For the optimizer. */
  get nativeModel(): NativeModel {
    return this.#native
  }

  /**
   * @internal Runs `operation` as one operation of this model: after the ones
   * called before it, before the ones called after it (the optimizer, checkpoints).
   */
  enqueue<T>(label: string, operation: () => T | Promise<T>, options: { readsWeightsOnly?: boolean } = {}): Promise<T> {
    return this.#queue.enqueue(label, operation, options)
  }

  /** @internal Throws a "busy" error naming `call` when an operation is pending (see OperationQueue.checkIdle). */
  checkIdle(call: string, options: { besideWeightReaders?: boolean } = {}): void {
    this.#queue.checkIdle(call, options)
  }

  /** log p(tokens[t+1] | tokens[..t]) as [B, T-1], keeping no activations. */
  async logprobs(tokens: Tensor, options: { attentionMask?: Tensor; temperature?: number } = {}): Promise<Tensor> {
    checkKeys('model.logprobs', options, ['attentionMask', 'temperature'])
    const out = await this.#forward('model.logprobs', tokens, { ...options, logprobs: true })
    return out.logp!
  }

  async forward(tokens: Tensor, options: ForwardOptions = {}): Promise<ForwardOutput> {
    return this.#forward('model.forward', tokens, options)
  }

  async #forward(where: string, tokens: Tensor, options: ForwardOptions): Promise<ForwardOutput> {
    checkKeys(where, options, ['attentionMask', 'train', 'logprobs', 'entropy', 'temperature', 'logits', 'values', 'onDevice', 'ppoLoss', 'valueLoss'])
    if (!(tokens instanceof Tensor)) throw new TypeError(`${where}: tokens must be an i32 Tensor [B, T]; got ${describe(tokens)}`)
    const mask = options.attentionMask
    if (mask !== undefined && !(mask instanceof Tensor)) throw new TypeError(`${where}: attentionMask must be a Tensor`)
    // Its values are checked natively (Transformer::check_mask_values), so a forward reads no per-token data into JavaScript.
    const values = options.values ?? false
    if (values !== true && values !== false && values !== 'actions') throw new TypeError(`${where}: values must be true, false or 'actions'; got ${describe(values)}`)
    // The log-prob grid [B, T-1]: the shape of logp, entropy and 'actions' values.
    const grid = [tokens.shape[0], tokens.shape[1] - 1]
    const nativeOptions = {
      train: booleanOption(where, 'train', options.train, false),
      logprobs: booleanOption(where, 'logprobs', options.logprobs, true),
      entropy: booleanOption(where, 'entropy', options.entropy, false),
      temperature: numberOption(where, 'temperature', options.temperature, 1),
      logits: booleanOption(where, 'logits', options.logits, false),
      values: values !== false,
      actionValues: values === 'actions',
      onDevice: booleanOption(where, 'onDevice', options.onDevice, false),
      op: where,
    }
    if (options.ppoLoss !== undefined && !nativeOptions.logprobs) throw new Error(`${where}: ppoLoss needs log-probs; logprobs is false`)
    if (options.valueLoss !== undefined && !nativeOptions.values) throw new Error(`${where}: valueLoss needs values (values: true or 'actions')`)
    const losses = {
      ppoLoss: lossArgs(where, 'ppoLoss', options.ppoLoss, PPO_LOSS_KEYS, grid, (p, like) => ppoPolicyLossArgs(where, 'ppoLoss.', p.oldLogp, p.advantages, p.mask, like, p), 'oldLogp'),
      valueLoss: lossArgs(where, 'valueLoss', options.valueLoss, VALUE_LOSS_KEYS, values === 'actions' ? grid : tokens.shape, (v, like) => valueLossArgs(where, 'valueLoss.', v.oldValues, v.returns, v.mask, like, v), 'oldValues'),
    }
    const r = await withCallerStack(() => this.#queue.enqueue(where.slice('model.'.length), () => this.#native.forward(tokens.native, mask?.native, { ...nativeOptions, ...losses })))
    const out: ForwardOutput = {}
    if (r.logp) out.logp = new Tensor(r.logp)
    if (r.entropy) out.entropy = new Tensor(r.entropy)
    if (r.logits) out.logits = new Tensor(r.logits)
    if (r.values) out.values = new Tensor(r.values)
    if (r.ppoLoss) out.ppoLoss = ppoPolicyLossResult(r.ppoLoss)
    if (r.valueLoss) out.valueLoss = valueLossResult(r.valueLoss)
    return out
  }

  /** Adds the gradients of the last training forward's outputs into the parameter gradients. */
  async backward(grads: BackwardGradients): Promise<void> {
    checkBackwardGradients(grads)
    await withCallerStack(() =>
      this.#queue.enqueue('backward', () => this.#native.backward(grads.gradLogp?.native, grads.gradEntropy?.native, grads.gradValues?.native)),
    )
  }

  /**
   * @internal backward(grads) (none: this rank has no rows) with the gradient
   * buffer summed over `group` in buckets of about bucketBytes, each as soon
   * as backward has made it final (ts/distributed/data-parallel.ts).
   */
  async backwardReduced(grads: BackwardGradients | undefined, group: NativeProcessGroup, bucketBytes: number): Promise<GradientReduceTimes> {
    if (grads) checkBackwardGradients(grads)
    return withCallerStack(() =>
      this.#queue.enqueue('backward', () => this.#native.reduceGradients(group, bucketBytes, grads?.gradLogp?.native, grads?.gradEntropy?.native, grads?.gradValues?.native)),
    )
  }

  zeroGrad(): void {
    // A pending save does not stop it: a user's save in an onStep handler must not break the trainer's next step.
    this.#queue.checkIdle('model.zeroGrad', { besideWeightReaders: true })
    this.#native.zeroGrad()
  }

  async generate(prompts: Tensor, options: GenerateOptions = {}): Promise<GenerateOutput> {
    const where = 'model.generate'
    checkKeys(where, options, ['attentionMask', 'maxNewTokens', 'temperature', 'topK', 'topP', 'stopTokens', 'padToken', 'seed', 'seeds'])
    if (!(prompts instanceof Tensor)) throw new TypeError(`${where}: prompts must be an i32 Tensor [B, P]; got ${describe(prompts)}`)
    const mask = options.attentionMask
    if (mask !== undefined && !(mask instanceof Tensor)) throw new TypeError(`${where}: attentionMask must be a Tensor; got ${describe(mask)}`)
    const batch = prompts.shape[0] ?? 0
    const seed = rangedOption(where, 'seed', options.seed, 0, { integer: true, min: 0 })
    const seeds = options.seeds ?? Array.from({ length: batch }, (_, b) => seed + b)
    if (!Array.isArray(seeds) || seeds.length !== batch || !seeds.every((s) => Number.isSafeInteger(s) && s >= 0)) {
      throw new TypeError(`${where}: seeds must be ${batch} non-negative integers (one per prompt)`)
    }
    const stops = options.stopTokens ?? []
    if (!Array.isArray(stops) || !stops.every((s) => Number.isInteger(s))) throw new TypeError(`${where}: stopTokens must be an array of token ids`)
    const maxNewTokens = rangedOption(where, 'maxNewTokens', options.maxNewTokens, 16, { integer: true, min: 0 })
    const nativeOptions = {
      maxNewTokens,
      temperature: rangedOption(where, 'temperature', options.temperature, 1, { min: 0 }),
      topK: rangedOption(where, 'topK', options.topK, 0, { integer: true, min: 0 }),
      topP: numberOption(where, 'topP', options.topP, 1),
      stopTokens: stops,
      padToken: rangedOption(where, 'padToken', options.padToken, 0, { integer: true, min: 0 }),
      seeds,
    }
    const r = await withCallerStack(() =>
      this.#queue.enqueue('generate', async () => {
        const out = await this.#native.generate(prompts.native, mask?.native, nativeOptions)
        this.#checkFiniteOutput(where, new Tensor(out.logprobs), 'the log-probability of a sampled token')
        return out
      }),
    )
    return {
      tokens: new Tensor(r.tokens),
      logprobs: new Tensor(r.logprobs),
      lengths: new Tensor(r.lengths),
      attentionMask: new Tensor(r.attentionMask),
      actionMask: new Tensor(r.actionMask),
      lastMask: new Tensor(r.lastMask),
    }
  }

  /**
   * Throws a NonFiniteError when `output` holds a NaN or an infinity, naming
   * the first parameter that does (weights gone bad), else the output itself.
   * Runs inside an operation of the queue, so no step changes the weights meanwhile.
   */
  #checkFiniteOutput(where: string, output: Tensor, what: string): void {
    const values = output.data as Float32Array
    let bad = -1
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) {
        bad = i
        break
      }
    }
    if (bad < 0) return
    for (const p of this.#info) {
      const w = new Tensor(this.#native.readParameter(p.name, false)).data as Float32Array
      for (let i = 0; i < w.length; i++) {
        if (!Number.isFinite(w[i])) {
          throw new NonFiniteError(`${where}: parameter ${p.name} (element ${i} is ${w[i]})`, undefined, 'the model\'s weights are broken (a diverged run, or a damaged checkpoint); nothing was generated')
        }
      }
    }
    const row = output.shape.length === 2 ? `[${Math.floor(bad / output.shape[1])}][${bad % output.shape[1]}]` : `[${bad}]`
    throw new NonFiniteError(`${where}: ${what} ${row} (${values[bad]})`, undefined, 'the weights are finite, so the logits overflowed; nothing was generated')
  }

  /**
   * Writes config.json and model.safetensors (Hugging Face names, orientations
   * and metadata, so transformers loads it), each atomically. As every async
   * operation, it runs after the ones called before it on this model: the
   * values saved are those they leave.
   */
  async save(dir: string): Promise<void> {
    if (typeof dir !== 'string' || dir === '') throw new TypeError(`model.save: dir must be a directory path; got ${describe(dir)}`)
    return this.#queue.enqueue('save', () => this.writeFiles(dir), { readsWeightsOnly: true })
  }

  /** @internal save()'s work, for a caller that holds this model's queue (a checkpoint). */
  writeFiles(dir: string): void {
    try {
      fs.mkdirSync(dir, { recursive: true })
    } catch (err) {
      throw new Error(`model.save: cannot make the directory ${dir}: ${(err as Error).message}`, { cause: err })
    }
    const tensors = this.#info
      .filter((p) => !(p.name === 'lm_head.weight' && this.config.tieEmbeddings))
      .map((p) => ({ name: p.name, tensor: this.#parameter(p.name) }))
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' })
    const config = { ...this.hfConfig, torch_dtype: 'float32' }
    writeFileAtomic(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`)
  }
}

function checkBackwardGradients(grads: BackwardGradients): void {
  checkKeys('model.backward', grads, ['gradLogp', 'gradEntropy', 'gradValues'])
  for (const [key, value] of Object.entries(grads)) {
    if (value !== undefined && !(value instanceof Tensor)) throw new TypeError(`model.backward: ${key} must be a Tensor`)
  }
}
