// The model runtime: config parsing, loading (shards, dtypes, bad input),
// forward pass invariants, tokenizer, llama2.c conversion and evaluation.
// Logits against transformers and against an independent llama2.c forward:
// check_runtime.py (ctest runtime_py_*).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tenpak/convert.h"
#include "tenpak/eval.h"
#include "tenpak/llama.h"
#include "tenpak/safetensors.h"
#include "shared_data.h"
#include "temp_dir.h"
#include "../test_util.h"
#include "tenpak/tokenizer.h"

namespace fs = std::filesystem;
using namespace tenpak;
using nlohmann::json;

namespace {

using tptest::read_file;  // tests/test_util.h, as the codec tests use them
using tptest::write_file;

using fakes::shared_data;
std::string stories_bin() { return shared_data() + "/llama2c/stories260K.bin"; }
std::string stories_tok() { return shared_data() + "/llama2c/tok512.bin"; }
bool have_stories() { return fs::exists(stories_bin()) && fs::exists(stories_tok()); }
#define REQUIRE_STORIES() \
  if (!have_stories()) GTEST_SKIP() << stories_bin() << " absent (../shared/data not mounted)"

// Removed with the object (tests/support/temp_dir.h).
struct TmpDir : fakes::TempDir {
  TmpDir() : fakes::TempDir("rt") {}
};

rt::LlamaConfig small_config(const std::string& arch = "LlamaForCausalLM", bool tie = false) {
  rt::LlamaConfig c;
  c.architecture = arch;
  c.vocab_size = 40;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.max_position = 64;
  c.rms_eps = 1e-5;
  c.rope_theta = 10000;
  c.tie_embeddings = tie;
  c.qkv_bias = arch == "Qwen2ForCausalLM";
  return c;
}

rt::Model random_model(const rt::LlamaConfig& c, uint64_t seed = 1) {
  torch::manual_seed(seed);
  rt::Model m;
  m.cfg = c;
  for (auto& [name, shape] : rt::expected_tensors(c)) {
    bool norm = name.find("norm") != std::string::npos;
    m.w[name] = norm ? 1 + 0.1 * torch::randn(shape) : 0.2 * torch::randn(shape);
  }
  return m;
}

DType dtype_of(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return DType::F32;
    case torch::kFloat16: return DType::F16;
    case torch::kBFloat16: return DType::BF16;
    case torch::kInt32: return DType::I32;
    default: return DType::unknown;
  }
}

// A safetensors file of the given tensors in their own dtypes.
void write_st(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& ts) {
  std::vector<TensorInfo> infos;
  for (auto& [n, t] : ts) {
    TensorInfo ti;
    ti.name = n;
    ti.dtype = dtype_of(t);
    for (auto d : t.sizes()) ti.shape.push_back(d);
    ti.end = t.numel() * t.element_size();
    infos.push_back(ti);
  }
  std::string out = make_safetensors_header(infos);
  for (auto& [n, t] : ts) {
    auto c = t.contiguous();
    out.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  }
  write_file(path, out);
}

// Writes `m` as config.json plus one safetensors file whose tensors pass
// through `edit` (which may change, add or drop them).
void write_dir(const rt::Model& m, const std::string& dir,
               const std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)>& edit = {}) {
  fs::create_directories(dir);
  write_file(dir + "/config.json", rt::config_to_json(m.cfg).dump(2));
  std::vector<std::pair<std::string, torch::Tensor>> ts;
  for (auto& [n, s] : rt::expected_tensors(m.cfg)) ts.push_back({n, m.w.at(n).clone()});
  if (edit) edit(ts);
  write_st(dir + "/model.safetensors", ts);
}

double maxdiff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

torch::Tensor ids_tensor(const std::vector<int64_t>& v) {
  return torch::tensor(v, torch::kInt64).unsqueeze(0);
}

}  // namespace

// ---------------------------------------------------------------- config

TEST(RuntimeConfig, ParsesLlamaWithDefaults) {
  json j = {{"architectures", {"LlamaForCausalLM"}}, {"vocab_size", 32000}, {"hidden_size", 4096},
            {"intermediate_size", 11008}, {"num_hidden_layers", 32}, {"num_attention_heads", 32},
            {"rms_norm_eps", 1e-5}, {"torch_dtype", "float16"}};
  auto c = rt::parse_config(j, "cfg.json");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->num_kv_heads, 32);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->max_position, 2048);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_FALSE(c->tie_embeddings);
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_EQ(c->torch_dtype, "float16");
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["num_key_value_heads"] = 4;
  j["tie_word_embeddings"] = true;
  auto q = rt::parse_config(j, "cfg.json");
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_TRUE(q->qkv_bias);
  EXPECT_TRUE(q->tie_embeddings);
  EXPECT_EQ(q->num_kv_heads, 4);
}

TEST(RuntimeConfig, RoundTripsThroughJson) {
  for (auto arch : {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"}) {
    auto c = small_config(arch, true);
    if (std::string(arch) == "MistralForCausalLM") c.sliding_window = 16;
    auto back = rt::parse_config(rt::config_to_json(c), "x");
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(rt::config_to_json(*back), rt::config_to_json(c)) << arch;
  }
}

TEST(RuntimeConfig, BadFieldsNameFileFieldAndValue) {
  json base = rt::config_to_json(small_config());
  struct Case {
    const char* field;
    json value;
    Errc code;
    const char* in_message;
  };
  std::vector<Case> cases = {
      {"architectures", json::array({"GPT2LMHeadModel"}), Errc::unsupported, "GPT2LMHeadModel"},
      {"torch_dtype", "int8", Errc::unsupported, "\"int8\""},
      {"hidden_act", "gelu", Errc::unsupported, "\"gelu\""},
      {"rope_scaling", json{{"type", "linear"}, {"factor", 2.0}}, Errc::unsupported, "linear"},
      {"num_key_value_heads", 3, Errc::invalid, "= 3"},
      {"hidden_size", -5, Errc::invalid, "= -5"},
      {"vocab_size", "many", Errc::invalid, "\"many\""},
      {"attention_bias", true, Errc::unsupported, "= true"},
  };
  for (auto& c : cases) {
    json j = base;
    j[c.field] = c.value;
    auto r = rt::parse_config(j, "/m/config.json");
    ASSERT_FALSE(r.ok()) << c.field;
    EXPECT_EQ(r.status().code(), c.code) << r.status().message();
    const auto& msg = r.status().message();
    EXPECT_NE(msg.find("/m/config.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.field), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.in_message), std::string::npos) << msg;
  }
  json j = base;
  j.erase("hidden_size");
  auto r = rt::parse_config(j, "/m/config.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'hidden_size' is missing"), std::string::npos) << r.status().message();
}

// ---------------------------------------------------------------- loading

TEST(RuntimeLoad, WriteThenLoadGivesTheSameModel) {
  TmpDir tmp;
  for (auto arch : {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"}) {
    for (bool tie : {false, true}) {
      auto m = random_model(small_config(arch, tie));
      std::string dir = tmp / (std::string(arch) + (tie ? "-tied" : ""));
      fs::create_directories(dir);
      ASSERT_TRUE(rt::write_model_dir(m, dir).ok());
      auto back = rt::load_model_dir(dir);
      ASSERT_TRUE(back.ok()) << back.status().message();
      EXPECT_EQ(back->w.size(), m.w.size());
      for (auto& [n, t] : m.w) EXPECT_TRUE(torch::equal(back->w.at(n), t)) << n;
      auto ids = ids_tensor({1, 5, 9, 3, 7, 30, 2});
      EXPECT_TRUE(torch::equal(rt::forward(*back, ids), rt::forward(m, ids)));
      // No temporary file is left behind.
      for (auto& e : fs::directory_iterator(dir))
        EXPECT_EQ(e.path().filename().string().find("tenpak-tmp"), std::string::npos) << e.path();
    }
  }
}

TEST(RuntimeLoad, ShardedHalfPrecisionWithIndex) {
  TmpDir tmp;
  auto m = random_model(small_config("Qwen2ForCausalLM"));
  const std::string dir = tmp / "m";
  fs::create_directories(dir);
  auto j = rt::config_to_json(m.cfg);
  j["torch_dtype"] = "bfloat16";
  write_file(dir + "/config.json", j.dump());
  std::vector<std::pair<std::string, torch::Tensor>> a, b;
  json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
  int i = 0;
  for (auto& [n, s] : rt::expected_tensors(m.cfg)) {
    bool first = i++ % 2 == 0;
    auto t = m.w.at(n).to(first ? torch::kBFloat16 : torch::kFloat16);
    (first ? a : b).push_back({n, t});
    index["weight_map"][n] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  write_st(dir + "/model-00001-of-00002.safetensors", a);
  write_st(dir + "/model-00002-of-00002.safetensors", b);
  write_file(dir + "/model.safetensors.index.json", index.dump());
  auto back = rt::load_model_dir(dir);
  ASSERT_TRUE(back.ok()) << back.status().message();
  for (auto& v : {a, b})
    for (auto& [n, t] : v) {
      EXPECT_EQ(back->w.at(n).scalar_type(), torch::kFloat32);
      EXPECT_TRUE(torch::equal(back->w.at(n), t.to(torch::kFloat32))) << n;
    }
  // A shard the index names must exist; the error names it.
  fs::remove(dir + "/model-00002-of-00002.safetensors");
  auto missing = rt::load_model_dir(dir);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("model-00002-of-00002.safetensors"), std::string::npos)
      << missing.status().message();
  EXPECT_NE(missing.status().message().find("missing"), std::string::npos) << missing.status().message();
}

TEST(RuntimeLoad, BadInputIsNamed) {
  TmpDir tmp;
  auto m = random_model(small_config());
  struct Case {
    std::string name;
    std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)> edit;
    Errc code;
    std::vector<std::string> in_message;
  };
  const std::string q = "model.layers.1.self_attn.q_proj.weight";
  auto find = [&](std::vector<std::pair<std::string, torch::Tensor>>& ts, const std::string& n) -> torch::Tensor& {
    for (auto& [k, t] : ts)
      if (k == n) return t;
    throw std::runtime_error(n);
  };
  std::vector<Case> cases = {
      {"int32", [&](auto& ts) { find(ts, q) = find(ts, q).to(torch::kInt32); }, Errc::unsupported, {q, "I32"}},
      {"shape", [&](auto& ts) { find(ts, q) = torch::zeros({32, 31}); }, Errc::invalid, {q, "[32, 31]", "[32, 32]"}},
      {"nan", [&](auto& ts) { find(ts, q)[3][4] = NAN; }, Errc::corrupt, {q, "non-finite", "nan"}},
      {"inf", [&](auto& ts) { find(ts, "model.norm.weight")[0] = -INFINITY; }, Errc::corrupt, {"model.norm.weight", "inf"}},
      {"missing", [&](auto& ts) { ts.erase(ts.begin() + 3); }, Errc::invalid, {"missing"}},
      {"extra", [&](auto& ts) { ts.push_back({"model.layers.7.mlp.up_proj.weight", torch::zeros({2})}); },
       Errc::invalid, {"model.layers.7.mlp.up_proj.weight"}},
  };
  for (auto& c : cases) {
    std::string dir = tmp / c.name;
    write_dir(m, dir, c.edit);
    auto r = rt::load_model_dir(dir);
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.status().code(), c.code) << c.name << ": " << r.status().message();
    for (auto& s : c.in_message) EXPECT_NE(r.status().message().find(s), std::string::npos) << r.status().message();
  }
  // Config whose vocabulary disagrees with the tensors: the shape error names both.
  std::string dir = tmp / "vocab";
  write_dir(m, dir);
  auto j = rt::config_to_json(m.cfg);
  j["vocab_size"] = 41;
  write_file(dir + "/config.json", j.dump());
  auto r = rt::load_model_dir(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.embed_tokens.weight"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("[41, 32]"), std::string::npos) << r.status().message();
  // Unsupported architecture in a directory: named with the file.
  j = rt::config_to_json(m.cfg);
  j["architectures"] = {"FalconForCausalLM"};
  write_file(dir + "/config.json", j.dump());
  r = rt::load_model_dir(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::unsupported);
  EXPECT_NE(r.status().message().find(dir + "/config.json"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("FalconForCausalLM"), std::string::npos) << r.status().message();
  // No weights at all.
  fs::remove(dir + "/model.safetensors");
  write_file(dir + "/config.json", rt::config_to_json(m.cfg).dump());
  r = rt::load_model_dir(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no *.safetensors"), std::string::npos) << r.status().message();
}

// ---------------------------------------------------------------- forward

TEST(RuntimeForward, KVCacheDecodingMatchesFullForward) {
  for (auto arch : {"LlamaForCausalLM", "Qwen2ForCausalLM"}) {
    auto m = random_model(small_config(arch));
    std::vector<int64_t> v = {1, 4, 8, 15, 16, 23, 42 % 40, 7, 9, 11, 13};
    auto ids = ids_tensor(v);
    auto full = rt::forward(m, ids);
    rt::KVCache cache;
    auto pre = rt::forward_cached(m, ids.slice(1, 0, 5), cache);
    std::vector<torch::Tensor> rows{pre};
    for (int64_t i = 5; i < ids.size(1); ++i) rows.push_back(rt::forward_cached(m, ids.slice(1, i, i + 1), cache));
    EXPECT_EQ(cache.len, ids.size(1));
    EXPECT_LT(maxdiff(torch::cat(rows, 1), full), 1e-5) << arch;
  }
}

TEST(RuntimeForward, CausalAndBatchIndependent) {
  auto m = random_model(small_config());
  auto a = ids_tensor({1, 3, 5, 7, 9, 11});
  auto b = ids_tensor({1, 3, 5, 7, 20, 30});
  auto la = rt::forward(m, a), lb = rt::forward(m, b);
  EXPECT_LT(maxdiff(la.slice(1, 0, 4), lb.slice(1, 0, 4)), 1e-6);  // earlier positions do not see later tokens
  EXPECT_GT(maxdiff(la.slice(1, 4), lb.slice(1, 4)), 1e-3);
  auto both = rt::forward(m, torch::cat({a, b}, 0));
  EXPECT_LT(maxdiff(both[0], la[0]), 1e-5);
  EXPECT_LT(maxdiff(both[1], lb[0]), 1e-5);
}

TEST(RuntimeForward, SlidingWindowLimitsAttention) {
  auto c = small_config("MistralForCausalLM");
  auto full = random_model(c);
  c.sliding_window = 3;
  auto win = full;
  win.cfg = c;
  auto ids = ids_tensor({1, 3, 5, 7, 9, 11, 13, 15});
  auto lf = rt::forward(full, ids), lw = rt::forward(win, ids);
  EXPECT_LT(maxdiff(lf.slice(1, 0, 3), lw.slice(1, 0, 3)), 1e-6);  // first 3 positions see everything anyway
  EXPECT_GT(maxdiff(lf.slice(1, 3), lw.slice(1, 3)), 1e-4);
  rt::KVCache cache;
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < ids.size(1); ++i) rows.push_back(rt::forward_cached(win, ids.slice(1, i, i + 1), cache));
  EXPECT_LT(maxdiff(torch::cat(rows, 1), lw), 1e-5);
}

TEST(RuntimeForward, HooksSeeEveryLinearInExecutionOrder) {
  auto m = random_model(small_config("Qwen2ForCausalLM"));
  std::vector<std::string> seen;
  rt::ForwardHooks hooks;
  hooks.on_linear_input = [&](const std::string& n, const torch::Tensor& x) {
    seen.push_back(n);
    EXPECT_EQ(x.dim(), 3);
    EXPECT_EQ(x.size(0), 2);
    EXPECT_EQ(x.size(2), m.w.at(n).size(1)) << n;
  };
  auto ids = torch::randint(0, 40, {2, 6}, torch::kInt64);
  auto with = rt::forward(m, ids, &hooks);
  std::vector<std::string> want;
  for (int l = 0; l < 2; ++l)
    for (auto& n : rt::linear_names(m.cfg, l)) want.push_back(n);
  EXPECT_EQ(seen, want);
  EXPECT_TRUE(torch::equal(with, rt::forward(m, ids)));
  // embed -> block_forward per layer -> head is the same computation.
  auto h = rt::embed(m, ids);
  for (int l = 0; l < 2; ++l) h = rt::block_forward(m, l, h);
  EXPECT_LT(maxdiff(rt::head(m, h), with), 1e-6);
}

// ---------------------------------------------------------------- tokenizer

TEST(RuntimeTokenizer, KnownIdsAndRoundTrips) {
  REQUIRE_STORIES();
  auto tok = rt::Tokenizer::load(stories_tok());
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->piece(1), "\n<s>\n");  // as llama2.c's tokenizer.py exports it
  EXPECT_EQ(tok->piece(403), " Once");
  EXPECT_EQ(tok->piece(3 + 'A'), "<0x41>");
  EXPECT_EQ(tok->encode("", true), std::vector<int64_t>{1});
  EXPECT_TRUE(tok->encode("", false).empty());
  // A character outside the vocabulary falls back to its UTF-8 bytes (id = byte + 3).
  auto cjk = tok->encode("\xE6\x97\xA5", false);  // U+65E5
  ASSERT_EQ(cjk.size(), 4u);
  EXPECT_EQ(cjk[0], tok->find(" "));
  EXPECT_EQ(cjk[1], 0xE6 + 3);
  EXPECT_EQ(cjk[2], 0x97 + 3);
  EXPECT_EQ(cjk[3], 0xA5 + 3);
  // Ids from llama2.c's own encode() (run.c, ported literally in check_runtime.py).
  EXPECT_EQ(tok->encode("Once upon a time", true), (std::vector<int64_t>{1, 403, 407, 261, 378}));
  std::vector<std::string> texts = {"Once upon a time, there was a dog.", " two  spaces ", "line\nbreaks\n\n",
                                    "na\xC3\xAFve caf\xC3\xA9 \xF0\x9F\x99\x82", "<s></s><unk><0x41>", "x"};
  std::string shakespeare = shared_data() + "/text/tinyshakespeare.txt";
  if (fs::exists(shakespeare)) texts.push_back(read_file(shakespeare).substr(0, 50000));
  for (auto& t : texts) {
    EXPECT_EQ(tok->decode(tok->encode(t, true)), t);
    EXPECT_EQ(tok->decode(tok->encode(t, false)), t);
  }
}

TEST(RuntimeTokenizer, RefusesOtherFormatsAndCorruptFiles) {
  TmpDir tmp;
  write_file(tmp / "tokenizer.json", "{}");
  auto r = rt::Tokenizer::load(tmp.str());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::unsupported);
  EXPECT_NE(r.status().message().find("tokenizer.json"), std::string::npos);
  write_file(tmp / "tokenizer.model", "x");
  r = rt::Tokenizer::load(tmp.str());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tokenizer.model"), std::string::npos);
  if (!have_stories()) return;
  std::string bytes = read_file(stories_tok());
  auto t = rt::Tokenizer::from_llama2c(bytes.substr(0, 1000), "tok.bin", 512);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Errc::corrupt);
  EXPECT_NE(t.status().message().find("tok.bin: truncated"), std::string::npos) << t.status().message();
}

// ---------------------------------------------------------------- conversion

TEST(RuntimeConvert, PermuteRotaryMatchesItsDefinition) {
  const int64_t H = 3, hd = 6, in = 2;
  auto w = torch::arange(H * hd * in, torch::kFloat32).view({H * hd, in});
  auto p = rt::permute_rotary(w, H);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < hd / 2; ++i)
      for (int64_t j = 0; j < 2; ++j)
        EXPECT_TRUE(torch::equal(p[h * hd + j * hd / 2 + i], w[h * hd + 2 * i + j])) << h << " " << i << " " << j;
}

TEST(RuntimeConvert, Stories260K) {
  REQUIRE_STORIES();
  TmpDir tmp;
  const std::string out = tmp / "s260";
  auto r = rt::convert_llama2c(stories_bin(), stories_tok(), out);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->parameters, 260032);  // 264,128 floats minus the 4,096 RoPE table entries
  EXPECT_TRUE(r->cfg.tie_embeddings);
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(tmp.str())) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"s260"});  // no staging directory left
  EXPECT_EQ(read_file(out + "/tokenizer.bin"), read_file(stories_tok()));
  auto m = rt::load_model_dir(out);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->cfg.num_kv_heads, 4);
  EXPECT_EQ(m->cfg.intermediate_size, 172);
  EXPECT_DOUBLE_EQ(m->cfg.rms_eps, 1e-5);
  // q/k are the permuted llama2.c rows; v, o and the MLP are copied.
  std::string raw = read_file(stories_bin());
  const float* f = reinterpret_cast<const float*>(raw.data() + 28);
  const int64_t V = 512, D = 64, L = 5, KVD = 32;
  auto wq0 = torch::from_blob(const_cast<float*>(f + V * D + L * D), {D, D}, torch::kFloat32);
  auto wk0 = torch::from_blob(const_cast<float*>(f + V * D + L * D + L * D * D), {KVD, D}, torch::kFloat32);
  EXPECT_TRUE(torch::equal(m->w.at("model.layers.0.self_attn.q_proj.weight"), rt::permute_rotary(wq0, 8)));
  EXPECT_TRUE(torch::equal(m->w.at("model.layers.0.self_attn.k_proj.weight"), rt::permute_rotary(wk0, 4)));
  EXPECT_FALSE(torch::equal(m->w.at("model.layers.0.self_attn.q_proj.weight"), wq0));
  // An existing output is refused and left alone.
  auto again = rt::convert_llama2c(stories_bin(), stories_tok(), out);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Errc::exists);
  // Greedy continuation of a story prompt is a story (the model works end to end).
  auto tok = rt::Tokenizer::load(out);
  ASSERT_TRUE(tok.ok());
  rt::SampleOptions so;
  so.max_tokens = 24;
  auto gen = rt::generate(*m, tok->encode("Once upon a time", true), so);
  auto text = tok->decode(gen);
  EXPECT_NE(text.find("there was a"), std::string::npos) << text;
}

TEST(RuntimeConvert, RefusesCorruptCheckpoints) {
  REQUIRE_STORIES();
  TmpDir tmp;
  std::string raw = read_file(stories_bin());
  write_file(tmp / "short.bin", raw.substr(0, raw.size() - 4));
  auto r = rt::convert_llama2c(tmp / "short.bin", stories_tok(), tmp / "out");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::corrupt);
  EXPECT_NE(r.status().message().find("1056536 bytes"), std::string::npos) << r.status().message();
  std::string v2 = raw;
  std::memcpy(v2.data(), "24ka", 4);  // magic 0x616b3432 little-endian
  write_file(tmp / "v2.bin", v2);
  r = rt::convert_llama2c(tmp / "v2.bin", stories_tok(), tmp / "out");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::unsupported);
  std::string nan = raw;
  float x = NAN;
  std::memcpy(nan.data() + 28 + 4 * (512 * 64 + 5 * 64 + 10), &x, 4);  // inside wq of layer 0
  write_file(tmp / "nan.bin", nan);
  r = rt::convert_llama2c(tmp / "nan.bin", stories_tok(), tmp / "out");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.layers.0.self_attn.q_proj.weight"), std::string::npos)
      << r.status().message();
  EXPECT_FALSE(fs::exists(tmp / "out"));
}

// ---------------------------------------------------------------- evaluation

TEST(RuntimeEval, PerplexityScoresTheSecondHalfOfEachWindow) {
  auto m = random_model(small_config());
  torch::manual_seed(3);
  auto t = torch::randint(3, 40, {100}, torch::kInt64);
  std::vector<int64_t> ids(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + 100);
  rt::EvalOptions o;
  o.ctx = 16;
  o.batch = 3;
  auto q = rt::evaluate_quality(m, ids, o);
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_EQ(q->windows, 6);             // 100 / 16
  EXPECT_EQ(q->scored_tokens, 6 * 7);   // positions 8..14 predict tokens 9..15
  // The same figure computed here by hand.
  double nll = 0;
  for (int w = 0; w < 6; ++w) {
    std::vector<int64_t> win(ids.begin() + w * 16, ids.begin() + (w + 1) * 16);
    win[0] = 1;
    auto lp = torch::log_softmax(rt::forward(m, ids_tensor(win))[0], -1);
    for (int j = 8; j < 15; ++j) nll -= lp[j][win[j + 1]].item<double>();
  }
  EXPECT_NEAR(q->nll, nll / 42, 1e-6);
  ASSERT_EQ(q->window_nll.size(), 6u);  // every window holds 7 scored tokens: their means average to the NLL
  double wsum = 0;
  for (double x : q->window_nll) wsum += x;
  EXPECT_NEAR(wsum / 6, q->nll, 1e-9);
  EXPECT_NEAR(q->perplexity, std::exp(nll / 42), 1e-4);
  // Against itself: no divergence, full agreement; against a perturbed copy: both move.
  auto self = rt::evaluate_quality(m, ids, o, &m);
  ASSERT_TRUE(self.ok());
  EXPECT_LT(self->kl_mean, 1e-6);
  EXPECT_DOUBLE_EQ(self->top1_agreement, 1.0);
  auto other = m;
  for (auto& [n, w] : other.w) w = w + 0.05 * torch::randn_like(w);
  auto d = rt::evaluate_quality(other, ids, o, &m);
  ASSERT_TRUE(d.ok());
  EXPECT_GT(d->kl_mean, 1e-4);
  EXPECT_GE(d->kl_p99, d->kl_mean);
  EXPECT_GE(d->kl_max, d->kl_p99);
  EXPECT_LT(d->top1_agreement, 1.0);
  ASSERT_EQ(d->window_kl.size(), 6u);
  double ksum = 0;
  for (double x : d->window_kl) ksum += x;
  EXPECT_NEAR(ksum / 6, d->kl_mean, 1e-9);
  EXPECT_NEAR(d->ref_perplexity, q->perplexity, 1e-6);
  auto again = rt::evaluate_quality(other, ids, o, &m);  // deterministic
  EXPECT_EQ(again->kl_mean, d->kl_mean);
  EXPECT_EQ(again->perplexity, d->perplexity);
  // Too little text: the message says how much is needed.
  o.ctx = 64;
  auto shortq = rt::evaluate_quality(m, std::vector<int64_t>(ids.begin(), ids.begin() + 50), o);
  ASSERT_FALSE(shortq.ok());
  EXPECT_NE(shortq.status().message().find("needs at least 64"), std::string::npos) << shortq.status().message();
}

TEST(RuntimeEval, GenerateIsGreedyOrSeeded) {
  auto m = random_model(small_config());
  std::vector<int64_t> prompt = {1, 5, 6};
  rt::SampleOptions so;
  so.max_tokens = 10;
  so.stop_at_eos = false;
  auto g = rt::generate(m, prompt, so);
  ASSERT_EQ(g.size(), 10u);
  std::vector<int64_t> seq = prompt;  // greedy = argmax of the full forward, step by step
  for (int i = 0; i < 10; ++i) {
    seq.push_back(rt::forward(m, ids_tensor(seq))[0][-1].argmax().item<int64_t>());
    EXPECT_EQ(seq.back(), g[i]) << i;
  }
  so.temperature = 1.5;
  so.top_p = 0.9;
  so.seed = 7;
  auto s1 = rt::generate(m, prompt, so), s2 = rt::generate(m, prompt, so);
  EXPECT_EQ(s1, s2);
  EXPECT_NE(s1, g);
  auto sp = rt::measure_speed(m, prompt, {16, 3, 8});
  EXPECT_EQ(sp.prompt_tokens, 16);
  EXPECT_EQ(sp.decode_tokens, 8);
  EXPECT_GT(sp.decode_tokens_per_s, 0);
  EXPECT_LE(sp.forward_ms_p50, sp.forward_ms_p95);
}
