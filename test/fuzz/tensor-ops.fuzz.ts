// Properties of the ops and the Tensor constructors: any arguments (tensors
// of any dtype and shape, junk numbers, null, wrong types) give a result or a
// clear Error naming the op; never an abort, a hang or a JavaScript TypeError.
import fc from 'fast-check'
import { ops, Tensor, type DType } from 'rlfarm'
import { resultOrClearError, runProperties } from './harness'

const DTYPES: DType[] = ['f32', 'bf16', 'i32', 'u8']
const junkNumber = fc.oneof(fc.constantFrom(0, -1, 1, 0.5, 2, NaN, Infinity, -Infinity, 1e30, -0, 2 ** 31, 2 ** 53), fc.double())
const junk = fc.oneof(junkNumber, fc.constantFrom(null, undefined, 'x', true, [], {}, [1, 2]))

const tensor = fc
  .record({
    shape: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }),
    dtype: fc.constantFrom(...DTYPES),
    values: fc.array(fc.integer({ min: -3, max: 6 }), { minLength: 1, maxLength: 8 }),
  })
  .map(({ shape, dtype, values }) => {
    const x = Tensor.zeros(shape, { dtype })
    const data = x.data
    for (let i = 0; i < data.length; i++) data[i] = values[i % values.length]
    return x
  })
const arg = fc.oneof({ weight: 4, arbitrary: tensor }, { weight: 1, arbitrary: junk })

const OP = /ops\.|Tensor|tensor|shape|dtype|must|expected/

export const properties = {
  'ops on random tensors and options': fc.property(
    fc.integer({ min: 0, max: 10 }),
    fc.array(arg, { minLength: 6, maxLength: 6 }),
    fc.array(junk, { minLength: 4, maxLength: 4 }),
    (which, a, n) => {
      const [x0, x1, x2, x3, x4, x5] = a as Tensor[]
      const calls: Array<() => unknown> = [
        () => ops.logprobs(x0, x1, { temperature: n[0] as number, entropy: n[1] as boolean }),
        () => ops.logprobsBackward(x0, x1, x2, { temperature: n[0] as number }),
        () => ops.gae(x0, x1, x2, { gamma: n[0] as number, lambda: n[1] as number }),
        () => ops.whiten(x0, x1, { shiftMean: n[0] as boolean }),
        () => ops.klPenalty(x0, x1, x2, { clamp: n[0] as number }),
        () => ops.ppoPolicyLoss(x0, x1, x2, x3, { clipLow: n[0] as number, clipHigh: n[1] as number, dualClip: n[2] as number }),
        () => ops.valueLoss(x0, x1, x2, x3, { clip: n[0] as number }),
        () => ops.dpoLoss({ policyChosen: x0, policyRejected: x1, refChosen: x2, refRejected: x3, chosenLength: x4, rejectedLength: x5 }, { beta: n[0] as number, labelSmoothing: n[1] as number }),
        () => ops.rewardLoss(x0, x1, { margin: n[0] as number, centerCoef: n[1] as number }),
        () => ops.matmul(x0, x1),
        () => ops.add(x0, x1, { alpha: n[0] as number, beta: n[1] as number }),
      ]
      resultOrClearError(calls[which], [OP])
    },
  ),
  'Tensor.from on any data, shape and options': fc.property(
    fc.oneof(
      fc.array(junkNumber, { maxLength: 12 }),
      fc.float32Array({ maxLength: 12 }),
      fc.int32Array({ maxLength: 12 }),
      fc.uint8Array({ maxLength: 12 }),
      junk,
    ),
    fc.oneof(fc.array(fc.oneof(fc.integer({ min: -2, max: 13 }), junkNumber), { maxLength: 4 }), junk),
    fc.oneof(fc.record({ dtype: fc.oneof(fc.constantFrom(...DTYPES), fc.string()) }, { requiredKeys: [] }), junk),
    (data, shape, options) => {
      resultOrClearError(() => Tensor.from(data as Float32Array, shape as number[], options as { dtype: DType }), [OP, /Tensor\.from/], (t) => {
        const n = t.shape.reduce((a, b) => a * b, 1)
        if (t.data.length !== n) throw new Error(`Tensor.from gave ${t.data.length} values for shape [${t.shape}]`)
      })
    },
  ),
  'Tensor.zeros, reshape and cast': fc.property(fc.oneof(fc.array(fc.oneof(fc.integer({ min: -2, max: 6 }), junkNumber), { maxLength: 4 }), junk), fc.oneof(fc.constantFrom(...DTYPES), junk), fc.array(fc.integer({ min: -2, max: 8 }), { maxLength: 3 }), (shape, dtype, to) => {
    resultOrClearError(() => {
      const t = Tensor.zeros(shape as number[], { dtype: dtype as DType })
      t.reshape(to)
      return t.cast(dtype as DType)
    }, [OP, /Tensor|reshape|cast|zeros/])
  }),
}

if (require.main === module) void runProperties(properties)
