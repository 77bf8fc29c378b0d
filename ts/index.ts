// rlfarm: RLHF for Node.js on a native CPU/CUDA engine.
import * as ops from './ops.js'

export { Tensor, devices, backend, emptyCache, setGemmBackend, setSimdLevel, synchronize } from './tensor.js'
export type { DType, Device, DeviceInfo, BackendInfo, TensorData, TensorOptions, TypedArrayOf } from './tensor.js'
export type {
  LogprobsOptions,
  LogprobsBackwardOptions,
  GaeOptions,
  WhitenOptions,
  KlEstimator,
  KlPenaltyOptions,
  Aggregate,
  PpoPolicyLossOptions,
  PpoPolicyLossResult,
  ValueLossOptions,
  DpoVariant,
  DpoInputs,
  DpoOptions,
  DpoLossResult,
  RewardLossOptions,
  MatmulOptions,
} from './ops.js'
export { ops }
