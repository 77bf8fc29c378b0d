// Log-prob kernels for any x86-64 (or other) CPU: scalar code, the reference
// the vector versions are tested against.
#include "logprobs_impl.h"

RLFARM_DEFINE_LOGPROBS_ENTRIES
