// Parameters in Hugging Face's form: loading them from the raw bytes of a
// safetensors entry (F32, BF16 or F16, decoded to f32) and reading them back,
// with GPT-2's Conv1D weights transposed between Hugging Face's [in, out] and
// the engine's [out, in] (ParamInfo::hf_transposed).
#pragma once

#include <string>

#include "../core/tensor.h"
#include "transformer.h"

namespace rlfarm::model {

// Writes parameter `name` from `bytes` (u8, host): elements of `dtype` ("F32",
// "BF16" or "F16") stored as `shape`, which is the parameter's shape reversed
// when `transpose`. Errors name the tensor.
void load_parameter(Transformer& model, const std::string& name, const Tensor& bytes, const std::string& dtype,
                    const Shape& shape, bool transpose);

// An f32 parameter (or its gradient) in Hugging Face's orientation: a view of
// the model's buffer, or a transposed copy when `transpose`.
Tensor read_parameter(Transformer& model, const std::string& name, bool transpose, bool from_grads);

}  // namespace rlfarm::model
