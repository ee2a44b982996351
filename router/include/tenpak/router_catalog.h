// The catalog the router recommends from: models (family, size, quality per
// task category, optional API price), quantized variants, GPU profiles
// (memory, bandwidth, hourly price, with source and date), and the cost of
// every way of serving a model, derived from those figures by one stated
// throughput model (docs/ROUTER.md, "Costs").
#pragma once
#include <string>
#include <vector>

#include "tenpak/status.h"

namespace tenpak::router {

// Task categories with a quality figure per model.
inline constexpr const char* kCategories[] = {"knowledge", "math", "code", "chat"};
inline constexpr int kNumCategories = 4;
// Which category a prompt belongs to (rules on the text: code markers, then
// arithmetic, then multiple-choice/knowledge, else chat).
int prompt_category(const std::string& prompt);

struct GpuProfile {
  std::string name;
  double memory_gb = 0, bandwidth_gbs = 0, price_per_hour = 0;
  std::string price_source, spec_source, date;
};

struct Quantization {
  std::string name;             // "bf16", "int8", "int4"
  double bytes_per_param = 2;   // weights only, scales included
  double quality_factor = 1;    // multiplies the model's quality figures
  std::string source;
};

struct ModelEntry {
  std::string name, family;
  double params_b = 0;                 // parameters, billions (all experts)
  double quality[kNumCategories] = {}; // in [0, 1]
  std::string quality_source;
  double api_price_per_mtok = 0;       // > 0: served by an API at this blended price, no hardware
  std::string api_price_source;
};

// One way of serving a model.
struct ServeOption {
  const ModelEntry* model = nullptr;
  const Quantization* quant = nullptr;  // null for API models
  const GpuProfile* gpu = nullptr;      // null for API models
  int gpus = 0;
  double tokens_per_s = 0;              // whole deployment
  double price_per_mtok = 0;            // USD per million generated tokens
  std::string label() const;            // "Llama-2-7B int4 on 1x T4"
};

struct Catalog {
  std::vector<GpuProfile> gpus;
  std::vector<Quantization> quants;
  std::vector<ModelEntry> models;
  // Throughput model: a deployment generates batch * efficiency * bandwidth /
  // weight_bytes tokens per second; weights (x memory_overhead, for the KV
  // cache and activations) must fit the GPUs' memory.
  double batch = 16, bandwidth_efficiency = 0.6, memory_overhead = 1.2;
  std::vector<int> gpu_counts{1, 2, 4, 8};
  std::string source;  // where it was read from

  const ModelEntry* find_model(const std::string& name) const;  // case-insensitive
  std::string model_list() const;                               // "a, b, c"
  // Every option for `m` (API, or every quantization x GPU x count that fits;
  // for each quantization and GPU only the smallest count that fits).
  std::vector<ServeOption> options(const ModelEntry& m) const;
};

// The catalog built into the binary (router/data/catalog.json and
// hardware.json) or a user's file: a catalog JSON whose "hardware" is an
// inline object or a path (relative to the catalog) to a hardware JSON;
// absent: the built-in hardware profiles.
Result<Catalog> default_catalog();
Result<Catalog> load_catalog(const std::string& path);
Result<Catalog> parse_catalog(const std::string& catalog_json, const std::string& hardware_json, const std::string& what);

struct Recommendation {
  ServeOption requested, recommended;
  int category = 0;
  double p_strong = 0, p_ref = 0;
  double predicted_quality = 1;  // of the recommended option relative to the requested, for this prompt
  double saving = 0;             // 1 - recommended price / requested price
  std::vector<std::pair<ServeOption, double>> considered;  // cheaper options and their predicted relative quality
};

// requested: "MODEL" (its cheapest bf16 option, or its API) or "MODEL@GPU"
// (bf16 on that GPU, as many as it needs). Predicted relative quality of a
// cheaper option o for this prompt:
//   r = 1 - (1 - min(1, q_o / q_req)) * p_strong / p_ref   (clamped to [0, 1])
// where q is the quality figure of the prompt's category: an average prompt
// (p_strong = p_ref) gets the catalog's ratio, an easier one less of the gap.
// The recommendation is the cheapest option with r >= threshold (the
// requested option when none is).
Result<Recommendation> recommend(const Catalog& cat, const std::string& requested, int category, double p_strong,
                                 double p_ref, double threshold);

}  // namespace tenpak::router
