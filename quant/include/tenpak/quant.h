// Quantization presets of a Llama-family model directory, written in the
// checkpoint format of each preset's loader (docs/QUANT_FORMATS.md), and
// the loader that reads any of them back dequantized to float32, so that the
// runtime's evaluation measures exactly the weights a loader would run.
//
// Which tensors are quantized: the seven linears of every decoder layer
// (q, k, v, o, gate, up, down). Embeddings, norms and lm_head keep their
// stored bytes, except the norms and linears AWQ folds its scales into (as
// AutoAWQ writes them). A linear whose shape the format cannot hold (GPTQ:
// in and out features multiples of 32; AWQ GEMM: in_features a multiple of
// the group size and out_features of 8) stays unquantized and is named in
// the quantization_config the loader reads (GPTQ: modules_in_block_to_quantize;
// AWQ: modules_to_not_convert) and in the report.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tenpak/llama.h"
#include "tenpak/quant_formats.h"
#include "tenpak/status.h"

namespace tenpak::quant {

enum class Method { rtn, gptq, awq, nf4, fp4, int8 };
const char* method_name(Method m);

struct Preset {
  std::string name;        // "gptq-4bit-128g", "rtn-3bit-64g", ...
  Method method = Method::rtn;
  int bits = 4;
  int64_t group_size = 128;  // GPTQ/AWQ/RTN group; bitsandbytes 4-bit block size; 0 for int8
  bool double_quant = false;  // NF4: absmax double-quantized
  std::string use_case;
  // GPTQ presets' algorithm choices (QuantizeOptions may override each):
  // act-order with static groups (g_idx stays i // group) and the clipping
  // search of the group ranges. Measured on stories260K and chosen there
  // (docs/BENCHMARKS.md); RTN presets ignore them.
  bool gptq_act_order = false;
  bool gptq_static_groups = false;
  bool gptq_mse = false;
  int gptq_search = 0;  // GptqOptions::search: candidates of the loss-aware range search (0: off)
  double gptq_search_shrink = 0.5;  // GptqOptions::search_shrink: the smallest range is 1 - this
};

// The nine presets of the table, in order.
const std::vector<Preset>& presets();
// A preset by name: one of presets(), or rtn-<bits>bit-<group>g (bits 2, 3,
// 4, 8; group a power of two from 16 to 4096), written in the GPTQ format.
// Errc::invalid otherwise, listing the names.
Result<Preset> find_preset(const std::string& name);
bool needs_calibration(const Preset& p);
// Bits per quantized weight, scales and zero points included (g_idx and
// per-row int8 scales counted per weight of a 4096-wide layer).
double bits_per_weight(const Preset& p);
// What `tenpak presets` prints: family, bits, group, calibration, loaders and
// their flags, use case, the CLI and Python loading lines, and the figures
// bench/quant_bench.sh measured on stories260K when its data file is present.
nlohmann::json preset_json(const Preset& p, const nlohmann::json& measured);
// docs/quant_measured.json (written by bench/quant_bench.sh), or the file
// $TENPAK_QUANT_MEASURED names; null when absent.
nlohmann::json load_measured();

struct QuantizeOptions {
  int64_t calib_samples = 64;  // windows of seq_len tokens taken in order from the calibration text
  int64_t seq_len = 256;       // clamped to the model's max_position
  int64_t batch = 8;           // windows per forward call (memory only)
  bool act_order = false;      // GPTQ desc_act on (the preset's choice otherwise; desc_act below wins)
  double damp_percent = 0.01;  // GPTQ
  // Explicit GPTQ choices; unset = the preset's (Preset::gptq_*), act_order
  // true also turns act-order on.
  std::optional<bool> desc_act;
  // GPTQ static_groups (quantizers.h GptqOptions): with act-order, g_idx
  // stays i // group_size. Recorded in quantization_config.
  std::optional<bool> static_groups;
  // Group ranges by the clipping search (group_params_mse): GPTQ, and RTN
  // when set (RTN presets default to plain min/max).
  std::optional<bool> mse;
  // GPTQ's loss-aware range search (quantizers.h GptqOptions::search):
  // candidates per group, 0 = off; unset = the preset's (Preset::gptq_search).
  std::optional<int> search;
  // Its shrink span (GptqOptions::search_shrink, in (0, 1)); unset = the
  // preset's (Preset::gptq_search_shrink).
  std::optional<double> search_shrink;
  // Quantize lm_head too (with tied embeddings: a quantized copy of the
  // embedding; the output unties them, tie_word_embeddings false). GPTQ/RTN
  // write "lm_head": true (vLLM's and GPTQModel's key), bitsandbytes
  // llm_int8_skip_modules [] (transformers then converts lm_head); AWQ is
  // refused (Errc::unsupported: its loaders never quantize the head).
  bool quantize_head = false;
  // Stage name, done, total (may be empty).
  std::function<void(const std::string&, int64_t, int64_t)> progress;
};

// Calibration windows: `calib_samples` consecutive windows of `seq_len` ids
// of the text encoded with the model's tokenizer. Errc::invalid when the
// text is too short, saying how many tokens (and about how many bytes) are
// needed. `file` names the text in errors.
Result<std::vector<std::vector<int64_t>>> calibration_windows(const std::string& text, const std::string& file,
                                                               const std::string& model_dir,
                                                               const QuantizeOptions& opt);

struct LinearReport {
  std::string name;  // full weight name
  bool quantized = false;
  std::string reason;  // why not, when not
  // GPTQ with the loss-aware search (quantizers.h GptqOptions::search): the
  // linear's GPTQ objective on its calibration inputs (-1: not computed) and
  // whether plain GPTQ's result was kept because the search's was not lower.
  double gptq_objective = -1;
  bool search_fell_back = false;
};

// A quantized model in memory: what the checkpoint stores, and what its
// loader (load_model_any) returns for it.
struct QuantizedModel {
  Preset preset;
  rt::Model deq;  // float32 weights as dequantized by the loader
  // Stored tensors of the quantized linears, in write order, by full name
  // ("model.layers.0.self_attn.q_proj.qweight", ...).
  std::vector<std::pair<std::string, torch::Tensor>> stored;
  std::vector<std::string> quantized_weights;  // the ".weight" names they replace
  std::vector<std::string> modified;           // unquantized tensors changed (AWQ's folded norms)
  std::vector<LinearReport> linears;
  nlohmann::json quantization_config;
  int64_t calib_tokens = 0;
};
// `calib` may be empty for presets that need none. `dtype`: the compute dtype
// recorded for bitsandbytes ("float32", "float16", "bfloat16").
// The GPTQ choices quantize_model applies for this preset and options.
struct GptqChoice {
  bool act_order = false, static_groups = false, mse = false;
  int search = 0;
  double search_shrink = 0.5;
};
GptqChoice gptq_choice(const Preset& p, const QuantizeOptions& opt);

Result<QuantizedModel> quantize_model(const rt::Model& m, const Preset& p,
                                      const std::vector<std::vector<int64_t>>& calib, const QuantizeOptions& opt);

struct QuantizeReport {
  QuantizedModel model;
  double seconds = 0;
  uint64_t input_bytes = 0, output_bytes = 0;  // safetensors bytes
};
// MODEL_DIR -> OUT_DIR. The output is written into a temporary directory
// next to OUT_DIR and renamed when complete; an existing OUT_DIR is refused
// (Errc::exists). Every other file of MODEL_DIR is copied; config.json gets
// quantization_config (GPTQ: also quantize_config.json). `calib_text_file`
// may be empty when the preset needs no calibration.
Result<QuantizeReport> quantize_model_dir(const std::string& model_dir, const Preset& p, const std::string& out_dir,
                                          const std::string& calib_text_file, const QuantizeOptions& opt);

// Loads a model directory like rt::load_model_dir, dequantizing GPTQ, AWQ
// GEMM and bitsandbytes (4-bit, 8-bit) checkpoints (config.json's
// quantization_config) to float32 by the rules of docs/QUANT_FORMATS.md.
Result<rt::Model> load_model_any(const std::string& dir);

}  // namespace tenpak::quant
