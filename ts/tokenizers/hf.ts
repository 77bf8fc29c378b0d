// HfTokenizer: a Hugging Face tokenizer directory (tokenizer.json,
// tokenizer_config.json, special_tokens_map.json, chat_template.jinja), read
// with @huggingface/tokenizers (corrected by hf-compat.ts) and rendering its
// chat template with @huggingface/jinja. The special-token rule is in tokenizer.ts.
import { stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type * as HfTokenizersModule from '@huggingface/tokenizers' with { 'resolution-mode': 'import' }
import { CHAT_TEMPLATE_OPTIONS, ChatTemplate, checkMessages, extraTemplateVariables, type ChatMessage, type ChatTemplateOptions } from './chat-template.js'
import { alignWithRust, checkComponents, hfTokenizers, isObject, MODEL_TYPES, type Json } from './hf-compat.js'
import { addSpecials, checkIds, checkText, DECODE_OPTIONS, ENCODE_OPTIONS, escapeRegExp, type DecodeOptions, type EncodeOptions, type Tokenizer } from './tokenizer.js'
import { MODEL_SIZE_LIMITS } from '../model/config.js'
import { describeFileType, readRegularFileSync, resolveInside } from '../util/fs.js'
import { readJsonFile } from '../util/json.js'
import { booleanOption, checkKeys, describe } from '../util/options.js'

export interface HfTokenizerOptions {
  /** A Jinja chat template that replaces (or supplies) the directory's default one. */
  chatTemplate?: string
}

export interface HfTokenizerJsonOptions extends HfTokenizerOptions {
  /** The parsed tokenizer_config.json, if any. */
  tokenizerConfig?: unknown
  /** The parsed special_tokens_map.json, if any. */
  specialTokensMap?: unknown
  /** Where the objects came from, for error messages (a directory). Default '(in memory)'. */
  source?: string
}

const SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'pad_token'] as const
type SpecialTokenKey = (typeof SPECIAL_TOKEN_KEYS)[number]

interface Files {
  dir: string
  tokenizer: string
  config: string
  specialTokensMap: string
  chatTemplate: string
}

/** The files of a tokenizer directory, each of which must not lead out of it (a link elsewhere). */
function filesOf(dir: string): Files {
  const inside = (name: string) => resolveInside(dir, name, `HfTokenizer.load: ${dir}: tokenizer file`)
  return {
    dir,
    tokenizer: inside('tokenizer.json'),
    config: inside('tokenizer_config.json'),
    specialTokensMap: inside('special_tokens_map.json'),
    chatTemplate: inside('chat_template.jinja'),
  }
}

/**
 * Whether a tokenizer file is there: false when absent; an error when something
 * else is there (a directory, a FIFO), which would otherwise be read as absent
 * and the tokenizer loaded without it.
 */
async function isFile(where: string, path: string): Promise<boolean> {
  let st
  try {
    st = await stat(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return false
    throw new Error(`${where}: cannot read ${path}: ${(err as Error).message}`)
  }
  if (!st.isFile()) throw new Error(`${where}: cannot read ${path}: it is ${describeFileType(st)}, not a regular file`)
  return true
}

async function readJson(where: string, file: string): Promise<unknown> {
  try {
    return await readJsonFile(file)
  } catch (err) {
    const message = `${where}: ${(err as Error).message}`
    throw err instanceof SyntaxError ? new SyntaxError(message) : new Error(message)
  }
}

/**
 * A Hugging Face tokenizer, from a directory as transformers writes it:
 *
 * - tokenizer.json (required): the tokenizer itself. Models BPE (byte-level
 *   like GPT-2, Llama-3, Qwen; SentencePiece-style with byte fallback and the
 *   Metaspace pre-tokenizer like Llama-2, Mistral, SmolLM), WordPiece and
 *   Unigram, run by @huggingface/tokenizers.
 * - tokenizer_config.json (optional): bos_token, eos_token, pad_token,
 *   unk_token (strings or AddedToken objects), add_bos_token / add_eos_token,
 *   chat_template (a string, or a list of { name, template }),
 *   clean_up_tokenization_spaces (default false, as in transformers).
 * - special_tokens_map.json (optional): read as transformers does, i.e. only
 *   when tokenizer_config.json has no added_tokens_decoder (an older
 *   checkpoint), and then its tokens override the config's.
 * - chat_template.jinja (optional): the default chat template, before the
 *   one in tokenizer_config.json, as in recent transformers.
 *
 * BOS and EOS: what encode() adds comes from the post_processor of
 * tokenizer.json (the special tokens before and after $A in a
 * TemplateProcessing, [CLS]/[SEP] for Bert and Roberta processing, nothing
 * for ByteLevel). When tokenizer_config.json sets add_bos_token or
 * add_eos_token, those flags decide instead, as transformers'
 * LlamaTokenizerFast does: the prefix is [BOS] or nothing, the suffix [EOS] or
 * nothing, and a flag that is not set keeps what the post_processor does.
 * (@huggingface/tokenizers itself never reads these flags: it only follows
 * the post_processor.) See also the rule at the top of this file: encode never
 * doubles a BOS that the text already starts with.
 */
export class HfTokenizer implements Tokenizer {
  /** The directory it was loaded from, or '(in memory)'. */
  readonly source: string
  readonly vocabSize: number
  readonly bosId: number | undefined
  readonly eosId: number | undefined
  readonly padId: number | undefined
  readonly unkId: number | undefined
  readonly bosToken: string | undefined
  readonly eosToken: string | undefined
  readonly padToken: string | undefined
  readonly unkToken: string | undefined
  /** The ids encode() puts before and after the text's tokens when addSpecialTokens is true. */
  readonly prefixIds: readonly number[]
  readonly suffixIds: readonly number[]
  /** Ids of the special tokens: added tokens marked special and the config's bos/eos/unk/pad/additional ones. */
  readonly specialIds: ReadonlySet<number>
  /** The names of the chat templates ('default' for a single one). */
  readonly chatTemplateNames: readonly string[]
  get hasChatTemplate(): boolean {
    return this.chatTemplateNames.length > 0
  }
  readonly #hf: HfTokenizersModule.Tokenizer
  readonly #files: Files
  readonly #templates: ReadonlyMap<string, ChatTemplate>
  readonly #templateVariables: Record<string, unknown>
  readonly #cleanUpSpaces: boolean

  /**
   * Reads a tokenizer directory (see the class comment). Errors name the
   * directory and the file: a missing tokenizer.json, malformed JSON (with the
   * line and column), an unsupported model or component type, a special token
   * that is not in the vocabulary.
   */
  static async load(dir: string, options: HfTokenizerOptions = {}): Promise<HfTokenizer> {
    const where = 'HfTokenizer.load'
    checkKeys(where, options, ['chatTemplate'])
    if (typeof dir !== 'string' || dir === '') throw new TypeError(`${where}: dir must be the path of a tokenizer directory; got ${describe(dir)}`)
    const root = resolve(dir)
    let isDir: boolean
    try {
      isDir = (await stat(root)).isDirectory()
    } catch {
      throw new Error(`${where}: the directory ${root} does not exist`)
    }
    if (!isDir) throw new Error(`${where}: ${root} is not a directory; give the directory that holds tokenizer.json`)
    const files = filesOf(root)
    if (!(await isFile(where, files.tokenizer))) {
      throw new Error(
        `${where}: ${root} has no tokenizer.json (looked for ${files.tokenizer}); rlfarm reads the "fast" tokenizer file that transformers writes with save_pretrained (tokenizer.model, vocab.json or merges.txt alone are not enough)`,
      )
    }
    const tokenizerJson = await readJson(where, files.tokenizer)
    const config = (await isFile(where, files.config)) ? await readJson(where, files.config) : undefined
    const specialTokensMap = (await isFile(where, files.specialTokensMap)) ? await readJson(where, files.specialTokensMap) : undefined
    let templateFile: string | undefined
    if (await isFile(where, files.chatTemplate)) {
      try {
        templateFile = readRegularFileSync(files.chatTemplate, 'utf8')
      } catch (err) {
        throw new Error(`${where}: ${(err as Error).message}`)
      }
    }
    return new HfTokenizer(files, tokenizerJson, config, specialTokensMap, templateFile, options.chatTemplate)
  }

  /** A tokenizer from the parsed contents of tokenizer.json (and, optionally, the other files). */
  static fromJSON(tokenizerJson: unknown, options: HfTokenizerJsonOptions = {}): HfTokenizer {
    checkKeys('HfTokenizer.fromJSON', options, ['tokenizerConfig', 'specialTokensMap', 'source', 'chatTemplate'])
    const dir = options.source ?? '(in memory)'
    const files: Files = {
      dir,
      tokenizer: options.source ? join(dir, 'tokenizer.json') : 'tokenizer.json',
      config: options.source ? join(dir, 'tokenizer_config.json') : 'tokenizer_config.json',
      specialTokensMap: options.source ? join(dir, 'special_tokens_map.json') : 'special_tokens_map.json',
      chatTemplate: options.source ? join(dir, 'chat_template.jinja') : 'chat_template.jinja',
    }
    return new HfTokenizer(files, tokenizerJson, options.tokenizerConfig, options.specialTokensMap, undefined, options.chatTemplate)
  }

  private constructor(
    files: Files,
    tokenizerJson: unknown,
    configJson: unknown,
    specialTokensMap: unknown,
    templateFile: string | undefined,
    templateOption: string | undefined,
  ) {
    this.#files = files
    this.source = files.dir
    const where = 'HfTokenizer'
    if (!isObject(tokenizerJson)) throw new Error(`${where}: ${files.tokenizer} must hold a JSON object; got ${describe(tokenizerJson)}`)
    if (configJson !== undefined && !isObject(configJson)) throw new Error(`${where}: ${files.config} must hold a JSON object; got ${describe(configJson)}`)
    if (specialTokensMap !== undefined && !isObject(specialTokensMap)) {
      throw new Error(`${where}: ${files.specialTokensMap} must hold a JSON object; got ${describe(specialTokensMap)}`)
    }
    const json = structuredClone(tokenizerJson)
    const config: Json = configJson ?? {}

    // The model.
    const model = json.model
    if (!isObject(model)) throw new Error(`${where}: ${files.tokenizer} has no "model" object`)
    if (typeof model.type !== 'string') throw new Error(`${where}: ${files.tokenizer}: model.type is missing (expected one of ${MODEL_TYPES.join(', ')})`)
    if (!(MODEL_TYPES as readonly string[]).includes(model.type)) {
      throw new Error(`${where}: ${files.tokenizer}: unsupported model type '${model.type}' (model.type); rlfarm supports ${MODEL_TYPES.join(', ')}`)
    }
    let maxId = -1
    const checkIdBound = (at: string, id: number) => {
      if (id >= MODEL_SIZE_LIMITS.vocab) throw new Error(`${where}: ${files.tokenizer}: ${at} = ${id} is over the largest token id rlfarm accepts (${MODEL_SIZE_LIMITS.vocab - 1})`)
    }
    if (model.type === 'Unigram') {
      if (!Array.isArray(model.vocab)) throw new Error(`${where}: ${files.tokenizer}: model.vocab of a Unigram model must be an array of [piece, score]`)
      if (model.byte_fallback === true) throw new Error(`${where}: ${files.tokenizer}: a Unigram model with byte_fallback is not supported by @huggingface/tokenizers`)
      maxId = model.vocab.length - 1
    } else {
      if (!isObject(model.vocab)) throw new Error(`${where}: ${files.tokenizer}: model.vocab of a ${model.type} model must be an object { token: id }`)
      // Two tokens with one id would decode one as the other: encode and decode would no longer agree.
      const tokenOf = new Map<number, string>()
      for (const [token, id] of Object.entries(model.vocab)) {
        if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new Error(`${where}: ${files.tokenizer}: model.vocab['${token}'] must be a non-negative integer id; got ${describe(id)}`)
        checkIdBound(`model.vocab['${token}']`, id)
        const other = tokenOf.get(id)
        if (other !== undefined) throw new Error(`${where}: ${files.tokenizer}: model.vocab['${other}'] and model.vocab['${token}'] have the same id ${id}; each token needs its own`)
        tokenOf.set(id, token)
        if (id > maxId) maxId = id
      }
    }
    if (model.type === 'BPE') {
      if (!Array.isArray(model.merges)) throw new Error(`${where}: ${files.tokenizer}: model.merges of a BPE model must be an array`)
      // As the Rust library builds a BPE model: each merge is "a b" or [a, b], and a, b and a+b are tokens.
      const vocab = model.vocab as Record<string, unknown>
      model.merges.forEach((merge: unknown, i: number) => {
        const pair = typeof merge === 'string' ? merge.split(' ') : merge
        if (!Array.isArray(pair) || pair.length !== 2 || !pair.every((p) => typeof p === 'string')) {
          throw new Error(`${where}: ${files.tokenizer}: model.merges[${i}] must be a string 'a b' or a pair ['a', 'b']; got ${JSON.stringify(merge)}`)
        }
        for (const token of [pair[0], pair[1], pair[0] + pair[1]]) {
          if (!Object.hasOwn(vocab, token)) throw new Error(`${where}: ${files.tokenizer}: model.merges[${i}] (${JSON.stringify(merge)}) uses '${token}', which is not in model.vocab`)
        }
      })
      if (typeof model.continuing_subword_prefix === 'string' && model.continuing_subword_prefix !== '') {
        throw new Error(`${where}: ${files.tokenizer}: a BPE model with continuing_subword_prefix '${model.continuing_subword_prefix}' is not supported by @huggingface/tokenizers`)
      }
    }

    // The added tokens.
    if (json.added_tokens === undefined || json.added_tokens === null) json.added_tokens = []
    if (!Array.isArray(json.added_tokens)) throw new Error(`${where}: ${files.tokenizer}: added_tokens must be an array`)
    const special = new Set<number>()
    json.added_tokens.forEach((t: unknown, i: number) => {
      if (!isObject(t) || typeof t.content !== 'string' || typeof t.id !== 'number' || !Number.isInteger(t.id) || t.id < 0) {
        throw new Error(`${where}: ${files.tokenizer}: added_tokens[${i}] must be { id: integer, content: string, ... }; got ${JSON.stringify(t)}`)
      }
      checkIdBound(`added_tokens[${i}].id`, t.id)
      if (t.id > maxId) maxId = t.id
      if (t.special === true) special.add(t.id)
    })
    this.vocabSize = maxId + 1

    const { splitMetaspace } = checkComponents(json, files.tokenizer)

    // Special tokens from the config files, as transformers reads them.
    const useMap = specialTokensMap !== undefined && config.added_tokens_decoder === undefined
    const tokenField = (key: SpecialTokenKey): { value: string | undefined; file: string } => {
      const fromMap = useMap && (specialTokensMap as Json)[key] !== undefined && (specialTokensMap as Json)[key] !== null
      const file = fromMap ? files.specialTokensMap : files.config
      const raw = fromMap ? (specialTokensMap as Json)[key] : config[key]
      if (raw === undefined || raw === null) return { value: undefined, file }
      if (typeof raw === 'string') return { value: raw, file }
      if (isObject(raw) && typeof raw.content === 'string') return { value: raw.content, file }
      throw new Error(`${where}: ${file}: ${key} must be a string, an AddedToken object { content: ... } or null; got ${JSON.stringify(raw)}`)
    }

    // The library, with the settings it reads from the config given explicitly.
    const additional: string[] = []
    const extraFromMap = useMap && (specialTokensMap as Json).additional_special_tokens !== undefined
    const extraFile = extraFromMap ? files.specialTokensMap : files.config
    const extra = extraFromMap ? (specialTokensMap as Json).additional_special_tokens : config.additional_special_tokens
    if (extra !== undefined && extra !== null) {
      if (!Array.isArray(extra)) throw new Error(`${where}: ${extraFile}: additional_special_tokens must be an array; got ${describe(extra)}`)
      extra.forEach((t: unknown, i) => {
        const content = typeof t === 'string' ? t : isObject(t) && typeof t.content === 'string' ? t.content : undefined
        if (content === undefined) throw new Error(`${where}: ${extraFile}: additional_special_tokens[${i}] must be a string or an AddedToken object; got ${JSON.stringify(t)}`)
        additional.push(content)
      })
    }
    const tokens = {} as Record<SpecialTokenKey, string | undefined>
    for (const key of SPECIAL_TOKEN_KEYS) tokens[key] = tokenField(key).value
    const libConfig = {
      additional_special_tokens: [...additional, ...SPECIAL_TOKEN_KEYS.map((k) => tokens[k]).filter((t): t is string => t !== undefined)],
      eos_token: tokens.eos_token,
      clean_up_tokenization_spaces: false,
    }
    try {
      this.#hf = new hfTokenizers.Tokenizer(json, libConfig)
    } catch (err) {
      throw new Error(`${where}: ${files.tokenizer}: @huggingface/tokenizers cannot build this tokenizer: ${(err as Error).message}`)
    }
    alignWithRust(this.#hf)
    if (splitMetaspace !== undefined) {
      const inner = this.#hf.pre_tokenizer as unknown as (text: string, options: unknown) => string[]
      const before = new RegExp(`(?=${escapeRegExp(splitMetaspace)})`, 'u')
      const split = (text: string, options: unknown) => inner(text, options).flatMap((piece) => piece.split(before).filter((p) => p.length > 0))
      this.#hf.pre_tokenizer = split as unknown as HfTokenizersModule.Tokenizer["pre_tokenizer"]
    }

    const idOf = (key: SpecialTokenKey): number | undefined => {
      const { value, file } = tokenField(key)
      if (value === undefined) return undefined
      const id = this.#hf.token_to_id(value)
      if (id === undefined) throw new Error(`${where}: ${file}: ${key} '${value}' is not in the vocabulary of ${files.tokenizer}`)
      return id
    }
    this.bosToken = tokens.bos_token
    this.eosToken = tokens.eos_token
    this.padToken = tokens.pad_token
    this.unkToken = tokens.unk_token
    this.bosId = idOf('bos_token')
    this.eosId = idOf('eos_token')
    this.padId = idOf('pad_token')
    this.unkId = idOf('unk_token')
    for (const id of [this.bosId, this.eosId, this.padId, this.unkId]) if (id !== undefined) special.add(id)
    additional.forEach((content, i) => {
      const id = this.#hf.token_to_id(content)
      if (id === undefined) throw new Error(`${where}: ${extraFile}: additional_special_tokens[${i}] '${content}' is not in the vocabulary of ${files.tokenizer}`)
      special.add(id)
    })
    this.specialIds = special

    // What encode() adds.
    let { prefix, suffix } = this.#postProcessorSpecials(json.post_processor, 'post_processor')
    const flag = (key: 'add_bos_token' | 'add_eos_token'): boolean | undefined => {
      const v = config[key]
      if (v === undefined || v === null) return undefined
      if (typeof v !== 'boolean') throw new Error(`${where}: ${files.config}: ${key} must be true or false; got ${describe(v)}`)
      return v
    }
    const addBos = flag('add_bos_token')
    const addEos = flag('add_eos_token')
    if (addBos !== undefined || addEos !== undefined) {
      const bosOn = addBos ?? (prefix.length === 1 && prefix[0] === this.bosId)
      const eosOn = addEos ?? (suffix.length === 1 && suffix[0] === this.eosId)
      if (bosOn && this.bosId === undefined) throw new Error(`${where}: ${files.config}: add_bos_token is true but there is no bos_token`)
      if (eosOn && this.eosId === undefined) throw new Error(`${where}: ${files.config}: add_eos_token is true but there is no eos_token`)
      prefix = bosOn ? [this.bosId as number] : []
      suffix = eosOn ? [this.eosId as number] : []
    }
    this.prefixIds = prefix
    this.suffixIds = suffix

    const cleanUp = config.clean_up_tokenization_spaces
    if (cleanUp !== undefined && cleanUp !== null && typeof cleanUp !== 'boolean') {
      throw new Error(`${where}: ${files.config}: clean_up_tokenization_spaces must be true or false; got ${describe(cleanUp)}`)
    }
    this.#cleanUpSpaces = cleanUp === true

    // Chat templates.
    const templates = new Map<string, ChatTemplate>()
    const fromConfig = config.chat_template
    if (typeof fromConfig === 'string') {
      templates.set('default', new ChatTemplate(fromConfig, `${files.config} (chat_template)`))
    } else if (Array.isArray(fromConfig)) {
      fromConfig.forEach((entry: unknown, i) => {
        if (!isObject(entry) || typeof entry.name !== 'string' || typeof entry.template !== 'string') {
          throw new Error(`${where}: ${files.config}: chat_template[${i}] must be { name: string, template: string }; got ${describe(entry)}`)
        }
        templates.set(entry.name, new ChatTemplate(entry.template, `${files.config} (chat_template '${entry.name}')`))
      })
    } else if (fromConfig !== undefined && fromConfig !== null) {
      throw new Error(`${where}: ${files.config}: chat_template must be a string or a list of { name, template }; got ${describe(fromConfig)}`)
    }
    if (templateFile !== undefined) templates.set('default', new ChatTemplate(templateFile, files.chatTemplate))
    if (templateOption !== undefined) {
      if (typeof templateOption !== 'string') throw new TypeError(`${where}: the chatTemplate option must be a Jinja template string; got ${describe(templateOption)}`)
      templates.set('default', new ChatTemplate(templateOption, `${files.dir} (chatTemplate option)`))
    }
    this.#templates = templates
    this.chatTemplateNames = [...templates.keys()]
    const variables: Record<string, unknown> = {}
    for (const key of SPECIAL_TOKEN_KEYS) if (tokens[key] !== undefined) variables[key] = tokens[key]
    variables.additional_special_tokens = additional
    this.#templateVariables = variables
  }

  /** The ids that a post_processor puts before and after the sequence. */
  #postProcessorSpecials(node: unknown, path: string): { prefix: number[]; suffix: number[] } {
    const file = this.#files.tokenizer
    if (!isObject(node)) return { prefix: [], suffix: [] }
    const lookup = (token: unknown, at: string): number => {
      const id = typeof token === 'string' ? this.#hf.token_to_id(token) : undefined
      if (id === undefined) throw new Error(`HfTokenizer: ${file}: ${at} names the token ${JSON.stringify(token)}, which is not in the vocabulary`)
      return id
    }
    switch (node.type) {
      case 'TemplateProcessing': {
        const single = node.single
        if (!Array.isArray(single)) throw new Error(`HfTokenizer: ${file}: ${path}.single must be an array`)
        const prefix: number[] = []
        const suffix: number[] = []
        let seenSequence = false
        single.forEach((item: unknown, i) => {
          if (isObject(item) && isObject(item.Sequence)) {
            seenSequence = true
          } else if (isObject(item) && isObject(item.SpecialToken)) {
            // The library adds the token named by SpecialToken.id, looked up in the vocabulary.
            const id = lookup(item.SpecialToken.id, `${path}.single[${i}]`)
            ;(seenSequence ? suffix : prefix).push(id)
          }
        })
        return { prefix, suffix }
      }
      case 'BertProcessing':
      case 'RobertaProcessing': {
        const cls = Array.isArray(node.cls) ? node.cls[0] : undefined
        const sep = Array.isArray(node.sep) ? node.sep[0] : undefined
        return { prefix: [lookup(cls, `${path}.cls`)], suffix: [lookup(sep, `${path}.sep`)] }
      }
      case 'Sequence': {
        let prefix: number[] = []
        let suffix: number[] = []
        const processors = Array.isArray(node.processors) ? node.processors : []
        processors.forEach((p: unknown, i) => {
          const inner = this.#postProcessorSpecials(p, `${path}.processors[${i}]`)
          prefix = [...inner.prefix, ...prefix]
          suffix = [...suffix, ...inner.suffix]
        })
        return { prefix, suffix }
      }
      default:
        return { prefix: [], suffix: [] }
    }
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const where = 'HfTokenizer.encode'
    checkKeys(where, options, ENCODE_OPTIONS)
    checkText(where, text)
    const add = booleanOption(where, 'addSpecialTokens', options.addSpecialTokens, true)
    const ids = this.#encodeText(where, text)
    return add ? addSpecials(ids, this.prefixIds, this.suffixIds) : ids
  }

  #encodeText(where: string, text: string): number[] {
    const { ids, tokens } = this.#hf.encode(text, { add_special_tokens: false })
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] === undefined) {
        throw new Error(`${where}: the piece ${JSON.stringify(tokens[i])} of the text has no token in ${this.#files.tokenizer} and the model has no unk_token`)
      }
    }
    return ids
  }

  encodeBatch(texts: string[], options: EncodeOptions = {}): number[][] {
    const where = 'HfTokenizer.encodeBatch'
    if (!Array.isArray(texts)) throw new TypeError(`${where}: texts must be an array of strings; got ${describe(texts)}`)
    texts.forEach((text, i) => checkText(where, text, `texts[${i}]`))
    return texts.map((text) => this.encode(text, options))
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const where = 'HfTokenizer.decode'
    checkKeys(where, options, DECODE_OPTIONS)
    const skip = booleanOption(where, 'skipSpecialTokens', options.skipSpecialTokens, false)
    const list = checkIds(where, ids, this.vocabSize)
    if (list.length === 0) return '' // the library throws on an empty list
    for (let i = 0; i < list.length; i++) {
      if (this.#hf.id_to_token(list[i]) === undefined) throw new RangeError(`${where}: ids[${i}] = ${list[i]} has no token in ${this.#files.tokenizer}`)
    }
    return this.#hf.decode(list, { skip_special_tokens: skip, clean_up_tokenization_spaces: this.#cleanUpSpaces })
  }

  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions & { tokenize: false }): string
  applyChatTemplate(messages: ChatMessage[], options?: ChatTemplateOptions & { tokenize?: true }): number[]
  applyChatTemplate(messages: ChatMessage[], options?: ChatTemplateOptions): string | number[]
  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions = {}): string | number[] {
    const where = 'HfTokenizer.applyChatTemplate'
    checkKeys(where, options, CHAT_TEMPLATE_OPTIONS)
    checkMessages(where, messages)
    const addGenerationPrompt = booleanOption(where, 'addGenerationPrompt', options.addGenerationPrompt, false)
    const tokenize = booleanOption(where, 'tokenize', options.tokenize, true)
    const name = options.templateName ?? 'default'
    if (typeof name !== 'string') throw new TypeError(`${where}: templateName must be a string; got ${describe(name)}`)
    if (this.#templates.size === 0) {
      throw new Error(
        `${where}: the tokenizer in ${this.#files.dir} has no chat template (${this.#files.config} has no chat_template and there is no chat_template.jinja). ` +
          `Set one with HfTokenizer.load(dir, { chatTemplate: '...' }) (or loadTokenizer(dir, { chatTemplate })), or add a chat_template string to tokenizer_config.json`,
      )
    }
    const template = this.#templates.get(name)
    if (template === undefined) {
      const names = this.chatTemplateNames.map((n) => `'${n}'`).join(', ')
      throw new Error(
        `${where}: ${this.#files.config} has no chat template named '${name}'; it has ${names}` +
          (options.templateName === undefined ? '. Choose one with the templateName option' : ''),
      )
    }
    const text = template.render(messages, addGenerationPrompt, { ...this.#templateVariables, ...extraTemplateVariables(where, options) })
    return tokenize ? this.#encodeText(where, text) : text
  }

  idToToken(id: number): string | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return undefined
    return this.#hf.id_to_token(id)
  }

  tokenToId(token: string): number | undefined {
    if (typeof token !== 'string') return undefined
    return this.#hf.token_to_id(token)
  }
}
