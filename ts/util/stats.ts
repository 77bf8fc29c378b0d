// The arithmetic mean, summed left to right (as every caller summed it
// before, so results stay bit-identical). NaN for no values.
export function mean(xs: ArrayLike<number>): number {
  let sum = 0
  for (let i = 0; i < xs.length; i++) sum += xs[i]
  return sum / xs.length
}
