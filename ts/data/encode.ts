// From rows to token ids: prompts rendered with the chat template when the
// data or the tokenizer calls for one, responses ended with the end-of-turn
// tokens the template writes (or EOS), prompts cut from the left and whole
// sequences from the right to the configured lengths.
import type { Tokenizer } from '../tokenizers/index.js'
import type { Prompt } from './examples.js'

export interface EncoderOptions {
  tokenizer: Tokenizer
  /** Longest sequence (prompt + response). */
  maxLength: number
  /** Longest prompt; longer prompts lose their beginning. */
  maxPromptLength: number
  /** Render prompts with the tokenizer's chat template. */
  chatTemplate: boolean
}

export interface EncodedPair {
  ids: number[]
  /** Tokens of `ids` that belong to the prompt. */
  promptLength: number
  /**
   * Which tokens the loss predicts (1) — when given, it replaces the rule
   * "every token after the prompt" (packed sequences, whole-text loss).
   */
  targets?: Uint8Array
}

export class SequenceEncoder {
  readonly tokenizer: Tokenizer
  readonly maxLength: number
  readonly maxPromptLength: number
  readonly #template: boolean

  constructor(o: EncoderOptions) {
    this.tokenizer = o.tokenizer
    this.maxLength = o.maxLength
    this.maxPromptLength = Math.min(o.maxPromptLength, o.maxLength - 1)
    this.#template = o.chatTemplate && o.tokenizer.hasChatTemplate
  }

  /** The prompt as the model sees it before its reply (with the generation prompt of a template). */
  prompt(prompt: Prompt): number[] {
    let ids: number[]
    if (this.#template) {
      const chat = typeof prompt === 'string' ? [{ role: 'user', content: prompt }] : prompt
      ids = this.tokenizer.applyChatTemplate(chat, { addGenerationPrompt: true })
    } else if (typeof prompt === 'string') {
      ids = this.tokenizer.encode(prompt)
    } else if (prompt.length === 1 && prompt[0].role === 'user') {
      // One user turn without a template is its text (UltraFeedback rows the farm rated, read with a byte tokenizer).
      ids = this.tokenizer.encode(prompt[0].content)
    } else {
      throw new Error(`a chat prompt needs a tokenizer with a chat template (or set data.chat_template to true)`)
    }
    return ids.length > this.maxPromptLength ? ids.slice(ids.length - this.maxPromptLength) : ids
  }

  /** Prompt and response as one sequence, ending the way the model should end a reply. */
  pair(prompt: Prompt, response: string): EncodedPair {
    const promptIds = this.prompt(prompt)
    let responseIds: number[]
    const whole = this.#template ? this.#templatedReply(prompt, response) : undefined
    if (whole) {
      responseIds = whole
    } else {
      responseIds = this.tokenizer.encode(response, { addSpecialTokens: false })
      if (this.tokenizer.eosId !== undefined) responseIds.push(this.tokenizer.eosId)
    }
    const ids = [...promptIds, ...responseIds].slice(0, this.maxLength)
    return { ids, promptLength: promptIds.length }
  }

  /**
   * The reply's tokens as the template writes them (with its end-of-turn
   * marker), when the rendered prompt is a prefix of the rendered chat; else
   * undefined and the caller appends EOS itself.
   */
  #templatedReply(prompt: Prompt, response: string): number[] | undefined {
    const chat = typeof prompt === 'string' ? [{ role: 'user', content: prompt }] : prompt
    const head = this.tokenizer.applyChatTemplate(chat, { addGenerationPrompt: true })
    const full = this.tokenizer.applyChatTemplate([...chat, { role: 'assistant', content: response }])
    if (full.length <= head.length || head.some((id, i) => full[i] !== id)) return undefined
    return full.slice(head.length)
  }

  /** A generated response as text: up to its first stop token, special tokens left out. */
  decodeResponse(ids: ArrayLike<number>, length: number): string {
    return this.tokenizer.decode(Array.from(ids).slice(0, length), { skipSpecialTokens: true })
  }
}
