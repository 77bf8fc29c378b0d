// Loads the compiled addon (build/Release or prebuilds/) and types its surface.
// Everything here is internal: the public API is in tensor.ts and ops.ts.
import path from 'node:path'

export type DType = 'f32' | 'bf16' | 'i32' | 'u8'

/** What a handle is, set by the addon when it made the handle: reading it is no call into the addon. */
export interface NativeTensorMeta {
  readonly shape: readonly number[]
  readonly dtype: DType
  readonly device: string
  readonly byteOffset: number
  readonly disposed: boolean
}

export interface NativeTensorHandle {
  readonly meta: NativeTensorMeta
  readonly shape: number[]
  readonly dtype: DType
  readonly device: string
  readonly byteOffset: number
  storageView(): Float32Array | Int32Array | Uint8Array | Uint16Array
  to(device: string): NativeTensorHandle
  clone(): NativeTensorHandle
  reshape(shape: number[]): NativeTensorHandle
  rows(start: number, end: number): NativeTensorHandle
  cast(dtype: DType): NativeTensorHandle
  sharesStorage(other: NativeTensorHandle): boolean
  dispose(): void
  readonly disposed: boolean
}

export interface NativeTensorClass {
  fromTypedArray(data: ArrayBufferView, shape: number[], dtype?: DType): NativeTensorHandle
  empty(shape: number[], dtype: DType, device?: string): NativeTensorHandle
  zeros(shape: number[], dtype: DType, device?: string): NativeTensorHandle
}

type H = NativeTensorHandle
type Optional = H | undefined

export interface NativeOps {
  logprobs(logits: H, targets: H, temperature: number, entropy: boolean): { logp: H; entropy?: H }
  logprobsBackward(logits: H, targets: H, gradLogp: Optional, gradEntropy: Optional, temperature: number): H
  gae(rewards: H, values: H, mask: H, gamma: number, lambda: number): { advantages: H; returns: H }
  whiten(x: H, mask: H, shiftMean: boolean): H
  klPenalty(logp: H, refLogp: H, mask: H, estimator: string, clamp: number): H
  klPenaltyGrad(logp: H, refLogp: H, mask: H, estimator: string, clamp: number): H
  shapeRewards(logp: H, refLogp: H, mask: H, scores: H, lastMask: H, klCoef: number, estimator: string, clamp: number): { kl: H; rewards: H }
  add(a: H, b: Optional, alpha: number, beta: number): H
  mul(a: H, b: H): H
  rowSum(x: H, mask: Optional): H
  broadcastRows(values: H, mask: H): H
  ppoPolicyLoss(logp: H, ...args: [...NativePpoLossArgs, entropy: Optional]): NativePpoLossResult
  valueLoss(values: H, ...args: NativeValueLossArgs): NativeValueLossResult
  selectRows(tensors: H[], rows: Int32Array): H[]
  concat(tensors: H[]): H
  total(x: H): number
  rowMoments(xs: H[], mask: H): H
  dpoLoss(
    inputs: Record<string, Optional>, variant: string, beta: number, labelSmoothing: number, gamma: number, referenceFree: boolean, gradScale: number,
  ): { loss: number; gradChosen: H; gradRejected: H; chosenReward: H; rejectedReward: H; accuracy: number }
  rewardLoss(chosen: H, rejected: H, margin: H | number, centerCoef: number, gradScale: number): { loss: number; gradChosen: H; gradRejected: H; accuracy: number }
  /** Sizes m, n, k are -1 when the shapes decide. */
  matmul(a: H, b: H, transA: boolean, transB: boolean, alpha: number, beta: number, c: Optional, m: number, n: number, k: number, bias: Optional): H
}

export interface CpuDeviceInfo {
  kind: 'cpu'
  device: 'cpu'
  threads: number
  simd: string
}

export interface CudaDeviceInfo {
  kind: 'cuda'
  device: string
  index: number
  name: string
  memory: number
  computeCapability: string
  multiprocessors: number
}

export type DeviceInfo = CpuDeviceInfo | CudaDeviceInfo

export interface BackendInfo {
  threads: number
  simd: string
  simdSupported: string[]
  /** The CPU matrix multiply in use: 'builtin' or 'openblas' (see setGemmBackend). */
  gemm: string
  /** The CPU matrix multiplies that can be used here ('openblas' when libopenblas.so.0 loads). */
  gemmAvailable: string[]
  cudaCompiled: boolean
  cudaArchs: string
  cudaDevices: number
  cudaUnavailableReason: string
  /** With a GPU: 'cublaslt (<library>)', or why the engine's own GEMM kernels run every product; '' without one. */
  cudaGemm: string
  /** Host memory kept for reuse by later tensors (see emptyCache). */
  hostCacheBytes: number
  /**
   * Calls from JavaScript into the addon so far in this process, this one
   * included (every op, tensor method and getter, model call): a debug count
   * of native boundary crossings, to compare two versions of a loop.
   */
  nativeCalls: number
  /**
   * Reads of tensor data back to the host so far in this process: an op's
   * statistics, a model's outputs not kept on its device (onDevice), generated
   * tokens, a tensor's memory handed to JavaScript (Tensor.data, toArray, item),
   * an optimizer step's gradient norm. Counted alike on the CPU and on a GPU,
   * where each is a device-to-host copy: a debug count that shows whether a
   * loop brings back only scalars.
   */
  hostReads: number
  /** The bytes of those reads. */
  hostReadBytes: number
  /** The Gloo version linked for data-parallel runs; empty when built without Gloo. */
  glooVersion: string
  /** The NCCL library loaded for CUDA tensors' collectives ('libnccl.so.2'); empty when none loaded. */
  ncclLibrary: string
  /** Why no NCCL loaded and what to install; empty when one did. */
  ncclUnavailableReason: string
}

export interface NativeModelConfig {
  arch: 'gpt2' | 'llama'
  vocab: number
  dim: number
  layers: number
  heads: number
  kvHeads: number
  headDim: number
  hidden: number
  maxPositions: number
  normEps: number
  ropeTheta: number
  ropeScaling: 'none' | 'linear' | 'llama3'
  ropeFactor: number
  ropeLowFreqFactor: number
  ropeHighFreqFactor: number
  ropeOriginalMaxPositions: number
  tieEmbeddings: boolean
  qkvBias: boolean
  scalarHead: boolean
}

export interface NativeParameterInfo {
  name: string
  shape: number[]
  offset: number
  numel: number
  decay: boolean
  hfTransposed: boolean
}

/** ops.ppoPolicyLoss's arguments after logp (also a forward's ppoLoss). */
export type NativePpoLossArgs = [oldLogp: H, advantages: H, mask: H, clipLow: number, clipHigh: number, dualClip: number, aggregate: string, gradScale: number]
/** PPO's clipped loss and its statistics (ops.ppoPolicyLoss's result, besides the gradient). */
export interface PpoLossStats {
  loss: number
  /** Share of tokens where the clipped surrogate was the larger term. */
  clipFraction: number
  /** mean of (logp - oldLogp)^2 / 2 over tokens. */
  approxKl: number
  /** Share of tokens capped by the dual clip. */
  dualClipFraction: number
  /** Share of tokens clipped at the lower bound: rho < 1 - clipLow with A < 0 (TRL's clip_ratio/low_mean). */
  clipLowFraction: number
  /** Share of tokens clipped at the upper bound: rho > 1 + clipHigh with A > 0 (TRL's clip_ratio/high_mean). */
  clipHighFraction: number
  /** The mask's sum: the tokens the loss averages over. */
  tokens: number
  /** The masked mean of the entropy, when given. */
  entropy?: number
}
export interface NativePpoLossResult extends PpoLossStats {
  grad: H
}
/** ops.valueLoss's arguments after values (also a forward's valueLoss). */
export type NativeValueLossArgs = [oldValues: H, returns: H, mask: H, clip: number, gradScale: number]
export interface NativeValueLossResult {
  loss: number
  grad: H
  clipFraction: number
}

export interface NativeForwardOptions {
  train: boolean
  logprobs: boolean
  entropy: boolean
  temperature: number
  logits: boolean
  values: boolean
  actionValues: boolean
  onDevice: boolean
  /** The call errors name: 'model.forward' or 'model.logprobs'. */
  op: string
  ppoLoss?: NativePpoLossArgs
  valueLoss?: NativeValueLossArgs
}

export interface NativeGenerateOptions {
  maxNewTokens: number
  temperature: number
  topK: number
  topP: number
  stopTokens: number[]
  padToken: number
  seeds: number[]
}

export interface NativeAdamWOptions {
  beta1: number
  beta2: number
  eps: number
  weightDecay: number
  /** Whether weight decay applies, one flag per parameter (the model's order). */
  decay: boolean[]
}

/** AdamW's state for one model, made once: its moments and decay ranges. */
export interface NativeAdamW {
  /** Views of the moments of the buffer's [begin, end) (the whole, or this rank's ZeRO-1 shard, padded with zeros). */
  moments(): { m: NativeTensorHandle; v: NativeTensorHandle; begin: number; end: number }
  /** Keeps the moments of this rank's shard only; steps then reduce-scatter, update the shard and all-gather. */
  shard(group: NativeProcessGroup): void
}

/** What one bucketed gradient all-reduce took (native/distributed/overlap.h). */
export interface GradientReduceTimes {
  /** Milliseconds spent in the buckets' all-reduces, on the communication thread. */
  reduceMs: number
  /** Milliseconds the backward waited for them after its own work: communication backward did not hide. */
  waitMs: number
  buckets: number
}

export interface NativeModel {
  parameterInfo(): NativeParameterInfo[]
  params(): NativeTensorHandle
  grads(): NativeTensorHandle
  /** A cuda model's gradient buffer on its device (a view). */
  deviceGrads(): NativeTensorHandle
  zeroGrad(): void
  initRandom(seed: number): void
  loadParameter(name: string, bytes: NativeTensorHandle, dtype: string, shape: number[], transpose: boolean): void
  readParameter(name: string, transpose: boolean, fromGrads?: boolean): NativeTensorHandle
  forward(tokens: NativeTensorHandle, mask: NativeTensorHandle | undefined, options: NativeForwardOptions): Promise<{
    logp?: NativeTensorHandle
    entropy?: NativeTensorHandle
    logits?: NativeTensorHandle
    values?: NativeTensorHandle
    ppoLoss?: NativePpoLossResult
    valueLoss?: NativeValueLossResult
  }>
  backward(gradLogp?: NativeTensorHandle, gradEntropy?: NativeTensorHandle, gradValues?: NativeTensorHandle): Promise<void>
  reduceGradients(
    group: NativeProcessGroup,
    bucketBytes: number,
    gradLogp?: NativeTensorHandle,
    gradEntropy?: NativeTensorHandle,
    gradValues?: NativeTensorHandle,
  ): Promise<GradientReduceTimes>
  generate(prompts: NativeTensorHandle, mask: NativeTensorHandle | undefined, options: NativeGenerateOptions): Promise<{
    tokens: NativeTensorHandle
    logprobs: NativeTensorHandle
    lengths: NativeTensorHandle
    attentionMask: NativeTensorHandle
    actionMask: NativeTensorHandle
    lastMask: NativeTensorHandle
  }>
  adamwStep(optimizer: NativeAdamW, step: number, lr: number, maxGradNorm: number, zeroGrad: boolean): Promise<number>
  gradNorm(): number
  toDevice(device: string, precision: string): void
  device(): { device: string; precision: string }
}

export interface NativeGroupOptions {
  rank: number
  worldSize: number
  /** The rank on its machine: the NCCL group runs on cuda:localRank. */
  localRank: number
  rendezvous: 'tcp' | 'file'
  masterAddr: string
  masterPort: number
  fileDir: string
  transportHost: string
  timeoutMs: number
  rendezvousTimeoutMs: number
}

/** Calls run in the order they are made; each resolves when its collective is done. */
export interface NativeProcessGroup {
  connect(options: NativeGroupOptions): Promise<void>
  allReduce(t: NativeTensorHandle, op: string, timeoutMs?: number): Promise<void>
  broadcast(t: NativeTensorHandle, root: number, timeoutMs?: number): Promise<void>
  allGather(input: NativeTensorHandle, output: NativeTensorHandle, timeoutMs?: number): Promise<void>
  reduceScatter(input: NativeTensorHandle, output: NativeTensorHandle, op: string, timeoutMs?: number): Promise<void>
  barrier(timeoutMs?: number): Promise<void>
  storeSet(key: string, value: string): Promise<void>
  storeGet(key: string, timeoutMs?: number): Promise<string>
  storeErase(key: string): Promise<void>
  /** Rank 0's `size` bytes on every rank through the rendezvous store (others pass undefined), as the NCCL group shares its unique id. */
  shareFromRankZero(key: string, bytes: NativeTensorHandle | undefined, size: number): Promise<NativeTensorHandle>
  destroy(): Promise<void>
}

export interface NativeAddon {
  NativeTensor: NativeTensorClass & (new (...args: never[]) => NativeTensorHandle)
  devices(): DeviceInfo[]
  backend(): BackendInfo
  setSimdLevel(level: string): void
  setGemmBackend(name: string): void
  synchronize(device: string): void
  emptyCache(): void
  /** nccl.h's values the NCCL group passes for dtypes and reductions, and its unique id's size. */
  ncclEnums(): {
    dtypes: Record<'f32' | 'bf16' | 'i32', number>
    ops: Record<'sum' | 'avg' | 'max' | 'min', number>
    bytes: number
    uniqueIdBytes: number
    inProgress: number
    /** ncclConfig_t (NCCL 2.14's layout) as the group fills it for its non-blocking init. */
    config: { sizeof: number; size: number; magic: number; version: number; blocking: number; offsets: Record<'size' | 'magic' | 'version' | 'blocking', number> }
  }
  /** The NCCL group's wait on a state that reads ncclInProgress for inProgressMs, then finalState (tests). */
  ncclSettle(inProgressMs: number, finalState: number, timeoutMs: number): { state: number; timedOut: boolean; waitedMs: number; polls: number }
  mapFile(path: string): NativeTensorHandle
  view(base: NativeTensorHandle, offset: number, shape: number[]): NativeTensorHandle
  viewBytes(bytes: NativeTensorHandle, byteOffset: number, dtype: DType, shape: number[]): NativeTensorHandle
  NativeModel: new (config: NativeModelConfig) => NativeModel
  NativeAdamW: new (model: NativeModel, options: NativeAdamWOptions) => NativeAdamW
  nnMath(name: string, x: number[], y?: number[]): number[]
  cublasltPlan(transA: boolean, transB: boolean, m: number, n: number, k: number, lda: number, ldb: number, ldc: number): Record<'a' | 'b' | 'c', { rows: number; cols: number; ld: number; transposed: boolean }>
  cudaPlan(config: NativeModelConfig, batch: number, steps: number, precision: string, train: boolean, sms: number): unknown
  cudaGeneratePlan(config: NativeModelConfig, batch: number, prompt: number, newTokens: number, truncate: boolean): CudaGeneratePlan
  sampleToken(logits: number[], temperature: number, topK: number, topP: number, u: number): { token: number; logprob: number }
  NativeProcessGroup: new () => NativeProcessGroup
  ops: NativeOps
}

interface CudaLaunchShape {
  grid: [number, number, number]
  block: number
  smemBytes: number
}

/** What the CUDA engine's generate() launches and allocates (native/cuda/plan.cpp's plan_generate). */
export interface CudaGeneratePlan {
  slots: number
  kvCacheBytes: number
  prefillBytes: number
  stepBytes: number
  totalBytes: number
  prefillAttention: CudaLaunchShape & { headDimTile: number; keyTile: number }
  decodeAttention: CudaLaunchShape & { supported: boolean }
  sampling: CudaLaunchShape & { sortWidth: number; scratchBytes: number }
}

function load(): NativeAddon {
  const root = path.join(__dirname, '..')
  // RLFARM_ADDON names a specific build (to compare two builds side by side).
  const override = process.env.RLFARM_ADDON
  if (override) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(path.resolve(override)) as NativeAddon
  }
  try {
    // node-gyp-build loads build/Release (a build from source) first, then prebuilds/<platform>-<arch>/ (the npm package's).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => NativeAddon
    return nodeGypBuild(root)
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err)
    throw new Error(
      `rlfarm: could not load the native addon from ${root} (${reason}). ` +
        'Build it with `npm run build:native` (cmake and a C++17 compiler are needed).',
    )
  }
}

export const native: NativeAddon = load()
