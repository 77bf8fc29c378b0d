// The rows trainers consume, read from JSON objects in the common shapes:
//   SFT:        {prompt, response | completion}, {messages: [..., assistant]},
//               {instruction, input?, output} (Alpaca), {text}
//   preference: {prompt, chosen, rejected, margin?} with strings, or chosen and
//               rejected as message lists sharing their history
//   prompts:    {prompt}, {messages}, {instruction, input?}, and math items:
//               {question, answer} (GSM8K), {problem, solution} (MATH)
// A parse error's message says what was expected; readJsonl adds file:line.
import type { ChatMessage } from '../tokenizers/chat-template.js'

/** A prompt: plain text, or a chat whose assistant turn is to come. */
export type Prompt = string | ChatMessage[]

export interface SftExample {
  prompt: Prompt
  response: string
}

export interface PreferenceExample {
  prompt: Prompt
  chosen: string
  rejected: string
  /** Reward-model margin for this pair (default 0). */
  margin?: number
}

export interface PromptExample {
  prompt: Prompt
  /** The rest of the row (reference outputs, metadata), kept for evaluation. */
  extra: Record<string, unknown>
  /** The row as read, with all its columns (what reward functions see). */
  row: Record<string, unknown>
}

function keysOf(value: unknown): string {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return JSON.stringify(value)?.slice(0, 60) ?? String(value)
  return `an object with keys ${JSON.stringify(Object.keys(value))}`
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function text(row: Record<string, unknown>, key: string): string {
  const v = row[key]
  if (typeof v !== 'string') throw new Error(`'${key}' must be a string; got ${JSON.stringify(v)?.slice(0, 60)}`)
  return v
}

/** How strict a row's text is read. */
export interface RowRules {
  /**
   * Refuse empty (or all-whitespace) prompts and responses and NUL characters.
   * Default true; off for text a model sampled (a byte-level model can sample
   * NUL and an empty response), as in the farm's pipelines.
   */
  checkText?: boolean
}

/** A response, prompt or reply: a string with something in it (an empty one teaches nothing and is a bad row). */
function nonEmpty(value: string, key: string, rules: RowRules): string {
  if (rules.checkText !== false && value.trim() === '') throw new Error(`'${key}' is empty${value === '' ? '' : ' (only whitespace)'}`)
  return value
}

function messages(value: unknown, key: string): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0) throw new Error(`'${key}' must be a non-empty list of {role, content} messages`)
  return value.map((m, i) => {
    if (!isObject(m) || typeof m.role !== 'string' || typeof m.content !== 'string') {
      throw new Error(`'${key}'[${i}] must be {role: string, content: string}; got ${JSON.stringify(m)?.slice(0, 80)}`)
    }
    return { role: m.role, content: m.content }
  })
}

function prompt(row: Record<string, unknown>, rules: RowRules, key = 'prompt'): Prompt {
  const v = row[key]
  if (typeof v === 'string') return nonEmpty(v, key, rules)
  if (!Array.isArray(v)) throw new Error(`'${key}' must be a string or a non-empty list of {role, content} messages; got ${keysOf(v)}`)
  return messages(v, key)
}

function alpacaPrompt(row: Record<string, unknown>, rules: RowRules): string {
  const instruction = nonEmpty(text(row, 'instruction'), 'instruction', rules)
  const input = row.input
  if (input !== undefined && input !== null && typeof input !== 'string') throw new Error(`'input' must be a string`)
  return input ? `${instruction}\n\n${input}` : instruction
}

/** The history before a chat's final assistant message, and that message. */
export function splitLastAssistant(chat: ChatMessage[], key: string, rules: RowRules = {}): { history: ChatMessage[]; reply: string } {
  const last = chat[chat.length - 1]
  if (last.role !== 'assistant') throw new Error(`the last message of '${key}' must be the assistant's; got role '${last.role}'`)
  if (chat.length < 2) throw new Error(`'${key}' needs a prompt message before the assistant's reply`)
  return { history: chat.slice(0, -1), reply: nonEmpty(last.content, `${key}[${chat.length - 1}].content`, rules) }
}

export function parseSftRow(value: unknown, rules: RowRules = {}): SftExample {
  if (!isObject(value)) throw new Error(`expected a JSON object; got ${keysOf(value)}`)
  if ('messages' in value) {
    const { history, reply } = splitLastAssistant(messages(value.messages, 'messages'), 'messages', rules)
    return { prompt: history, response: reply }
  }
  if ('prompt' in value && ('response' in value || 'completion' in value)) {
    const key = 'response' in value ? 'response' : 'completion'
    return { prompt: prompt(value, rules), response: nonEmpty(text(value, key), key, rules) }
  }
  if ('instruction' in value && 'output' in value) return { prompt: alpacaPrompt(value, rules), response: nonEmpty(text(value, 'output'), 'output', rules) }
  if ('text' in value) return { prompt: '', response: nonEmpty(text(value, 'text'), 'text', rules) }
  throw new Error(
    `expected {prompt, response}, {prompt, completion}, {messages}, {instruction, output} or {text}; got ${keysOf(value)}`,
  )
}

export function parsePreferenceRow(value: unknown, rules: RowRules = {}): PreferenceExample {
  if (!isObject(value)) throw new Error(`expected a JSON object; got ${keysOf(value)}`)
  if (!('chosen' in value) || !('rejected' in value)) {
    throw new Error(`expected {prompt, chosen, rejected} (strings, or chosen/rejected as message lists); got ${keysOf(value)}`)
  }
  let margin: number | undefined
  if (value.margin !== undefined) {
    if (typeof value.margin !== 'number' || !Number.isFinite(value.margin)) throw new Error(`'margin' must be a finite number`)
    margin = value.margin
  }
  if (Array.isArray(value.chosen) || Array.isArray(value.rejected)) {
    const chosen = splitLastAssistant(messages(value.chosen, 'chosen'), 'chosen', rules)
    const rejected = splitLastAssistant(messages(value.rejected, 'rejected'), 'rejected', rules)
    if (JSON.stringify(chosen.history) !== JSON.stringify(rejected.history)) {
      throw new Error(`'chosen' and 'rejected' must share the same messages before the final assistant reply`)
    }
    return distinctPair({ prompt: chosen.history, chosen: chosen.reply, rejected: rejected.reply, margin })
  }
  if (!('prompt' in value)) throw new Error(`'prompt' is required when chosen and rejected are strings`)
  return distinctPair({ prompt: prompt(value, rules), chosen: nonEmpty(text(value, 'chosen'), 'chosen', rules), rejected: nonEmpty(text(value, 'rejected'), 'rejected', rules), margin })
}

/** A pair whose two responses are the same text prefers nothing: a bad row. */
function distinctPair(pair: PreferenceExample): PreferenceExample {
  if (pair.chosen === pair.rejected) throw new Error(`'chosen' and 'rejected' are the same text: the pair prefers nothing`)
  return pair
}

export function parsePromptRow(value: unknown, rules: RowRules = {}): PromptExample {
  if (!isObject(value)) throw new Error(`expected a JSON object; got ${keysOf(value)}`)
  const extra: Record<string, unknown> = { ...value }
  let p: Prompt
  if ('prompt' in value) {
    p = prompt(value, rules)
    delete extra.prompt
  } else if ('messages' in value) {
    p = messages(value.messages, 'messages')
    delete extra.messages
  } else if ('instruction' in value) {
    p = alpacaPrompt(value, rules)
    delete extra.instruction
    delete extra.input
  } else if ('question' in value || 'problem' in value) {
    const key = 'question' in value ? 'question' : 'problem'
    p = text(value, key)
    delete extra[key]
  } else {
    throw new Error(`expected {prompt}, {messages}, {instruction, input?}, {question} (GSM8K) or {problem} (MATH); got ${keysOf(value)}`)
  }
  return { prompt: p, extra, row: value }
}
