// The router library: prompt checks, features, the router file's checks,
// data readers (file and line in every error), routing metrics, the catalog.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "tenpak/hash.h"
#include "tenpak/router.h"
#include "tenpak/router_catalog.h"
#include "tenpak/router_data.h"

using namespace tenpak;
using namespace tenpak::router;
namespace fs = std::filesystem;

namespace {

std::string tmpdir() {
  std::string t = (fs::temp_directory_path() / ("tenpak-router-" + std::to_string(::getpid()))).string();
  fs::create_directories(t);
  return t;
}

// The temporary directory goes when the test binary exits.
struct RemoveTmpdir {
  ~RemoveTmpdir() {
    std::error_code ec;
    fs::remove_all(tmpdir(), ec);
  }
} remove_tmpdir_at_exit;

std::string write(const std::string& name, const std::string& text) {
  std::string p = tmpdir() + "/" + name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

std::string shared_router_data() {
  const char* s = std::getenv("TENPAK_SHARED");
  std::string d = std::string(s ? s : "../shared") + "/data/router/routellm";
  return fs::exists(d) ? d : "";
}

// A small consistent model with non-trivial weights.
RouterModel toy_model(uint32_t hidden) {
  RouterModel m;
  m.hash_bits = 8;
  m.hidden = hidden;
  for (int i = 0; i < kNumDense; ++i) { m.dense_mean[i] = 0.1f * i; m.dense_std[i] = 1.0f + i; }
  m.p_ref = 0.3f;
  size_t D = m.input_dim();
  if (hidden == 0) {
    m.w.resize(D);
    for (size_t i = 0; i < D; ++i) m.w[i] = std::sin(float(i));
    m.b = -0.5f;
  } else {
    m.w.resize(hidden * D);
    for (size_t i = 0; i < m.w.size(); ++i) m.w[i] = 0.1f * std::cos(float(i));
    m.b1.assign(hidden, 0.05f);
    m.w2.resize(hidden);
    for (uint32_t j = 0; j < hidden; ++j) m.w2[j] = j % 2 ? 0.5f : -0.3f;
    m.b2 = 0.1f;
  }
  m.meta = R"({"command":"test"})";
  return m;
}

// Rewrites the trailing checksum so a deliberate field change is what the
// loader sees (not a checksum mismatch).
void reseal(std::vector<uint8_t>& b) {
  Xxh128 h = xxh128(b.data(), b.size() - 16);
  std::copy(h.begin(), h.end(), b.end() - 16);
}

}  // namespace

TEST(RouterPrompt, RejectsEmptyHugeAndInvalidUtf8) {
  EXPECT_EQ(validate_prompt("").code(), Errc::invalid);
  EXPECT_EQ(validate_prompt(" \n\t ").code(), Errc::invalid);
  EXPECT_TRUE(validate_prompt("What is 2+2?").ok());
  EXPECT_TRUE(validate_prompt("Grüße, 東京, 🙂").ok());
  std::string huge(kMaxPromptBytes + 1, 'a');
  auto st = validate_prompt(huge);
  EXPECT_EQ(st.code(), Errc::invalid);
  EXPECT_NE(st.message().find("at most"), std::string::npos) << st.message();
  huge.pop_back();
  EXPECT_TRUE(validate_prompt(huge).ok());
  for (std::string bad : {std::string("ab\x80"), std::string("\xC0\x80"), std::string("x\xED\xA0\x80"),
                          std::string("\xF4\x90\x80\x80"), std::string("ok \xE2\x82"), std::string("\xFF")}) {
    auto s = validate_prompt(bad);
    EXPECT_EQ(s.code(), Errc::invalid) << bad;
    EXPECT_NE(s.message().find("UTF-8"), std::string::npos) << s.message();
  }
  EXPECT_NE(validate_prompt("abc\x80").message().find("byte 3"), std::string::npos);
}

TEST(RouterFeatures, SparseNormalisedAndDenseCues) {
  std::string q = "Which of the following is NOT a mammal?\nA. Dog\nB. Whale\nC. Shark\nD. Bat\nAnswer:";
  Features f = extract_features(q, 12);
  ASSERT_FALSE(f.sparse.empty());
  double n = 0;
  for (size_t i = 0; i < f.sparse.size(); ++i) {
    EXPECT_LT(f.sparse[i].first, 1u << 12);
    if (i) {
      EXPECT_LT(f.sparse[i - 1].first, f.sparse[i].first);
    }
    n += double(f.sparse[i].second) * f.sparse[i].second;
  }
  EXPECT_NEAR(n, 1.0, 1e-5);
  EXPECT_EQ(f.dense[kOptions], 4.f);
  EXPECT_EQ(f.dense[kAnswerCue], 1.f);
  EXPECT_EQ(f.dense[kHasQuestionMark], 1.f);
  EXPECT_EQ(f.dense[kWhStart], 1.f);
  EXPECT_GT(f.dense[kLogNegation], 0.f);
  EXPECT_EQ(f.dense[kLogCode], 0.f);
  Features g = extract_features("Janet has 16 eggs and eats 3 each day, then sells the rest for $2 each. How much does she make?", 12);
  EXPECT_GT(g.dense[kLogNumbers], 0.f);
  EXPECT_GT(g.dense[kLogMath], 0.f);
  EXPECT_GT(g.dense[kLogMultiStep], 0.f);
  EXPECT_EQ(g.dense[kOptions], 0.f);
  // Deterministic, and names cover every bucket when asked.
  std::vector<std::pair<uint32_t, std::string>> names;
  Features h = extract_features(q, 12, &names);
  EXPECT_EQ(h.sparse, f.sparse);
  EXPECT_EQ(names.size(), f.sparse.size());
}

TEST(RouterFile, RoundTripsBothKinds) {
  for (uint32_t hidden : {0u, 4u}) {
    RouterModel m = toy_model(hidden);
    auto bytes = serialize_router(m);
    auto back = parse_router(bytes.data(), bytes.size(), "mem");
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(back->meta, m.meta);
    EXPECT_EQ(serialize_router(*back), bytes);
    Features f = extract_features("Explain why the sky is blue, in 3 sentences.", m.hash_bits);
    float p = m.predict(f);
    EXPECT_GT(p, 0.f);
    EXPECT_LT(p, 1.f);
    EXPECT_EQ(back->predict(f), p);
    EXPECT_FALSE(m.top_contributions(f, 3).empty());
  }
}

TEST(RouterFile, SavesAtomicallyAndLoads) {
  RouterModel m = toy_model(0);
  std::string p = tmpdir() + "/r.router";
  ASSERT_TRUE(save_router(m, p).ok());
  auto back = load_router(p);
  ASSERT_TRUE(back.ok()) << back.status().message();
  for (auto& e : fs::directory_iterator(tmpdir())) EXPECT_EQ(e.path().string().find("tenpak-tmp"), std::string::npos);
  EXPECT_EQ(load_router(tmpdir() + "/missing.router").status().code(), Errc::invalid);
}

TEST(RouterFile, RejectsCorruptAndOtherVersions) {
  const auto good = serialize_router(toy_model(0));
  auto check = [&](std::vector<uint8_t> b, Errc want, const char* needle) {
    auto r = parse_router(b.data(), b.size(), "x.router");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), want) << r.status().message();
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("x.router"), std::string::npos);
  };
  auto b = good;
  b[b.size() / 2] ^= 1;
  check(b, Errc::corrupt, "checksum");
  check(std::vector<uint8_t>(good.begin(), good.end() - 1), Errc::corrupt, "checksum");
  check(std::vector<uint8_t>(good.begin(), good.begin() + 20), Errc::corrupt, "too short");
  b = good;
  b[0] = 'X';
  check(b, Errc::corrupt, "magic");
  b = good;
  b[8] = 2;  // format version 2
  check(b, Errc::unsupported, "format version 2");
  b = good;
  b[12] = 9;  // feature version 9
  reseal(b);
  check(b, Errc::unsupported, "feature version 9");
  b = good;
  b[16] = 30;  // hash bits
  reseal(b);
  check(b, Errc::corrupt, "hash_bits");
  b = good;
  const uint32_t nan = 0x7fc00000;
  std::memcpy(&b[b.size() - 16 - 8], &nan, 4);  // a weight
  reseal(b);
  check(b, Errc::corrupt, "non-finite");
  b = good;
  b.insert(b.end() - 16, {0, 0, 0, 0});
  reseal(b);
  check(b, Errc::corrupt, "size");
}

TEST(RouterFile, BuiltInRouterLoads) {
  auto m = default_router();
  ASSERT_TRUE(m.ok()) << m.status().message();
  float p = m->predict(extract_features("What is the capital of France?", m->hash_bits));
  EXPECT_GT(p, 0.f);
  EXPECT_LT(p, 1.f);
  EXPECT_NE(m->meta.find("tenpak router train"), std::string::npos) << m->meta;
}

TEST(RouterData, CsvQuotedMultiLineFields) {
  auto t = parse_csv("a,b\n\"x, \"\"y\"\"\nz\",2\r\nplain,3\n\n\"last\",4", "t.csv");
  ASSERT_TRUE(t.ok()) << t.status().message();
  ASSERT_EQ(t->rows.size(), 4u);
  EXPECT_EQ(t->rows[1][0], "x, \"y\"\nz");
  EXPECT_EQ(t->lines[1], 2u);
  EXPECT_EQ(t->lines[2], 4u);
  EXPECT_EQ(t->rows[3][0], "last");
  EXPECT_EQ(t->lines[3], 6u);
  auto u = parse_csv("a,b\n1,2\n\"open,3\nmore\n", "u.csv");
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.status().message().find("u.csv:3:"), std::string::npos) << u.status().message();
  auto v = parse_csv("a,b\nx\"y,2\n", "v.csv");
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("v.csv:2:"), std::string::npos) << v.status().message();
}

TEST(RouterData, RouteLlmCsvErrorsNameFileAndLine) {
  const std::string head = "prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\n";
  auto ok = read_routellm_csv(write("gsm8k_ok.csv", head + "\"two\nlines\",True,False\nthree,False,True\n"));
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[0].prompt, "two\nlines");
  EXPECT_EQ((*ok)[0].weak, 1);
  EXPECT_EQ((*ok)[1].line, 4u);
  EXPECT_EQ((*ok)[1].group, "gsm8k");
  auto bad = read_routellm_csv(write("bad_bool.csv", head + "a,True,True\n\"b\nc\",Maybe,True\n"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Errc::corrupt);
  EXPECT_NE(bad.status().message().find("bad_bool.csv:3:"), std::string::npos) << bad.status().message();
  auto fields = read_routellm_csv(write("fields.csv", head + "a,True\n"));
  ASSERT_FALSE(fields.ok());
  EXPECT_NE(fields.status().message().find("fields.csv:2:"), std::string::npos) << fields.status().message();
  auto header = read_routellm_csv(write("header.csv", "prompt,x,y\na,True,True\n"));
  ASSERT_FALSE(header.ok());
  EXPECT_NE(header.status().message().find("header.csv:1:"), std::string::npos) << header.status().message();
  EXPECT_FALSE(read_data(tmpdir() + "/nope.csv").ok());
  EXPECT_FALSE(read_data(write("x.txt", "a")).ok());
}

TEST(RouterData, MtBenchJudgements) {
  std::string d = tmpdir() + "/mt";
  fs::create_directories(d);
  std::ofstream(d + "/mt_bench_question.jsonl") << R"({"question_id": 1, "category": "writing", "turns": ["Write a poem.", "Shorter."]})" "\n"
                                                << R"({"question_id": 2, "category": "math", "turns": ["What is 3*7?", "And 4*7?"]})" "\n";
  const std::string w = "mistralai/Mixtral-8x7B-Instruct-v0.1", s = "gpt-4-1106-preview";
  auto line = [](int q, const std::string& m, int score, int turn) {
    return "{\"question_id\": " + std::to_string(q) + ", \"model\": \"" + m + "\", \"score\": \"" + std::to_string(score) +
           "\", \"turn\": " + std::to_string(turn) + "}\n";
  };
  std::ofstream(d + "/mt_bench_judgements.jsonl") << line(1, w, 8, 1) << line(1, s, 9, 1) << line(2, w, 3, 1) << line(2, s, 10, 1)
                                                  << line(2, w, 10, 2);
  auto r = read_mt_bench(d + "/mt_bench_judgements.jsonl");
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].prompt, "Write a poem.");
  EXPECT_EQ((*r)[0].weak, 1);  // 8 >= 9 - 1
  EXPECT_EQ((*r)[1].weak, 0);  // 3 < 10 - 1
  std::ofstream(d + "/bad_judgements.jsonl") << line(1, w, 8, 1) << "{\"question_id\": 1, \"model\": \"x\"}\n";
  auto b = read_mt_bench(d + "/bad_judgements.jsonl");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("bad_judgements.jsonl:2:"), std::string::npos) << b.status().message();
  std::ofstream(d + "/junk_judgements.jsonl") << line(1, w, 8, 1) << "{not json\n";
  auto c = read_mt_bench(d + "/junk_judgements.jsonl");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("junk_judgements.jsonl:2:"), std::string::npos) << c.status().message();
  std::ofstream(d + "/range_judgements.jsonl") << line(1, w, 11, 1);
  EXPECT_FALSE(read_mt_bench(d + "/range_judgements.jsonl").ok());
  fs::create_directories(d + "/alone");
  std::ofstream(d + "/alone/j_judgements.jsonl") << line(1, w, 8, 1);
  auto q = read_mt_bench(d + "/alone/j_judgements.jsonl");
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("mt_bench_question.jsonl"), std::string::npos) << q.status().message();
}

TEST(RouterMetrics, ApgrAndCptOnAKnownCase) {
  // Four prompts: two gain from the strong model, one both get right, one the weak only.
  std::vector<Example> ex(4);
  ex[0].weak = 0, ex[0].strong = 1;
  ex[1].weak = 0, ex[1].strong = 1;
  ex[2].weak = 1, ex[2].strong = 1;
  ex[3].weak = 1, ex[3].strong = 0;
  // Oracle order: accuracy 0.5, 0.75, 1, 1, 0.75 -> area (0.625+0.875+1+0.875)/4 = 0.84375; weak 0.5, strong 0.75.
  auto c = routing_curve({4, 3, 2, 1}, ex);
  EXPECT_DOUBLE_EQ(c.weak, 0.5);
  EXPECT_DOUBLE_EQ(c.strong, 0.75);
  EXPECT_NEAR(c.apgr, (0.84375 - 0.5) / 0.25, 1e-12);
  EXPECT_DOUBLE_EQ(c.cpt50, 0.25);
  EXPECT_DOUBLE_EQ(c.cpt80, 0.25);  // 0.75 >= 0.5 + 0.8 x 0.25 already
  // Worst order first: 0.5, 0.25, 0.25, 0.5, 0.75.
  auto w = routing_curve({1, 2, 3, 4}, ex);
  EXPECT_NEAR(w.apgr, ((0.375 + 0.25 + 0.375 + 0.625) / 4 - 0.5) / 0.25, 1e-12);
  EXPECT_DOUBLE_EQ(w.cpt50, 1.0);
  // Random routing averages to the diagonal: APGR 0.5.
  std::vector<Example> many;
  for (int i = 0; i < 400; ++i) many.push_back(ex[i % 4]);
  EXPECT_NEAR(random_routing_curve(many, 7, 200).apgr, 0.5, 0.03);
  // Folds: stable and roughly balanced.
  int counts[5] = {};
  for (int i = 0; i < 1000; ++i) counts[fold_of("prompt " + std::to_string(i), 5)]++;
  for (int k : counts) EXPECT_GT(k, 150);
  EXPECT_EQ(fold_of("abc", 5), fold_of("abc", 5));
}

TEST(RouterCatalog, BuiltInOptionsAndCosts) {
  auto c = default_catalog();
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_GE(c->gpus.size(), 6u);
  const ModelEntry* m70 = c->find_model("llama-2-70b");
  ASSERT_NE(m70, nullptr);
  for (auto& o : c->options(*m70)) {
    // Every option fits: weights x overhead within the GPUs' memory.
    EXPECT_LE(m70->params_b * o.quant->bytes_per_param * c->memory_overhead, o.gpu->memory_gb * o.gpus);
    // The stated cost formula.
    double tps = c->batch * c->bandwidth_efficiency * o.gpu->bandwidth_gbs * o.gpus / (m70->params_b * o.quant->bytes_per_param);
    EXPECT_NEAR(o.tokens_per_s, tps, 1e-9);
    EXPECT_NEAR(o.price_per_mtok, o.gpu->price_per_hour * o.gpus / (tps * 3600) * 1e6, 1e-9);
    if (o.quant->name == "bf16" && o.gpu->name == "T4") ADD_FAILURE() << "70B bf16 cannot fit 8x T4 (128 GB < 166 GB)";
  }
  EXPECT_EQ(c->find_model("nope"), nullptr);
}

TEST(RouterCatalog, RecommendsByPredictedQuality) {
  auto c = default_catalog();
  ASSERT_TRUE(c.ok());
  // An easy prompt (p far below the reference): a much cheaper option.
  auto easy = recommend(*c, "Llama-2-70B", 0, 0.02, 0.3, 0.85);
  ASSERT_TRUE(easy.ok()) << easy.status().message();
  EXPECT_LT(easy->recommended.price_per_mtok, easy->requested.price_per_mtok);
  EXPECT_GE(easy->predicted_quality, 0.85);
  EXPECT_GT(easy->saving, 0);
  // A hard prompt: only options at least as good (or the requested one).
  auto hard = recommend(*c, "Llama-2-70B", 0, 0.99, 0.3, 0.99);
  ASSERT_TRUE(hard.ok());
  EXPECT_GE(hard->predicted_quality, 0.99);
  for (auto& [o, q] : hard->considered) EXPECT_LT(o.price_per_mtok, hard->requested.price_per_mtok);
  auto on = recommend(*c, "Llama-2-70B@A100-80GB", 0, 0.3, 0.3, 0.85);
  ASSERT_TRUE(on.ok()) << on.status().message();
  EXPECT_EQ(on->requested.gpu->name, "A100-80GB");
  EXPECT_EQ(on->requested.gpus, 4);  // 69e9 x 2 B x 1.2 = 166 GB > 2 x 80
  auto unknown = recommend(*c, "GPT-9", 0, 0.3, 0.3, 0.85);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("Llama-2-7B"), std::string::npos) << unknown.status().message();
  EXPECT_FALSE(recommend(*c, "Llama-2-70B@T4", 0, 0.3, 0.3, 0.85).ok());
  EXPECT_FALSE(recommend(*c, "Llama-2-70B@B200", 0, 0.3, 0.3, 0.85).ok());
}

TEST(RouterCatalog, UserCatalogChecked) {
  std::string hw = R"({"gpus": [{"name": "G", "memory_gb": 10, "bandwidth_gbs": 100, "price_per_hour": 1}]})";
  std::string cat = R"({"version": 1, "hardware": "hw.json", "quantizations": [{"name": "bf16", "bytes_per_param": 2, "quality_factor": 1}],
    "models": [{"name": "M", "params_b": 1, "quality": {"knowledge": 0.5, "math": 0.5, "code": 0.5, "chat": 0.5}}]})";
  write("hw.json", hw);
  auto c = load_catalog(write("cat.json", cat));
  ASSERT_TRUE(c.ok()) << c.status().message();
  ASSERT_EQ(c->gpus.size(), 1u);
  EXPECT_EQ(c->options(c->models[0]).size(), 1u);
  std::string broken = cat;
  broken.replace(broken.find("\"params_b\": 1"), 13, "\"params_b\": -1");
  auto b = load_catalog(write("broken.json", broken));
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("params_b"), std::string::npos) << b.status().message();
  EXPECT_FALSE(load_catalog(write("junk.json", "{")).ok());
}

TEST(RouterCatalog, PromptCategories) {
  EXPECT_EQ(kCategories[prompt_category("Write a Python function that reverses a list.")], std::string("code"));
  EXPECT_EQ(kCategories[prompt_category("Tom has 12 apples and gives 5 away. How many are left?")], std::string("math"));
  EXPECT_EQ(kCategories[prompt_category("Which of the following is a mammal?\nA. Shark\nB. Dog\nC. Trout\nD. Eel\nAnswer:")], std::string("knowledge"));
  EXPECT_EQ(kCategories[prompt_category("Compose a travel blog post about Hawaii.")], std::string("chat"));
}

// The shared data (skipped without it): the figures SOURCES.md states.
TEST(RouterSharedData, ReadsRouteLlmFilesAsDocumented) {
  std::string d = shared_router_data();
  if (d.empty()) GTEST_SKIP() << "../shared/data/router/routellm is absent";
  auto g = read_data(d + "/gsm8k_responses.csv");
  ASSERT_TRUE(g.ok()) << g.status().message();
  ASSERT_EQ(g->size(), 1319u);
  double w = 0, s = 0;
  for (auto& e : *g) { w += e.weak; s += e.strong; }
  EXPECT_NEAR(w / g->size(), 0.638, 0.001);
  EXPECT_NEAR(s / g->size(), 0.857, 0.001);
  auto m = read_data(d + "/mmlu");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->size(), 10412u);
  auto mt = read_data(d + "/mt_bench_judgements.jsonl");
  ASSERT_TRUE(mt.ok()) << mt.status().message();
  EXPECT_EQ(mt->size(), 80u);
  for (auto* set : {&*g, &*m, &*mt})
    for (auto& e : *set) ASSERT_TRUE(validate_prompt(e.prompt).ok()) << e.file << ":" << e.line;
}
