// Test helper for tests/runtime/check_runtime.py: the runtime's logits and
// tokenizer ids, as files the Python side reads.
//   tenpak_runtime_dump logits DIR IDS OUT   IDS: comma-separated ids; OUT: [T, V] float32 (full forward)
//   tenpak_runtime_dump cached DIR IDS OUT   same, decoding one token at a time through the KV cache
//   tenpak_runtime_dump encode TOK TEXTFILE  prints the ids of the file's text (with <s>), comma-separated
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tenpak/llama.h"
#include "tenpak/tokenizer.h"

using namespace tenpak;

static std::vector<int64_t> parse_ids(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ',')) v.push_back(std::stoll(x));
  return v;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s logits|cached DIR IDS OUT | encode TOK TEXTFILE\n", argv[0]);
    return 2;
  }
  torch::set_num_threads(2);
  std::string mode = argv[1];
  if (mode == "encode") {
    auto tok = rt::Tokenizer::load(argv[2]);
    if (!tok.ok()) return std::fprintf(stderr, "%s\n", tok.status().message().c_str()), 1;
    std::ifstream f(argv[3], std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    auto ids = tok->encode(ss.str(), true);
    for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%lld", i ? "," : "", (long long)ids[i]);
    std::printf("\n");
    return 0;
  }
  if (argc < 5) return 2;
  auto m = rt::load_model_dir(argv[2]);
  if (!m.ok()) return std::fprintf(stderr, "%s\n", m.status().message().c_str()), 1;
  auto ids = parse_ids(argv[3]);
  auto t = torch::from_blob(ids.data(), {1, (int64_t)ids.size()}, torch::kInt64).clone();
  torch::Tensor logits;
  if (mode == "logits") {
    logits = rt::forward(*m, t)[0];
  } else if (mode == "cached") {
    rt::KVCache cache;
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < t.size(1); ++i) rows.push_back(rt::forward_cached(*m, t.slice(1, i, i + 1), cache)[0]);
    logits = torch::cat(rows, 0);
  } else {
    return 2;
  }
  logits = logits.contiguous();
  std::ofstream o(argv[4], std::ios::binary);
  o.write(reinterpret_cast<const char*>(logits.data_ptr<float>()), logits.numel() * sizeof(float));
  return o ? 0 : 1;
}
