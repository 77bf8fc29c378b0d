// Which vector instruction set the CPU log-prob kernels use. Chosen at load
// time from what the processor supports; RLFARM_SIMD=generic|avx2|avx512 or
// set_simd_level() forces one (to compare them, or to rule one out).
#pragma once

#include <string>
#include <vector>

namespace rlfarm::cpu {

std::string simd_level();
std::vector<std::string> simd_levels_supported();
// Throws when `level` is unknown or this CPU (or build) does not support it.
void set_simd_level(const std::string& level);

}  // namespace rlfarm::cpu
