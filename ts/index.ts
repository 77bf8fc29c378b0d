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
export { ByteTokenizer, HfTokenizer, loadTokenizer, BYTE_CHAT_TEMPLATE } from './model/tokenizer.js'
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
} from './model/tokenizer.js'
export { loadConfig, resolveConfig, saveResolvedConfig, resolvePaths, ConfigError, configSchema, messageSpec } from './config/index.js'
export type {
  LoadConfigOptions,
  ResolveConfigOptions,
  SaveConfigOptions,
  ResolvePathsOptions,
  TopLevelType,
  ConfigProblem,
  ConfigSchema,
  MessageSpec,
  FieldSpec,
  FieldKind,
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
export { Rng } from './run/rng.js'
export type { RngState } from './run/rng.js'
export { Progress } from './run/progress.js'
export type { ProgressMode, ProgressOptions, ProgressStream, ProgressUpdate } from './run/progress.js'
export { onInterrupt } from './run/interrupt.js'
export type { Interrupt, InterruptOptions } from './run/interrupt.js'
export { train, runPipeline, saveModelWithTokenizer } from './run/session.js'
export type { Algorithm, StepEvent, TrainOptions, TrainResult, PipelineOptions, PipelineResult, PipelineSummary } from './run/session.js'
export type { StageResult, TrainerContext, TrainerState } from './algorithms/context.js'
export { NonFiniteError } from './algorithms/context.js'
export { FAMILIES, parseTask, positionalMatch } from './farm/families.js'
export type { Family, Task } from './farm/families.js'
export {
  AnnotatorPool,
  DEFAULT_POOL,
  aShownFirst,
  answerOf,
  demonstrate,
  goldPreference,
  goldScore,
  goldWinRate,
  hash32,
  makeSplits,
  poolPreference,
  poolWinRate,
  winRateOf,
  writeSplits,
} from './farm/farm.js'
export { GoldJudge, HttpJudge, LlmJudge, PoolJudge, judgePrompt, judgeWinRate, parseVerdict } from './farm/judges.js'
export type { HttpJudgeOptions, Pair, PairJudge, Preference } from './farm/judges.js'
export type { Annotator, DemonstratorOptions, FarmFiles, FarmRow, FarmSplits, Judged, PoolOptions, SplitSizes, WinRate } from './farm/farm.js'
export { formatPolicyTable, makeLeaderboard, policyTable, renderSvg, reportHtml, spearman, winRateChart, writeReport } from './farm/report.js'
export type { Leaderboard, LeaderboardEntry, PolicyRow } from './farm/report.js'
export { readDataset, parseTranscript, RowAdapter } from './data/formats.js'
export type { Binarize, DataFormat, ReadDatasetOptions } from './data/formats.js'
export { parsePreferenceRow, parsePromptRow, parseSftRow } from './data/examples.js'
export type { PreferenceExample, PromptExample, SftExample, Prompt } from './data/examples.js'
export { SequenceEncoder } from './data/encode.js'
export { RewardError, RewardFunctions, makeRewardCalls, checkValues } from './rewards/scorer.js'
export type { RewardCall, RewardScores } from './rewards/scorer.js'
export type { RewardBatch, RewardFn, RewardValues } from './rewards/types.js'
export { BUILTIN_NAMES, normalizeAnswer, overlongPenalty, THINK_ANSWER } from './rewards/builtin.js'
export { extractAnswer, markedAnswer, sameAnswer, valuesOf } from './rewards/math.js'
export { codeOf, runCodeTests } from './rewards/code-tests.js'
export { loadRewardExport } from './rewards/load.js'
export { startDashboard } from './dashboard/server.js'
export type { Dashboard, DashboardOptions } from './dashboard/server.js'
export { distributed } from './distributed/index.js'
export type { InitOptions, CollectiveOptions, AllReduceOptions, BroadcastOptions, ReduceOp } from './distributed/index.js'
