// Tokenizers: the interface (tokenizer.ts), the farm's ByteTokenizer (byte.ts),
// Hugging Face tokenizers (hf.ts, with hf-compat.ts), chat templates
// (chat-template.ts) and loadTokenizer (load.ts).
export type { DecodeOptions, EncodeOptions, Tokenizer } from './tokenizer.js'
export { ByteTokenizer, type ByteTokenizerOptions } from './byte.js'
export { HfTokenizer, type HfTokenizerJsonOptions, type HfTokenizerOptions } from './hf.js'
export { loadTokenizer, type LoadTokenizerOptions } from './load.js'
export { BYTE_CHAT_TEMPLATE, type ChatMessage, type ChatTemplateOptions } from './chat-template.js'
