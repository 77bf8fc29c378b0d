// The CUDA engine's host-side plan: which GEMM tiling and launch shape each
// matrix product of a forward (and backward) takes, the classifier's chunk
// over the vocabulary, and the bytes of every device buffer. Pure host code
// (native/cuda/plan.cpp): it runs, and is tested, without a GPU.
import { native } from '../native.js'
import { booleanOption, checkKeys, choiceOption, describe, rangedOption } from '../util/options.js'
import { completeConfig, MODEL_CONFIG_KEYS, type ModelConfig } from './config.js'

export type CudaPrecision = 'f32' | 'bf16'

export interface CudaPlanOptions {
  batch: number
  steps: number
  /** 'bf16': bf16 working weights and tensor-core GEMMs (fp32 master weights and moments); 'f32'. Default 'bf16'. */
  precision?: CudaPrecision
  /** Plan the backward and optimizer state as well. Default true. */
  train?: boolean
  /** Multiprocessors of the GPU planned for. Default 132 (H100/H200 SXM). */
  sms?: number
}

export interface CudaLaunch {
  grid: [number, number, number]
  block: number
  smemBytes: number
}

export interface CudaGemmPlan {
  name: string
  m: number
  n: number
  k: number
  batch: number
  tile: [number, number, number]
  warps: number
  tensorCores: boolean
  launch: CudaLaunch
  waves: number
}

export interface CudaPlan {
  rows: number
  precision: CudaPrecision
  headChunkRows: number
  gemms: CudaGemmPlan[]
  launches: Record<'norm' | 'embed' | 'elementwise' | 'attentionSoftmax' | 'attentionDecode' | 'attentionFlash' | 'classifier' | 'adamw', CudaLaunch>
  /** The fused attention kernel's compiled head width (0: the head is wider than 128 and the reference attention runs) and keys per tile. */
  flash: { headDimTile: number; keyTile: number }
  /** Its backward (train): dQ a thread per query, dK and dV a thread per key; headDimTile 0 for heads wider than 64 (the reference backward runs). */
  flashBackward: { headDimTile: number; tile: number; dq: CudaLaunch; dkv: CudaLaunch }
  /**
   * A backward's bias and norm gradients (train; the widest of them): column
   * sums a chunk of chunkRows rows per block, then the chunks added in order.
   */
  columnSums: { chunkRows: number; chunks: number; partials: CudaLaunch; finish: CudaLaunch; scratchFloats: number }
  /** The token embedding's backward (train): rows sorted by id over idBits bits, then a block per run of equal ids. */
  embedBackward: { idBits: number; runs: CudaLaunch; scratchBytes: number }
  memory: Record<'params' | 'working' | 'grads' | 'adamM' | 'adamV' | 'activations' | 'scratch' | 'head' | 'attention' | 'total', number>
}

/** What the CUDA engine launches and allocates for one step of `config` over [batch, steps] tokens. */
export function cudaPlan(config: Partial<ModelConfig> & Pick<ModelConfig, 'arch' | 'vocab' | 'dim' | 'layers' | 'heads'>, options: CudaPlanOptions): CudaPlan {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new TypeError(`cudaPlan: config must be an object { arch, vocab, dim, layers, heads, ... }; got ${describe(config)}`)
  }
  if (options === null || typeof options !== 'object') throw new TypeError(`cudaPlan: options must be an object { batch, steps, ... }; got ${describe(options)}`)
  checkKeys('cudaPlan config', config, MODEL_CONFIG_KEYS)
  checkKeys('cudaPlan', options, ['batch', 'steps', 'precision', 'train', 'sms'])
  for (const key of ["batch", "steps"] as const) {
    if (options[key] === undefined) throw new TypeError(`cudaPlan: ${key} is required (tokens per step are [batch, steps])`)
  }
  const batch = rangedOption('cudaPlan', 'batch', options.batch, NaN, { integer: true, min: 1 })
  const steps = rangedOption('cudaPlan', 'steps', options.steps, NaN, { integer: true, min: 1 })
  const precision = choiceOption('cudaPlan', 'precision', options.precision, ['bf16', 'f32'] as const, 'bf16')
  const train = booleanOption('cudaPlan', 'train', options.train, true)
  const sms = rangedOption('cudaPlan', 'sms', options.sms, 132, { integer: true, min: 1, max: 1024 })
  return native.cudaPlan(completeConfig(config), batch, steps, precision, train, sms) as CudaPlan
}
