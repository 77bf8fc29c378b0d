// A worker thread that runs one module reward function (reward.workers > 0):
// it loads the module once, then answers {id, batch, args} messages with the
// function's values or its error. The pool (pool.ts) times calls out and ends
// a worker that overruns.
import { parentPort, workerData } from 'node:worker_threads'
import { loadRewardExport } from './load.js'
import type { RewardBatch } from './types.js'

interface Data {
  file: string
  exportName?: string
  what: string
}

const port = parentPort
if (!port) throw new Error('rewards/worker.js runs as a worker thread')
const { file, exportName, what } = workerData as Data

const ready = loadRewardExport(file, exportName, what)
ready.then(
  () => port.postMessage({ kind: 'ready' }),
  (err: Error) => port.postMessage({ kind: 'load-error', error: err.message }),
)

port.on('message', async (m: { id: number; batch: RewardBatch; args: Record<string, unknown> }) => {
  try {
    const fn = await ready
    const values = await fn(m.batch, m.args)
    try {
      port.postMessage({ kind: 'result', id: m.id, values })
    } catch (err) {
      port.postMessage({ kind: 'error', id: m.id, error: `returned a value a worker cannot send back (${(err as Error).message})` })
    }
  } catch (err) {
    port.postMessage({ kind: 'error', id: m.id, error: `threw: ${(err as Error)?.message ?? String(err)}` })
  }
})
