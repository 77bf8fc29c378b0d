// rlfarm: RLHF for Node.js on a native CPU/CUDA engine. This file is the
// public API, listed with what each part is for in docs/api.md; what the
// tests and tools reach beyond it is in internal.ts ('rlfarm/internal'), with
// no promise that it stays.
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
  ShapeRewardsOptions,
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
export { Model } from './model/model.js'
export type { ModelConfig, LoadOptions, CreateOptions, ParameterInfo, ForwardOptions, ForwardOutput, BackwardGradients, GenerateOptions, GenerateOutput } from './model/model.js'
export { cudaPlan } from './model/cuda.js'
export type { CudaPlan, CudaPlanOptions, CudaGemmPlan, CudaLaunch, CudaPrecision } from './model/cuda.js'
export { AdamW, learningRate } from './model/optim.js'
export type { AdamWOptions, StepOptions, AdamWState, Schedule, ScheduleKind } from './model/optim.js'
export { SafetensorsFile, writeSafetensors } from './model/safetensors.js'
export type { SafetensorsEntry, SafetensorsDType, TensorToWrite } from './model/safetensors.js'
export { configFromHf, configToHf } from './model/config.js'
export { ByteTokenizer, HfTokenizer, loadTokenizer, BYTE_CHAT_TEMPLATE } from './tokenizers/index.js'
export type {
  Tokenizer,
  ChatMessage,
  ChatTemplateOptions,
  EncodeOptions,
  DecodeOptions,
  ByteTokenizerOptions,
  HfTokenizerOptions,
  HfTokenizerJsonOptions,
  LoadTokenizerOptions,
} from './tokenizers/index.js'
export { loadConfig, resolveConfig, saveResolvedConfig, resolvePaths, ConfigError } from './config/index.js'
export type {
  LoadConfigOptions,
  ResolveConfigOptions,
  SaveConfigOptions,
  ResolvePathsOptions,
  TopLevelType,
  ConfigProblem,
} from './config/index.js'
export type * from './config/types.generated.js'
export { MetricsLogger } from './run/metrics.js'
export type { MetricsLoggerOptions } from './run/metrics.js'
export { TensorBoardWriter } from './run/tensorboard.js'
export type { TensorBoardWriterOptions } from './run/tensorboard.js'
export { RunDirectory } from './run/run-dir.js'
export type { RunDirectoryOptions, RunState, RunStatus, RunUpdate } from './run/run-dir.js'
export { saveCheckpoint, loadCheckpoint, latestCheckpoint, listCheckpoints } from './run/checkpoint.js'
export type { CheckpointTargets, SaveCheckpointOptions, LoadedCheckpoint } from './run/checkpoint.js'
export { Rng } from './util/rng.js'
export type { RngState } from './util/rng.js'
export { Progress } from './run/progress.js'
export type { ProgressMode, ProgressOptions, ProgressStream, ProgressUpdate } from './run/progress.js'
export { onInterrupt } from './run/interrupt.js'
export type { Interrupt, InterruptOptions } from './run/interrupt.js'
export { train, runPipeline, saveModelWithTokenizer } from './run/session.js'
export type { Algorithm, StepEvent, TrainOptions, TrainResult, PipelineOptions, PipelineResult, PipelineSummary } from './run/session.js'
export type { StageResult, TrainerContext, TrainerState } from './training/context.js'
export { NonFiniteError } from './training/context.js'
export { FAMILIES, parseTask } from './farm/families.js'
export type { Family, Task } from './farm/families.js'
export { AnnotatorPool, answerOf, goldPreference, goldScore, goldWinRate, makeSplits, poolPreference, poolWinRate, winRateOf, writeSplits } from './farm/farm.js'
export { GoldJudge, HttpJudge, LlmJudge, PoolJudge, judgeWinRate } from './farm/judges.js'
export type { HttpJudgeOptions, Pair, PairJudge, Preference } from './farm/judges.js'
export type { Annotator, DemonstratorOptions, FarmFiles, FarmRow, FarmSplits, Judged, PoolOptions, SplitSizes, WinRate } from './farm/farm.js'
export { formatPolicyTable, kendall, makeLeaderboard, policyTable, spearman, writeReport } from './farm/report.js'
export type { Leaderboard, LeaderboardEntry, MethodSelection, PolicyRow, RewardModelAccuracy, Selection, SelectionCandidate, Validation, ValidationMethod, ValidationOutcomes } from './farm/report.js'
export { readDataset } from './data/formats.js'
export type { Aspect, Faults, RatedCompletion } from './farm/ratings.js'
export type { Binarize, DataFormat, ReadDatasetOptions } from './data/formats.js'
export { parsePreferenceRow, parsePromptRow, parseSftRow } from './data/examples.js'
export type { PreferenceExample, PromptExample, SftExample, Prompt } from './data/examples.js'
export { RewardError } from './rewards/scorer.js'
export type { RewardBatch, RewardFn, RewardValues } from './rewards/types.js'
export { BUILTIN_NAMES } from './rewards/builtin.js'
export { startDashboard } from './dashboard/server.js'
export type { Dashboard, DashboardOptions } from './dashboard/server.js'
export { distributed } from './distributed/index.js'
export type { InitOptions, CollectiveOptions, AllReduceOptions, BroadcastOptions, ReduceOp } from './distributed/index.js'
