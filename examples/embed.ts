// Embedding rlfarm in a Node script: load a config, override what you like,
// train in this process (the event loop stays free), follow the steps, and
// stop cleanly on a signal of your own. Run with `npx tsx examples/embed.ts`.
import path from 'node:path'
import { loadConfig, train, type StepEvent } from 'rlfarm'

async function main(): Promise<void> {
  const config = await loadConfig(path.join(__dirname, 'dpo.yaml'), { set: ['training.max_steps=30'] })
  config.data.train = path.join(__dirname, 'data', 'preferences.jsonl') // paths in code are yours to make absolute
  config.output_dir = process.env.RLFARM_EXAMPLE_OUT ?? 'runs'
  config.name = `embed-${Date.now()}`
  config.logging.progress = 'none'

  // Stop after 20 steps, as a UI's "stop" button would: the run saves a checkpoint.
  const stop = new AbortController()
  const seen: StepEvent[] = []
  const result = await train(config, {
    signal: stop.signal,
    onStep: (event) => {
      seen.push(event)
      if (event.phase === 'train' && event.step % 10 === 0) console.log(`step ${event.step}: loss ${event.metrics.loss.toFixed(4)}`)
      if (event.step === 20) stop.abort()
    },
  })
  console.log(`stopped: ${result.interrupted} at step ${result.step} in ${result.runDir}`)

  // Continue the same run to the end, from its checkpoint.
  const done = await train(config, { resume: true })
  console.log(`finished at step ${done.step}: held-out accuracy ${done.metrics.eval_accuracy}`)
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
