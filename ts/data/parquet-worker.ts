// Reads a Parquet file's rows with hyparquet in a worker thread, so that the
// reader (jsonl.ts readParquetRows) can bound the read in time: a corrupt
// page header can send hyparquet into a loop that never ends, and only a
// worker can be stopped from outside. Posts { rows } or { error, code }.
import { parentPort, workerData } from 'node:worker_threads'

/** Parquet values as JSON would give them (BigInt integers become numbers). */
function toPlain(value: unknown): unknown {
  if (typeof value === 'bigint') return Number(value)
  if (Array.isArray(value)) return value.map(toPlain)
  if (value && typeof value === 'object' && !(value instanceof Date)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toPlain(v)]))
  return value
}

async function read(file: string): Promise<void> {
  try {
    const { asyncBufferFromFile, parquetReadObjects } = await import('hyparquet')
    const rows = await parquetReadObjects({ file: await asyncBufferFromFile(file) })
    parentPort!.postMessage({ rows: rows.map(toPlain) })
  } catch (err) {
    parentPort!.postMessage({ error: err instanceof Error ? err.message : String(err), code: (err as NodeJS.ErrnoException)?.code })
  }
}

void read((workerData as { file: string }).file)
