// Conversion of llama2.c checkpoints to Hugging Face Llama model directories.
//
// llama2.c ("legacy" export, run.c's checkpoint_init_weights): a header of
// seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len; vocab_size < 0 means an unshared classifier follows), then
// float32 arrays token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2,
// w3, rms_final, the two RoPE tables [seq_len, head_size/2], and wcls when
// unshared. llama2.c rotates interleaved pairs (2i, 2i+1) of each head;
// transformers rotates halves (i, i + head_dim/2), so wq and wk rows are
// permuted exactly as transformers' convert_llama_weights_to_hf.py does
// (permute_rotary). docs/RUNTIME.md has the whole mapping.
#pragma once
#include <string>

#include "tenpak/llama.h"
#include "tenpak/status.h"

namespace tenpak::rt {

// Rows of a q or k projection [n_heads*head_dim, in] reordered from
// interleaved to half-split rotary pairs: within each head, output row
// (j*head_dim/2 + i) is input row (2i + j).
torch::Tensor permute_rotary(const torch::Tensor& w, int64_t n_heads);

// Reads a llama2.c checkpoint as a Hugging Face LlamaForCausalLM (names,
// permuted q/k, rms eps 1e-5, rope theta 10000 as run.c hard-codes).
// Errors name the file: Errc::corrupt for a size that disagrees with the
// header, Errc::unsupported for the versioned ("ak42") export format.
Result<Model> read_llama2c(const std::string& path);

struct ConvertReport {
  LlamaConfig cfg;
  int64_t tensors = 0, parameters = 0;
  bool shared_classifier = true;
};
// `tenpak convert llama2c`: writes out_dir with config.json,
// model.safetensors (F32) and tokenizer.bin (the llama2.c tokenizer file,
// copied after it parsed with the model's vocab size). Builds everything in
// a temporary sibling directory and renames it into place; refuses
// (Errc::exists) an existing out_dir.
Result<ConvertReport> convert_llama2c(const std::string& bin, const std::string& tokenizer, const std::string& out_dir);

}  // namespace tenpak::rt
