#!/usr/bin/env node
// Writes the tokenizer fixtures of test/tokenizer.test.ts: small but real
// Hugging Face tokenizer directories, in the exact format of the `tokenizers`
// library (tokenizer.json) and of transformers (tokenizer_config.json,
// special_tokens_map.json). Nothing is downloaded: the merges are learned here,
// deterministically, on the tiny corpus below.
//
//   gpt2-bpe/   GPT-2 style byte-level BPE: ByteLevel pre-tokenizer (GPT-2 regex,
//               byte-to-unicode alphabet), merges as "a b" strings, <|endoftext|>.
//   qwen-bpe/   Qwen2 style: the same vocabulary and merges, NFC normalizer, Split
//               pre-tokenizer with the Qwen2 regex then ByteLevel without regex,
//               <|endoftext|>, <|im_start|>, <|im_end|>, a ChatML chat template.
//   llama-sp/   Llama-2 / SmolLM style SentencePiece BPE: Metaspace "▁" with
//               prepend_scheme "first", byte_fallback with <0x00>..<0xFF>, <unk>,
//               <s>, </s>, a TemplateProcessing post-processor that adds <s>,
//               merges as ["a", "b"] pairs, the Llama-2 [INST] chat template.
//
// usage: node scripts/make_tokenizer_fixtures.mjs [output dir]
//        (default: test/fixtures/tokenizers next to this script)
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const outDir = resolve(process.argv[2] ?? join(here, '..', 'test', 'fixtures', 'tokenizers'))

const CORPUS = `The farm is a small world where a policy learns to follow instructions.
Each instruction comes from a family: arithmetic, sorting, reversing, counting and case transforms.
The demonstrator writes the answers; it is right most of the time, but not always.
A gold evaluator scores every response, and the annotators compare pairs of responses.
They don't always agree: each one has its own biases, and sometimes it's just a coin flip.
We'll train the reward model on their labels, then the policy with PPO or DPO.
If the KL penalty is too small, the policy over-optimises the reward and the gold score falls.
The reward rises, the win-rate rises, then the win-rate falls while the reward keeps rising.
Sort these numbers: 42, 7, 19, 3 and 128. Reverse the word "tokenizer". Count the letters in "banana".
The answer is 3 + 4 = 7, and 12 * 12 = 144; the time is 10:30 and the year is 2024.
She said: "I'm sure they've read the paper, but you're not." It's the model's turn now.
A café in Zürich serves crème brûlée; the naïve résumé of the señor was written in Español.
Les élèves étudient à l'école, où la leçon d'hier était très intéressante.
The quick brown fox jumps over the lazy dog. The lazy dog sleeps in the sun.
Training, evaluation and sampling run on the CPU or on the GPU; the results are the same.
The tokenizer turns the text into tokens, and the tokens into ids; decoding turns them back.
Whitespace matters:  two spaces,   three spaces, a tab\tand a newline.
In the beginning the policy writes nonsense; in the end it writes the right answers.
The reference model stays fixed while the policy moves; the KL term keeps them close.
Preference pairs teach the reward model which answer is better, and by how much.
Then the trainer samples, scores, shapes the rewards and updates the policy, again and again.
Every annotator is simulated: one prefers longer answers, another prefers the first answer it reads.
A third likes lists and bullet points; a fourth is careful but slow, and its labels are the least noisy.
The gold evaluator gives partial credit: a sorted list with one mistake still earns most of the points.
Counting the vowels in "instruction" gives four; reversing "stressed" gives "desserts".
Uppercase "hello world" and you get HELLO WORLD; lowercase it again and it is hello world.
Name three words that start with k: kettle, kitten and kingdom are all fine answers.
The evaluation split holds five hundred instructions that the policy never sees while training.
Win-rate is the share of wins plus half the ties, with its standard error, against the reference outputs.
Best-of-n samples n responses and keeps the one with the highest reward; expert iteration repeats it.
West-of-N takes the best and the worst of many samples as a synthetic preference pair.
Checkpoints are written atomically, and a resumed run continues exactly where it stopped.
`

// ---------------------------------------------------------------- byte level

/** GPT-2's reversible map from bytes to printable unicode characters. */
function bytesToUnicode() {
  const bs = []
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b)
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b)
  for (let b = 0xae; b <= 0xff; b++) bs.push(b)
  const cs = [...bs]
  let n = 0
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b)
      cs.push(256 + n)
      n++
    }
  }
  return bs.map((b, i) => [b, String.fromCharCode(cs[i])])
}

const GPT2_REGEX = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu
const QWEN2_REGEX_SOURCE = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/**
 * Plain BPE training: count adjacent pairs over the words (weighted by their
 * frequency), merge the most frequent pair, repeat. Ties go to the pair that
 * sorts first, so the result is deterministic.
 */
function learnMerges(words, maxMerges, minCount = 2) {
  const entries = [...words.entries()].map(([word, count]) => ({ symbols: Array.from(word), count }))
  const merges = []
  for (let m = 0; m < maxMerges; m++) {
    const pairs = new Map()
    for (const { symbols, count } of entries) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = symbols[i] + '\u0000' + symbols[i + 1]
        pairs.set(key, (pairs.get(key) ?? 0) + count)
      }
    }
    let best
    let bestCount = 0
    for (const [key, count] of pairs) {
      if (count > bestCount || (count === bestCount && key < best)) {
        best = key
        bestCount = count
      }
    }
    if (best === undefined || bestCount < minCount) break
    const [a, b] = best.split('\u0000')
    merges.push([a, b])
    for (const entry of entries) {
      const out = []
      const s = entry.symbols
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(a + b)
          i++
        } else out.push(s[i])
      }
      entry.symbols = out
    }
  }
  return merges
}

function byteLevelModel() {
  const table = bytesToUnicode()
  const byteChar = new Map(table)
  const encoder = new TextEncoder()
  const words = new Map()
  for (const piece of CORPUS.match(GPT2_REGEX)) {
    const mapped = Array.from(encoder.encode(piece), (b) => byteChar.get(b)).join('')
    words.set(mapped, (words.get(mapped) ?? 0) + 1)
  }
  const merges = learnMerges(words, 400)
  const vocab = {}
  let next = 0
  for (const [, ch] of table) vocab[ch] = next++
  for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = next++
  return { vocab, merges, size: next }
}

function addedToken(id, content, normalized) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized, special: true }
}

// tokenizer.json's BPE model, as Hugging Face's tokenizers writes it.
function bpeModel(vocab, merges) {
  return {
    type: 'BPE',
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: '',
    end_of_word_suffix: '',
    fuse_unk: false,
    byte_fallback: false,
    ignore_merges: false,
    vocab,
    merges,
  }
}

function gpt2Files() {
  const { vocab, merges, size } = byteLevelModel()
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [addedToken(size, '<|endoftext|>', true)],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    // the older serialization: one "left right" string per merge
    model: bpeModel(vocab, merges.map(([a, b]) => `${a} ${b}`)),
  }
  const config = {
    add_bos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: {
      [size]: { content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false, special: true },
    },
    bos_token: '<|endoftext|>',
    eos_token: '<|endoftext|>',
    unk_token: '<|endoftext|>',
    errors: 'replace',
    model_max_length: 1024,
    pad_token: null,
    tokenizer_class: 'GPT2Tokenizer',
  }
  return { 'tokenizer.json': tokenizer, 'tokenizer_config.json': config }
}

const QWEN2_CHAT_TEMPLATE =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

function qwenFiles() {
  const { vocab, merges, size } = byteLevelModel()
  const specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>']
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, i) => addedToken(size + i, content, false)),
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: QWEN2_REGEX_SOURCE }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: bpeModel(vocab, merges.map(([a, b]) => [a, b])),
  }
  const addedTokensDecoder = {}
  specials.forEach((content, i) => {
    addedTokensDecoder[size + i] = { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }
  })
  const config = {
    add_prefix_space: false,
    added_tokens_decoder: addedTokensDecoder,
    additional_special_tokens: ['<|im_start|>', '<|im_end|>'],
    bos_token: null,
    chat_template: QWEN2_CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: '<|im_end|>',
    errors: 'replace',
    model_max_length: 32768,
    pad_token: '<|endoftext|>',
    split_special_tokens: false,
    tokenizer_class: 'Qwen2Tokenizer',
    unk_token: null,
  }
  return { 'tokenizer.json': tokenizer, 'tokenizer_config.json': config }
}

// ------------------------------------------------------------ sentencepiece

const LLAMA2_CHAT_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"

function llamaFiles() {
  // SentencePiece sees "▁word" units: every whitespace-separated word with the
  // meta symbol in front. Control characters (the newline, the tab) are not in
  // the alphabet, so they are encoded by byte fallback, as in Llama-2.
  const words = new Map()
  for (const word of CORPUS.split(/\s+/u)) {
    if (word === '') continue
    const unit = '\u2581' + word
    words.set(unit, (words.get(unit) ?? 0) + 1)
  }
  const charCount = new Map()
  for (const [unit, count] of words) for (const ch of unit) charCount.set(ch, (charCount.get(ch) ?? 0) + count)
  const alphabet = [...charCount.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].codePointAt(0) - b[0].codePointAt(0))
    .map(([ch]) => ch)
  const merges = learnMerges(words, 400)
  const vocab = { '<unk>': 0, '<s>': 1, '</s>': 2 }
  let next = 3
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = next++
  for (const ch of alphabet) vocab[ch] = next++
  for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = next++

  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: 0, content: '<unk>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: 1, content: '<s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: 2, content: '</s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      // the newer serialization: one [left, right] pair per merge
      merges,
    },
  }
  const token = (content) => ({ __type: 'AddedToken', content, lstrip: false, normalized: false, rstrip: false, single_word: false })
  // No added_tokens_decoder here: like an older Llama-2 checkpoint, so that
  // transformers (and rlfarm) also read special_tokens_map.json.
  const config = {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: token('<s>'),
    chat_template: LLAMA2_CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: token('</s>'),
    legacy: false,
    model_max_length: 4096,
    pad_token: null,
    padding_side: 'right',
    sp_model_kwargs: {},
    tokenizer_class: 'LlamaTokenizer',
    unk_token: token('<unk>'),
    use_default_system_prompt: false,
  }
  const specialTokensMap = {
    bos_token: { content: '<s>', lstrip: false, normalized: false, rstrip: false, single_word: false },
    eos_token: { content: '</s>', lstrip: false, normalized: false, rstrip: false, single_word: false },
    pad_token: '<unk>',
    unk_token: { content: '<unk>', lstrip: false, normalized: false, rstrip: false, single_word: false },
  }
  return { 'tokenizer.json': tokenizer, 'tokenizer_config.json': config, 'special_tokens_map.json': specialTokensMap }
}

// ------------------------------------------------------------------- write

const fixtures = { 'gpt2-bpe': gpt2Files(), 'qwen-bpe': qwenFiles(), 'llama-sp': llamaFiles() }
for (const [name, files] of Object.entries(fixtures)) {
  const dir = join(outDir, name)
  mkdirSync(dir, { recursive: true })
  for (const [file, content] of Object.entries(files)) {
    writeFileSync(join(dir, file), JSON.stringify(content, null, 2) + '\n')
  }
}
// The corpus, so that tests can draw realistic words from it.
writeFileSync(join(outDir, 'corpus.txt'), CORPUS)
console.log(`wrote ${Object.keys(fixtures).join(', ')} under ${outDir}`)
