// The per-element math the CPU and CUDA engines share (native/model/nn_math.h,
// __host__ __device__ under nvcc), evaluated on the host through the addon's
// nnMath entry: GELU-tanh and SwiGLU against float64 formulas, and their
// gradients against central differences of the float64 forms. (The shared
// AdamW update and RoPE rotation are what the CPU engine itself runs, so the
// model tests against PyTorch cover them.)
import t from 'tap'
import { native } from '../ts/native'
import { assertClose, assertThrowsWith } from './helpers/common'

const xs = [-9, -4, -2.5, -1, -0.3, -1e-3, 0, 1e-3, 0.3, 1, 2.5, 4, 9]
const ys = xs.map((x, i) => (i % 3) - 1 + x / 7)
const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))
const silu = (x: number) => x / (1 + Math.exp(-x))
const d = (f: (x: number) => number, x: number, h = 1e-4) => (f(x + h) - f(x - h)) / (2 * h)

t.test('GELU-tanh and its gradient', async (t) => {
  // 1 + tanh(u) cancels for very negative x (as in the CPU vector form): absolute error ~ |x| float eps.
  assertClose(t, native.nnMath('gelu', xs), xs.map(gelu), 'gelu', { rtol: 2e-6, atol: 1e-6 })
  assertClose(t, native.nnMath('geluGrad', xs), xs.map((x) => d(gelu, x)), 'geluGrad', { rtol: 1e-5, atol: 1e-6 })
})

t.test('SwiGLU and its gradients', async (t) => {
  assertClose(t, native.nnMath('swiglu', xs, ys), xs.map((x, i) => silu(x) * ys[i]), 'swiglu', { rtol: 2e-6, atol: 1e-7 })
  assertClose(t, native.nnMath('swigluGradGate', xs, ys), xs.map((x, i) => d(silu, x) * ys[i]), 'd/d gate', { rtol: 1e-5, atol: 1e-6 })
  assertClose(t, native.nnMath('swigluGradUp', xs, ys), xs.map(silu), 'd/d up', { rtol: 2e-6, atol: 1e-7 })
})

t.test("the fused attention's online softmax: running log-sum-exp and weighted mean", async (t) => {
  const scores = [0.3, -2, 5, 5, -40, 1e-3, 7.5, -1]
  const values = scores.map((_, i) => Math.sin(i + 1) * 3)
  const lse = (s: number[]) => {
    const m = Math.max(...s)
    return m + Math.log(s.reduce((a, x) => a + Math.exp(x - m), 0))
  }
  const prefixes = scores.map((_, k) => scores.slice(0, k + 1))
  assertClose(t, native.nnMath('onlineLse', scores), prefixes.map(lse), 'running log-sum-exp', { rtol: 1e-6, atol: 1e-6 })
  const mean = (s: number[]) => s.reduce((a, x, i) => a + Math.exp(x - lse(s)) * values[i], 0)
  assertClose(t, native.nnMath('onlineMean', scores, values), prefixes.map(mean), 'running softmax-weighted mean', { rtol: 1e-5, atol: 1e-6 })
  assertThrowsWith(t, () => native.nnMath('onlineMean', [1, 2], [1]), ["nnMath: y must have x's length, 2; got 1"], 'values missing')
})

t.test('bad calls name the problem', async (t) => {
  assertThrowsWith(t, () => native.nnMath('relu', [1]), ["nnMath: name must be gelu, geluGrad, swiglu, swigluGradGate, swigluGradUp, onlineLse or onlineMean; got 'relu'"], 'an unknown function')
  assertThrowsWith(t, () => native.nnMath('swiglu', [1, 2], [1]), ['nnMath: y must have x\'s length, 2; got 1'], 'lengths differ')
  assertThrowsWith(t, () => native.nnMath('swiglu', [1], 'x' as never), ['nnMath: y must be an array of numbers'], 'y not an array')
})
