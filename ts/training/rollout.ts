// Sampling responses to a batch of prompts (the rollout of on-policy
// trainers, best-of-n, expert iteration, eval), and their log-probs.
import type { GenerationConfig } from '../config/types.generated.js'
import { collatePrompts, type PromptBatch } from '../data/batch.js'
import type { SequenceEncoder } from '../data/encode.js'
import type { Prompt } from '../data/examples.js'
import type { Model } from '../model/model.js'
import type { Tensor } from '../tensor.js'
import type { DataParallel } from '../distributed/data-parallel.js'
import { padIdOf } from './models.js'

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
  } else if (maxNewTokens > left) {
    // A trainer's batch: name the config fields, not generate's option; a cut would change what the run trains on.
    const cut = encoder.maxPromptLength
    throw new Error(
      `generation.max_new_tokens (${maxNewTokens}) does not fit the policy's context: prompts of ${batch.width} tokens leave ${Math.max(0, left)} of its ${policy.config.maxPositions} positions; ` +
        `lower generation.max_new_tokens or data.max_prompt_length (prompts are cut to ${cut} tokens${cut + maxNewTokens > policy.config.maxPositions ? `; at most ${Math.max(0, policy.config.maxPositions - cut)} new tokens fit after the longest` : ''})`,
    )
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

/** The text a judge or the farm reads for a prompt: the prompt itself, or a chat's last user message. */
export function promptText(p: Prompt): string {
  if (typeof p === 'string') return p
  for (let i = p.length - 1; i >= 0; i--) if (p[i].role === 'user') return p[i].content
  return p.map((m) => m.content).join('\n')
}

/** Log-probs of sequences under a model without keeping activations, on the model's device. */
export async function sequenceLogprobs(model: Model, tokens: Tensor, attentionMask: Tensor, temperature = 1): Promise<Tensor> {
  return (await model.forward(tokens, { attentionMask, temperature, onDevice: true })).logp!
}
