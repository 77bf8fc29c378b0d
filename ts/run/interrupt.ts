// Stopping a run cleanly. While installed, SIGINT and SIGTERM only set a flag
// that the trainer checks between steps (so it can save a checkpoint and
// exit); a second signal exits at once, by that signal's default action, so
// that nothing can hold the exit up: process.exit waits for the thread pool,
// and a thread blocked there (an open() of a FIFO, a stuck native call) would
// keep the process alive for good. An AbortSignal stops the run the same way.
// dispose() removes every listener it added.
import os from 'node:os'
import { checkKeys, describe, isPlainObject } from '../util/options.js'

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
 * Ends the process by `name`'s default action (the shell sees 128 + its
 * number), whatever other threads are doing: with no listener left, Node puts
 * the default disposition back, and the signal is raised again.
 */
function exitBySignal(name: NodeJS.Signals): void {
  process.removeAllListeners(name)
  process.kill(process.pid, name)
  // Only reached if the signal's default action is not to end the process.
  process.exit(128 + (os.constants.signals[name] ?? 2))
}

/**
 * Installs the handlers for the length of a run; `handler` is called once,
 * with the reason, when the run is first asked to stop.
 */
export function onInterrupt(handler?: (reason: string) => void, options: InterruptOptions = {}): Interrupt {
  // Checked here: a handler that is not a function would throw inside the signal handler, and a
  // misspelt signal name would be listened for and never come.
  if (handler !== undefined && typeof handler !== 'function') {
    throw new TypeError(`onInterrupt: handler must be a function (reason) => void; got ${describe(handler)}${isPlainObject(handler) ? ' (options go second: onInterrupt(handler, options) or onInterrupt(undefined, options))' : ''}`)
  }
  checkKeys('onInterrupt', options, ['signal', 'signals', 'quiet'])
  const signals = options.signals ?? ['SIGINT', 'SIGTERM']
  if (!Array.isArray(signals) || signals.some((name) => typeof name !== 'string' || !(name in os.constants.signals))) {
    throw new TypeError(`onInterrupt: signals must be a list of signal names such as 'SIGINT', 'SIGTERM'; got ${describe(signals)}`)
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new TypeError(`onInterrupt: signal must be an AbortSignal; got ${describe(options.signal)}`)
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
      exitBySignal(name)
      return
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
