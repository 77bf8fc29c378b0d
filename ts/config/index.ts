// The config layer: the schema of proto/rlfarm.proto, loading and validation.
export { loadConfig, resolveConfig, saveResolvedConfig, resolvePaths } from './load.js'
export type { LoadConfigOptions, ResolveConfigOptions, SaveConfigOptions, ResolvePathsOptions, TopLevelType } from './load.js'
export { ConfigError } from './errors.js'
export type { ConfigProblem } from './errors.js'
export { configSchema, messageSpec, PROTO_FILE } from './schema.js'
export type { ConfigSchema, MessageSpec, FieldSpec, FieldKind } from './schema.js'
export type * from './types.generated.js'
