// Reference tokenizers for the tests: plain, slow, obviously correct
// re-statements of what the Rust `tokenizers` library does for the fixture
// files, written without @huggingface/tokenizers. They read only the data of a
// tokenizer.json (vocab, merges, added tokens) and follow the algorithm
// step by step:
//
//   1. split the text on the added tokens (leftmost, then longest match);
//   2. per remaining piece: normalize, pre-tokenize, map to the model's alphabet;
//   3. BPE: while some adjacent pair is a merge, merge the leftmost pair of
//      lowest rank;
//   4. look the symbols up in the vocabulary.

export interface TokenizerData {
  vocab: Record<string, number>
  merges: Array<string | [string, string]>
  /** The added tokens (they live outside model.vocab) and their ids. */
  added: Map<string, number>
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function tokenizerData(json: any): TokenizerData {
  return {
    vocab: json.model.vocab,
    merges: json.model.merges,
    added: new Map(json.added_tokens.map((t: { id: number; content: string }) => [t.content, t.id])),
  }
}

/** Rank of each merge, keyed by "left\u0000right" (no ambiguity, whatever the symbols hold). */
export function mergeRanks(merges: Array<string | [string, string]>): Map<string, number> {
  const ranks = new Map<string, number>()
  merges.forEach((m, i) => {
    const [a, b] = typeof m === 'string' ? (m.split(' ') as [string, string]) : m
    ranks.set(a + '\u0000' + b, i)
  })
  return ranks
}

/** The merge loop, one merge at a time. */
export function naiveBpe(symbols: string[], ranks: Map<string, number>): string[] {
  const s = [...symbols]
  for (;;) {
    let best = -1
    let bestRank = Infinity
    for (let i = 0; i + 1 < s.length; i++) {
      const rank = ranks.get(s[i] + '\u0000' + s[i + 1])
      if (rank !== undefined && rank < bestRank) {
        bestRank = rank
        best = i
      }
    }
    if (best < 0) return s
    s.splice(best, 2, s[best] + s[best + 1])
  }
}

/** Splits `text` into [piece, isAddedToken, offset] triples. */
export function splitOnAddedTokens(text: string, added: string[]): Array<{ piece: string; added: boolean; offset: number }> {
  const out: Array<{ piece: string; added: boolean; offset: number }> = []
  let start = 0
  let i = 0
  while (i < text.length) {
    let match = ''
    for (const a of added) if (a.length > match.length && text.startsWith(a, i)) match = a
    if (match === '') {
      i++
      continue
    }
    if (i > start) out.push({ piece: text.slice(start, i), added: false, offset: start })
    out.push({ piece: match, added: true, offset: i })
    i += match.length
    start = i
  }
  if (start < text.length) out.push({ piece: text.slice(start), added: false, offset: start })
  return out
}

/** GPT-2's byte-to-unicode table, from its encoder.py: printable bytes map to themselves, the rest to 256, 257, ... */
export function byteToUnicode(): string[] {
  const table = new Array<string>(256)
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
  let n = 0
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable(b) ? b : 256 + n++)
  return table
}

// The pre-tokenization patterns as Oniguruma (the Rust library's regex engine)
// reads them: \s is the Unicode White_Space property there, which JavaScript's
// \s is not (it adds U+FEFF and leaves out U+0085), so it is spelt out.
const WS = '\\p{White_Space}'
const NOT_WS = '\\P{White_Space}'
/** The GPT-2 pattern (ByteLevel with use_regex). */
export const GPT2_PATTERN = new RegExp(
  `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|${WS}+(?!${NOT_WS})|${WS}+`,
  'gu',
)
/** Qwen2's pattern, with Oniguruma's case-insensitive group (?i:...) spelt out by hand too. */
export const QWEN2_PATTERN = new RegExp(
  `'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^${WS}\\p{L}\\p{N}]+[\\r\\n]*|${WS}*[\\r\\n]+|${WS}+(?!${NOT_WS})|${WS}+`,
  'gu',
)

/** "Isolated" split: the matches and the text between them, in order, without empty pieces. */
function isolate(text: string, pattern: RegExp): string[] {
  const out: string[] = []
  let last = 0
  for (const m of text.matchAll(pattern)) {
    if (m.index > last) out.push(text.slice(last, m.index))
    if (m[0].length > 0) out.push(m[0])
    last = m.index + m[0].length
  }
  if (last < text.length) out.push(text.slice(last))
  return out
}

/** Byte-level BPE (GPT-2, or Qwen2 with `qwen`: NFC, then the Qwen2 split). */
export function byteLevelReference(data: TokenizerData, text: string, options: { qwen?: boolean } = {}): number[] {
  const ranks = mergeRanks(data.merges)
  const table = byteToUnicode()
  const encoder = new TextEncoder()
  const ids: number[] = []
  for (const { piece, added } of splitOnAddedTokens(text, [...data.added.keys()])) {
    if (added) {
      ids.push(data.added.get(piece) as number)
      continue
    }
    const normalized = options.qwen ? piece.normalize('NFC') : piece
    const words = isolate(normalized, options.qwen ? QWEN2_PATTERN : GPT2_PATTERN)
    for (const word of words) {
      const symbols = Array.from(encoder.encode(word), (b) => table[b])
      for (const sym of naiveBpe(symbols, ranks)) {
        const id = data.vocab[sym]
        if (id === undefined) throw new Error(`reference: symbol ${JSON.stringify(sym)} is not in the vocabulary`)
        ids.push(id)
      }
    }
  }
  return ids
}

/**
 * SentencePiece-style BPE as the Rust library runs it for Llama-2 / SmolLM
 * files: spaces become "▁"; a "▁" is put in front of a piece that starts the
 * text (prepend_scheme "first") unless it already starts with one; with
 * `split`, the piece is cut before every "▁" (Metaspace split: true); each
 * character that is not in the vocabulary becomes its UTF-8 bytes as <0xNN>
 * tokens (byte fallback); then the merge loop.
 */
export function sentencePieceReference(data: TokenizerData, text: string, options: { split?: boolean } = {}): number[] {
  const ranks = mergeRanks(data.merges)
  const encoder = new TextEncoder()
  const ids: number[] = []
  for (const { piece, added, offset } of splitOnAddedTokens(text, [...data.added.keys()])) {
    if (added) {
      ids.push(data.added.get(piece) as number)
      continue
    }
    let s = piece.replaceAll(' ', '\u2581')
    if (offset === 0 && !s.startsWith('\u2581')) s = '\u2581' + s
    const words = options.split ? s.split(/(?=\u2581)/u).filter((w) => w.length > 0) : [s]
    for (const word of words) {
      const symbols: string[] = []
      for (const ch of word) {
        if (data.vocab[ch] !== undefined) symbols.push(ch)
        else for (const b of encoder.encode(ch)) symbols.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`)
      }
      for (const sym of naiveBpe(symbols, ranks)) {
        const id = data.vocab[sym]
        if (id === undefined) throw new Error(`reference: symbol ${JSON.stringify(sym)} is not in the vocabulary`)
        ids.push(id)
      }
    }
  }
  return ids
}
