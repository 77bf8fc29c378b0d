// Stopping a run cleanly. While installed, SIGINT and SIGTERM only set a flag
// that the trainer checks between steps (so it can save a checkpoint and
// exit); a second signal exits at once. An AbortSignal stops the run the same
// way. dispose() removes every listener it added.
import os from 'node:os'
import { checkKeys } from '../util/options.js'

export interface InterruptOptions {
  /** Stops the run too when aborted. */
  signal?: AbortSignal
  /** Default ['SIGINT', 'SIGTERM']. */
  signals?: NodeJS.Signals[]
  /** No messages on stderr. Default false. */
  quiet?: boolean
}

export interface Interrupt {
  /** True once a signal came or the AbortSignal was aborted. */
  readonly requested: boolean
  /** 'SIGINT', 'SIGTERM'... or 'abort'. */
  readonly reason: string | undefined
  /** Aborted when the run is asked to stop, for async work that takes a signal. */
  readonly signal: AbortSignal
  /** Uninstalls the handlers (idempotent). */
  dispose(): void
}

/**
 * Installs the handlers for the length of a run; `handler` is called once,
 * with the reason, when the run is first asked to stop.
 */
export function onInterrupt(handler?: (reason: string) => void, options: InterruptOptions = {}): Interrupt {
  checkKeys('onInterrupt', options, ['signal', 'signals', 'quiet'])
  const signals = options.signals ?? ['SIGINT', 'SIGTERM']
  const say = (message: string) => options.quiet || process.stderr.write(`rlfarm: ${message}\n`)
  const controller = new AbortController()
  let reason: string | undefined

  const request = (why: string) => {
    if (reason !== undefined) return
    reason = why
    controller.abort(new Error(`run interrupted (${why})`))
    handler?.(why)
  }
  const onSignal = (name: NodeJS.Signals) => {
    if (reason !== undefined) {
      say(`${name} again: exiting now, without a checkpoint`)
      process.exit(128 + (os.constants.signals[name] ?? 2))
    }
    say(`${name}: stopping after this step and saving a checkpoint (${name === 'SIGINT' ? 'Ctrl-C' : name} again exits at once)`)
    request(name)
  }
  const onAbort = () => request('abort')

  for (const name of signals) process.on(name, onSignal)
  if (options.signal?.aborted) request('abort')
  else options.signal?.addEventListener('abort', onAbort, { once: true })

  let installed = true
  return {
    get requested() {
      return reason !== undefined
    },
    get reason() {
      return reason
    },
    signal: controller.signal,
    dispose() {
      if (!installed) return
      installed = false
      for (const name of signals) process.off(name, onSignal)
      options.signal?.removeEventListener('abort', onAbort)
    },
  }
}
