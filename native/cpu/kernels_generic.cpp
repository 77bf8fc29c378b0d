// Vector kernels (log-probs, element-wise) for any CPU: scalar code, the reference
// the vector versions are tested against.
#include "elementwise_impl.h"
#include "logprobs_impl.h"

RLFARM_DEFINE_LOGPROBS_ENTRIES
RLFARM_DEFINE_ELEMENTWISE_ENTRIES
