// Model-level quantization (layer by layer through the runtime), the
// checkpoint writer and the dequantizing loader.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

#include "st_io.h"
#include "tenpak/quant.h"
#include "tenpak/quantizers.h"
#include "tenpak/tokenizer.h"

namespace fs = std::filesystem;

namespace tenpak::quant {
namespace {

std::string strip_weight(const std::string& name) { return name.substr(0, name.size() - std::string(".weight").size()); }
// "model.layers.3.self_attn.q_proj.weight" -> "self_attn.q_proj"
std::string short_name(const std::string& name) {
  auto base = strip_weight(name);
  auto p = base.find('.', std::string("model.layers.").size());
  return base.substr(p + 1);
}

int64_t eff_group(int64_t g, int64_t in) { return g <= 0 ? in : g; }

const std::string kHead = "lm_head.weight";

// Whether the preset's format can hold a linear of this shape; `why` says why not.
bool fits_format(const Preset& p, int64_t out, int64_t in, std::string& why) {
  switch (p.method) {
    case Method::rtn:
    case Method::gptq:
      if (in % 32 || out % 32) {
        why = "GPTQ packing needs in_features and out_features multiples of 32 (in " + std::to_string(in) +
              ", out " + std::to_string(out) + ")";
        return false;
      }
      return true;
    case Method::awq:
      if (in % eff_group(p.group_size, in) || out % 8) {
        why = "AWQ GEMM needs in_features a multiple of the group size " + std::to_string(p.group_size) +
              " and out_features of 8 (in " + std::to_string(in) + ", out " + std::to_string(out) + ")";
        return false;
      }
      return true;
    default:
      return true;
  }
}

torch::Tensor batch_of(const std::vector<std::vector<int64_t>>& calib, size_t a, size_t b) {
  const int64_t L = static_cast<int64_t>(calib[a].size());
  auto t = torch::empty({static_cast<int64_t>(b - a), L}, torch::kLong);
  for (size_t i = a; i < b; ++i)
    std::memcpy(t[static_cast<int64_t>(i - a)].data_ptr<int64_t>(), calib[i].data(), L * sizeof(int64_t));
  return t;
}

// Hidden states of the calibration windows, in chunks of opt.batch windows.
using Chunks = std::vector<torch::Tensor>;

Chunks embed_chunks(const rt::Model& m, const std::vector<std::vector<int64_t>>& calib, int64_t batch) {
  Chunks h;
  for (size_t a = 0; a < calib.size(); a += batch)
    h.push_back(rt::embed(m, batch_of(calib, a, std::min(calib.size(), a + static_cast<size_t>(batch)))));
  return h;
}

Chunks run_block(const rt::Model& m, int layer, const Chunks& h, const rt::ForwardHooks* hooks = nullptr) {
  Chunks out;
  torch::NoGradGuard ng;
  for (auto& x : h) out.push_back(rt::block_forward(m, layer, x, hooks));
  return out;
}

// The input each linear of a layer sees, at most `max_rows` rows per linear
// (evenly strided over the calibration tokens).
std::map<std::string, torch::Tensor> capture_inputs(const rt::Model& m, int layer, const Chunks& h, int64_t max_rows) {
  std::map<std::string, std::vector<torch::Tensor>> parts;
  rt::ForwardHooks hooks;
  int64_t tokens = 0;
  for (auto& x : h) tokens += x.size(0) * x.size(1);
  const int64_t stride = std::max<int64_t>(1, tokens / std::max<int64_t>(1, max_rows));
  hooks.on_linear_input = [&](const std::string& name, const torch::Tensor& x) {
    auto r = x.reshape({-1, x.size(-1)});
    parts[name].push_back(r.slice(0, 0, r.size(0), stride).clone());
  };
  run_block(m, layer, h, &hooks);
  std::map<std::string, torch::Tensor> out;
  for (auto& [k, v] : parts) out[k] = torch::cat(v, 0);
  return out;
}

std::string layer_prefix(int l) { return "model.layers." + std::to_string(l) + "."; }

struct Ctx {
  const Preset& p;
  const QuantizeOptions& opt;
  QuantizedModel& q;
  rt::Model& work;
  std::set<std::string> fits;  // weight names the format holds
};

void progress(const QuantizeOptions& opt, const std::string& stage, int64_t done, int64_t total) {
  if (opt.progress) opt.progress(stage, done, total);
}

// Records a GPTQ-format linear (GPTQ or RTN).
void store_gptq(Ctx& c, const std::string& wname, const GroupQuant& g) {
  auto t = gptq_pack(g.codes, g.zeros, g.scales, g.g_idx, g.bits);
  auto base = strip_weight(wname);
  c.q.stored.emplace_back(base + ".qweight", t.qweight);
  c.q.stored.emplace_back(base + ".qzeros", t.qzeros);
  c.q.stored.emplace_back(base + ".scales", t.scales);
  c.q.stored.emplace_back(base + ".g_idx", t.g_idx);
  // A zero fp16 bias where the linear has none, as AutoGPTQ's pack() saves
  // it: optimum builds every QuantLinear with a bias buffer, and one missing
  // from the file is left uninitialised by transformers (garbage outputs).
  if (!c.work.w.count(base + ".bias"))
    c.q.stored.emplace_back(base + ".bias", torch::zeros({g.deq.size(0)}, torch::kHalf));
  c.q.quantized_weights.push_back(wname);
  c.work.w[wname] = g.deq;
}

void store_awq(Ctx& c, const std::string& wname, const GroupQuant& g) {
  auto t = awq_pack_linear(g.codes, g.zeros, g.scales);
  auto base = strip_weight(wname);
  c.q.stored.emplace_back(base + ".qweight", t.qweight);
  c.q.stored.emplace_back(base + ".qzeros", t.qzeros);
  c.q.stored.emplace_back(base + ".scales", t.scales);
  c.q.quantized_weights.push_back(wname);
  c.work.w[wname] = g.deq;
}

torch::Tensor u8_json(const nlohmann::json& j) {
  auto s = j.dump();
  auto t = torch::empty({static_cast<int64_t>(s.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), s.data(), s.size());
  return t;
}

void store_bnb4(Ctx& c, const std::string& wname, const Bnb4Quant& r) {
  const auto& b = r.stored;
  c.q.stored.emplace_back(wname, b.weight);
  c.q.stored.emplace_back(wname + ".absmax", b.absmax);
  c.q.stored.emplace_back(wname + ".quant_map", b.quant_map);
  if (b.nested) {
    c.q.stored.emplace_back(wname + ".nested_absmax", b.nested_absmax);
    c.q.stored.emplace_back(wname + ".nested_quant_map", b.nested_quant_map);
  }
  c.q.stored.emplace_back(wname + ".quant_state.bitsandbytes__" + b.quant_type, u8_json(bnb4_quant_state_json(b)));
  c.q.quantized_weights.push_back(wname);
  c.work.w[wname] = r.deq;
}

void store_bnb8(Ctx& c, const std::string& wname, const Bnb8Quant& r) {
  auto base = strip_weight(wname);
  c.q.stored.emplace_back(wname, r.stored.weight);
  c.q.stored.emplace_back(base + ".SCB", r.stored.SCB);
  c.q.stored.emplace_back(base + ".weight_format", torch::zeros({}, torch::kUInt8));
  c.q.quantized_weights.push_back(wname);
  c.work.w[wname] = r.deq;
}

// What the loss-aware search did on this linear, for the report.
void note_search(Ctx& c, const std::string& wname, const GroupQuant& g) {
  for (auto& r : c.q.linears)
    if (r.name == wname) {
      r.gptq_objective = g.objective;
      r.search_fell_back = g.search_fell_back;
    }
}

// GPTQ, true-sequential: within a layer the linears are quantized in groups
// of execution order, each group's Hessian taken from the layer's inputs
// with the earlier groups already quantized.
void run_gptq(Ctx& c, const std::vector<std::vector<int64_t>>& calib) {
  const auto& cfg = c.work.cfg;
  auto h = embed_chunks(c.work, calib, c.opt.batch);
  GptqOptions go;
  go.bits = c.p.bits;
  go.group_size = c.p.group_size;
  go.damp_percent = c.opt.damp_percent;
  const auto choice = gptq_choice(c.p, c.opt);
  go.act_order = choice.act_order;
  go.static_groups = choice.static_groups;
  go.mse = choice.mse;
  go.search = choice.search;
  go.search_shrink = choice.search_shrink;
  for (int l = 0; l < cfg.num_layers; ++l) {
    progress(c.opt, "gptq", l, cfg.num_layers);
    auto names = rt::linear_names(cfg, l);
    const std::vector<std::vector<std::string>> groups = {
        {names[0], names[1], names[2]}, {names[3]}, {names[4], names[5]}, {names[6]}};
    for (auto& grp : groups) {
      std::vector<std::string> todo;
      for (auto& n : grp)
        if (c.fits.count(n)) todo.push_back(n);
      if (todo.empty()) continue;
      std::map<std::string, Hessian> H;
      for (auto& n : todo) H.emplace(n, Hessian(c.work.w.at(n).size(1)));
      rt::ForwardHooks hooks;
      hooks.on_linear_input = [&](const std::string& name, const torch::Tensor& x) {
        auto it = H.find(name);
        if (it != H.end()) it->second.add(x);
      };
      run_block(c.work, l, h, &hooks);
      for (auto& n : todo) {
        auto r = gptq_quantize(c.work.w.at(n), H.at(n).matrix(), go);
        note_search(c, n, r);
        store_gptq(c, n, r);
      }
    }
    h = run_block(c.work, l, h);
  }
  if (c.fits.count(kHead)) {
    // The head's input: the final RMSNorm of the last (quantized) layer's output.
    Hessian H(c.work.w.at(kHead).size(1));
    const auto& nw = c.work.w.at("model.norm.weight");
    for (auto& x : h) H.add(x * torch::rsqrt(x.pow(2).mean(-1, true) + cfg.rms_eps) * nw);
    auto r = gptq_quantize(c.work.w.at(kHead), H.matrix(), go);
    note_search(c, kHead, r);
    store_gptq(c, kHead, r);
  }
}

// x [n, in] through one linear (no bias: Llama's MLP and o_proj have none).
torch::Tensor lin(const torch::Tensor& x, const torch::Tensor& w) { return x.matmul(w.t()); }

// Thrown by attn_out's hook once it has o_proj's input: the rest of the
// block (the MLP, most of its work) is not needed.
struct StopAfterAttention {};

// The output of the attention module (o_proj's output, before the residual)
// of layer l over all chunks, with model m.
torch::Tensor attn_out(const rt::Model& m, int l, const Chunks& h, const std::string& o_name) {
  std::vector<torch::Tensor> parts;
  rt::ForwardHooks hooks;
  hooks.on_linear_input = [&](const std::string& name, const torch::Tensor& x) {
    if (name != o_name) return;
    parts.push_back(lin(x.reshape({-1, x.size(-1)}), m.w.at(o_name)));
    throw StopAfterAttention{};
  };
  torch::NoGradGuard ng;
  for (auto& x : h) {
    try {
      rt::block_forward(m, l, x, &hooks);
    } catch (const StopAfterAttention&) {
    }
  }
  if (parts.size() != h.size()) throw std::logic_error("attn_out: o_proj's input was not seen");
  return torch::cat(parts, 0);
}

// AWQ as AutoAWQ runs it (awq/quantize/quantizer.py): per layer, the
// inputs of every linear captured once; for each set of linears sharing an
// input, the scale search measured on the output of the module AutoAWQ
// inspects (its `module2inspect`): the attention module for q,k,v (the
// norm's scales folded into input_layernorm), o_proj alone for v -> o, the
// MLP for gate,up (post_attention_layernorm) and down_proj alone for
// up -> down; then clipping of all but q,k and 4-bit groups with zero
// points. Unlike AutoAWQ, the next layer is fed this layer's quantized
// output (GPTQ's order), not the float one.
void run_awq(Ctx& c, const std::vector<std::vector<int64_t>>& calib) {
  const auto& cfg = c.work.cfg;
  const int64_t g = c.p.group_size;
  auto h = embed_chunks(c.work, calib, c.opt.batch);
  for (int l = 0; l < cfg.num_layers; ++l) {
    progress(c.opt, "awq", l, cfg.num_layers);
    auto names = rt::linear_names(cfg, l);
    const std::string pre = layer_prefix(l);
    struct Group {
      std::string prev;  // norm or linear weight the scales fold into
      std::vector<std::string> lins;
    };
    std::vector<Group> groups = {{pre + "input_layernorm.weight", {names[0], names[1], names[2]}},
                                 {names[2], {names[3]}},
                                 {pre + "post_attention_layernorm.weight", {names[4], names[5]}},
                                 {names[5], {names[6]}}};
    // Each group's own input is not changed by the scales of the groups
    // before it (those fold into other ops' rows or columns), so one capture
    // serves every search.
    const auto xs0 = capture_inputs(c.work, l, h, 1 << 16);
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      auto& grp = groups[gi];
      bool ok = true;
      for (auto& n : grp.lins) ok = ok && c.fits.count(n);
      // A linear before the group must produce exactly the group's inputs
      // (not so for v -> o with grouped-query attention).
      if (!ok || c.work.w.at(grp.prev).size(0) != c.work.w.at(grp.lins[0]).size(1)) continue;
      const auto& x = xs0.at(grp.lins[0]);
      std::vector<torch::Tensor> ws;
      for (auto& n : grp.lins) ws.push_back(c.work.w.at(n));
      auto qdq = [&](const std::string& n, const torch::Tensor& s) {
        return rtn_quantize(c.work.w.at(n) * s, c.p.bits, g, GridStyle::awq).deq / s;
      };
      std::function<double(const torch::Tensor&)> loss;
      torch::Tensor ref;
      if (gi == 0) {  // q, k, v: the attention module's output
        ref = attn_out(c.work, l, h, names[3]);
        loss = [&](const torch::Tensor& s) {
          rt::Model tmp = c.work;
          for (auto& n : grp.lins) tmp.w[n] = qdq(n, s);
          return (attn_out(tmp, l, h, names[3]) - ref).pow(2).mean().item<double>();
        };
      } else if (gi == 2) {  // gate, up: the MLP's output, down_proj in float
        // By value: `loss` outlives this block.
        const torch::Tensor wd = c.work.w.at(names[6]), xg = x;
        auto mlp = [wd, xg](const torch::Tensor& wg, const torch::Tensor& wu) {
          return lin(torch::silu(lin(xg, wg)) * lin(xg, wu), wd);
        };
        ref = mlp(c.work.w.at(names[4]), c.work.w.at(names[5]));
        loss = [&, mlp](const torch::Tensor& s) {
          return (mlp(qdq(names[4], s), qdq(names[5], s)) - ref).pow(2).mean().item<double>();
        };
      } else {  // o_proj or down_proj alone
        ref = lin(x, ws[0]);
        loss = [&](const torch::Tensor& s) { return (lin(x, qdq(grp.lins[0], s)) - ref).pow(2).mean().item<double>(); };
      }
      auto s = awq_search_scales(x.abs().mean(0), ws, g, 20, loss);
      auto& prev = c.work.w[grp.prev];
      prev = prev.dim() == 1 ? prev / s : prev / s.unsqueeze(1);
      c.q.modified.push_back(grp.prev);
      for (auto& n : grp.lins) c.work.w[n] = c.work.w.at(n) * s;
    }
    auto xs = capture_inputs(c.work, l, h, 4096);
    for (int k = 0; k < 7; ++k) {
      const auto& n = names[k];
      if (!c.fits.count(n)) continue;
      // AutoAWQ leaves q and k unclipped: their error passes through q.k^T.
      if (k >= 2) c.work.w[n] = awq_clip(c.work.w.at(n), xs.at(n), c.p.bits, g);
      store_awq(c, n, rtn_quantize(c.work.w.at(n), c.p.bits, g, GridStyle::awq));
    }
    h = run_block(c.work, l, h);
  }
  // A linear that was scaled (as the op before a group) but is not itself
  // quantized is written in float like a folded norm.
  std::set<std::string> qset(c.q.quantized_weights.begin(), c.q.quantized_weights.end());
  std::vector<std::string> mod;
  for (auto& n : c.q.modified)
    if (!qset.count(n)) mod.push_back(n);
  c.q.modified = mod;
}

nlohmann::json make_quant_config(const Preset& p, const QuantizeOptions& opt, const rt::LlamaConfig& cfg,
                                 const std::vector<LinearReport>& lin) {
  nlohmann::ordered_json j;
  std::vector<std::string> skipped, kept;
  bool head = false;
  for (auto& r : lin) head = head || (r.name == kHead && r.quantized);
  {
    std::set<std::string> sk, kp;
    for (auto& r : lin)
      if (r.name != kHead) (r.quantized ? kp : sk).insert(short_name(r.name));
    for (auto& s : sk)
      if (!kp.count(s)) skipped.push_back(s);
    // Keep the execution order for GPTQ's sub-lists.
    for (auto& n : rt::linear_names(cfg, 0))
      if (kp.count(short_name(n))) kept.push_back(short_name(n));
  }
  switch (p.method) {
    case Method::rtn:
    case Method::gptq: {
      j["quant_method"] = "gptq";
      j["bits"] = p.bits;
      j["group_size"] = p.group_size;
      j["damp_percent"] = opt.damp_percent;
      j["desc_act"] = p.method == Method::gptq && gptq_choice(p, opt).act_order;
      j["static_groups"] = p.method == Method::gptq && gptq_choice(p, opt).static_groups;
      j["sym"] = false;
      j["true_sequential"] = true;
      j["model_name_or_path"] = nullptr;
      j["model_file_base_name"] = "model";
      j["checkpoint_format"] = "gptq";
      if (head) j["lm_head"] = true;
      if (!skipped.empty()) {
        nlohmann::json blocks = nlohmann::json::array();
        for (auto& k : kept) blocks.push_back(nlohmann::json::array({k}));
        j["modules_in_block_to_quantize"] = blocks;
      }
      break;
    }
    case Method::awq:
      j["quant_method"] = "awq";
      j["bits"] = p.bits;
      j["group_size"] = p.group_size;
      j["zero_point"] = true;
      j["version"] = "gemm";
      if (skipped.empty()) j["modules_to_not_convert"] = nullptr;
      else j["modules_to_not_convert"] = skipped;
      break;
    case Method::nf4:
    case Method::fp4:
    case Method::int8: {
      const bool four = p.method != Method::int8;
      j["quant_method"] = "bitsandbytes";
      j["load_in_4bit"] = four;
      j["load_in_8bit"] = !four;
      j["llm_int8_threshold"] = 6.0;
      // null: transformers keeps lm_head (get_keys_to_not_convert); a list
      // replaces that default, so [] converts the head as well.
      if (head) j["llm_int8_skip_modules"] = nlohmann::json::array();
      else j["llm_int8_skip_modules"] = nullptr;
      j["llm_int8_enable_fp32_cpu_offload"] = false;
      j["llm_int8_has_fp16_weight"] = false;
      j["bnb_4bit_quant_type"] = p.method == Method::fp4 ? "fp4" : "nf4";
      j["bnb_4bit_use_double_quant"] = p.double_quant;
      j["bnb_4bit_compute_dtype"] = cfg.torch_dtype;
      j["bnb_4bit_quant_storage"] = "uint8";
      j["_load_in_4bit"] = four;
      j["_load_in_8bit"] = !four;
      break;
    }
  }
  j["tenpak_preset"] = p.name;
  return nlohmann::json::parse(j.dump());
}

}  // namespace

Result<std::vector<std::vector<int64_t>>> calibration_windows(const std::string& text, const std::string& file,
                                                               const std::string& model_dir,
                                                               const QuantizeOptions& opt) {
  auto tok = rt::Tokenizer::load(model_dir);
  if (!tok.ok()) return tok.status();
  if (opt.calib_samples <= 0 || opt.seq_len < 2)
    return Status{Errc::invalid, "calibration: --calib-samples must be >= 1 and --seq-len >= 2"};
  const int64_t need = opt.calib_samples * opt.seq_len;
  // Only the text's head is used: encode a prefix (cut at a line end) of
  // about 8 bytes per token needed, the whole text if that falls short.
  std::vector<int64_t> ids;
  size_t cut = std::min(text.size(), static_cast<size_t>(need) * 8 + 4096);
  if (cut < text.size()) {
    auto nl = text.rfind('\n', cut);
    if (nl != std::string::npos && nl > cut / 2) cut = nl + 1;
    ids = tok->encode(text.substr(0, cut), /*bos=*/false);
  }
  if (static_cast<int64_t>(ids.size()) < need) ids = tok->encode(text, /*bos=*/false);
  if (static_cast<int64_t>(ids.size()) < need) {
    const double bpt = ids.empty() ? 4.0 : static_cast<double>(text.size()) / ids.size();
    std::ostringstream m;
    m << file << ": calibration text too short: " << ids.size() << " tokens (" << text.size() << " bytes); "
      << opt.calib_samples << " samples of " << opt.seq_len << " tokens need " << need << " tokens, about "
      << static_cast<int64_t>(std::ceil(need * bpt)) << " bytes of such text (or lower --calib-samples / --seq-len)";
    return Status{Errc::invalid, m.str()};
  }
  std::vector<std::vector<int64_t>> w;
  for (int64_t k = 0; k < opt.calib_samples; ++k)
    w.emplace_back(ids.begin() + k * opt.seq_len, ids.begin() + (k + 1) * opt.seq_len);
  return w;
}

Result<QuantizedModel> quantize_model(const rt::Model& m, const Preset& p,
                                      const std::vector<std::vector<int64_t>>& calib, const QuantizeOptions& opt) {
  if (needs_calibration(p) && calib.empty())
    return Status{Errc::invalid, "preset " + p.name + " needs calibration text (--calib FILE)"};
  QuantizedModel q;
  q.preset = p;
  q.deq = m;
  Ctx c{p, opt, q, q.deq, {}};
  for (auto& w : calib) q.calib_tokens += static_cast<int64_t>(w.size());
  for (int l = 0; l < m.cfg.num_layers; ++l)
    for (auto& n : rt::linear_names(m.cfg, l)) {
      const auto& w = m.w.at(n);
      LinearReport r;
      r.name = n;
      r.quantized = fits_format(p, w.size(0), w.size(1), r.reason);
      if (r.quantized) c.fits.insert(n);
      q.linears.push_back(r);
    }
  if (c.fits.empty()) {
    std::string why = q.linears.empty() ? "no layers" : q.linears.front().reason;
    return Status{Errc::unsupported, "preset " + p.name + ": no linear layer of this model fits its format: " + why};
  }
  if (opt.quantize_head) {
    if (p.method == Method::awq)
      return Status{Errc::unsupported,
                    "preset " + p.name + ": --quantize-head: AWQ loaders keep lm_head unquantized (AutoAWQ quantizes "
                    "decoder layers only; transformers' AWQ integration always adds lm_head to modules_to_not_convert)"};
    const auto it = m.w.find(kHead);
    const torch::Tensor hw = it != m.w.end() ? it->second : m.w.at("model.embed_tokens.weight");
    LinearReport r;
    r.name = kHead;
    r.quantized = fits_format(p, hw.size(0), hw.size(1), r.reason);
    if (!r.quantized) return Status{Errc::unsupported, "preset " + p.name + ": --quantize-head: lm_head: " + r.reason};
    q.deq.w[kHead] = hw.clone();
    q.deq.cfg.tie_embeddings = false;
    c.fits.insert(kHead);
    q.linears.push_back(r);
  }
  torch::NoGradGuard ng;
  switch (p.method) {
    case Method::rtn:
      for (auto& r : q.linears)
        if (r.quantized) store_gptq(c, r.name, rtn_quantize(q.deq.w.at(r.name), p.bits, p.group_size, GridStyle::gptq, opt.mse.value_or(false)));
      break;
    case Method::gptq: run_gptq(c, calib); break;
    case Method::awq: run_awq(c, calib); break;
    case Method::nf4:
    case Method::fp4:
      for (auto& r : q.linears)
        store_bnb4(c, r.name, nf4_fp4_quantize(q.deq.w.at(r.name), p.method == Method::nf4 ? "nf4" : "fp4",
                                               p.group_size, p.double_quant, m.cfg.torch_dtype));
      break;
    case Method::int8:
      for (auto& r : q.linears) store_bnb8(c, r.name, int8_quantize(q.deq.w.at(r.name)));
      break;
  }
  // The loader sees the folded norms in their stored dtype.
  q.quantization_config = make_quant_config(p, opt, m.cfg, q.linears);
  progress(opt, "done", 1, 1);
  return q;
}

namespace {

Status copy_one_file(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) return {ec.value() == ENOSPC ? Errc::no_space : Errc::io, to.string() + ": cannot copy from " + from.string() + ": " + ec.message()};
  return Status::Ok();
}

Status write_text(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
  f.flush();
  if (!f) return {Errc::io, p.string() + ": cannot write"};
  return Status::Ok();
}

uint64_t safetensors_bytes(const fs::path& dir) {
  uint64_t n = 0;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") n += e.file_size();
  return n;
}

}  // namespace

Result<QuantizeReport> quantize_model_dir(const std::string& model_dir, const Preset& p, const std::string& out_dir,
                                          const std::string& calib_text_file, const QuantizeOptions& opt0) {
  const auto t0 = std::chrono::steady_clock::now();
  std::error_code ec;
  if (fs::exists(out_dir, ec)) return Status{Errc::exists, out_dir + ": output exists (refusing to overwrite)"};
  auto model = rt::load_model_dir(model_dir);
  if (!model.ok()) return model.status();
  QuantizeOptions opt = opt0;
  if (opt.seq_len > model->cfg.max_position) opt.seq_len = model->cfg.max_position;
  std::vector<std::vector<int64_t>> calib;
  if (needs_calibration(p)) {
    if (calib_text_file.empty())
      return Status{Errc::invalid, "preset " + p.name + " needs calibration text: --calib FILE"};
    std::ifstream f(calib_text_file, std::ios::binary);
    if (!f) return Status{Errc::invalid, calib_text_file + ": cannot read calibration text"};
    std::stringstream ss;
    ss << f.rdbuf();
    auto w = calibration_windows(ss.str(), calib_text_file, model_dir, opt);
    if (!w.ok()) return w.status();
    calib = std::move(*w);
  }
  auto q = quantize_model(*model, p, calib, opt);
  if (!q.ok()) return q.status();

  // Raw tensors, to keep every unquantized tensor's bytes and dtype.
  std::map<std::string, torch::Tensor> raw;
  TP_RETURN_IF_ERROR(read_model_tensors(model_dir, raw));
  std::set<std::string> qset(q->quantized_weights.begin(), q->quantized_weights.end());
  std::set<std::string> mod(q->modified.begin(), q->modified.end());
  std::map<std::string, std::vector<std::pair<std::string, torch::Tensor>>> stored_by_weight;
  {
    // stored entries follow their weight's quantization; group them by it.
    std::vector<std::string> order = q->quantized_weights;
    size_t k = 0;
    for (auto& w : order) {
      const std::string base = strip_weight(w);
      while (k < q->stored.size() && q->stored[k].first.rfind(base + ".", 0) == 0)
        stored_by_weight[w].push_back(q->stored[k++]);
    }
    if (k != q->stored.size()) return Status{Errc::invalid, "internal: stored tensors out of order"};
  }
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& [name, shape] : rt::expected_tensors(q->deq.cfg)) {
    if (qset.count(name)) {
      for (auto& e : stored_by_weight[name]) out.push_back(e);
      continue;
    }
    auto it = raw.find(name);
    if (it == raw.end()) return Status{Errc::invalid, model_dir + ": tensor '" + name + "' missing"};
    if (mod.count(name)) out.emplace_back(name, q->deq.w.at(name).to(it->second.scalar_type()).contiguous());
    else out.emplace_back(name, it->second);
  }

  const fs::path target = fs::absolute(out_dir);
  const fs::path tmp = target.parent_path() / (target.filename().string() + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp, ec) || ec)
    return Status{Errc::io, tmp.string() + ": cannot create: " + ec.message()};
  auto fail = [&](Status s) -> Result<QuantizeReport> {
    std::error_code e2;
    fs::remove_all(tmp, e2);
    return s;
  };
  for (auto& e : fs::directory_iterator(model_dir, ec)) {
    const auto fn = e.path().filename().string();
    if (!e.is_regular_file() || e.path().extension() == ".safetensors" || fn == "model.safetensors.index.json" ||
        fn == "config.json" || fn == "quantize_config.json")
      continue;
    auto st = copy_one_file(e.path(), tmp / fn);
    if (!st.ok()) return fail(st);
  }
  nlohmann::ordered_json cfg;
  {
    std::ifstream f(fs::path(model_dir) / "config.json", std::ios::binary);
    cfg = nlohmann::ordered_json::parse(f, nullptr, false);
    if (cfg.is_discarded() || !cfg.is_object()) return fail({Errc::corrupt, model_dir + "/config.json: not JSON"});
  }
  cfg["quantization_config"] = q->quantization_config;
  if (model->cfg.tie_embeddings && !q->deq.cfg.tie_embeddings) cfg["tie_word_embeddings"] = false;
  auto st = write_text(tmp / "config.json", cfg.dump(2) + "\n");
  if (st.ok() && (p.method == Method::gptq || p.method == Method::rtn))
    st = write_text(tmp / "quantize_config.json", q->quantization_config.dump(2) + "\n");
  if (st.ok()) st = write_safetensors((tmp / "model.safetensors").string(), out);
  if (!st.ok()) return fail(st);
  if (fs::exists(target, ec)) return fail({Errc::exists, out_dir + ": output appeared while writing (refusing to overwrite)"});
  fs::rename(tmp, target, ec);
  if (ec) return fail({Errc::io, out_dir + ": cannot rename from " + tmp.string() + ": " + ec.message()});
  QuantizeReport rep;
  rep.model = std::move(*q);
  rep.input_bytes = safetensors_bytes(model_dir);
  rep.output_bytes = safetensors_bytes(target);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

namespace {

Result<torch::Tensor> take(std::map<std::string, torch::Tensor>& raw, const std::string& name, const std::string& dir) {
  auto it = raw.find(name);
  if (it == raw.end()) return Status{Errc::invalid, dir + ": tensor '" + name + "' missing"};
  auto t = it->second;
  raw.erase(it);
  return t;
}

Status shape_is(const torch::Tensor& t, std::vector<int64_t> shape, torch::ScalarType st, const std::string& name,
                const std::string& dir) {
  if (t.sizes().vec() != shape || t.scalar_type() != st) {
    std::ostringstream m;
    m << dir << ": tensor '" << name << "' is " << t.scalar_type() << " " << t.sizes() << ", expected " << st << " "
      << torch::IntArrayRef(shape);
    return {Errc::corrupt, m.str()};
  }
  return Status::Ok();
}

Result<torch::Tensor> load_gptq_linear(std::map<std::string, torch::Tensor>& raw, const std::string& base, int bits,
                                       int64_t group, int64_t out, int64_t in, const std::string& dir) {
  GptqTensors t;
  for (auto [f, k] : {std::pair{&t.qweight, "qweight"}, {&t.qzeros, "qzeros"}, {&t.scales, "scales"}, {&t.g_idx, "g_idx"}}) {
    auto r = take(raw, base + "." + k, dir);
    if (!r.ok()) return r.status();
    *f = *r;
  }
  const int64_t g = eff_group(group, in), G = (in + g - 1) / g;
  if (in % 32 || out % 32) return Status{Errc::corrupt, dir + ": " + base + ": GPTQ linear with in/out not multiples of 32"};
  TP_RETURN_IF_ERROR(shape_is(t.qweight, {in / 32 * bits, out}, torch::kInt32, base + ".qweight", dir));
  TP_RETURN_IF_ERROR(shape_is(t.qzeros, {G, out / 32 * bits}, torch::kInt32, base + ".qzeros", dir));
  TP_RETURN_IF_ERROR(shape_is(t.scales, {G, out}, torch::kHalf, base + ".scales", dir));
  TP_RETURN_IF_ERROR(shape_is(t.g_idx, {in}, torch::kInt32, base + ".g_idx", dir));
  if (t.g_idx.min().item<int>() < 0 || t.g_idx.max().item<int>() >= G)
    return Status{Errc::corrupt, dir + ": " + base + ".g_idx: group index outside 0.." + std::to_string(G - 1)};
  return gptq_dequantize(t, bits);
}

Result<torch::Tensor> load_awq_linear(std::map<std::string, torch::Tensor>& raw, const std::string& base, int64_t group,
                                      int64_t out, int64_t in, const std::string& dir) {
  AwqTensors t;
  for (auto [f, k] : {std::pair{&t.qweight, "qweight"}, {&t.qzeros, "qzeros"}, {&t.scales, "scales"}}) {
    auto r = take(raw, base + "." + k, dir);
    if (!r.ok()) return r.status();
    *f = *r;
  }
  const int64_t g = eff_group(group, in);
  if (in % g || out % 8) return Status{Errc::corrupt, dir + ": " + base + ": AWQ linear shape does not fit its group size"};
  TP_RETURN_IF_ERROR(shape_is(t.qweight, {in, out / 8}, torch::kInt32, base + ".qweight", dir));
  TP_RETURN_IF_ERROR(shape_is(t.qzeros, {in / g, out / 8}, torch::kInt32, base + ".qzeros", dir));
  TP_RETURN_IF_ERROR(shape_is(t.scales, {in / g, out}, torch::kHalf, base + ".scales", dir));
  return awq_dequantize(t, g);
}

}  // namespace

Result<rt::Model> load_model_any(const std::string& dir) {
  const auto cfg_path = (fs::path(dir) / "config.json").string();
  nlohmann::json j;
  {
    std::ifstream f(cfg_path, std::ios::binary);
    if (!f) return rt::load_model_dir(dir);  // it names the missing file
    j = nlohmann::json::parse(f, nullptr, false);
  }
  if (j.is_discarded() || !j.is_object() || !j.contains("quantization_config")) return rt::load_model_dir(dir);
  const auto& qc = j["quantization_config"];
  const std::string method = qc.value("quant_method", "");
  if (method != "gptq" && method != "awq" && method != "bitsandbytes")
    return Status{Errc::unsupported, cfg_path + ": quantization_config.quant_method '" + method +
                                         "' (supported: gptq, awq, bitsandbytes)"};
  auto cfg = rt::parse_config(j, cfg_path);
  if (!cfg.ok()) return cfg.status();
  std::map<std::string, torch::Tensor> raw;
  TP_RETURN_IF_ERROR(read_model_tensors(dir, raw));
  rt::Model m;
  m.cfg = *cfg;
  int bits = 4;
  int64_t group = 128;
  try {
    if (method != "bitsandbytes") {
      bits = qc.at("bits").get<int>();
      group = qc.at("group_size").get<int64_t>();
    }
  } catch (const std::exception& e) {
    return Status{Errc::corrupt, cfg_path + ": quantization_config: " + e.what()};
  }
  if (method == "gptq" && bits != 2 && bits != 3 && bits != 4 && bits != 8)
    return Status{Errc::unsupported, cfg_path + ": quantization_config.bits " + std::to_string(bits) + " (2, 3, 4, 8)"};
  if (method == "awq" && (bits != 4 || qc.value("version", "gemm") != std::string("gemm") || !qc.value("zero_point", true)))
    return Status{Errc::unsupported, cfg_path + ": AWQ checkpoints other than 4-bit GEMM with zero points are not read"};
  if (method == "gptq" && qc.value("checkpoint_format", "gptq") != std::string("gptq"))
    return Status{Errc::unsupported, cfg_path + ": GPTQ checkpoint_format '" + qc.value("checkpoint_format", "") + "'"};
  std::vector<std::string> lin_names;
  for (int l = 0; l < m.cfg.num_layers; ++l)
    for (auto& n : rt::linear_names(m.cfg, l)) lin_names.push_back(n);
  if (!m.cfg.tie_embeddings) lin_names.push_back(kHead);
  {
    for (auto& n : lin_names) {
      const std::string base = strip_weight(n);
      const auto& shapes = rt::expected_tensors(m.cfg);
      int64_t out = 0, in = 0;
      for (auto& [en, sh] : shapes)
        if (en == n) out = sh[0], in = sh[1];
      Result<torch::Tensor> w = Status{Errc::invalid, ""};
      if (method == "gptq" && raw.count(base + ".qweight")) {
        w = load_gptq_linear(raw, base, bits, group, out, in, dir);
        // AutoGPTQ's zero bias of a linear the architecture gives none.
        const bool has_bias = m.cfg.qkv_bias && (n.find("q_proj") != std::string::npos ||
                                                 n.find("k_proj") != std::string::npos ||
                                                 n.find("v_proj") != std::string::npos);
        if (w.ok() && !has_bias && raw.count(base + ".bias")) {
          const auto b = raw.at(base + ".bias");
          if (b.numel() != out || torch::any(b.to(torch::kFloat) != 0).item<bool>())
            return Status{Errc::corrupt, dir + ": tensor '" + base + ".bias': a non-zero bias on a linear " +
                                             m.cfg.architecture + " has none"};
          raw.erase(base + ".bias");
        }
      } else if (method == "awq" && raw.count(base + ".qweight")) {
        w = load_awq_linear(raw, base, group, out, in, dir);
      } else if (method == "bitsandbytes" && raw.count(n) && raw.at(n).scalar_type() == torch::kUInt8) {
        std::map<std::string, torch::Tensor> parts;
        for (auto it = raw.begin(); it != raw.end();) {
          if (it->first == n || it->first.rfind(n + ".", 0) == 0) {
            parts[it->first == n ? "" : it->first.substr(n.size() + 1)] = it->second;
            it = raw.erase(it);
          } else {
            ++it;
          }
        }
        auto b = bnb4_from_tensors(parts, dir + ": " + n);
        if (!b.ok()) return b.status();
        if (b->shape != std::vector<int64_t>{out, in})
          return Status{Errc::corrupt, dir + ": " + n + ": quant_state shape disagrees with config.json"};
        w = bnb4_dequantize(*b);
      } else if (method == "bitsandbytes" && raw.count(n) && raw.at(n).scalar_type() == torch::kInt8) {
        Bnb8 b;
        b.weight = *take(raw, n, dir);
        auto scb = take(raw, base + ".SCB", dir);
        if (!scb.ok()) return scb.status();
        b.SCB = *scb;
        raw.erase(base + ".weight_format");
        TP_RETURN_IF_ERROR(shape_is(b.weight, {out, in}, torch::kInt8, n, dir));
        TP_RETURN_IF_ERROR(shape_is(b.SCB, {out}, torch::kFloat, base + ".SCB", dir));
        w = bnb8_dequantize(b);
      } else {
        continue;  // an unquantized linear: read below like any float tensor
      }
      if (!w.ok()) return w.status();
      m.w[n] = *w;
    }
  }
  for (auto& [name, t] : raw) {
    if (name.size() >= 20 && name.ends_with("rotary_emb.inv_freq")) continue;
    const auto st = t.scalar_type();
    if (st != torch::kFloat && st != torch::kHalf && st != torch::kBFloat16)
      return Status{Errc::corrupt, dir + ": tensor '" + name + "' has an integer dtype but no quantized layout uses it"};
    m.w[name] = t.to(torch::kFloat).contiguous();
  }
  TP_RETURN_IF_ERROR(rt::check_model(m));
  return m;
}

}  // namespace tenpak::quant
