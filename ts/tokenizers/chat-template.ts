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

/** Bounds on rendering one conversation: templates come from downloaded model folders, so nothing in one may run for ever or fill memory. */
export interface ChatTemplateLimits {
  /** Wall-clock time of one render. Default 5000 ms. */
  maxRenderMs?: number
  /** Characters of any value the template builds (its output included). Default 16 Mi. */
  maxChars?: number
  /** Items of one range(...). Default 1,000,000. */
  maxRange?: number
}

export const DEFAULT_CHAT_TEMPLATE_LIMITS: Required<ChatTemplateLimits> = { maxRenderMs: 5000, maxChars: 16 * 1024 * 1024, maxRange: 1_000_000 }

/** The budget of the render under way (renders are synchronous, so there is at most one). */
let budget: { limits: Required<ChatTemplateLimits>; deadline: number; steps: number } | undefined

class TemplateLimitError extends Error {}

type Evaluate = (this: JinjaModule.Interpreter, statement: unknown, environment: unknown) => { type: string; value: unknown }
type Node = { type: string; callee?: { type: string; value: string }; args?: unknown[] }

// @huggingface/jinja has no hooks: every node the interpreter evaluates goes
// through Interpreter.prototype.evaluate, so that is where the budget is
// checked (time every 256 nodes, the size of every string and list built),
// and range() is sized from its arguments before it builds its list.
const proto = jinja.Interpreter.prototype as unknown as { evaluate: Evaluate; evaluateArguments(args: unknown[], env: unknown): [{ value: unknown }[], Map<string, unknown>] }
const evaluate = proto.evaluate
proto.evaluate = function (this: JinjaModule.Interpreter, statement: unknown, environment: unknown) {
  const b = budget
  if (b === undefined) return evaluate.call(this, statement, environment)
  if (++b.steps % 256 === 0 && Date.now() > b.deadline) throw new TemplateLimitError(`rendering took over ${b.limits.maxRenderMs} ms (the limit on one render)`)
  const node = statement as Node | undefined
  if (node?.type === 'CallExpression' && node.callee?.type === 'Identifier' && node.callee.value === 'range') {
    const [args] = proto.evaluateArguments.call(this, node.args ?? [], environment)
    const [a, b2, c] = args.map((x) => Number(x.value))
    const [start, stop, step] = args.length === 1 ? [0, a, 1] : [a, b2, args.length > 2 ? c : 1]
    const items = step === 0 ? 0 : Math.ceil((stop - start) / step)
    if (!(items <= b.limits.maxRange)) throw new TemplateLimitError(`range() of ${items} items is over the limit of ${b.limits.maxRange}`)
  }
  const value = evaluate.call(this, statement, environment)
  const size = typeof value.value === 'string' || Array.isArray(value.value) ? (value.value as string | unknown[]).length : 0
  if (size > b.limits.maxChars) throw new TemplateLimitError(`the template built a value of ${size} ${typeof value.value === 'string' ? 'characters' : 'items'}, over the limit of ${b.limits.maxChars}`)
  return value
}

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

  readonly limits: Required<ChatTemplateLimits>

  constructor(text: string, source: string, limits: ChatTemplateLimits = {}) {
    if (typeof text !== 'string') throw new TypeError(`${source}: a chat template must be a string; got ${describe(text)}`)
    this.text = text
    this.source = source
    this.limits = { ...DEFAULT_CHAT_TEMPLATE_LIMITS, ...limits }
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
    budget = { limits: this.limits, deadline: Date.now() + this.limits.maxRenderMs, steps: 0 }
    let text: string
    try {
      // raise_exception(message) is a global of @huggingface/jinja: it throws an Error with the message.
      text = template.render({ ...variables, messages, add_generation_prompt: addGenerationPrompt })
    } catch (err) {
      const why = err instanceof TemplateLimitError ? `stopped: ${err.message}` : `failed: ${(err as Error)?.message ?? String(err)}`
      throw new Error(`${this.source}: rendering the chat template ${why}`)
    } finally {
      budget = undefined
    }
    return text
  }
}
