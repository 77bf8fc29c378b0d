// Chat templates: Jinja templates (the format of Hugging Face's
// tokenizer_config.json) rendered with @huggingface/jinja, with the variables
// that transformers' apply_chat_template gives them: messages,
// add_generation_prompt, the special tokens (bos_token, eos_token, ...) and
// raise_exception (a global of @huggingface/jinja).
import type * as JinjaModule from '@huggingface/jinja' with { 'resolution-mode': 'import' }
import { describe } from '../util/options.js'

// The package is ESM-first but ships a CommonJS build, which `require` picks.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const jinja: typeof JinjaModule = require('@huggingface/jinja')

/** One turn of a conversation. Templates may read further fields (e.g. tool calls). */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | (string & {})
  content: string
  [field: string]: unknown
}

export interface ChatTemplateOptions {
  /** Append the header of an assistant turn, for generation. Default false. */
  addGenerationPrompt?: boolean
  /** Return token ids (true, the default, as in transformers) or the rendered string (false). */
  tokenize?: boolean
  /**
   * For a tokenizer_config.json whose chat_template is a list of named
   * templates: the one to use. Default 'default'.
   */
  templateName?: string
  /** Tool definitions (JSON schemas), as the template's `tools`, as transformers' apply_chat_template(tools=...). */
  tools?: readonly object[]
  /** Documents for retrieval-augmented templates, as the template's `documents`. */
  documents?: readonly object[]
  /**
   * Further variables the template reads, as transformers' **kwargs:
   * `{ enable_thinking: false }` (Qwen3), `{ date_string: ... }`. They may
   * replace the special tokens; `messages` and `add_generation_prompt` come
   * from the arguments.
   */
  variables?: Readonly<Record<string, unknown>>
}

export const CHAT_TEMPLATE_OPTIONS = ['addGenerationPrompt', 'tokenize', 'templateName', 'tools', 'documents', 'variables'] as const

/** The variables a template gets beyond the messages: `tools`, `documents` and `variables`, checked. */
export function extraTemplateVariables(where: string, options: ChatTemplateOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const name of ['tools', 'documents'] as const) {
    const list = options[name]
    if (list === undefined || list === null) continue
    if (!Array.isArray(list) || !list.every((x) => x !== null && typeof x === 'object')) throw new TypeError(`${where}: ${name} must be an array of objects; got ${describe(list)}`)
    out[name] = list
  }
  const variables = options.variables
  if (variables !== undefined) {
    if (variables === null || typeof variables !== 'object' || Array.isArray(variables)) throw new TypeError(`${where}: variables must be an object of template variables; got ${describe(variables)}`)
    for (const [name, value] of Object.entries(variables)) {
      if (name === 'messages') throw new TypeError(`${where}: variables.messages: the messages are the first argument`)
      if (name === 'add_generation_prompt') throw new TypeError(`${where}: variables.add_generation_prompt: use the addGenerationPrompt option`)
      if ((name === 'tools' || name === 'documents') && options[name] !== undefined) throw new TypeError(`${where}: ${name} is given twice (as an option and in variables)`)
      out[name] = value
    }
  }
  return out
}

/**
 * The chat template of the ByteTokenizer. A conversation renders as
 *
 *     <|bos|>system: {content}\n
 *     user: {content}\n
 *     assistant: {content}<|eos|>\n
 *
 * (each message is "{role}: {content}" and a newline; an assistant turn ends
 * with the EOS token before its newline), and the generation prompt is
 * "assistant: ". So the prompt rendered with addGenerationPrompt, followed by
 * the response and EOS, is exactly the conversation that contains that
 * response, up to the final newline: what the model learns to stop on is EOS.
 */
export const BYTE_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ message['role'] + ': ' + message['content'] }}" +
  "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"

/** Checks that `messages` is an array of { role: string, content: string }, naming the bad entry. */
export function checkMessages(where: string, messages: unknown): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages)) throw new TypeError(`${where}: messages must be an array of { role, content }; got ${describe(messages)}`)
  messages.forEach((m: unknown, i) => {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) {
      throw new TypeError(`${where}: messages[${i}] must be an object { role, content }; got ${describe(m)}`)
    }
    const { role, content } = m as Record<string, unknown>
    if (typeof role !== 'string') throw new TypeError(`${where}: messages[${i}].role must be a string; got ${describe(role)}`)
    if (typeof content !== 'string') throw new TypeError(`${where}: messages[${i}].content must be a string; got ${describe(content)}`)
  })
}

/**
 * A compiled chat template. `source` says where it came from, for errors (for
 * example "/models/x/tokenizer_config.json (chat_template)").
 */
export class ChatTemplate {
  readonly text: string
  readonly source: string
  #compiled: JinjaModule.Template | undefined

  constructor(text: string, source: string) {
    if (typeof text !== 'string') throw new TypeError(`${source}: a chat template must be a string; got ${describe(text)}`)
    this.text = text
    this.source = source
  }

  /** Parses the template on first use, so that a template nobody renders cannot stop a tokenizer from loading. */
  #template(): JinjaModule.Template {
    if (this.#compiled === undefined) {
      try {
        this.#compiled = new jinja.Template(this.text)
      } catch (err) {
        throw new Error(`${this.source}: the chat template does not parse: ${(err as Error).message}`)
      }
    }
    return this.#compiled
  }

  /**
   * Renders `messages`. `variables` holds the special tokens (bos_token,
   * eos_token, ...) and anything else the template reads.
   */
  render(messages: ChatMessage[], addGenerationPrompt: boolean, variables: Record<string, unknown>): string {
    const template = this.#template()
    try {
      // raise_exception(message) is a global of @huggingface/jinja: it throws an Error with the message.
      return template.render({ ...variables, messages, add_generation_prompt: addGenerationPrompt })
    } catch (err) {
      throw new Error(`${this.source}: rendering the chat template failed: ${(err as Error).message}`)
    }
  }
}
