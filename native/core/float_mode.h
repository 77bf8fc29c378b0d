// Denormal floats flushed to zero (FTZ and DAZ) on the current thread while a
// FlushDenormals is alive. Arithmetic on denormals is about 100x slower on
// x86, they only arise far below the magnitudes models work with (exp of very
// negative logits, products of tiny probabilities), and PyTorch users set the
// same (torch.set_flush_denormal). The previous mode comes back afterwards, so
// JavaScript on the main thread keeps IEEE semantics.
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace rlfarm {

class FlushDenormals {
 public:
#if defined(__x86_64__) || defined(_M_X64)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFtzDaz); }
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  static constexpr unsigned kFtzDaz = 0x8040;  // flush-to-zero (bit 15) and denormals-are-zero (bit 6)
  unsigned saved_;
#else
  FlushDenormals() = default;
#endif
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;
};

}  // namespace rlfarm
