// Safetensors read/write of tensors of any dtype the quantized formats use
// (F32, F16, BF16, I32, I8, U8, I64), for the quantizer's output and its
// loader. Internal to tenpak_quant.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tenpak/status.h"

namespace tenpak::quant {

// Every tensor of one file, in its stored dtype (contiguous, CPU). Errors
// name the file (and tensor).
Status read_safetensors_all(const std::string& path, std::map<std::string, torch::Tensor>& out);
// Every tensor of a model directory: the shards model.safetensors.index.json
// names, else every *.safetensors file.
Status read_model_tensors(const std::string& dir, std::map<std::string, torch::Tensor>& out);
// Writes `tensors` in the given order with {"format": "pt"} metadata.
Status write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors);

}  // namespace tenpak::quant
