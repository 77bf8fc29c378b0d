// GEMMs on CUDA (the gemm kernel of ops/kernels.h), with the tiling and launch
// shape that plan_gemm (plan.cpp) picks:
//  - bf16_compute: a tensor-core kernel (WMMA 16x16x16, bf16 in, fp32
//    accumulate). A block computes a tile_m x tile_n tile of C, its warps laid
//    out wm x wn; each k step stages A and B tiles in shared memory as bf16
//    (f32 operands are rounded while loading), so either operand may be f32 or
//    bf16, transposed or not.
//  - otherwise: an fp32 SIMT kernel, each thread computing a strip of rows by
//    4 strided columns from k-major shared tiles.
// Both finish with alpha, beta * C and the bias in fp32. Matrix z of a batch
// is at z0 + blockIdx.z (a launch per 65535 matrices), with GemmOperand's
// offsets (grouped kv heads included).
//
// cuBLASLt, loaded with dlopen where it is installed (cublaslt.cu), takes
// every product it can; these kernels run the rest, and all of them where it
// is missing or RLFARM_CUDA_GEMM=own.
#include <cuda_bf16.h>
#include <mma.h>

#include <algorithm>
#include <cstdint>

#include "../ops/kernels.h"
#include "check.h"
#include "cublaslt.h"
#include "plan.h"

namespace rlfarm::cuda {
namespace {

using namespace nvcuda;

struct Operand {
  const void* data;
  int64_t ld, outer, inner, group;
};

struct Problem {
  bool trans_a, trans_b;
  int64_t m, n, k, batch_inner;
  float alpha, beta;
  Operand a, b;
  float* c;
  int64_t ldc, c_outer, c_inner;
  const float* bias;
  int64_t z0;  // the first matrix of this launch: a batch past gridDim.z's 65535 takes several
};

__device__ __forceinline__ int64_t batch_offset(const Operand& o, int64_t z, int64_t inner) {
  return (z / inner) * o.outer + ((z % inner) / o.group) * o.inner;
}

__device__ __forceinline__ float load_f32(const float* p) { return *p; }
__device__ __forceinline__ float load_f32(const __nv_bfloat16* p) { return __bfloat162float(*p); }

// Element (row, col) of op(X) for a stored row-major X with row stride ld; 0 outside rows x cols.
template <typename T>
__device__ __forceinline__ float element(const T* x, int64_t ld, bool trans, int64_t row, int64_t col, int64_t rows,
                                         int64_t cols) {
  if (row >= rows || col >= cols) return 0.0f;
  return load_f32(trans ? x + col * ld + row : x + row * ld + col);
}

__device__ __forceinline__ void write_out(const Problem& p, float* c, int64_t row, int64_t col, float acc) {
  if (row >= p.m || col >= p.n) return;
  float v = p.alpha * acc;
  if (p.beta != 0.0f) v += p.beta * c[row * p.ldc + col];
  if (p.bias != nullptr) v += p.bias[col];
  c[row * p.ldc + col] = v;
}

// ------------------------------------------------------------ tensor cores

template <int TM, int TN, int TK, int WM, int WN, typename TA, typename TB>
__global__ void __launch_bounds__(WM* WN * 32) gemm_wmma_kernel(Problem p) {
  constexpr int kThreads = WM * WN * 32, kLdA = TK + 8, kLdB = TN + 8;
  constexpr int kFragM = TM / WM / 16, kFragN = TN / WN / 16;
  static_assert(TM % (WM * 16) == 0 && TN % (WN * 16) == 0 && TK % 16 == 0, "tile shape");
  __shared__ __align__(128) __nv_bfloat16 as[TM * kLdA];
  __shared__ __align__(128) __nv_bfloat16 bs[TK * kLdB];
  __shared__ __align__(128) float staging[WM * WN * 256];

  const int64_t z = p.z0 + blockIdx.z;
  const TA* A = static_cast<const TA*>(p.a.data) + batch_offset(p.a, z, p.batch_inner);
  const TB* B = static_cast<const TB*>(p.b.data) + batch_offset(p.b, z, p.batch_inner);
  float* C = p.c + (z / p.batch_inner) * p.c_outer + (z % p.batch_inner) * p.c_inner;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * TM, n0 = static_cast<int64_t>(blockIdx.x) * TN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int warp_m = warp / WN, warp_n = warp % WN;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kFragM][kFragN];
  for (int i = 0; i < kFragM; ++i)
    for (int j = 0; j < kFragN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int64_t k0 = 0; k0 < p.k; k0 += TK) {
    for (int idx = threadIdx.x; idx < TM * TK; idx += kThreads) {
      const int r = idx / TK, kk = idx % TK;
      as[r * kLdA + kk] = __float2bfloat16_rn(element(A, p.a.ld, p.trans_a, m0 + r, k0 + kk, p.m, p.k));
    }
    for (int idx = threadIdx.x; idx < TK * TN; idx += kThreads) {
      const int kk = idx / TN, c = idx % TN;
      bs[kk * kLdB + c] = __float2bfloat16_rn(element(B, p.b.ld, p.trans_b, k0 + kk, n0 + c, p.k, p.n));
    }
    __syncthreads();
    for (int kk = 0; kk < TK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[kFragM];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fb[kFragN];
      for (int i = 0; i < kFragM; ++i) {
        wmma::load_matrix_sync(fa[i], as + (warp_m * (TM / WM) + i * 16) * kLdA + kk, kLdA);
      }
      for (int j = 0; j < kFragN; ++j) {
        wmma::load_matrix_sync(fb[j], bs + kk * kLdB + warp_n * (TN / WN) + j * 16, kLdB);
      }
      for (int i = 0; i < kFragM; ++i)
        for (int j = 0; j < kFragN; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();
  }

  float* stage = staging + warp * 256;
  for (int i = 0; i < kFragM; ++i) {
    for (int j = 0; j < kFragN; ++j) {
      wmma::store_matrix_sync(stage, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
      const int64_t row0 = m0 + warp_m * (TM / WM) + i * 16, col0 = n0 + warp_n * (TN / WN) + j * 16;
      for (int e = lane; e < 256; e += 32) write_out(p, C, row0 + e / 16, col0 + e % 16, stage[e]);
      __syncwarp();
    }
  }
}

// ------------------------------------------------------------------ fp32

template <int TM, int TN, int TK, int THREADS>
__global__ void __launch_bounds__(THREADS) gemm_simt_kernel(Problem p) {
  constexpr int kColGroups = TN / 4, kRowGroups = THREADS / kColGroups, kRows = TM / kRowGroups;
  static_assert(THREADS % kColGroups == 0 && TM % kRowGroups == 0, "thread layout");
  __shared__ float as[TK][TM + 4];
  __shared__ float bs[TK][TN + 4];
  const int64_t z = p.z0 + blockIdx.z;
  const float* A = static_cast<const float*>(p.a.data) + batch_offset(p.a, z, p.batch_inner);
  const float* B = static_cast<const float*>(p.b.data) + batch_offset(p.b, z, p.batch_inner);
  float* C = p.c + (z / p.batch_inner) * p.c_outer + (z % p.batch_inner) * p.c_inner;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * TM, n0 = static_cast<int64_t>(blockIdx.x) * TN;
  const int tx = threadIdx.x % kColGroups, ty = threadIdx.x / kColGroups;
  float acc[kRows][4] = {};
  for (int64_t k0 = 0; k0 < p.k; k0 += TK) {
    for (int idx = threadIdx.x; idx < TM * TK; idx += THREADS) {
      const int r = idx / TK, kk = idx % TK;
      as[kk][r] = element(A, p.a.ld, p.trans_a, m0 + r, k0 + kk, p.m, p.k);
    }
    for (int idx = threadIdx.x; idx < TK * TN; idx += THREADS) {
      const int kk = idx / TN, c = idx % TN;
      bs[kk][c] = element(B, p.b.ld, p.trans_b, k0 + kk, n0 + c, p.k, p.n);
    }
    __syncthreads();
    for (int kk = 0; kk < TK; ++kk) {
      float a[kRows], b[4];
      for (int i = 0; i < kRows; ++i) a[i] = as[kk][ty + i * kRowGroups];
      for (int j = 0; j < 4; ++j) b[j] = bs[kk][tx + j * kColGroups];
      for (int i = 0; i < kRows; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < kRows; ++i)
    for (int j = 0; j < 4; ++j) write_out(p, C, m0 + ty + i * kRowGroups, n0 + tx + j * kColGroups, acc[i][j]);
}

template <int TM, int TN, int TK, int WM, int WN>
void launch_wmma(const Problem& p, DType a, DType b, dim3 grid, int block) {
  const bool a16 = a == DType::bf16, b16 = b == DType::bf16;
  if (a16 && b16) gemm_wmma_kernel<TM, TN, TK, WM, WN, __nv_bfloat16, __nv_bfloat16><<<grid, block>>>(p);
  else if (a16) gemm_wmma_kernel<TM, TN, TK, WM, WN, __nv_bfloat16, float><<<grid, block>>>(p);
  else if (b16) gemm_wmma_kernel<TM, TN, TK, WM, WN, float, __nv_bfloat16><<<grid, block>>>(p);
  else gemm_wmma_kernel<TM, TN, TK, WM, WN, float, float><<<grid, block>>>(p);
}

}  // namespace

void gemm(const GemmArgs& g) {
  RLF_CHECK(g.m >= 0 && g.n >= 0 && g.k >= 0 && g.batch >= 1 && g.batch_inner >= 1, "gemm: bad sizes m ", g.m, ", n ",
            g.n, ", k ", g.k, ", batch ", g.batch);
  if (g.m == 0 || g.n == 0) return;
  RLF_CHECK(g.bias == nullptr || g.batch == 1, "gemm: a bias is for a single product; got a batch of ", g.batch);
  RLF_CHECK(g.a.group >= 1 && g.b.group >= 1, "gemm: operand groups must be >= 1");
  for (const auto& [o, name] : {std::pair{&g.a, "a"}, std::pair{&g.b, "b"}}) {
    RLF_CHECK(o->dtype == DType::f32 || o->dtype == DType::bf16, "gemm: ", name, " must be f32 or bf16; got ",
              dtype_name(o->dtype));
    RLF_CHECK(g.bf16_compute || o->dtype == DType::f32, "gemm: ", name,
              " is bf16: bf16 operands need bf16_compute (tensor cores)");
  }
  if (cublaslt_gemm(g)) return;
  const Precision precision = g.bf16_compute ? Precision::bf16 : Precision::f32;
  int device = 0;
  RLF_CUDA_CHECK(cudaGetDevice(&device));
  int sms = 0;
  RLF_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const GemmPlan plan = plan_gemm(g.m, g.n, std::max<int64_t>(g.k, 1), g.batch, precision, sms, "gemm");
  RLF_CHECK(plan.launch.grid_y <= 65535, "gemm: ", g.m, " rows are past the grid's limit of 65535 row tiles of ",
            plan.tiling.tile_m);
  Problem p{g.trans_a, g.trans_b, g.m, g.n, g.k, g.batch_inner, g.alpha, g.beta,
            Operand{g.a.data, g.a.ld, g.a.outer, g.a.inner, g.a.group},
            Operand{g.b.data, g.b.ld, g.b.outer, g.b.inner, g.b.group},
            g.c, g.ldc, g.c_outer, g.c_inner, g.bias, 0};
  const GemmTiling& t = plan.tiling;
  const int block = plan.launch.block;
  // gridDim.z holds 65535 matrices: a larger batch (attention's batch * heads) takes a launch per 65535.
  constexpr int64_t kMaxZ = 65535;
  for (p.z0 = 0; p.z0 < g.batch; p.z0 += kMaxZ) {
    const dim3 grid(static_cast<unsigned>(plan.launch.grid_x), static_cast<unsigned>(plan.launch.grid_y),
                    static_cast<unsigned>(std::min<int64_t>(kMaxZ, g.batch - p.z0)));
    // The tilings of plan.cpp's gemm_tilings, each compiled here.
    if (t.tensor_cores && t.tile_m == 128 && t.tile_n == 128) launch_wmma<128, 128, 32, 2, 4>(p, g.a.dtype, g.b.dtype, grid, block);
    else if (t.tensor_cores && t.tile_m == 64 && t.tile_n == 128) launch_wmma<64, 128, 32, 2, 2>(p, g.a.dtype, g.b.dtype, grid, block);
    else if (t.tensor_cores && t.tile_m == 64 && t.tile_n == 64) launch_wmma<64, 64, 32, 2, 2>(p, g.a.dtype, g.b.dtype, grid, block);
    else if (!t.tensor_cores && t.tile_m == 64) gemm_simt_kernel<64, 64, 16, 256><<<grid, block>>>(p);
    else if (!t.tensor_cores && t.tile_m == 32) gemm_simt_kernel<32, 32, 16, 128><<<grid, block>>>(p);
    else fail("gemm: no kernel is compiled for the ", t.tile_m, "x", t.tile_n, " tiling");
    RLF_CUDA_CHECK_LAUNCH("gemm");
  }
}

}  // namespace rlfarm::cuda
