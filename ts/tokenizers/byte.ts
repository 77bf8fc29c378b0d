// The farm's byte-level tokenizer (the special-token rule is in tokenizer.ts).
import { BYTE_CHAT_TEMPLATE, CHAT_TEMPLATE_OPTIONS, ChatTemplate, checkMessages, extraTemplateVariables, type ChatMessage, type ChatTemplateOptions } from './chat-template.js'
import { addSpecials, checkIds, checkText, DECODE_OPTIONS, ENCODE_OPTIONS, escapeRegExp, type DecodeOptions, type EncodeOptions, type Tokenizer } from './tokenizer.js'
import { booleanOption, checkKeys, describe } from '../util/options.js'


export interface ByteTokenizerOptions {
  /** More special tokens, by name (e.g. '<|tool|>'), given ids 259, 260, ... after pad, bos and eos. */
  specialTokens?: readonly string[]
  /** encode() with addSpecialTokens puts the BOS first. Default true. */
  addBos?: boolean
  /** encode() with addSpecialTokens puts the EOS last. Default false. */
  addEos?: boolean
  /** A Jinja chat template to use instead of BYTE_CHAT_TEMPLATE. */
  chatTemplate?: string
}

const BYTE_TOKENIZER_OPTIONS = ['specialTokens', 'addBos', 'addEos', 'chatTemplate'] as const

/**
 * The farm's byte-level tokenizer. Ids 0..255 are the bytes of the text's
 * UTF-8 encoding; then come the special tokens: 256 '<|pad|>', 257 '<|bos|>',
 * 258 '<|eos|>', and from 259 the extra ones given by name. vocabSize counts
 * them all.
 *
 * - Special-token names inside the text are encoded as those tokens.
 * - A JavaScript string with a lone surrogate is encoded as U+FFFD, as
 *   TextEncoder does; every other string round-trips exactly:
 *   decode(encode(s, { addSpecialTokens: false })) === s.
 * - decode never throws on bytes that are not valid UTF-8: each invalid
 *   sequence becomes U+FFFD (the WHATWG rule: one per maximal invalid subpart).
 *   Bytes on either side of a special token are decoded separately.
 * - idToToken gives the character for printable ASCII (0x20..0x7E), '<0xNN>'
 *   for every other byte, and the name of a special token; tokenToId accepts
 *   these (and '<0xNN>' for any byte).
 * - The chat template is BYTE_CHAT_TEMPLATE ("role: content" lines, EOS after
 *   each assistant turn, "assistant: " as generation prompt) unless one is given.
 */
export class ByteTokenizer implements Tokenizer {
  static readonly PAD = '<|pad|>'
  static readonly BOS = '<|bos|>'
  static readonly EOS = '<|eos|>'

  readonly vocabSize: number
  readonly padId = 256
  readonly bosId = 257
  readonly eosId = 258
  /** The special tokens in id order, from id 256. */
  readonly specialTokens: readonly string[]
  readonly addBos: boolean
  readonly addEos: boolean
  readonly chatTemplate: ChatTemplate
  readonly hasChatTemplate = true
  readonly #specialIds: ReadonlyMap<string, number>
  readonly #splitter: RegExp
  readonly #encoder = new TextEncoder()
  readonly #decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true })

  constructor(options: ByteTokenizerOptions = {}) {
    const where = 'ByteTokenizer'
    checkKeys(where, options, BYTE_TOKENIZER_OPTIONS)
    const extra = options.specialTokens ?? []
    if (!Array.isArray(extra)) throw new TypeError(`${where}: specialTokens must be an array of strings; got ${describe(extra)}`)
    const specials = [ByteTokenizer.PAD, ByteTokenizer.BOS, ByteTokenizer.EOS]
    extra.forEach((name: unknown, i) => {
      if (typeof name !== 'string' || name.length === 0) throw new TypeError(`${where}: specialTokens[${i}] must be a non-empty string; got ${describe(name)}`)
      if (specials.includes(name)) throw new Error(`${where}: specialTokens[${i}] = '${name}' is already a special token (${specials.join(', ')})`)
      specials.push(name)
    })
    this.specialTokens = specials
    this.vocabSize = 256 + specials.length
    this.#specialIds = new Map(specials.map((name, i) => [name, 256 + i]))
    // Longest names first, so that a name that contains another wins.
    const alternatives = [...specials].sort((a, b) => b.length - a.length).map(escapeRegExp)
    this.#splitter = new RegExp(alternatives.join('|'), 'gu')
    this.addBos = booleanOption(where, 'addBos', options.addBos, true)
    this.addEos = booleanOption(where, 'addEos', options.addEos, false)
    if (options.chatTemplate !== undefined && typeof options.chatTemplate !== 'string') {
      throw new TypeError(`${where}: chatTemplate must be a Jinja template string; got ${describe(options.chatTemplate)}`)
    }
    this.chatTemplate = new ChatTemplate(
      options.chatTemplate ?? BYTE_CHAT_TEMPLATE,
      options.chatTemplate === undefined ? 'ByteTokenizer (built-in chat template)' : 'ByteTokenizer (chatTemplate option)',
    )
  }

  /** Whether `id` is a special token. */
  isSpecial(id: number): boolean {
    return id >= 256 && id < this.vocabSize
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const where = 'ByteTokenizer.encode'
    checkKeys(where, options, ENCODE_OPTIONS)
    checkText(where, text)
    const add = booleanOption(where, 'addSpecialTokens', options.addSpecialTokens, true)
    const ids = this.#encodeText(text)
    if (!add) return ids
    return addSpecials(ids, this.addBos ? [this.bosId] : [], this.addEos ? [this.eosId] : [])
  }

  encodeBatch(texts: string[], options: EncodeOptions = {}): number[][] {
    const where = 'ByteTokenizer.encodeBatch'
    if (!Array.isArray(texts)) throw new TypeError(`${where}: texts must be an array of strings; got ${describe(texts)}`)
    texts.forEach((text, i) => checkText(where, text, `texts[${i}]`))
    return texts.map((text) => this.encode(text, options))
  }

  #encodeText(text: string): number[] {
    const ids: number[] = []
    const pushBytes = (s: string) => {
      if (s.length === 0) return
      for (const b of this.#encoder.encode(s)) ids.push(b)
    }
    let last = 0
    for (const match of text.matchAll(this.#splitter)) {
      pushBytes(text.slice(last, match.index))
      ids.push(this.#specialIds.get(match[0]) as number)
      last = match.index + match[0].length
    }
    pushBytes(text.slice(last))
    return ids
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const where = 'ByteTokenizer.decode'
    checkKeys(where, options, DECODE_OPTIONS)
    const skip = booleanOption(where, 'skipSpecialTokens', options.skipSpecialTokens, false)
    const list = checkIds(where, ids, this.vocabSize)
    const bytes = new Uint8Array(list.length)
    let n = 0
    let out = ''
    for (const id of list) {
      if (id < 256) {
        bytes[n++] = id
        continue
      }
      if (n > 0) {
        out += this.#decoder.decode(bytes.subarray(0, n))
        n = 0
      }
      if (!skip) out += this.specialTokens[id - 256]
    }
    if (n > 0) out += this.#decoder.decode(bytes.subarray(0, n))
    return out
  }

  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions & { tokenize: false }): string
  applyChatTemplate(messages: ChatMessage[], options?: ChatTemplateOptions & { tokenize?: true }): number[]
  applyChatTemplate(messages: ChatMessage[], options?: ChatTemplateOptions): string | number[]
  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions = {}): string | number[] {
    const where = 'ByteTokenizer.applyChatTemplate'
    checkKeys(where, options, CHAT_TEMPLATE_OPTIONS)
    checkMessages(where, messages)
    if (options.templateName !== undefined && options.templateName !== 'default') {
      throw new Error(`${where}: the ByteTokenizer has one chat template, 'default'; got templateName '${options.templateName}'`)
    }
    const addGenerationPrompt = booleanOption(where, 'addGenerationPrompt', options.addGenerationPrompt, false)
    const tokenize = booleanOption(where, 'tokenize', options.tokenize, true)
    const text = this.chatTemplate.render(messages, addGenerationPrompt, {
      bos_token: ByteTokenizer.BOS,
      eos_token: ByteTokenizer.EOS,
      pad_token: ByteTokenizer.PAD,
      additional_special_tokens: this.specialTokens.slice(3),
      ...extraTemplateVariables(where, options),
    })
    return tokenize ? this.encode(text, { addSpecialTokens: false }) : text
  }

  idToToken(id: number): string | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return undefined
    if (id >= 256) return this.specialTokens[id - 256]
    if (id >= 0x20 && id <= 0x7e) return String.fromCharCode(id)
    return `<0x${id.toString(16).toUpperCase().padStart(2, '0')}>`
  }

  tokenToId(token: string): number | undefined {
    if (typeof token !== 'string') return undefined
    const special = this.#specialIds.get(token)
    if (special !== undefined) return special
    if (token.length === 1) {
      const code = token.charCodeAt(0)
      return code >= 0x20 && code <= 0x7e ? code : undefined
    }
    const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(token)
    return byte ? parseInt(byte[1], 16) : undefined
  }
}
