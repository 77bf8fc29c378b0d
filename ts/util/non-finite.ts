// The error for a NaN or an infinity where a finite number must be: in a loss
// or gradient during training, or in a model's weights or outputs.

export class NonFiniteError extends Error {
  /**
   * `what` is not finite; `consequence` says what happened because of it
   * (by default, what a trainer does: the step is not applied and the run stops).
   */
  constructor(what: string, step?: number, consequence = 'the step was not applied and the run stopped (the last checkpoint is kept)') {
    super(`${what} is not finite${step === undefined ? '' : ` at step ${step}`}; ${consequence}`)
    this.name = 'NonFiniteError'
  }
}
