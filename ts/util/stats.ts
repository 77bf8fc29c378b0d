// The sum and the mean, added left to right (as every caller added them
// before, so results stay bit-identical). The mean of no values is NaN.
export function sum(xs: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < xs.length; i++) s += xs[i]
  return s
}

export function mean(xs: ArrayLike<number>): number {
  return sum(xs) / xs.length
}
