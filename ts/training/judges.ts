// The judge a run's config names (judge.kind): the farm's pool or gold
// evaluator, a local model, an OpenAI-compatible endpoint, or a critique
// model; as a judge of pairs (judgeFor) or a rater of completions (raterFor).
import { ConfigError } from '../config/errors.js'
import type { JudgeConfig } from '../config/types.generated.js'
import { AnnotatorPool } from '../farm/farm.js'
import { GoldJudge, HttpJudge, HttpRater, LlmJudge, LlmRater, PoolJudge, type HttpJudgeOptions, type PairJudge } from '../farm/judges.js'
import { GoldRater, PoolRater, type RatingJudge } from '../farm/ratings.js'
import { CriticJudge } from './critic.js'
import { loadModelSpec } from './models.js'

type JudgeOptions = { seed: number; chatTemplate: boolean }

async function modelJudge(judge: JudgeConfig, options: JudgeOptions) {
  const m = await loadModelSpec(judge.model, 'judge.model', { seed: options.seed })
  return { ...m, chatTemplate: options.chatTemplate && m.tokenizer.hasChatTemplate }
}

async function criticFor(judge: JudgeConfig, options: JudgeOptions): Promise<CriticJudge> {
  const m = await modelJudge(judge, options)
  return new CriticJudge(m.model, m.tokenizer, { chatTemplate: m.chatTemplate, seed: judge.seed, retries: judge.retries })
}

function httpOptions(judge: JudgeConfig): HttpJudgeOptions {
  if (!judge.url || !/^https?:\/\//.test(judge.url)) {
    throw new ConfigError([{ path: 'judge.url', message: `must be the http(s) base URL of an OpenAI-compatible API for the http judge, e.g. http://localhost:8000/v1; got ${JSON.stringify(judge.url ?? null)}` }])
  }
  if (!judge.model_name) throw new ConfigError([{ path: 'judge.model_name', message: 'is required for the http judge (the `model` sent with each request)' }])
  return {
    url: judge.url,
    model: judge.model_name ?? '',
    apiKey: process.env[judge.api_key_env],
    seed: judge.seed,
    concurrency: judge.concurrency,
    timeoutMs: judge.timeout_ms,
    retries: judge.retries,
    maxReplyBytes: judge.max_reply_bytes,
    maxRetryAfterMs: judge.max_retry_after_ms,
  }
}

const KINDS = 'pool, gold, llm, http or critic'

export async function judgeFor(judge: JudgeConfig, options: { seed: number; chatTemplate: boolean }): Promise<PairJudge> {
  switch (judge.kind) {
    case 'gold':
      return new GoldJudge()
    case 'pool':
      return new PoolJudge(new AnnotatorPool({ p: judge.label_noise, seed: judge.seed }))
    case 'llm': {
      const m = await modelJudge(judge, options)
      return new LlmJudge(m.model, m.tokenizer, { seed: judge.seed, chatTemplate: m.chatTemplate })
    }
    case 'http':
      return new HttpJudge(httpOptions(judge))
    case 'critic':
      return criticFor(judge, options)
    default:
      throw new Error(`judge.kind must be ${KINDS}; got ${JSON.stringify(judge.kind)}`)
  }
}

/** The rater a run's config names, for label.mode rate. */
export async function raterFor(judge: JudgeConfig, options: JudgeOptions): Promise<RatingJudge> {
  switch (judge.kind) {
    case 'gold':
      return new GoldRater()
    case 'pool':
      return new PoolRater(new AnnotatorPool({ p: judge.label_noise, seed: judge.seed }))
    case 'llm': {
      const m = await modelJudge(judge, options)
      return new LlmRater(m.model, m.tokenizer, { chatTemplate: m.chatTemplate })
    }
    case 'http':
      return new HttpRater(httpOptions(judge))
    case 'critic':
      return criticFor(judge, options)
    default:
      throw new Error(`judge.kind must be ${KINDS}; got ${JSON.stringify(judge.kind)}`)
  }
}
