// Model-level presets on a generated Llama-shaped model with outlier
// channels: every preset's output directory, reloaded by load_model_any,
// equals the quantizer's own dequantized model; what must stay unchanged
// does; bad input is refused with a clear error and no output directory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "st_io.h"
#include "tenpak/quant.h"

namespace fs = std::filesystem;
using namespace tenpak;
using namespace tenpak::quant;

namespace {

// A llama2.c tokenizer of byte pieces only: <unk>, <s>, </s>, <0x00>..<0xFF>.
void write_byte_tokenizer(const fs::path& p) {
  std::ofstream f(p, std::ios::binary);
  int32_t maxlen = 6;
  f.write(reinterpret_cast<const char*>(&maxlen), 4);
  auto put = [&](const std::string& s) {
    float score = 0;
    int32_t n = static_cast<int32_t>(s.size());
    f.write(reinterpret_cast<const char*>(&score), 4);
    f.write(reinterpret_cast<const char*>(&n), 4);
    f.write(s.data(), n);
  };
  put("<unk>");
  put("<s>");
  put("</s>");
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    put(buf);
  }
}

rt::Model synthetic_model(uint64_t seed) {
  torch::manual_seed(seed);
  rt::Model m;
  auto& c = m.cfg;
  c.architecture = "LlamaForCausalLM";
  c.vocab_size = 259;
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.max_position = 256;
  c.rms_eps = 1e-5;
  c.tie_embeddings = false;
  for (auto& [name, shape] : rt::expected_tensors(c)) {
    torch::Tensor t;
    if (shape.size() == 1) {
      t = 1.0 + 0.1 * torch::randn(shape);
      // Outlier features: a few hidden channels amplified by the norms.
      if (name.find("layernorm") != std::string::npos) t.index_put_({torch::tensor({5L, 77L})}, 12.0);
    } else {
      t = torch::randn(shape) / std::sqrt(static_cast<double>(shape[1]));
    }
    m.w[name] = t.contiguous();
  }
  return m;
}

struct Fixture : ::testing::Test {
  fs::path root, model, calib;
  void SetUp() override {
    root = fs::temp_directory_path() / ("tenpak_quant_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    fs::create_directories(root / "model");
    model = root / "model";
    auto st = rt::write_model_dir(synthetic_model(7), model.string());
    ASSERT_TRUE(st.ok()) << st.to_string();
    write_byte_tokenizer(model / "tokenizer.bin");
    std::ofstream(model / "README.md") << "a model card\n";
    calib = root / "calib.txt";
    std::ofstream f(calib);
    for (int i = 0; i < 200; ++i) f << "The quick brown fox " << i << " jumps over the lazy dog. ";
  }
  void TearDown() override { fs::remove_all(root); }
  QuantizeOptions opts() const {
    QuantizeOptions o;
    o.calib_samples = 8;
    o.seq_len = 64;
    o.batch = 4;
    return o;
  }
};

std::vector<std::string> all_presets() {
  std::vector<std::string> v;
  for (auto& p : presets()) v.push_back(p.name);
  v.push_back("rtn-4bit-128g");
  v.push_back("rtn-3bit-32g");
  return v;
}

}  // namespace

TEST_F(Fixture, EveryPresetReloadsToTheQuantizersResult) {
  auto orig = rt::load_model_dir(model.string());
  ASSERT_TRUE(orig.ok());
  for (auto& name : all_presets()) {
    SCOPED_TRACE(name);
    auto p = find_preset(name);
    ASSERT_TRUE(p.ok());
    const auto out = root / ("out-" + name);
    auto rep = quantize_model_dir(model.string(), *p, out.string(), calib.string(), opts());
    ASSERT_TRUE(rep.ok()) << rep.status().to_string();
    auto back = load_model_any(out.string());
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    const auto& q = rep->model;
    EXPECT_EQ(q.quantized_weights.size(), 14u);  // every linear of both layers fits these shapes
    ASSERT_EQ(back->w.size(), q.deq.w.size());
    std::set<std::string> qset(q.quantized_weights.begin(), q.quantized_weights.end());
    std::set<std::string> mod(q.modified.begin(), q.modified.end());
    for (auto& [n, t] : q.deq.w) {
      ASSERT_TRUE(back->w.count(n)) << n;
      EXPECT_TRUE(torch::equal(back->w.at(n), t)) << n;
      if (qset.count(n)) {
        EXPECT_FALSE(torch::equal(t, orig->w.at(n))) << n;  // really quantized
      } else if (!mod.count(n)) {
        EXPECT_TRUE(torch::equal(t, orig->w.at(n))) << n;  // kept as it was
      }
    }
    // Embeddings and the head are never touched; only AWQ folds scales into norms.
    EXPECT_TRUE(torch::equal(back->w.at("model.embed_tokens.weight"), orig->w.at("model.embed_tokens.weight")));
    EXPECT_TRUE(torch::equal(back->w.at("lm_head.weight"), orig->w.at("lm_head.weight")));
    EXPECT_EQ(!q.modified.empty(), p->method == Method::awq);
    // Loader metadata and copied files.
    std::ifstream cf(out / "config.json");
    auto cfg = nlohmann::json::parse(cf);
    const std::string qm = cfg["quantization_config"]["quant_method"];
    EXPECT_EQ(qm, p->method == Method::awq ? "awq" : (p->method == Method::rtn || p->method == Method::gptq) ? "gptq"
                                                                                                           : "bitsandbytes");
    EXPECT_EQ(fs::exists(out / "quantize_config.json"), qm == "gptq");
    EXPECT_TRUE(fs::exists(out / "tokenizer.bin"));
    EXPECT_TRUE(fs::exists(out / "README.md"));
    EXPECT_LT(rep->output_bytes, rep->input_bytes);
  }
  for (auto& e : fs::directory_iterator(root))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

// The quantized model stays close to the original (a sanity bound: a broken
// packing would give garbage logits), and GPTQ is closer than RTN.
TEST_F(Fixture, QuantizedLogitsStayClose) {
  auto orig = rt::load_model_dir(model.string());
  ASSERT_TRUE(orig.ok());
  auto tokens = torch::randint(3, 259, {2, 64}, torch::kLong);
  torch::NoGradGuard ng;
  auto ref = torch::log_softmax(rt::forward(*orig, tokens), -1);
  auto kl = [&](const std::string& preset) {
    auto out = root / ("kl-" + preset);
    auto rep = quantize_model_dir(model.string(), *find_preset(preset), out.string(), calib.string(), opts());
    EXPECT_TRUE(rep.ok()) << rep.status().to_string();
    auto m = load_model_any(out.string());
    auto lp = torch::log_softmax(rt::forward(*m, tokens), -1);
    return (ref.exp() * (ref - lp)).sum(-1).mean().item<double>();
  };
  const double k_int8 = kl("bnb-int8"), k_rtn3 = kl("rtn-3bit-128g"), k_gptq3 = kl("gptq-3bit-128g");
  EXPECT_LT(k_int8, 1e-3);
  EXPECT_LT(k_gptq3, k_rtn3);
  EXPECT_LT(k_rtn3, 1.0);
}

// --quantize-head: lm_head quantized too, on an untied and a tied model (the
// output unties it: the embedding keeps its bytes, config says
// tie_word_embeddings false); reloads to the quantizer's result; the loader
// keys say so (GPTQ "lm_head": true; bitsandbytes llm_int8_skip_modules []);
// AWQ refused with nothing written.
TEST_F(Fixture, QuantizeHeadUntiesAndReloads) {
  // GPTQ packs only out_features multiple of 32: a vocabulary of 288 (the
  // tokenizer's 259 padded, as models pad theirs).
  auto m288 = synthetic_model(9);
  m288.cfg.vocab_size = 288;
  m288.w["model.embed_tokens.weight"] = torch::randn({288, 128});
  m288.w["lm_head.weight"] = torch::randn({288, 128}) / std::sqrt(128.0);
  const auto untied = root / "untied";
  fs::create_directories(untied);
  ASSERT_TRUE(rt::write_model_dir(m288, untied.string()).ok());
  write_byte_tokenizer(untied / "tokenizer.bin");
  m288.w.erase("lm_head.weight");
  m288.cfg.tie_embeddings = true;
  const auto tied = root / "tied";
  fs::create_directories(tied);
  ASSERT_TRUE(rt::write_model_dir(m288, tied.string()).ok());
  write_byte_tokenizer(tied / "tokenizer.bin");
  auto o = opts();
  o.quantize_head = true;
  for (const fs::path& src : {untied, tied}) {
    auto orig = rt::load_model_dir(src.string());
    ASSERT_TRUE(orig.ok());
    const bool is_tied = orig->cfg.tie_embeddings;
    const auto head0 = is_tied ? orig->w.at("model.embed_tokens.weight") : orig->w.at("lm_head.weight");
    for (std::string name : {"gptq-4bit-128g", "rtn-4bit-32g", "bnb-nf4", "bnb-int8"}) {
      SCOPED_TRACE(name + (is_tied ? " tied" : " untied"));
      const auto out = root / ("head-" + name + (is_tied ? "-tied" : ""));
      auto rep = quantize_model_dir(src.string(), *find_preset(name), out.string(), calib.string(), o);
      ASSERT_TRUE(rep.ok()) << rep.status().to_string();
      EXPECT_EQ(rep->model.quantized_weights.size(), 15u);
      EXPECT_EQ(rep->model.quantized_weights.back(), "lm_head.weight");
      auto back = load_model_any(out.string());
      ASSERT_TRUE(back.ok()) << back.status().to_string();
      EXPECT_FALSE(back->cfg.tie_embeddings);
      ASSERT_TRUE(back->w.count("lm_head.weight"));
      EXPECT_TRUE(torch::equal(back->w.at("lm_head.weight"), rep->model.deq.w.at("lm_head.weight")));
      EXPECT_FALSE(torch::equal(back->w.at("lm_head.weight"), head0));
      EXPECT_LT((back->w.at("lm_head.weight") - head0).abs().max().item<double>(), 0.5 * head0.abs().max().item<double>());
      EXPECT_TRUE(torch::equal(back->w.at("model.embed_tokens.weight"), orig->w.at("model.embed_tokens.weight")));
      std::ifstream cf(out / "config.json");
      auto cfg = nlohmann::json::parse(cf);
      EXPECT_EQ(cfg["tie_word_embeddings"], false);
      const auto& qc = cfg["quantization_config"];
      if (qc["quant_method"] == "gptq") EXPECT_EQ(qc["lm_head"], true);
      else EXPECT_EQ(qc["llm_int8_skip_modules"], nlohmann::json::array());
      std::map<std::string, torch::Tensor> raw;
      ASSERT_TRUE(read_model_tensors(out.string(), raw).ok());
      EXPECT_EQ(raw.count(qc["quant_method"] == "gptq" ? "lm_head.qweight" : "lm_head.weight"), 1u);
    }
  }
  // Without the flag the head is not quantized (the default of the issue).
  auto plain = quantize_model_dir(model.string(), *find_preset("bnb-nf4"), (root / "nohead").string(), "", opts());
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->model.quantized_weights.size(), 14u);
  for (std::string name : {"awq-4bit-128g", "gptq-4bit-128g"}) {  // AWQ never; GPTQ: 259 rows do not pack
    auto r = quantize_model_dir(model.string(), *find_preset(name), (root / "refused").string(), calib.string(), o);
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.status().code(), Errc::unsupported) << name;
    EXPECT_NE(r.status().message().find("lm_head"), std::string::npos) << r.status().message();
    EXPECT_FALSE(fs::exists(root / "refused"));
  }
}

TEST_F(Fixture, BadInput) {
  // Unknown preset: lists them.
  auto p = find_preset("gptq-5bit");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("gptq-4bit-128g"), std::string::npos);
  EXPECT_NE(p.status().message().find("bnb-nf4"), std::string::npos);
  EXPECT_FALSE(find_preset("rtn-4bit-100g").ok());
  EXPECT_TRUE(find_preset("rtn-2bit-64g").ok());

  // Existing output: refused, left as it was.
  fs::create_directories(root / "exists");
  auto r = quantize_model_dir(model.string(), *find_preset("bnb-nf4"), (root / "exists").string(), "", opts());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::exists);
  EXPECT_TRUE(fs::is_empty(root / "exists"));

  // Calibration needed but missing; too short (says how much is needed).
  r = quantize_model_dir(model.string(), *find_preset("gptq-4bit-128g"), (root / "o1").string(), "", opts());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--calib"), std::string::npos);
  std::ofstream(root / "short.txt") << "too short";
  r = quantize_model_dir(model.string(), *find_preset("awq-4bit-128g"), (root / "o2").string(),
                         (root / "short.txt").string(), opts());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::invalid);
  EXPECT_NE(r.status().message().find("need 512 tokens"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("short.txt"), std::string::npos);
  EXPECT_FALSE(fs::exists(root / "o1"));
  EXPECT_FALSE(fs::exists(root / "o2"));

  // NaN weights: the tensor is named, nothing written.
  auto m = synthetic_model(8);
  m.w["model.layers.1.mlp.up_proj.weight"][3][4] = NAN;
  fs::create_directories(root / "nan");
  {
    std::vector<std::pair<std::string, torch::Tensor>> t(m.w.begin(), m.w.end());
    ASSERT_TRUE(write_safetensors((root / "nan" / "model.safetensors").string(), t).ok());
    fs::copy_file(model / "config.json", root / "nan" / "config.json");
  }
  r = quantize_model_dir((root / "nan").string(), *find_preset("bnb-int8"), (root / "o3").string(), "", opts());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << r.status().message();
  EXPECT_FALSE(fs::exists(root / "o3"));
}

TEST_F(Fixture, DamagedCheckpointsAreNamed) {
  auto out = root / "g";
  ASSERT_TRUE(quantize_model_dir(model.string(), *find_preset("rtn-4bit-128g"), out.string(), "", opts()).ok());
  std::map<std::string, torch::Tensor> t;
  ASSERT_TRUE(read_model_tensors(out.string(), t).ok());
  // A missing tensor.
  auto missing = t;
  missing.erase("model.layers.0.self_attn.k_proj.scales");
  std::vector<std::pair<std::string, torch::Tensor>> v(missing.begin(), missing.end());
  ASSERT_TRUE(write_safetensors((out / "model.safetensors").string(), v).ok());
  auto r = load_model_any(out.string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.layers.0.self_attn.k_proj.scales"), std::string::npos);
  // A wrong shape.
  auto bad = t;
  bad["model.layers.1.mlp.down_proj.qweight"] = torch::zeros({8, 128}, torch::kInt32);
  v.assign(bad.begin(), bad.end());
  ASSERT_TRUE(write_safetensors((out / "model.safetensors").string(), v).ok());
  r = load_model_any(out.string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::corrupt);
  EXPECT_NE(r.status().message().find("model.layers.1.mlp.down_proj.qweight"), std::string::npos);
  // An unknown quant_method.
  std::ifstream cf(out / "config.json");
  auto cfg = nlohmann::json::parse(cf);
  cfg["quantization_config"]["quant_method"] = "hqq";
  std::ofstream(out / "config.json") << cfg.dump();
  r = load_model_any(out.string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("hqq"), std::string::npos);
}
