// Quantizers of one linear layer (libtorch, CPU, float32). Each returns the
// integer codes and parameters the checkpoint stores (quant_formats.h packs
// them) and its own dequantized result `deq`, computed with the stored
// (fp16-rounded) scales, so that a loader's dequantization equals `deq`.
//
// Weights are nn.Linear's [out, in]; activations x are [..., in].
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>

#include "tenpak/quant_formats.h"

namespace tenpak::quant {

// How a group's scale and zero point are chosen (both asymmetric, codes
// 0 .. 2^bits-1, w ~ scale * (q - zero)):
//  - gptq: GPTQ's Quantizer.find_params (sym=False): the range always
//    includes 0 (min(w,0) .. max(w,0)); the zero point is kept in 1 .. 2^bits-1
//    because the GPTQ format stores zero-1 in `bits` bits (a zero of 0 would
//    wrap to 2^bits when reloaded; AutoGPTQ itself writes that wrong value);
//    a group whose zero would round to 0 takes scale = max / (2^bits - 2).
//  - awq: AutoAWQ's w_quantize: scale = (max - min) / (2^bits-1) (at least
//    1e-5 / (2^bits-1)), zero = clamp(-round(min / scale), 0, 2^bits-1).
// Scales are rounded to fp16 (what the file holds) before the codes are chosen.
enum class GridStyle { gptq, awq };

struct GroupQuant {
  int bits = 4;
  int64_t group_size = 128;  // effective: the layer's in_features when the preset's group is larger
  torch::Tensor codes;       // int32 [out, in]
  torch::Tensor scales;      // float32 [G, out], fp16-representable
  torch::Tensor zeros;       // int32 [G, out]
  torch::Tensor g_idx;       // int32 [in]: group of each input channel
  torch::Tensor deq;         // float32 [out, in]
  // gptq_quantize with the loss-aware search only: GPTQ's objective
  // (gptq_objective with the undamped H) of the result, and whether the
  // plain run's result was kept because the search's was not lower.
  double objective = -1;
  bool search_fell_back = false;
};

// Groups of `group_size` consecutive input channels (<= 0: one group per
// row), G = ceil(in / group_size).
// `mse` (GridStyle::gptq only): each group's range by group_params_mse, the
// clipping search GPTQ's reference offers, still rounding to nearest.
GroupQuant rtn_quantize(const torch::Tensor& w, int bits, int64_t group_size, GridStyle style, bool mse = false);

// Scale and zero of each row of `w` [rows, cols] (one group per row).
void group_params(const torch::Tensor& w, int bits, GridStyle style, torch::Tensor& scale, torch::Tensor& zero);
// GPTQ's Quantizer.find_params with mse=True (GridStyle::gptq): the range
// min(w,0) .. max(w,0) shrunk by p = 1 - k/grid, k = 0 .. maxshrink*grid-1,
// keeping per row the p with the least sum |fake_quant(w) - w|^norm (the
// reference's defaults: norm 2.4, grid 100, maxshrink 0.8). Scales are
// fp16-rounded and zero points kept in 1 .. 2^bits-1 as in group_params, and
// p = 1 is group_params' own result, so the chosen error is never larger.
void group_params_mse(const torch::Tensor& w, int bits, torch::Tensor& scale, torch::Tensor& zero, double norm = 2.4,
                      int grid = 100, double maxshrink = 0.8);
// scale * (clamp(round(w / scale) + zero, 0, maxq) - zero); `codes` (may be
// null) receives the integer codes. scale, zero broadcast against w.
torch::Tensor fake_quant(const torch::Tensor& w, const torch::Tensor& scale, const torch::Tensor& zero, int bits,
                         torch::Tensor* codes = nullptr);

// H = 2/n * sum over the n rows x of x x^T (float64 accumulation), GPTQ's
// Hessian of the layer-wise squared error.
class Hessian {
 public:
  explicit Hessian(int64_t in);
  void add(const torch::Tensor& x);  // [..., in]
  torch::Tensor matrix() const;      // float32 [in, in]
  int64_t samples() const { return n_; }

 private:
  torch::Tensor sum_;  // float64
  int64_t n_ = 0;
};

struct GptqOptions {
  int bits = 4;
  int64_t group_size = 128;  // <= 0: one group per row
  double damp_percent = 0.01;
  bool act_order = false;    // desc_act: columns by decreasing Hessian diagonal, g_idx records groups
  int64_t block_size = 128;  // lazy batch updates
  // AutoGPTQ's static_groups: every group's scale and zero computed from the
  // original weights before any column is quantized, so with act_order the
  // groups stay the contiguous i // group_size (g_idx trivial: every loader's
  // kernel reads it, the torch fallback included) while the columns are still
  // processed by decreasing Hessian diagonal.
  bool static_groups = false;
  // Group parameters by group_params_mse instead of min/max.
  bool mse = false;
  // Loss-aware range search (0: off; ignored with static_groups): each group
  // is quantized once with its usual parameters (mse or min/max) and once per
  // range min(w,0)..max(w,0) shrunk by p = 1 - k * search_shrink / search,
  // k = 0 .. search-1, all from the same error-updated weights, and each row
  // keeps the candidate whose sum of (w - q)^2 / [H^-1]_jj over the group's
  // columns is least: that sum is exactly how much the group adds to GPTQ's
  // objective tr((W - Q) H (W - Q)^T) / 2 once the later columns absorb its
  // error, so the choice minimises the layer's output error on the
  // calibration inputs instead of the weights' own error (group_params_mse).
  // The error of the kept candidate alone is spread over the later columns,
  // so the result is a plain GPTQ run with per-group ranges chosen greedily,
  // group by group. With one group per row the choice is exact: no row's
  // objective exceeds the run without the search (whose parameters are a
  // candidate); with several groups a row's later groups start from another
  // state, so only each group's own increment is guaranteed no larger.
  // Therefore the layer is also quantized without the search, and the
  // search's result is kept only when its objective summed over the layer
  // (gptq_objective, undamped H) is not higher; otherwise the plain result
  // is returned with search_fell_back set. So the layer objective with the
  // search is never above plain GPTQ's, at any group size.
  int search = 0;
  double search_shrink = 0.5;
  // A fixed grid given by the caller (TenPak's lossy deltas quantize the
  // change W_ft - W_base with it, docs/LOSSY.md): when zero2 >= 0 every
  // weight is quantized to fixed_scale × (q − zero2/2), q = clamp(round(w /
  // fixed_scale + zero2/2), 0, 2^bits − 1), with bits 1..8 and zero2 ≤
  // 2·(2^bits − 1): zero2 = 2^bits − 1 is the symmetric grid without a zero
  // level (1 bit: ±scale/2), an even zero2 puts 0 on the grid. fixed_scale
  // ([out, 1], or one value for every row) replaces the group parameters, so
  // group_size, mse, search and static_groups play no part; `zeros` then
  // holds zero2. Requires fixed_scale > 0.
  int zero2 = -1;
  torch::Tensor fixed_scale;
};
// GPTQ's objective for a quantization Q of W: tr((W − Q) H (W − Q)^T) / 2 per
// row summed (float64), the layer output's squared error on the calibration
// inputs H was taken from (Hessian's 2/n included).
double gptq_objective(const torch::Tensor& w, const torch::Tensor& q, const torch::Tensor& H);
// GPTQ (Frantar et al. 2022, Algorithm 1) as the reference implementation
// runs it: dead inputs (zero Hessian diagonal) zeroed, dampening
// damp_percent * mean(diag H), the upper Cholesky factor of H^-1, columns
// quantized one at a time with the error spread over the later columns of the
// block and, once per block, over the rest; group parameters (GridStyle::gptq)
// computed from the updated weights when a group starts.
GroupQuant gptq_quantize(const torch::Tensor& w, const torch::Tensor& H, const GptqOptions& opt);

// AWQ's per-input-channel scale search for one set of linears sharing an
// input (Lin et al. 2023; AutoAWQ's _search_best_scale with duo scaling):
// x_mean = mean |x| per input channel, w_mean = mean over the linears' rows of
// |w| / max |w| of its group; for ratio r in {0, 1/n, .., (n-1)/n}:
// s = clamp(x_mean^r / (w_mean^(1-r) + 1e-4), 1e-4), s /= sqrt(max s * min s);
// `loss(s)` (the caller's output error with the linears quantized as
// Q(w * s) / s) picks the best. s = 1 (plain RTN) is a candidate too, so the
// result is never worse than RTN on the caller's loss.
torch::Tensor awq_search_scales(const torch::Tensor& x_mean, const std::vector<torch::Tensor>& weights,
                                int64_t group_size, int n_grid, const std::function<double(const torch::Tensor&)>& loss);
// AutoAWQ's clipping search (_compute_best_clip): per output row and group,
// the max |w| shrunk by (1 - k/n_grid), k = 0 .. max_shrink*n_grid-1, that
// minimises the group's partial output error on sample inputs x [n, in];
// returns w clamped to +-best (k = 0: unclipped). GridStyle::awq.
torch::Tensor awq_clip(const torch::Tensor& w, const torch::Tensor& x, int bits, int64_t group_size, int n_grid = 20,
                       double max_shrink = 0.5);
// One linear by itself (the layer-level AWQ of the tests and of callers
// without a preceding op): scales searched on this layer's output error,
// clipping, 4-bit groups. Returns the quantization of w * s (what the file
// stores) and s; the layer then computes deq @ (x / s).
GroupQuant awq_quantize_linear(const torch::Tensor& w, const torch::Tensor& x, int bits, int64_t group_size,
                               torch::Tensor* s_out);

// bitsandbytes blockwise 4-bit and LLM.int8 (quant_formats.h) with the
// dequantized result.
struct Bnb4Quant {
  Bnb4 stored;
  torch::Tensor deq;
};
Bnb4Quant nf4_fp4_quantize(const torch::Tensor& w, const std::string& type, int64_t blocksize, bool double_quant,
                           const std::string& dtype);
struct Bnb8Quant {
  Bnb8 stored;
  torch::Tensor deq;
};
Bnb8Quant int8_quantize(const torch::Tensor& w);

}  // namespace tenpak::quant
