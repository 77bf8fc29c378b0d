// The judge a run's config names (judge.kind): the farm's pool or gold
// evaluator, a local model, or an OpenAI-compatible endpoint.
import { ConfigError } from '../config/errors.js'
import type { JudgeConfig } from '../config/types.generated.js'
import { AnnotatorPool } from '../farm/farm.js'
import { GoldJudge, HttpJudge, LlmJudge, PoolJudge, type PairJudge } from '../farm/judges.js'
import { loadModelSpec } from '../training/models.js'

export async function judgeFor(judge: JudgeConfig, options: { seed: number; chatTemplate: boolean }): Promise<PairJudge> {
  switch (judge.kind) {
    case 'gold':
      return new GoldJudge()
    case 'pool':
      return new PoolJudge(new AnnotatorPool({ p: judge.label_noise, seed: judge.seed }))
    case 'llm': {
      const m = await loadModelSpec(judge.model, 'judge.model', { seed: options.seed })
      return new LlmJudge(m.model, m.tokenizer, { seed: judge.seed, chatTemplate: options.chatTemplate && m.tokenizer.hasChatTemplate })
    }
    case 'http':
      if (!judge.url || !/^https?:\/\//.test(judge.url)) {
        throw new ConfigError([{ path: 'judge.url', message: `must be the http(s) base URL of an OpenAI-compatible API for the http judge, e.g. http://localhost:8000/v1; got ${JSON.stringify(judge.url ?? null)}` }])
      }
      if (!judge.model_name) throw new ConfigError([{ path: 'judge.model_name', message: 'is required for the http judge (the `model` sent with each request)' }])
      return new HttpJudge({
        url: judge.url,
        model: judge.model_name ?? '',
        apiKey: process.env[judge.api_key_env],
        seed: judge.seed,
        concurrency: judge.concurrency,
        timeoutMs: judge.timeout_ms,
        retries: judge.retries,
        maxReplyBytes: judge.max_reply_bytes,
        maxRetryAfterMs: judge.max_retry_after_ms,
      })
    default:
      throw new Error(`judge.kind must be pool, gold, llm or http; got ${JSON.stringify(judge.kind)}`)
  }
}
