// Generated from proto/rlfarm.proto by scripts/gen-config-types.mjs. Do not edit:
// change the proto and run `npm run gen:config` (a test fails when they differ).

/**
 * One training or evaluation stage: `rlfarm train config.yaml`.
 *
 * The resolved `RunConfig`: every field present, defaults filled in; see `RunConfigInput` for what users write.
 */
export interface RunConfig {
  /** what to run. `string`. */
  algorithm: 'sft' | 'reward' | 'ppo' | 'dpo' | 'expert_iteration' | 'best_of_n' | 'west_of_n' | 'grpo' | 'rloo' | 'eval' | 'farm' | 'label' | undefined
  /** run name; the run directory is output_dir/name. `string`. */
  name: string | undefined
  /** parent of the run directory. `string`, default `'runs'`. */
  output_dir: string
  /** seed for initialisation, data order and sampling. `uint32`, default `0`. */
  seed: number
  /** the model trained (policy, or the reward model being trained). `ModelSpec`. */
  policy: ModelSpec
  /** frozen reference for KL (default: a copy of the initial policy). `ModelSpec`. */
  reference: ModelSpec
  /** reward model scoring responses (ppo, grpo, rloo, best_of_n, expert_iteration, west_of_n). `ModelSpec`. */
  reward_model: ModelSpec
  /** value model for ppo (default: initialised from the reward model). `ModelSpec`. */
  value_model: ModelSpec
  /**
   * a reward written as code (a module's export, a built-in, or one passed to train()) instead of, or (ppo) added to, a reward model.
   *
   * `RewardFunction`.
   */
  reward_function: RewardFunction
  /** who compares two responses: label (preference pairs) and eval (win-rates against references). `JudgeConfig`. */
  judge: JudgeConfig
  /** data files and how their rows are read. `DataConfig`. */
  data: DataConfig
  /** AdamW and the learning-rate schedule. `OptimizerConfig`. */
  optimizer: OptimizerConfig
  /** epochs, batches and evaluation. `TrainingConfig`. */
  training: TrainingConfig
  /** sampling of responses. `GenerationConfig`. */
  generation: GenerationConfig
  /** sft options. `SftConfig`. */
  sft: SftConfig
  /** reward-model training options, and how reward functions are called. `RewardTrainingConfig`. */
  reward: RewardTrainingConfig
  /** ppo options. `PpoConfig`. */
  ppo: PpoConfig
  /** dpo options (and its variants). `DpoConfig`. */
  dpo: DpoConfig
  /** expert_iteration options. `ExpertIterationConfig`. */
  expert_iteration: ExpertIterationConfig
  /** best_of_n options. `BestOfNConfig`. */
  best_of_n: BestOfNConfig
  /** west_of_n options. `WestOfNConfig`. */
  west_of_n: WestOfNConfig
  /** grpo and rloo. `GroupConfig`. */
  group: GroupConfig
  /** farm options: the simulated world's splits and demonstrator. `FarmConfig`. */
  farm: FarmConfig
  /** label options: how many pairs per instruction. `LabelConfig`. */
  label: LabelConfig
  /** metrics and progress output. `LoggingConfig`. */
  logging: LoggingConfig
  /** checkpoints and the final model. `CheckpointConfig`. */
  checkpoint: CheckpointConfig
  /** data-parallel runs (--nproc N): how the ranks share the work. `DistributedConfig`. */
  distributed: DistributedConfig
  /** several rewards, combined as their weighted sum (TRL's reward_weights); each is logged on its own. `RewardFunction[]`. */
  reward_functions: RewardFunction[]
}

/** `RunConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface RunConfigInput {
  /** what to run. `string`. */
  algorithm?: 'sft' | 'reward' | 'ppo' | 'dpo' | 'expert_iteration' | 'best_of_n' | 'west_of_n' | 'grpo' | 'rloo' | 'eval' | 'farm' | 'label'
  /** run name; the run directory is output_dir/name. `string`. */
  name?: string
  /** parent of the run directory. `string`, default `'runs'`. */
  output_dir?: string
  /** seed for initialisation, data order and sampling. `uint32`, default `0`. */
  seed?: number
  /** the model trained (policy, or the reward model being trained). `ModelSpec`. */
  policy?: ModelSpecInput
  /** frozen reference for KL (default: a copy of the initial policy). `ModelSpec`. */
  reference?: ModelSpecInput
  /** reward model scoring responses (ppo, grpo, rloo, best_of_n, expert_iteration, west_of_n). `ModelSpec`. */
  reward_model?: ModelSpecInput
  /** value model for ppo (default: initialised from the reward model). `ModelSpec`. */
  value_model?: ModelSpecInput
  /**
   * a reward written as code (a module's export, a built-in, or one passed to train()) instead of, or (ppo) added to, a reward model.
   *
   * `RewardFunction`.
   */
  reward_function?: RewardFunctionInput
  /** who compares two responses: label (preference pairs) and eval (win-rates against references). `JudgeConfig`. */
  judge?: JudgeConfigInput
  /** data files and how their rows are read. `DataConfig`. */
  data?: DataConfigInput
  /** AdamW and the learning-rate schedule. `OptimizerConfig`. */
  optimizer?: OptimizerConfigInput
  /** epochs, batches and evaluation. `TrainingConfig`. */
  training?: TrainingConfigInput
  /** sampling of responses. `GenerationConfig`. */
  generation?: GenerationConfigInput
  /** sft options. `SftConfig`. */
  sft?: SftConfigInput
  /** reward-model training options, and how reward functions are called. `RewardTrainingConfig`. */
  reward?: RewardTrainingConfigInput
  /** ppo options. `PpoConfig`. */
  ppo?: PpoConfigInput
  /** dpo options (and its variants). `DpoConfig`. */
  dpo?: DpoConfigInput
  /** expert_iteration options. `ExpertIterationConfig`. */
  expert_iteration?: ExpertIterationConfigInput
  /** best_of_n options. `BestOfNConfig`. */
  best_of_n?: BestOfNConfigInput
  /** west_of_n options. `WestOfNConfig`. */
  west_of_n?: WestOfNConfigInput
  /** grpo and rloo. `GroupConfig`. */
  group?: GroupConfigInput
  /** farm options: the simulated world's splits and demonstrator. `FarmConfig`. */
  farm?: FarmConfigInput
  /** label options: how many pairs per instruction. `LabelConfig`. */
  label?: LabelConfigInput
  /** metrics and progress output. `LoggingConfig`. */
  logging?: LoggingConfigInput
  /** checkpoints and the final model. `CheckpointConfig`. */
  checkpoint?: CheckpointConfigInput
  /** data-parallel runs (--nproc N): how the ranks share the work. `DistributedConfig`. */
  distributed?: DistributedConfigInput
  /** several rewards, combined as their weighted sum (TRL's reward_weights); each is logged on its own. `RewardFunction[]`. */
  reward_functions?: RewardFunctionInput[]
}

/**
 * A model: loaded from `path`, or created from `init`.
 *
 * The resolved `ModelSpec`: every field present, defaults filled in; see `ModelSpecInput` for what users write.
 */
export interface ModelSpec {
  /**
   * a Hugging Face model directory (config.json + model.safetensors), or a previous stage's output.
   *
   * `string`, a path, relative to the config file.
   */
  path: string | undefined
  /**
   * tokenizer directory, or 'byte' for the built-in byte tokenizer (default: the model directory).
   *
   * `string`, a path, relative to the config file.
   */
  tokenizer: string | undefined
  /** create a new model with random weights instead of loading one. `ModelShape`. */
  init: ModelShape | undefined
  /** add a [1, hidden] scalar head (reward and value models). `bool`, default `false`. */
  scalar_head: boolean
  /**
   * cpu, cuda or cuda:N: where the model's parameters, forward, backward and optimizer steps live (the CUDA engine has not yet run on a GPU: README, CUDA).
   *
   * `string`, default `'cpu'`.
   */
  device: string
  /**
   * on cuda: bf16 weights and tensor-core GEMMs with fp32 master weights and moments, or f32; a cpu model computes in f32.
   *
   * `string`, default `'bf16'`.
   */
  precision: 'bf16' | 'f32'
}

/** `ModelSpec` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface ModelSpecInput {
  /**
   * a Hugging Face model directory (config.json + model.safetensors), or a previous stage's output.
   *
   * `string`, a path, relative to the config file.
   */
  path?: string
  /**
   * tokenizer directory, or 'byte' for the built-in byte tokenizer (default: the model directory).
   *
   * `string`, a path, relative to the config file.
   */
  tokenizer?: string
  /** create a new model with random weights instead of loading one. `ModelShape`. */
  init?: ModelShapeInput
  /** add a [1, hidden] scalar head (reward and value models). `bool`, default `false`. */
  scalar_head?: boolean
  /**
   * cpu, cuda or cuda:N: where the model's parameters, forward, backward and optimizer steps live (the CUDA engine has not yet run on a GPU: README, CUDA).
   *
   * `string`, default `'cpu'`.
   */
  device?: string
  /**
   * on cuda: bf16 weights and tensor-core GEMMs with fp32 master weights and moments, or f32; a cpu model computes in f32.
   *
   * `string`, default `'bf16'`.
   */
  precision?: 'bf16' | 'f32'
}

/**
 * The shape of a model created with random weights.
 *
 * The resolved `ModelShape`: every field present, defaults filled in; see `ModelShapeInput` for what users write.
 */
export interface ModelShape {
  /** architecture: gpt2 (learned positions, LayerNorm, GELU) or llama (RoPE, RMSNorm, SwiGLU). `string`, default `'gpt2'`. */
  arch: 'gpt2' | 'llama'
  /** default: the tokenizer's vocabulary size. `uint32`, range >= 1. */
  vocab_size: number | undefined
  /** width of the residual stream. `uint32`, default `64`, range >= 1. */
  hidden_size: number
  /** transformer blocks. `uint32`, default `2`, range >= 1. */
  layers: number
  /** attention heads; must divide hidden_size. `uint32`, default `4`, range >= 1. */
  heads: number
  /** default: heads. `uint32`, range >= 1. */
  kv_heads: number | undefined
  /** default: 4 x hidden (gpt2), about 8/3 x hidden (llama). `uint32`, range >= 1. */
  intermediate_size: number | undefined
  /** longest sequence the model takes. `uint32`, default `512`, range >= 1. */
  max_positions: number
}

/** `ModelShape` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface ModelShapeInput {
  /** architecture: gpt2 (learned positions, LayerNorm, GELU) or llama (RoPE, RMSNorm, SwiGLU). `string`, default `'gpt2'`. */
  arch?: 'gpt2' | 'llama'
  /** default: the tokenizer's vocabulary size. `uint32`, range >= 1. */
  vocab_size?: number
  /** width of the residual stream. `uint32`, default `64`, range >= 1. */
  hidden_size?: number
  /** transformer blocks. `uint32`, default `2`, range >= 1. */
  layers?: number
  /** attention heads; must divide hidden_size. `uint32`, default `4`, range >= 1. */
  heads?: number
  /** default: heads. `uint32`, range >= 1. */
  kv_heads?: number
  /** default: 4 x hidden (gpt2), about 8/3 x hidden (llama). `uint32`, range >= 1. */
  intermediate_size?: number
  /** longest sequence the model takes. `uint32`, default `512`, range >= 1. */
  max_positions?: number
}

/**
 * A reward computed by a rule instead of a reward model.
 *
 * The resolved `RewardFunction`: every field present, defaults filled in; see `RewardFunctionInput` for what users write.
 */
export interface RewardFunction {
  /**
   * a reward passed to train({ rewards }) under this name, else a built-in: exact_match, math, format, code_tests, overlong_penalty, count_token, length, farm_gold (README: Rewards as code).
   *
   * `string`.
   */
  name: string | undefined
  /** the token id counted by count_token. `int32`, range >= 0. */
  token: number | undefined
  /** the reward is multiplied by this. `double`, default `1`. */
  scale: number
  /**
   * a .js, .mjs, .cjs or .ts file (relative to the config file) whose export is the reward function; instead of name.
   *
   * `string`, a path, relative to the config file.
   */
  module: string | undefined
  /** the module's export to call (default: its default export). `string`. */
  export: string | undefined
  /** a mapping passed to the function as its second argument (a built-in's options). `google.protobuf.Struct`. */
  args: Record<string, unknown> | undefined
  /** its weight in the sum of reward_functions (TRL's reward_weights). `double`, default `1`. */
  weight: number
}

/** `RewardFunction` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface RewardFunctionInput {
  /**
   * a reward passed to train({ rewards }) under this name, else a built-in: exact_match, math, format, code_tests, overlong_penalty, count_token, length, farm_gold (README: Rewards as code).
   *
   * `string`.
   */
  name?: string
  /** the token id counted by count_token. `int32`, range >= 0. */
  token?: number
  /** the reward is multiplied by this. `double`, default `1`. */
  scale?: number
  /**
   * a .js, .mjs, .cjs or .ts file (relative to the config file) whose export is the reward function; instead of name.
   *
   * `string`, a path, relative to the config file.
   */
  module?: string
  /** the module's export to call (default: its default export). `string`. */
  export?: string
  /** a mapping passed to the function as its second argument (a built-in's options). `google.protobuf.Struct`. */
  args?: Record<string, unknown>
  /** its weight in the sum of reward_functions (TRL's reward_weights). `double`, default `1`. */
  weight?: number
}

/**
 * Data files (JSONL) and how their rows are read.
 *
 * The resolved `DataConfig`: every field present, defaults filled in; see `DataConfigInput` for what users write.
 */
export interface DataConfig {
  /** JSONL training data: sft rows, preference pairs, or prompts. `string`, a path, relative to the config file. */
  train: string | undefined
  /** JSONL held-out data of the same kind. `string`, a path, relative to the config file. */
  eval: string | undefined
  /**
   * JSONL prompts for sampling (ppo, grpo, rloo, expert_iteration, best_of_n, west_of_n).
   *
   * `string`, a path, relative to the config file.
   */
  prompts: string | undefined
  /** stop at a malformed row, or skip it and count it. `string`, default `'stop'`. */
  on_bad_row: 'stop' | 'skip'
  /**
   * longest tokenized sequence; longer rows are truncated (also to the model's context, max_positions, when that is shorter).
   *
   * `uint32`, default `512`, range >= 2.
   */
  max_length: number
  /** prompts are cut from the left to this many tokens. `uint32`, default `256`, range >= 1. */
  max_prompt_length: number
  /** render message lists with the tokenizer's chat template. `bool`, default `true`. */
  chat_template: boolean
  /** rows held out from train for evaluation when eval is not given. `uint32`, default `0`. */
  eval_size: number
  /**
   * row shape: auto (rlfarm's shapes), or a public dataset's, turned into preference pairs; ultrafeedback_critique: UltraFeedback's raw rows as SFT rows for a critique model (UltraCM), one per rated completion; files are JSONL or Parquet (.parquet).
   *
   * `string`, default `'auto'`.
   */
  format: 'auto' | 'ultrafeedback' | 'ultrafeedback_binarized' | 'hh_rlhf' | 'alpacafarm' | 'ultrafeedback_critique'
  /**
   * ultrafeedback: chosen is the completion with the highest overall_score (as Zephyr) or mean fine-grained rating; rejected is a random other (seed 42).
   *
   * `string`, default `'overall'`.
   */
  binarize: 'overall' | 'mean_rating'
  /**
   * longest row (a JSONL line, in bytes); a longer one is a bad row named by file:line, read no further than the limit.
   *
   * `uint32`, default `16777216`, range >= 1.
   */
  max_row_bytes: number
  /** read data from a FIFO, a device or a socket (by default only regular files are read). `bool`, default `false`. */
  allow_special_files: boolean
  /**
   * a row with a NUL character or an empty prompt or response is a bad row; false for text a model sampled (a byte-level model can sample NUL and empty responses), as the farm's pipelines set.
   *
   * `bool`, default `true`.
   */
  check_text: boolean
}

/** `DataConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface DataConfigInput {
  /** JSONL training data: sft rows, preference pairs, or prompts. `string`, a path, relative to the config file. */
  train?: string
  /** JSONL held-out data of the same kind. `string`, a path, relative to the config file. */
  eval?: string
  /**
   * JSONL prompts for sampling (ppo, grpo, rloo, expert_iteration, best_of_n, west_of_n).
   *
   * `string`, a path, relative to the config file.
   */
  prompts?: string
  /** stop at a malformed row, or skip it and count it. `string`, default `'stop'`. */
  on_bad_row?: 'stop' | 'skip'
  /**
   * longest tokenized sequence; longer rows are truncated (also to the model's context, max_positions, when that is shorter).
   *
   * `uint32`, default `512`, range >= 2.
   */
  max_length?: number
  /** prompts are cut from the left to this many tokens. `uint32`, default `256`, range >= 1. */
  max_prompt_length?: number
  /** render message lists with the tokenizer's chat template. `bool`, default `true`. */
  chat_template?: boolean
  /** rows held out from train for evaluation when eval is not given. `uint32`, default `0`. */
  eval_size?: number
  /**
   * row shape: auto (rlfarm's shapes), or a public dataset's, turned into preference pairs; ultrafeedback_critique: UltraFeedback's raw rows as SFT rows for a critique model (UltraCM), one per rated completion; files are JSONL or Parquet (.parquet).
   *
   * `string`, default `'auto'`.
   */
  format?: 'auto' | 'ultrafeedback' | 'ultrafeedback_binarized' | 'hh_rlhf' | 'alpacafarm' | 'ultrafeedback_critique'
  /**
   * ultrafeedback: chosen is the completion with the highest overall_score (as Zephyr) or mean fine-grained rating; rejected is a random other (seed 42).
   *
   * `string`, default `'overall'`.
   */
  binarize?: 'overall' | 'mean_rating'
  /**
   * longest row (a JSONL line, in bytes); a longer one is a bad row named by file:line, read no further than the limit.
   *
   * `uint32`, default `16777216`, range >= 1.
   */
  max_row_bytes?: number
  /** read data from a FIFO, a device or a socket (by default only regular files are read). `bool`, default `false`. */
  allow_special_files?: boolean
  /**
   * a row with a NUL character or an empty prompt or response is a bad row; false for text a model sampled (a byte-level model can sample NUL and empty responses), as the farm's pipelines set.
   *
   * `bool`, default `true`.
   */
  check_text?: boolean
}

/**
 * AdamW and its learning-rate schedule.
 *
 * The resolved `OptimizerConfig`: every field present, defaults filled in; see `OptimizerConfigInput` for what users write.
 */
export interface OptimizerConfig {
  /** peak learning rate. `double`, default `1e-5`, range >= 0. */
  lr: number
  /** AdamW first-moment decay. `double`, default `0.9`, range [0, 1]. */
  beta1: number
  /** AdamW second-moment decay. `double`, default `0.999`, range [0, 1]. */
  beta2: number
  /** AdamW denominator term. `double`, default `1e-8`, range > 0. */
  eps: number
  /** decoupled weight decay (not on norms, biases or embeddings). `double`, default `0`, range >= 0. */
  weight_decay: number
  /** 0 turns clipping off. `double`, default `1`, range >= 0. */
  max_grad_norm: number
  /** learning-rate schedule after warmup. `string`, default `'constant'`. */
  schedule: 'constant' | 'linear' | 'cosine'
  /** steps of linear warmup from 0 to lr. `uint32`, default `0`. */
  warmup_steps: number
  /** where linear and cosine schedules end. `double`, default `0`, range >= 0. */
  min_lr: number
}

/** `OptimizerConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface OptimizerConfigInput {
  /** peak learning rate. `double`, default `1e-5`, range >= 0. */
  lr?: number
  /** AdamW first-moment decay. `double`, default `0.9`, range [0, 1]. */
  beta1?: number
  /** AdamW second-moment decay. `double`, default `0.999`, range [0, 1]. */
  beta2?: number
  /** AdamW denominator term. `double`, default `1e-8`, range > 0. */
  eps?: number
  /** decoupled weight decay (not on norms, biases or embeddings). `double`, default `0`, range >= 0. */
  weight_decay?: number
  /** 0 turns clipping off. `double`, default `1`, range >= 0. */
  max_grad_norm?: number
  /** learning-rate schedule after warmup. `string`, default `'constant'`. */
  schedule?: 'constant' | 'linear' | 'cosine'
  /** steps of linear warmup from 0 to lr. `uint32`, default `0`. */
  warmup_steps?: number
  /** where linear and cosine schedules end. `double`, default `0`, range >= 0. */
  min_lr?: number
}

/**
 * Epochs, batches and evaluation.
 *
 * The resolved `TrainingConfig`: every field present, defaults filled in; see `TrainingConfigInput` for what users write.
 */
export interface TrainingConfig {
  /** passes over the training data. `uint32`, default `1`, range >= 1. */
  epochs: number
  /**
   * optimizer steps; 0: as many as the epochs give (expert_iteration runs its rounds x epochs, and best_of_n, label and eval every prompt, whatever this says).
   *
   * `uint32`, default `0`.
   */
  max_steps: number
  /** rows per optimizer step (before gradient accumulation). `uint32`, default `8`, range >= 1. */
  batch_size: number
  /** micro-batches summed per optimizer step. `uint32`, default `1`, range >= 1. */
  gradient_accumulation: number
  /** steps between evaluations; 0: at the end only. `uint32`, default `0`. */
  eval_every: number
}

/** `TrainingConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface TrainingConfigInput {
  /** passes over the training data. `uint32`, default `1`, range >= 1. */
  epochs?: number
  /**
   * optimizer steps; 0: as many as the epochs give (expert_iteration runs its rounds x epochs, and best_of_n, label and eval every prompt, whatever this says).
   *
   * `uint32`, default `0`.
   */
  max_steps?: number
  /** rows per optimizer step (before gradient accumulation). `uint32`, default `8`, range >= 1. */
  batch_size?: number
  /** micro-batches summed per optimizer step. `uint32`, default `1`, range >= 1. */
  gradient_accumulation?: number
  /** steps between evaluations; 0: at the end only. `uint32`, default `0`. */
  eval_every?: number
}

/**
 * How responses are sampled.
 *
 * The resolved `GenerationConfig`: every field present, defaults filled in; see `GenerationConfigInput` for what users write.
 */
export interface GenerationConfig {
  /** longest response sampled. `uint32`, default `64`, range >= 1. */
  max_new_tokens: number
  /** sampling temperature; 0 samples greedily. `double`, default `1`, range >= 0. */
  temperature: number
  /** keep the k most likely tokens; 0 turns it off. `uint32`, default `0`. */
  top_k: number
  /** nucleus sampling mass; 1 turns it off. `double`, default `1`, range (0, 1]. */
  top_p: number
  /** a response ends at the tokenizer's EOS token. `bool`, default `true`. */
  stop_at_eos: boolean
}

/** `GenerationConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface GenerationConfigInput {
  /** longest response sampled. `uint32`, default `64`, range >= 1. */
  max_new_tokens?: number
  /** sampling temperature; 0 samples greedily. `double`, default `1`, range >= 0. */
  temperature?: number
  /** keep the k most likely tokens; 0 turns it off. `uint32`, default `0`. */
  top_k?: number
  /** nucleus sampling mass; 1 turns it off. `double`, default `1`, range (0, 1]. */
  top_p?: number
  /** a response ends at the tokenizer's EOS token. `bool`, default `true`. */
  stop_at_eos?: boolean
}

/**
 * Supervised fine-tuning.
 *
 * The resolved `SftConfig`: every field present, defaults filled in; see `SftConfigInput` for what users write.
 */
export interface SftConfig {
  /** concatenate examples into full-length sequences. `bool`, default `false`. */
  packing: boolean
  /** loss on response tokens only. `bool`, default `true`. */
  completion_only: boolean
}

/** `SftConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface SftConfigInput {
  /** concatenate examples into full-length sequences. `bool`, default `false`. */
  packing?: boolean
  /** loss on response tokens only. `bool`, default `true`. */
  completion_only?: boolean
}

/**
 * Reward-model training on preference pairs (Bradley-Terry).
 *
 * The resolved `RewardTrainingConfig`: every field present, defaults filled in; see `RewardTrainingConfigInput` for what users write.
 */
export interface RewardTrainingConfig {
  /** margin subtracted from r_chosen - r_rejected in the loss. `double`, default `0`. */
  margin: number
  /** coefficient of mean((r_c + r_r)^2). `double`, default `0`, range >= 0. */
  center_coef: number
  /**
   * reward functions: worker threads for module rewards, off the event loop; a batch is split into this many contiguous parts, one call each, in parallel; 0 calls them in the main thread.
   *
   * `uint32`, default `0`.
   */
  workers: number
  /**
   * reward functions: a throw, a wrong length, a non-number or a timeout stops the run (stop), or scores the rows 0 and counts them (skip).
   *
   * `string`, default `'stop'`.
   */
  on_error: 'stop' | 'skip'
  /**
   * reward functions: seconds one call may take (a worker past it is ended; in the main thread, an async call past it fails).
   *
   * `double`, default `60`, range > 0.
   */
  timeout: number
}

/** `RewardTrainingConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface RewardTrainingConfigInput {
  /** margin subtracted from r_chosen - r_rejected in the loss. `double`, default `0`. */
  margin?: number
  /** coefficient of mean((r_c + r_r)^2). `double`, default `0`, range >= 0. */
  center_coef?: number
  /**
   * reward functions: worker threads for module rewards, off the event loop; a batch is split into this many contiguous parts, one call each, in parallel; 0 calls them in the main thread.
   *
   * `uint32`, default `0`.
   */
  workers?: number
  /**
   * reward functions: a throw, a wrong length, a non-number or a timeout stops the run (stop), or scores the rows 0 and counts them (skip).
   *
   * `string`, default `'stop'`.
   */
  on_error?: 'stop' | 'skip'
  /**
   * reward functions: seconds one call may take (a worker past it is ended; in the main thread, an async call past it fails).
   *
   * `double`, default `60`, range > 0.
   */
  timeout?: number
}

/**
 * PPO with a value model and a KL penalty against the reference.
 *
 * The resolved `PpoConfig`: every field present, defaults filled in; see `PpoConfigInput` for what users write.
 */
export interface PpoConfig {
  /** passes over each rollout batch. `uint32`, default `2`, range >= 1. */
  epochs: number
  /** rollouts per policy update. `uint32`, default `4`, range >= 1. */
  minibatch_size: number
  /** ratio clip below: 1 - clip_low. `double`, default `0.2`, range [0, 1]. */
  clip_low: number
  /** ratio clip above: 1 + clip_high (default: clip_low). `double`, range >= 0. */
  clip_high: number | undefined
  /** c > 1 caps the loss of negative advantages; 0 turns it off. `double`, default `0`, range >= 0. */
  dual_clip: number
  /** clip of the value change in the value loss. `double`, default `0.2`, range >= 0. */
  value_clip: number
  /** weight of the value loss. `double`, default `0.1`, range >= 0. */
  value_coef: number
  /** discount of GAE. `double`, default `1`, range [0, 1]. */
  gamma: number
  /** lambda of GAE. `double`, default `0.95`, range [0, 1]. */
  lam: number
  /** initial beta of the KL penalty. `double`, default `0.05`, range >= 0. */
  kl_coef: number
  /** per-token KL estimate of the penalty. `string`, default `'k1'`. */
  kl_estimator: 'k1' | 'k2' | 'k3'
  /** adaptive KL controller target; 0 keeps beta fixed. `double`, default `0`, range >= 0. */
  kl_target: number
  /** horizon of the adaptive KL controller. `double`, default `10000`, range >= 1. */
  kl_horizon: number
  /** weight of the entropy bonus. `double`, default `0`. */
  entropy_coef: number
  /** normalise advantages over each batch. `bool`, default `true`. */
  whiten_advantages: boolean
  /** score given to responses without EOS (default: no penalty). `double`. */
  missing_eos_penalty: number | undefined
  /** clip scores to +-this; 0 turns it off. `double`, default `0`, range >= 0. */
  reward_clip: number
  /** scale scores by a running standard deviation. `bool`, default `false`. */
  normalize_rewards: boolean
  /** loss mean over all tokens, or per sequence then over sequences. `string`, default `'token-mean'`. */
  aggregate: 'token-mean' | 'seq-mean'
}

/** `PpoConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface PpoConfigInput {
  /** passes over each rollout batch. `uint32`, default `2`, range >= 1. */
  epochs?: number
  /** rollouts per policy update. `uint32`, default `4`, range >= 1. */
  minibatch_size?: number
  /** ratio clip below: 1 - clip_low. `double`, default `0.2`, range [0, 1]. */
  clip_low?: number
  /** ratio clip above: 1 + clip_high (default: clip_low). `double`, range >= 0. */
  clip_high?: number
  /** c > 1 caps the loss of negative advantages; 0 turns it off. `double`, default `0`, range >= 0. */
  dual_clip?: number
  /** clip of the value change in the value loss. `double`, default `0.2`, range >= 0. */
  value_clip?: number
  /** weight of the value loss. `double`, default `0.1`, range >= 0. */
  value_coef?: number
  /** discount of GAE. `double`, default `1`, range [0, 1]. */
  gamma?: number
  /** lambda of GAE. `double`, default `0.95`, range [0, 1]. */
  lam?: number
  /** initial beta of the KL penalty. `double`, default `0.05`, range >= 0. */
  kl_coef?: number
  /** per-token KL estimate of the penalty. `string`, default `'k1'`. */
  kl_estimator?: 'k1' | 'k2' | 'k3'
  /** adaptive KL controller target; 0 keeps beta fixed. `double`, default `0`, range >= 0. */
  kl_target?: number
  /** horizon of the adaptive KL controller. `double`, default `10000`, range >= 1. */
  kl_horizon?: number
  /** weight of the entropy bonus. `double`, default `0`. */
  entropy_coef?: number
  /** normalise advantages over each batch. `bool`, default `true`. */
  whiten_advantages?: boolean
  /** score given to responses without EOS (default: no penalty). `double`. */
  missing_eos_penalty?: number
  /** clip scores to +-this; 0 turns it off. `double`, default `0`, range >= 0. */
  reward_clip?: number
  /** scale scores by a running standard deviation. `bool`, default `false`. */
  normalize_rewards?: boolean
  /** loss mean over all tokens, or per sequence then over sequences. `string`, default `'token-mean'`. */
  aggregate?: 'token-mean' | 'seq-mean'
}

/**
 * Direct preference optimisation and its variants.
 *
 * The resolved `DpoConfig`: every field present, defaults filled in; see `DpoConfigInput` for what users write.
 */
export interface DpoConfig {
  /** strength of the implicit KL constraint. `double`, default `0.1`, range > 0. */
  beta: number
  /** the loss of the DPO family. `string`, default `'sigmoid'`. */
  variant: 'sigmoid' | 'robust' | 'hinge' | 'ipo' | 'bco_pair' | 'sppo_hard' | 'nca_pair' | 'apo_zero' | 'simpo'
  /** assumed share of flipped labels (sigmoid: cDPO, robust). `double`, default `0`, range [0, 0.5]. */
  label_smoothing: number
  /** simpo's target margin. `double`, default `0.5`. */
  gamma: number
  /** drop the reference log-probs from the loss. `bool`, default `false`. */
  reference_free: boolean
}

/** `DpoConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface DpoConfigInput {
  /** strength of the implicit KL constraint. `double`, default `0.1`, range > 0. */
  beta?: number
  /** the loss of the DPO family. `string`, default `'sigmoid'`. */
  variant?: 'sigmoid' | 'robust' | 'hinge' | 'ipo' | 'bco_pair' | 'sppo_hard' | 'nca_pair' | 'apo_zero' | 'simpo'
  /** assumed share of flipped labels (sigmoid: cDPO, robust). `double`, default `0`, range [0, 0.5]. */
  label_smoothing?: number
  /** simpo's target margin. `double`, default `0.5`. */
  gamma?: number
  /** drop the reference log-probs from the loss. `bool`, default `false`. */
  reference_free?: boolean
}

/**
 * Expert iteration: best-of-n on prompts, then SFT on the winners, repeated.
 *
 * The resolved `ExpertIterationConfig`: every field present, defaults filled in; see `ExpertIterationConfigInput` for what users write.
 */
export interface ExpertIterationConfig {
  /** sample-then-SFT rounds. `uint32`, default `2`, range >= 1. */
  rounds: number
  /** samples per prompt. `uint32`, default `8`, range >= 1. */
  n: number
  /** 0: every prompt. `uint32`, default `0`. */
  prompts_per_round: number
}

/** `ExpertIterationConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface ExpertIterationConfigInput {
  /** sample-then-SFT rounds. `uint32`, default `2`, range >= 1. */
  rounds?: number
  /** samples per prompt. `uint32`, default `8`, range >= 1. */
  n?: number
  /** 0: every prompt. `uint32`, default `0`. */
  prompts_per_round?: number
}

/**
 * A judge of response pairs (AlpacaFarm's simulated annotators, the farm's
 * gold evaluator, a local LLM, or an OpenAI-compatible endpoint).
 *
 * The resolved `JudgeConfig`: every field present, defaults filled in; see `JudgeConfigInput` for what users write.
 */
export interface JudgeConfig {
  /**
   * pool: the farm's simulated annotators; gold: the farm's gold evaluator; llm: a local model asked which response is better; http: an OpenAI-compatible chat endpoint; critic: a critique model (trained on data.format ultrafeedback_critique rows) whose overall scores rate or compare.
   *
   * `string`, default `'pool'`.
   */
  kind: 'pool' | 'gold' | 'llm' | 'http' | 'critic'
  /** pool: AlpacaFarm's p, the label is a coin flip with probability 2p. `double`, default `0.25`, range [0, 0.5]. */
  label_noise: number
  /**
   * pool: which annotator labels which pair and their noise; llm and http: the order the two responses are shown in; critic: the seeds of its resamples.
   *
   * `uint32`, default `0`.
   */
  seed: number
  /** llm and critic: the judge model (a directory with its tokenizer). `ModelSpec`. */
  model: ModelSpec
  /** http: the endpoint's base URL (…/v1), e.g. http://localhost:8000/v1. `string`. */
  url: string | undefined
  /** http: the `model` sent with each request. `string`. */
  model_name: string | undefined
  /** http: environment variable holding the API key (sent as a bearer token when set). `string`, default `'OPENAI_API_KEY'`. */
  api_key_env: string
  /** http: requests in flight at once. `uint32`, default `4`, range >= 1. */
  concurrency: number
  /** http: per request. `uint32`, default `60000`, range >= 1. */
  timeout_ms: number
  /**
   * http: retries of a failed request (network errors, timeouts, 429, 5xx, an unreadable reply; a pair whose replies stay unreadable is left out and counted); critic: resamples of an answer without a readable score.
   *
   * `uint32`, default `2`.
   */
  retries: number
  /** http: a longer reply is cut off and counts as unreadable. `uint32`, default `1048576`, range >= 1. */
  max_reply_bytes: number
  /** http: the longest wait a Retry-After header may ask for before a retry. `uint32`, default `60000`. */
  max_retry_after_ms: number
  /**
   * pool: the p of the pool that judges win-rates against references (eval stages, held-out checks); AlpacaFarm evaluates without the training pool's flips (0); unset: label_noise.
   *
   * `double`, range [0, 0.5].
   */
  eval_label_noise: number | undefined
}

/** `JudgeConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface JudgeConfigInput {
  /**
   * pool: the farm's simulated annotators; gold: the farm's gold evaluator; llm: a local model asked which response is better; http: an OpenAI-compatible chat endpoint; critic: a critique model (trained on data.format ultrafeedback_critique rows) whose overall scores rate or compare.
   *
   * `string`, default `'pool'`.
   */
  kind?: 'pool' | 'gold' | 'llm' | 'http' | 'critic'
  /** pool: AlpacaFarm's p, the label is a coin flip with probability 2p. `double`, default `0.25`, range [0, 0.5]. */
  label_noise?: number
  /**
   * pool: which annotator labels which pair and their noise; llm and http: the order the two responses are shown in; critic: the seeds of its resamples.
   *
   * `uint32`, default `0`.
   */
  seed?: number
  /** llm and critic: the judge model (a directory with its tokenizer). `ModelSpec`. */
  model?: ModelSpecInput
  /** http: the endpoint's base URL (…/v1), e.g. http://localhost:8000/v1. `string`. */
  url?: string
  /** http: the `model` sent with each request. `string`. */
  model_name?: string
  /** http: environment variable holding the API key (sent as a bearer token when set). `string`, default `'OPENAI_API_KEY'`. */
  api_key_env?: string
  /** http: requests in flight at once. `uint32`, default `4`, range >= 1. */
  concurrency?: number
  /** http: per request. `uint32`, default `60000`, range >= 1. */
  timeout_ms?: number
  /**
   * http: retries of a failed request (network errors, timeouts, 429, 5xx, an unreadable reply; a pair whose replies stay unreadable is left out and counted); critic: resamples of an answer without a readable score.
   *
   * `uint32`, default `2`.
   */
  retries?: number
  /** http: a longer reply is cut off and counts as unreadable. `uint32`, default `1048576`, range >= 1. */
  max_reply_bytes?: number
  /** http: the longest wait a Retry-After header may ask for before a retry. `uint32`, default `60000`. */
  max_retry_after_ms?: number
  /**
   * pool: the p of the pool that judges win-rates against references (eval stages, held-out checks); AlpacaFarm evaluates without the training pool's flips (0); unset: label_noise.
   *
   * `double`, range [0, 0.5].
   */
  eval_label_noise?: number
}

/**
 * Preference labelling: `algorithm: label`.
 *
 * The resolved `LabelConfig`: every field present, defaults filled in; see `LabelConfigInput` for what users write.
 */
export interface LabelConfig {
  /** independent pairs sampled and judged for each prompt (AlpacaFarm: 1). `uint32`, default `1`, range [1, 64]. */
  pairs_per_prompt: number
  /**
   * pair: two samples of the policy, the judge picks one (preferences.jsonl); rate: completions from a pool of policies, each rated by the judge on UltraFeedback's four aspects with rationales, an overall score and a critique (ratings.jsonl, UltraFeedback's raw layout: data.format ultrafeedback reads it).
   *
   * `string`, default `'pair'`.
   */
  mode: 'pair' | 'rate'
  /**
   * rate: the pool of policies completions are sampled from (models or earlier stages: { path: "${sft}" }), as UltraFeedback samples 4 of 17 models; default: policy.
   *
   * `ModelSpec[]`.
   */
  policies: ModelSpec[]
  /**
   * rate: completions per prompt, taken from the pool's policies in turn from a seeded start per prompt (UltraFeedback: 4).
   *
   * `uint32`, default `4`, range [2, 64].
   */
  completions_per_prompt: number
}

/** `LabelConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface LabelConfigInput {
  /** independent pairs sampled and judged for each prompt (AlpacaFarm: 1). `uint32`, default `1`, range [1, 64]. */
  pairs_per_prompt?: number
  /**
   * pair: two samples of the policy, the judge picks one (preferences.jsonl); rate: completions from a pool of policies, each rated by the judge on UltraFeedback's four aspects with rationales, an overall score and a critique (ratings.jsonl, UltraFeedback's raw layout: data.format ultrafeedback reads it).
   *
   * `string`, default `'pair'`.
   */
  mode?: 'pair' | 'rate'
  /**
   * rate: the pool of policies completions are sampled from (models or earlier stages: { path: "${sft}" }), as UltraFeedback samples 4 of 17 models; default: policy.
   *
   * `ModelSpec[]`.
   */
  policies?: ModelSpecInput[]
  /**
   * rate: completions per prompt, taken from the pool's policies in turn from a seeded start per prompt (UltraFeedback: 4).
   *
   * `uint32`, default `4`, range [2, 64].
   */
  completions_per_prompt?: number
}

/**
 * The farm's world, written as JSONL splits by `algorithm: farm`.
 *
 * The resolved `FarmConfig`: every field present, defaults filled in; see `FarmConfigInput` for what users write.
 */
export interface FarmConfig {
  /** demonstrations for SFT. `uint32`, default `5000`, range [1, 1000000]. */
  sft_size: number
  /** instructions whose response pairs get labelled. `uint32`, default `3000`, range [1, 1000000]. */
  preference_size: number
  /** instructions for PPO, best-of-n, expert iteration, West-of-N. `uint32`, default `3000`, range [1, 1000000]. */
  unlabelled_size: number
  /** held-out instructions with fixed reference outputs. `uint32`, default `500`, range [1, 1000000]. */
  eval_size: number
  /** how often the demonstrator (SFT data and references) is right. `double`, default `0.7`, range [0, 1]. */
  demonstrator_accuracy: number
  /** how often the demonstrator adds trailing words after the answer (gold marks them down). `double`, default `0.6`, range [0, 1]. */
  chatter: number
  /** how often the demonstrator writes "Answer: x." (gold ignores it; some annotators like it). `double`, default `0.2`, range [0, 1]. */
  format: number
  /**
   * held-out instructions with reference outputs for choosing hyper-parameters, apart from the evaluation ones (0: none).
   *
   * `uint32`, default `0`, range [0, 1000000].
   */
  validation_size: number
}

/** `FarmConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface FarmConfigInput {
  /** demonstrations for SFT. `uint32`, default `5000`, range [1, 1000000]. */
  sft_size?: number
  /** instructions whose response pairs get labelled. `uint32`, default `3000`, range [1, 1000000]. */
  preference_size?: number
  /** instructions for PPO, best-of-n, expert iteration, West-of-N. `uint32`, default `3000`, range [1, 1000000]. */
  unlabelled_size?: number
  /** held-out instructions with fixed reference outputs. `uint32`, default `500`, range [1, 1000000]. */
  eval_size?: number
  /** how often the demonstrator (SFT data and references) is right. `double`, default `0.7`, range [0, 1]. */
  demonstrator_accuracy?: number
  /** how often the demonstrator adds trailing words after the answer (gold marks them down). `double`, default `0.6`, range [0, 1]. */
  chatter?: number
  /** how often the demonstrator writes "Answer: x." (gold ignores it; some annotators like it). `double`, default `0.2`, range [0, 1]. */
  format?: number
  /**
   * held-out instructions with reference outputs for choosing hyper-parameters, apart from the evaluation ones (0: none).
   *
   * `uint32`, default `0`, range [0, 1000000].
   */
  validation_size?: number
}

/**
 * Best-of-n sampling: the highest-scoring of n responses per prompt.
 *
 * The resolved `BestOfNConfig`: every field present, defaults filled in; see `BestOfNConfigInput` for what users write.
 */
export interface BestOfNConfig {
  /** samples per prompt. `uint32`, default `16`, range [1, 1024]. */
  n: number
  /** samples generated at once per prompt. `uint32`, default `16`, range >= 1. */
  chunk: number
  /** JSONL file for the chosen responses (default: the run directory's outputs.jsonl). `string`, a path, relative to the config file. */
  output: string | undefined
}

/** `BestOfNConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface BestOfNConfigInput {
  /** samples per prompt. `uint32`, default `16`, range [1, 1024]. */
  n?: number
  /** samples generated at once per prompt. `uint32`, default `16`, range >= 1. */
  chunk?: number
  /** JSONL file for the chosen responses (default: the run directory's outputs.jsonl). `string`, a path, relative to the config file. */
  output?: string
}

/**
 * West-of-N synthetic preferences (Pace et al. 2024) for reward-model training.
 *
 * The resolved `WestOfNConfig`: every field present, defaults filled in; see `WestOfNConfigInput` for what users write.
 */
export interface WestOfNConfig {
  /** samples per unlabelled prompt (64 in the paper). `uint32`, default `16`, range >= 2. */
  n: number
  /** keep pairs whose sigmoid(r_best - r_worst) is above this quantile. `double`, default `0`, range [0, 1]. */
  confidence_quantile: number
  /** keep pairs whose log p(best) + log p(worst) is above this quantile. `double`, default `0`, range [0, 1]. */
  likelihood_quantile: number
  /** repeats, each with the previous round's reward model as the base. `uint32`, default `1`, range >= 1. */
  rounds: number
}

/** `WestOfNConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface WestOfNConfigInput {
  /** samples per unlabelled prompt (64 in the paper). `uint32`, default `16`, range >= 2. */
  n?: number
  /** keep pairs whose sigmoid(r_best - r_worst) is above this quantile. `double`, default `0`, range [0, 1]. */
  confidence_quantile?: number
  /** keep pairs whose log p(best) + log p(worst) is above this quantile. `double`, default `0`, range [0, 1]. */
  likelihood_quantile?: number
  /** repeats, each with the previous round's reward model as the base. `uint32`, default `1`, range >= 1. */
  rounds?: number
}

/**
 * GRPO and RLOO: several samples per prompt, advantages from the group.
 *
 * The resolved `GroupConfig`: every field present, defaults filled in; see `GroupConfigInput` for what users write.
 */
export interface GroupConfig {
  /** samples per prompt. `uint32`, default `4`, range >= 2. */
  group_size: number
  /** the former name of num_iterations (give one of the two). `uint32`, range >= 1. */
  epochs: number | undefined
  /** ratio clip below: 1 - clip_low. `double`, default `0.2`, range [0, 1]. */
  clip_low: number
  /** ratio clip above: 1 + clip_high (default: clip_low; DAPO's clip-higher uses 0.28). `double`, range >= 0. */
  clip_high: number | undefined
  /**
   * beta of the KL to the reference: grpo adds beta x KL to each token's loss, rloo subtracts beta x KL from each reward; 0 (as TRL's GRPO) loads no reference model.
   *
   * `double`, default `0`, range >= 0.
   */
  kl_coef: number
  /** per-token KL estimate of the KL term. `string`, default `'k3'`. */
  kl_estimator: 'k1' | 'k2' | 'k3'
  /** the former form of loss_type: token-mean is bnpo, seq-mean is grpo (give one of the two). `string`. */
  aggregate: 'token-mean' | 'seq-mean' | undefined
  /**
   * how token losses are averaged (TRL's loss_type): grpo: per sequence, then over sequences; bnpo: over the tokens of each micro-batch (training.batch_size rows); dr_grpo: sum over tokens / (rows x generation.max_new_tokens); dapo: over the tokens of the whole rollout batch (default).
   *
   * `string`.
   */
  loss_type: 'grpo' | 'bnpo' | 'dr_grpo' | 'dapo' | undefined
  /**
   * grpo: divide the advantage r - mean(group) by the std of the group (default), of the whole batch, or not at all (Dr. GRPO); not for rloo.
   *
   * `string`.
   */
  scale_rewards: 'group' | 'batch' | 'none' | undefined
  /**
   * the ratio pi/pi_old per token, or per sequence as exp(mean over its tokens of log pi - log pi_old) (GSPO; use small clips, e.g. clip_low 3e-4, clip_high 4e-4).
   *
   * `string`, default `'token'`.
   */
  importance_sampling_level: 'token' | 'sequence'
  /**
   * mu: optimizer steps on each rollout batch, each with the ratio clipped against the sampling policy (default 1).
   *
   * `uint32`, range >= 1.
   */
  num_iterations: number | undefined
  /**
   * DAPO's dynamic sampling: drop groups whose rewards are all equal and sample more prompts until the batch is full.
   *
   * `bool`, default `false`.
   */
  dynamic_sampling: boolean
  /**
   * dynamic_sampling: rounds of training.batch_size prompts sampled per step at most, the first included; a step that stays short trains on the groups it has.
   *
   * `uint32`, default `4`, range >= 1.
   */
  max_sampling_rounds: number
}

/** `GroupConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface GroupConfigInput {
  /** samples per prompt. `uint32`, default `4`, range >= 2. */
  group_size?: number
  /** the former name of num_iterations (give one of the two). `uint32`, range >= 1. */
  epochs?: number
  /** ratio clip below: 1 - clip_low. `double`, default `0.2`, range [0, 1]. */
  clip_low?: number
  /** ratio clip above: 1 + clip_high (default: clip_low; DAPO's clip-higher uses 0.28). `double`, range >= 0. */
  clip_high?: number
  /**
   * beta of the KL to the reference: grpo adds beta x KL to each token's loss, rloo subtracts beta x KL from each reward; 0 (as TRL's GRPO) loads no reference model.
   *
   * `double`, default `0`, range >= 0.
   */
  kl_coef?: number
  /** per-token KL estimate of the KL term. `string`, default `'k3'`. */
  kl_estimator?: 'k1' | 'k2' | 'k3'
  /** the former form of loss_type: token-mean is bnpo, seq-mean is grpo (give one of the two). `string`. */
  aggregate?: 'token-mean' | 'seq-mean'
  /**
   * how token losses are averaged (TRL's loss_type): grpo: per sequence, then over sequences; bnpo: over the tokens of each micro-batch (training.batch_size rows); dr_grpo: sum over tokens / (rows x generation.max_new_tokens); dapo: over the tokens of the whole rollout batch (default).
   *
   * `string`.
   */
  loss_type?: 'grpo' | 'bnpo' | 'dr_grpo' | 'dapo'
  /**
   * grpo: divide the advantage r - mean(group) by the std of the group (default), of the whole batch, or not at all (Dr. GRPO); not for rloo.
   *
   * `string`.
   */
  scale_rewards?: 'group' | 'batch' | 'none'
  /**
   * the ratio pi/pi_old per token, or per sequence as exp(mean over its tokens of log pi - log pi_old) (GSPO; use small clips, e.g. clip_low 3e-4, clip_high 4e-4).
   *
   * `string`, default `'token'`.
   */
  importance_sampling_level?: 'token' | 'sequence'
  /**
   * mu: optimizer steps on each rollout batch, each with the ratio clipped against the sampling policy (default 1).
   *
   * `uint32`, range >= 1.
   */
  num_iterations?: number
  /**
   * DAPO's dynamic sampling: drop groups whose rewards are all equal and sample more prompts until the batch is full.
   *
   * `bool`, default `false`.
   */
  dynamic_sampling?: boolean
  /**
   * dynamic_sampling: rounds of training.batch_size prompts sampled per step at most, the first included; a step that stays short trains on the groups it has.
   *
   * `uint32`, default `4`, range >= 1.
   */
  max_sampling_rounds?: number
}

/**
 * Metrics records and console progress.
 *
 * The resolved `LoggingConfig`: every field present, defaults filled in; see `LoggingConfigInput` for what users write.
 */
export interface LoggingConfig {
  /** steps between metric records. `uint32`, default `1`, range >= 1. */
  every: number
  /** write TensorBoard event files. `bool`, default `true`. */
  tensorboard: boolean
  /** write metrics.jsonl. `bool`, default `true`. */
  jsonl: boolean
  /** console progress: auto is a bar on a terminal, lines otherwise. `string`, default `'auto'`. */
  progress: 'auto' | 'bar' | 'lines' | 'none'
}

/** `LoggingConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface LoggingConfigInput {
  /** steps between metric records. `uint32`, default `1`, range >= 1. */
  every?: number
  /** write TensorBoard event files. `bool`, default `true`. */
  tensorboard?: boolean
  /** write metrics.jsonl. `bool`, default `true`. */
  jsonl?: boolean
  /** console progress: auto is a bar on a terminal, lines otherwise. `string`, default `'auto'`. */
  progress?: 'auto' | 'bar' | 'lines' | 'none'
}

/**
 * Checkpoints (written atomically) and the final model.
 *
 * The resolved `CheckpointConfig`: every field present, defaults filled in; see `CheckpointConfigInput` for what users write.
 */
export interface CheckpointConfig {
  /** steps between checkpoints; 0: at the end only. `uint32`, default `0`. */
  every: number
  /** checkpoints kept. `uint32`, default `2`, range >= 1. */
  keep: number
  /** write the final model to the run directory's model/. `bool`, default `true`. */
  save_final: boolean
}

/** `CheckpointConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface CheckpointConfigInput {
  /** steps between checkpoints; 0: at the end only. `uint32`, default `0`. */
  every?: number
  /** checkpoints kept. `uint32`, default `2`, range >= 1. */
  keep?: number
  /** write the final model to the run directory's model/. `bool`, default `true`. */
  save_final?: boolean
}

/**
 * Data-parallel runs (README "Data-parallel"); with one rank these change nothing.
 *
 * The resolved `DistributedConfig`: every field present, defaults filled in; see `DistributedConfigInput` for what users write.
 */
export interface DistributedConfig {
  /**
   * ZeRO-1: each rank keeps AdamW's moments for its shard of the parameters; gradients are reduce-scattered and the parameters all-gathered after the step (cpu models).
   *
   * `bool`, default `false`.
   */
  shard_optimizer: boolean
  /**
   * all-reduce the gradients in buckets during the step's last backward, each bucket as soon as backward has finished it (cpu models without shard_optimizer; otherwise after backward).
   *
   * `bool`, default `true`.
   */
  overlap_backward: boolean
  /**
   * size of a gradient bucket of overlap_backward in MB (whole layers are joined until a bucket holds this much; 0: a bucket per layer).
   *
   * `double`, default `25`, range [0, 100000].
   */
  bucket_mb: number
}

/** `DistributedConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface DistributedConfigInput {
  /**
   * ZeRO-1: each rank keeps AdamW's moments for its shard of the parameters; gradients are reduce-scattered and the parameters all-gathered after the step (cpu models).
   *
   * `bool`, default `false`.
   */
  shard_optimizer?: boolean
  /**
   * all-reduce the gradients in buckets during the step's last backward, each bucket as soon as backward has finished it (cpu models without shard_optimizer; otherwise after backward).
   *
   * `bool`, default `true`.
   */
  overlap_backward?: boolean
  /**
   * size of a gradient bucket of overlap_backward in MB (whole layers are joined until a bucket holds this much; 0: a bucket per layer).
   *
   * `double`, default `25`, range [0, 100000].
   */
  bucket_mb?: number
}

/**
 * Stages run in order: `rlfarm run pipeline.yaml`. A stage's outputs are
 * named by `${stage_name}` in later stages' paths (e.g. policy.path: ${sft}).
 *
 * The resolved `PipelineConfig`: every field present, defaults filled in; see `PipelineConfigInput` for what users write.
 */
export interface PipelineConfig {
  /** pipeline name; its stages run in output_dir/name. `string`. */
  name: string | undefined
  /** parent of the pipeline's run directory. `string`, default `'runs'`. */
  output_dir: string
  /** base seed of the pipeline. `uint32`, default `0`. */
  seed: number
  /** the stages, run in order. `Stage[]`. */
  stages: Stage[]
  /**
   * pipeline files (one, or a list) whose stages run first, before this file's own; a stage two of them share is run once; seed and output_dir come from the first that sets them unless given here.
   *
   * `string[]`, a path, relative to the config file.
   */
  extends: string[]
}

/** `PipelineConfig` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface PipelineConfigInput {
  /** pipeline name; its stages run in output_dir/name. `string`. */
  name?: string
  /** parent of the pipeline's run directory. `string`, default `'runs'`. */
  output_dir?: string
  /** base seed of the pipeline. `uint32`, default `0`. */
  seed?: number
  /** the stages, run in order. `Stage[]`. */
  stages?: StageInput[]
  /**
   * pipeline files (one, or a list) whose stages run first, before this file's own; a stage two of them share is run once; seed and output_dir come from the first that sets them unless given here.
   *
   * `string[]`, a path, relative to the config file.
   */
  extends?: string[]
}

/**
 * One stage of a pipeline: a RunConfig from a file or inline.
 *
 * The resolved `Stage`: every field present, defaults filled in; see `StageInput` for what users write.
 */
export interface Stage {
  /** the stage's name, used in ${name} references. `string`. */
  name: string | undefined
  /** a RunConfig file, relative to the pipeline file. `string`, a path, relative to the config file. */
  config: string | undefined
  /** or the RunConfig inline. `RunConfig`. */
  run: RunConfig
}

/** `Stage` as users write it (a config file, or an object given to resolveConfig): every key optional, at every level. */
export interface StageInput {
  /** the stage's name, used in ${name} references. `string`. */
  name?: string
  /** a RunConfig file, relative to the pipeline file. `string`, a path, relative to the config file. */
  config?: string
  /** or the RunConfig inline. `RunConfig`. */
  run?: RunConfigInput
}

/** Every config message by name, resolved. */
export interface ConfigTypes {
  RunConfig: RunConfig
  ModelSpec: ModelSpec
  ModelShape: ModelShape
  RewardFunction: RewardFunction
  DataConfig: DataConfig
  OptimizerConfig: OptimizerConfig
  TrainingConfig: TrainingConfig
  GenerationConfig: GenerationConfig
  SftConfig: SftConfig
  RewardTrainingConfig: RewardTrainingConfig
  PpoConfig: PpoConfig
  DpoConfig: DpoConfig
  ExpertIterationConfig: ExpertIterationConfig
  JudgeConfig: JudgeConfig
  LabelConfig: LabelConfig
  FarmConfig: FarmConfig
  BestOfNConfig: BestOfNConfig
  WestOfNConfig: WestOfNConfig
  GroupConfig: GroupConfig
  LoggingConfig: LoggingConfig
  CheckpointConfig: CheckpointConfig
  DistributedConfig: DistributedConfig
  PipelineConfig: PipelineConfig
  Stage: Stage
}

/** Every config message by name, as users write it. */
export interface ConfigInputTypes {
  RunConfig: RunConfigInput
  ModelSpec: ModelSpecInput
  ModelShape: ModelShapeInput
  RewardFunction: RewardFunctionInput
  DataConfig: DataConfigInput
  OptimizerConfig: OptimizerConfigInput
  TrainingConfig: TrainingConfigInput
  GenerationConfig: GenerationConfigInput
  SftConfig: SftConfigInput
  RewardTrainingConfig: RewardTrainingConfigInput
  PpoConfig: PpoConfigInput
  DpoConfig: DpoConfigInput
  ExpertIterationConfig: ExpertIterationConfigInput
  JudgeConfig: JudgeConfigInput
  LabelConfig: LabelConfigInput
  FarmConfig: FarmConfigInput
  BestOfNConfig: BestOfNConfigInput
  WestOfNConfig: WestOfNConfigInput
  GroupConfig: GroupConfigInput
  LoggingConfig: LoggingConfigInput
  CheckpointConfig: CheckpointConfigInput
  DistributedConfig: DistributedConfigInput
  PipelineConfig: PipelineConfigInput
  Stage: StageInput
}

export type ConfigMessageName = keyof ConfigTypes
