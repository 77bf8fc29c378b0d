// A small vector layer for the CPU kernels that do per-element exp work. It is
// compiled once per instruction set (kernels_generic.cpp, kernels_avx2.cpp,
// kernels_avx512.cpp) and everything here lives in a namespace named after the
// set, so the three copies never mix at link time.
//
// NaN rules: every helper keeps a NaN input as NaN in its output, so a NaN
// logit shows up as a NaN log-prob instead of being clamped into a number.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#define RLF_ISA avx512
#include <immintrin.h>
#elif defined(__AVX2__) && defined(__FMA__)
#define RLF_ISA avx2
#include <immintrin.h>
#else
#define RLF_ISA generic
#endif

namespace rlfarm::cpu::RLF_ISA {

// exp(x) is 0 in float32 below this; the kernels clamp to it before multiplying
// exp(d) by d so that a -inf logit contributes 0, not 0 * -inf.
constexpr float kExpMin = -87.33654f;
constexpr float kExpMax = 88.0f;  // keeps 2^n representable in the AVX2 path

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)

constexpr int kWidth = 16;
struct VF {
  __m512 v;
};

inline VF vset(float x) { return {_mm512_set1_ps(x)}; }
inline VF vload(const float* p) { return {_mm512_loadu_ps(p)}; }
inline VF vload(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))};
}
inline void vstore(float* p, VF x) { _mm512_storeu_ps(p, x.v); }
inline void vstore(uint16_t* p, VF x) {
  const __m512i bits = _mm512_castps_si512(x.v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
  const __mmask16 nan = _mm512_cmp_ps_mask(x.v, x.v, _CMP_UNORD_Q);
  rounded = _mm512_mask_or_epi32(rounded, nan, bits, _mm512_set1_epi32(0x00400000));
  const __m256i half = _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded, 16));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), half);
}
inline VF operator+(VF a, VF b) { return {_mm512_add_ps(a.v, b.v)}; }
inline VF operator-(VF a, VF b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline VF operator*(VF a, VF b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline VF operator/(VF a, VF b) { return {_mm512_div_ps(a.v, b.v)}; }
inline VF fma(VF a, VF b, VF c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
// max(a, b) where a NaN in b wins (MAXPS returns its second operand on NaN).
inline VF vmax_keep_nan(VF a, VF b) { return {_mm512_max_ps(a.v, b.v)}; }
inline VF vmin_keep_nan(VF a, VF b) { return {_mm512_min_ps(a.v, b.v)}; }
inline float hsum(VF a) { return _mm512_reduce_add_ps(a.v); }
inline float hmax(VF a) { return _mm512_reduce_max_ps(a.v); }

// exp with ~1 ulp error: exp(x) = 2^n * P(r), r = x - n ln2. Exactly 0 below
// kExpMin (so exp(-inf) = 0), NaN stays NaN.
// No clamping is needed: scalef takes any exponent (large n gives inf or 0), and
// the reduced argument r stays small whatever x is.
inline VF vexp(VF x) {
  const __m512 xc = x.v;
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512 e = _mm512_scalef_ps(p, n);
  const __mmask16 tiny = _mm512_cmp_ps_mask(x.v, _mm512_set1_ps(kExpMin), _CMP_LT_OQ);
  return {_mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), e)};
}

#elif defined(__AVX2__) && defined(__FMA__)

constexpr int kWidth = 8;
struct VF {
  __m256 v;
};

inline VF vset(float x) { return {_mm256_set1_ps(x)}; }
inline VF vload(const float* p) { return {_mm256_loadu_ps(p)}; }
inline VF vload(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))};
}
inline void vstore(float* p, VF x) { _mm256_storeu_ps(p, x.v); }
inline void vstore(uint16_t* p, VF x) {
  const __m256i bits = _mm256_castps_si256(x.v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i rounded = _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x.v, x.v, _CMP_UNORD_Q));
  const __m256i quiet = _mm256_or_si256(bits, _mm256_set1_epi32(0x00400000));
  rounded = _mm256_blendv_epi8(rounded, quiet, nan);
  const __m256i shifted = _mm256_srli_epi32(rounded, 16);
  // packus works within 128-bit lanes; put the two halves back in order.
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(shifted, shifted), 0xd8);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
}
inline VF operator+(VF a, VF b) { return {_mm256_add_ps(a.v, b.v)}; }
inline VF operator-(VF a, VF b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline VF operator*(VF a, VF b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline VF operator/(VF a, VF b) { return {_mm256_div_ps(a.v, b.v)}; }
inline VF fma(VF a, VF b, VF c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline VF vmax_keep_nan(VF a, VF b) { return {_mm256_max_ps(a.v, b.v)}; }
inline VF vmin_keep_nan(VF a, VF b) { return {_mm256_min_ps(a.v, b.v)}; }
inline float hsum(VF a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hmax(VF a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline VF vexp(VF x) {
  const __m256 xc = _mm256_min_ps(_mm256_set1_ps(kExpMax), _mm256_max_ps(_mm256_set1_ps(kExpMin), x.v));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n through the exponent field; n is in [-126, 127] after the clamp.
  const __m256i pow2 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(pow2));
  const __m256 tiny = _mm256_cmp_ps(x.v, _mm256_set1_ps(kExpMin), _CMP_LT_OQ);
  return {_mm256_andnot_ps(tiny, e)};
}

#else

constexpr int kWidth = 1;
struct VF {
  float v;
};

inline VF vset(float x) { return {x}; }
inline VF vload(const float* p) { return {*p}; }
inline VF vload(const uint16_t* p) {
  uint32_t bits = static_cast<uint32_t>(*p) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return {f};
}
inline void vstore(float* p, VF x) { *p = x.v; }
inline void vstore(uint16_t* p, VF x) {
  uint32_t bits;
  std::memcpy(&bits, &x.v, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    *p = static_cast<uint16_t>((bits >> 16) | 0x40u);
    return;
  }
  bits += 0x7fffu + ((bits >> 16) & 1u);
  *p = static_cast<uint16_t>(bits >> 16);
}
inline VF operator+(VF a, VF b) { return {a.v + b.v}; }
inline VF operator-(VF a, VF b) { return {a.v - b.v}; }
inline VF operator*(VF a, VF b) { return {a.v * b.v}; }
inline VF operator/(VF a, VF b) { return {a.v / b.v}; }
inline VF fma(VF a, VF b, VF c) { return {std::fma(a.v, b.v, c.v)}; }
inline VF vmax_keep_nan(VF a, VF b) { return {std::isnan(b.v) ? b.v : (a.v > b.v ? a.v : b.v)}; }
inline VF vmin_keep_nan(VF a, VF b) { return {std::isnan(b.v) ? b.v : (a.v < b.v ? a.v : b.v)}; }
inline float hsum(VF a) { return a.v; }
inline float hmax(VF a) { return a.v; }
inline VF vexp(VF x) { return {x.v < kExpMin ? 0.0f : std::exp(x.v)}; }

#endif

// Loads up to kWidth elements, filling the rest of the vector with `fill`.
template <typename T>
inline VF vload_partial(const T* p, int count, float fill) {
  alignas(64) T buffer[kWidth];
  const VF filled = vset(fill);
  vstore(buffer, filled);
  std::memcpy(buffer, p, sizeof(T) * count);
  return vload(static_cast<const T*>(buffer));
}

template <typename T>
inline void vstore_partial(T* p, VF x, int count) {
  alignas(64) T buffer[kWidth];
  vstore(buffer, x);
  std::memcpy(p, buffer, sizeof(T) * count);
}

}  // namespace rlfarm::cpu::RLF_ISA
