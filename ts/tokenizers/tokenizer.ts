// The Tokenizer interface that the rest of rlfarm uses, and what its two
// kinds share: ByteTokenizer (byte.ts), the farm's, and HfTokenizer (hf.ts),
// which reads a Hugging Face tokenizer directory with @huggingface/tokenizers
// and renders its chat template (chat-template.ts) with @huggingface/jinja.
//
// Special tokens, the rule for both kinds:
// - encode(text) adds the tokenizer's prefix (BOS) and suffix (EOS, when it
//   has one) unless addSpecialTokens is false, but never doubles them: when
//   the text's own tokens already begin with the prefix (a rendered chat
//   template that contains {{ bos_token }}, say) the prefix is not added
//   again, and likewise for the suffix at the end. (transformers would double
//   the BOS there.)
// - Special-token strings inside the text ("<|eos|>", "<s>", "<|im_end|>")
//   are encoded as those tokens, as transformers does.
// - applyChatTemplate(..., { tokenize: true }) encodes the rendered template
//   with addSpecialTokens false, as transformers does: the template writes
//   the BOS itself when the model wants one.
// - decode(ids, { skipSpecialTokens: true }) drops the special tokens.
import type { ChatMessage, ChatTemplateOptions } from './chat-template.js'
import { describe } from '../util/options.js'

export interface EncodeOptions {
  /** Add the tokenizer's BOS (and EOS, for tokenizers that append one). Default true. */
  addSpecialTokens?: boolean
}

export interface DecodeOptions {
  /** Leave special tokens (BOS, EOS, pad, chat markers...) out of the text. Default false. */
  skipSpecialTokens?: boolean
}

/** What every tokenizer in rlfarm offers. */
export interface Tokenizer {
  /** Number of token ids, special tokens included: ids are in [0, vocabSize). */
  readonly vocabSize: number
  readonly bosId: number | undefined
  readonly eosId: number | undefined
  readonly padId: number | undefined
  /** Whether applyChatTemplate can render chats (a template was found or given). */
  readonly hasChatTemplate: boolean
  encode(text: string, options?: EncodeOptions): number[]
  encodeBatch(texts: string[], options?: EncodeOptions): number[][]
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string
  /** Renders a chat with the tokenizer's template; tokenize: false gives the string. */
  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions & { tokenize: false }): string
  applyChatTemplate(messages: ChatMessage[], options?: ChatTemplateOptions & { tokenize?: true }): number[]
  applyChatTemplate(messages: ChatMessage[], options?: ChatTemplateOptions): string | number[]
  idToToken(id: number): string | undefined
  tokenToId(token: string): number | undefined
}

export const ENCODE_OPTIONS = ['addSpecialTokens'] as const
export const DECODE_OPTIONS = ['skipSpecialTokens'] as const

export function checkText(where: string, text: unknown, name = 'text'): asserts text is string {
  if (typeof text !== 'string') throw new TypeError(`${where}: ${name} must be a string; got ${describe(text)}`)
}

/** The ids as plain numbers, each an integer in [0, vocabSize). */
export function checkIds(where: string, ids: ArrayLike<number>, vocabSize: number): number[] {
  if (ids === null || typeof ids !== 'object' || typeof (ids as ArrayLike<number>).length !== 'number') {
    throw new TypeError(`${where}: ids must be an array or typed array of token ids; got ${describe(ids)}`)
  }
  const out = new Array<number>(ids.length)
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]
    if (typeof id !== 'number' || !Number.isInteger(id)) throw new TypeError(`${where}: ids[${i}] must be an integer token id; got ${describe(id)}`)
    if (id < 0 || id >= vocabSize) throw new RangeError(`${where}: ids[${i}] = ${id} is outside [0, ${vocabSize})`)
    out[i] = id
  }
  return out
}

export function startsWith(ids: readonly number[], prefix: readonly number[]): boolean {
  if (prefix.length === 0 || ids.length < prefix.length) return false
  for (let i = 0; i < prefix.length; i++) if (ids[i] !== prefix[i]) return false
  return true
}

export function endsWith(ids: readonly number[], suffix: readonly number[]): boolean {
  if (suffix.length === 0 || ids.length < suffix.length) return false
  const offset = ids.length - suffix.length
  for (let i = 0; i < suffix.length; i++) if (ids[offset + i] !== suffix[i]) return false
  return true
}

/** prefix + ids + suffix, leaving out the prefix (suffix) when ids already start (end) with it. */
export function addSpecials(ids: number[], prefix: readonly number[], suffix: readonly number[]): number[] {
  const head = prefix.length > 0 && !startsWith(ids, prefix) ? prefix : []
  const tail = suffix.length > 0 && !endsWith(ids, suffix) ? suffix : []
  if (head.length === 0 && tail.length === 0) return ids
  return [...head, ...ids, ...tail]
}

export function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

