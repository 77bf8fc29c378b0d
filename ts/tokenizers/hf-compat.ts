// What @huggingface/tokenizers (the JavaScript port) reads differently from
// the Rust library, checked and corrected before HfTokenizer uses it.
import type * as HfTokenizersModule from '@huggingface/tokenizers' with { 'resolution-mode': 'import' }
import { describe } from '../util/options.js'

// The package is ESM-first but ships a CommonJS build, which `require` picks.
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const hfTokenizers: typeof HfTokenizersModule = require('@huggingface/tokenizers')

export type Json = Record<string, unknown>

export const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v)

export const MODEL_TYPES = ['BPE', 'WordPiece', 'Unigram'] as const
// What @huggingface/tokenizers 0.2 builds (see create_normalizer & co. in its source).
const COMPONENT_TYPES = {
  normalizer: {
    list: 'normalizers',
    types: ['BertNormalizer', 'Precompiled', 'Sequence', 'Replace', 'NFC', 'NFD', 'NFKC', 'NFKD', 'Strip', 'StripAccents', 'Lowercase', 'Prepend'],
  },
  pre_tokenizer: {
    list: 'pretokenizers',
    types: ['BertPreTokenizer', 'Sequence', 'Whitespace', 'WhitespaceSplit', 'Metaspace', 'ByteLevel', 'Split', 'Punctuation', 'Digits', 'Replace', 'FixedLength'],
  },
  post_processor: {
    list: 'processors',
    types: ['TemplateProcessing', 'ByteLevel', 'BertProcessing', 'RobertaProcessing', 'Sequence'],
  },
  decoder: {
    list: 'decoders',
    types: ['ByteLevel', 'WordPiece', 'Metaspace', 'BPEDecoder', 'CTC', 'Sequence', 'Replace', 'Fuse', 'Strip', 'ByteFallback'],
  },
} as const
type Component = keyof typeof COMPONENT_TYPES

/**
 * Checks the component tree of tokenizer.json against what
 * @huggingface/tokenizers implements, and rewrites the few settings it reads
 * differently from the Rust library. Returns the Metaspace that needs its
 * words split (see the constructor), if any.
 */
export function checkComponents(json: Json, file: string): { splitMetaspace: string | undefined } {
  let splitMetaspace: string | undefined
  const visit = (kind: Component, node: unknown, path: string, last: boolean): void => {
    if (node === null || node === undefined) return
    if (!isObject(node)) throw new Error(`${file}: ${path} must be an object or null; got ${describe(node)}`)
    const { types, list } = COMPONENT_TYPES[kind]
    const type = node.type
    if (typeof type !== 'string') throw new Error(`${file}: ${path}.type is missing (expected one of ${types.join(', ')})`)
    if (!(types as readonly string[]).includes(type)) {
      throw new Error(`${file}: ${path}.type '${type}' is not supported by @huggingface/tokenizers; supported ${kind.replace('_', '-')}s: ${types.join(', ')}`)
    }
    if (type === 'Sequence') {
      const children = node[list]
      if (!Array.isArray(children)) throw new Error(`${file}: ${path}.${list} must be an array`)
      children.forEach((child, i) => visit(kind, child, `${path}.${list}[${i}]`, last && i === children.length - 1))
      return
    }
    if (kind === 'pre_tokenizer' && type === 'Metaspace') {
      // Older files say add_prefix_space instead of prepend_scheme; the JS port ignores it.
      if (node.prepend_scheme === undefined) node.prepend_scheme = node.add_prefix_space === false ? 'never' : 'always'
      // The Rust library splits the text into words before each "▁" unless split is false
      // (missing means true); the JS port never splits. rlfarm splits after the whole
      // pre-tokenizer, which is the same thing when the Metaspace comes last.
      if (node.split !== false) {
        if (!last) throw new Error(`${file}: ${path} is a Metaspace with split: true that is not the last pre-tokenizer; rlfarm cannot reproduce its word splitting`)
        splitMetaspace = typeof node.replacement === 'string' ? node.replacement : '\u2581'
      }
    }
    if (kind === 'pre_tokenizer' && type === 'Split') {
      const behavior = String(node.behavior ?? 'Isolated')
      const pattern = isObject(node.pattern) ? node.pattern : {}
      if (node.invert === true) {
        // Inverted, the pattern matches the pieces rather than the delimiters. The port then
        // keeps the matches and drops the text between them, which is the Rust library's
        // 'Removed' (cl100k- and o200k-style files). 'Isolated' keeps the text between as
        // pieces too: the same pieces as the pattern not inverted, which the port runs as such.
        if (behavior === 'Isolated') node.invert = false
        else if (behavior !== 'Removed') {
          throw new Error(`${file}: ${path} is a Split with behavior '${behavior}' and invert: true, which @huggingface/tokenizers does not reproduce (with invert it handles 'Removed' and 'Isolated')`)
        }
        if (behavior === 'Removed') return
      }
      // With 'Removed' the port calls String.split, which keeps what capturing groups match
      // (and it wraps a String pattern in one).
      const capturing = typeof pattern.String === 'string' || (typeof pattern.Regex === 'string' && /(^|[^\\])\((?!\?)/.test(pattern.Regex))
      if (!['Isolated', 'Removed'].includes(behavior) || (behavior === 'Removed' && capturing)) {
        throw new Error(
          `${file}: ${path} is a Split with behavior '${behavior}'` +
            `${behavior === 'Removed' && capturing ? ' and a pattern with a capturing group' : ''}, which @huggingface/tokenizers does not reproduce ` +
            `(it handles 'Isolated', and 'Removed' with a Regex without capturing groups; with invert: true, 'Removed' and 'Isolated')`,
        )
      }
    }
  }
  for (const kind of Object.keys(COMPONENT_TYPES) as Component[]) {
    if (json[kind] === undefined) json[kind] = null // the JS port wants every key present
    visit(kind, json[kind], kind, true)
  }
  return { splitMetaspace }
}

/**
 * The GPT-2 pattern of the ByteLevel pre-tokenizer as the Rust library runs it:
 * Oniguruma's \s is Unicode White_Space, where JavaScript's \s also takes U+FEFF
 * and leaves out U+0085.
 */
const BYTE_LEVEL_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu

/**
 * Two corrections to @huggingface/tokenizers 0.2, so that it gives what the
 * Rust library gives (the tests check both on random text):
 * - its ByteLevel pre-tokenizer splits with JavaScript's \s (see BYTE_LEVEL_PATTERN);
 * - its ByteFallback decoder drops a U+FEFF at the start of every run of byte
 *   tokens (its TextDecoder strips byte-order marks).
 */
export function alignWithRust(hf: HfTokenizersModule.Tokenizer): void {
  // (The package's type declarations do not resolve these classes under node16 resolution.)
  const lib = hfTokenizers as unknown as Record<'ByteLevelPreTokenizer' | 'SequencePreTokenizer' | 'ByteFallbackDecoder' | 'SequenceDecoder', abstract new () => unknown>
  const preTokenizer = (p: unknown): void => {
    if (p instanceof lib.ByteLevelPreTokenizer) (p as unknown as { pattern: RegExp }).pattern = BYTE_LEVEL_PATTERN
    else if (p instanceof lib.SequencePreTokenizer) (p as unknown as { tokenizers?: unknown[] }).tokenizers?.forEach(preTokenizer)
  }
  const decoder = (d: unknown): void => {
    if (d instanceof lib.ByteFallbackDecoder) (d as unknown as { text_decoder: TextDecoder }).text_decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true })
    else if (d instanceof lib.SequenceDecoder) (d as unknown as { decoders?: unknown[] }).decoders?.forEach(decoder)
  }
  preTokenizer(hf.pre_tokenizer)
  decoder(hf.decoder)
}
