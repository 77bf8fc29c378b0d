// cuBLASLt behind the gemm kernel (cublaslt.cu), loaded with dlopen at run time.
#pragma once

#include <string>

#include "../ops/kernels.h"

namespace rlfarm::cuda {

// Runs the product with cuBLASLt; false when it cannot take it (not found,
// turned off with RLFARM_CUDA_GEMM=own, or no algorithm for it), and the
// caller's own kernel runs it instead.
bool cublaslt_gemm(const GemmArgs& g);
// "cublaslt (<library>)", or why the own kernels run every product.
std::string cublaslt_status();

}  // namespace rlfarm::cuda
