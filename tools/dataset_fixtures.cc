#include "dataset_fixtures.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "rng.h"
#include "tenpak/out_file.h"

namespace fs = std::filesystem;

namespace tenpak::fixtures {
namespace {

using tools::Rng;

// A vocabulary of pronounceable pseudo-words drawn with a Zipf-like law, so
// the text compresses about as well as English prose (zstd -19: ~0.3).
class Words {
 public:
  Words() {
    Rng r(7);
    static const char* syl[] = {"ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "pi", "da", "ge", "ho", "ju", "be",
                                "ci", "fo", "ly", "qua", "ster", "tion", "ing", "er", "an", "the", "of", "and"};
    for (int i = 0; i < 4000; ++i) {
      std::string w;
      int n = 1 + static_cast<int>(r.below(3));
      for (int k = 0; k < n; ++k) w += syl[r.below(sizeof(syl) / sizeof(*syl))];
      words_.push_back(w);
    }
  }
  const std::string& pick(Rng& r) const {
    // Zipf-ish: index = floor(N^u) - 1.
    double u = r.uniform();
    size_t i = static_cast<size_t>(std::pow(static_cast<double>(words_.size()), u)) - 1;
    return words_[std::min(i, words_.size() - 1)];
  }
  std::string sentence(Rng& r, int n) const {
    std::string s;
    for (int k = 0; k < n; ++k) {
      if (k) s += ' ';
      s += pick(r);
    }
    return s;
  }

 private:
  std::vector<std::string> words_;
};

const Words& words() {
  static Words w;
  return w;
}

// Base record i (deterministic): a JSON object on one line.
std::string json_record(uint64_t seed, uint64_t i) {
  Rng r(seed * 1000003 + i);
  const auto& w = words();
  std::string q = w.sentence(r, 8 + static_cast<int>(r.below(20)));
  std::string a = w.sentence(r, 10 + static_cast<int>(r.below(40)));
  return "{\"id\": " + std::to_string(i) + ", \"question\": \"" + q + "?\", \"answer\": \"" + a + ".\", \"label\": " +
         std::to_string(r.below(5)) + "}\n";
}
std::string csv_record(uint64_t seed, uint64_t i) {
  Rng r(seed * 1000003 + i);
  const auto& w = words();
  return std::to_string(i) + "," + w.pick(r) + ",\"" + w.sentence(r, 6 + static_cast<int>(r.below(12))) + "\"," +
         std::to_string(r.below(100000)) + "." + std::to_string(r.below(100)) + "\r\n";
}
std::string conll_record(uint64_t seed, uint64_t i) {
  Rng r(seed * 1000003 + i);
  const auto& w = words();
  static const char* tags[] = {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG"};
  std::string s;
  int n = 5 + static_cast<int>(r.below(20));
  for (int k = 0; k < n; ++k) s += w.pick(r) + "\t" + tags[r.below(6)] + "\n";
  return s + "\n";
}

// An edit of a record: a few words replaced or inserted inside it.
std::string edit(std::string rec, Rng& r) {
  const auto& w = words();
  int n = 1 + static_cast<int>(r.below(3));
  for (int k = 0; k < n && rec.size() > 16; ++k) {
    size_t at = 8 + r.below(rec.size() - 16);
    while (at < rec.size() && rec[at] != ' ' && rec[at] != '\t') ++at;  // CoNLL lines separate by tabs
    if (at >= rec.size() - 2) continue;
    rec.insert(at, " " + w.pick(r));
  }
  return rec;
}

class Writer {
 public:
  Status open(const std::string& path) {
    TP_RETURN_IF_ERROR(w_.open(path));
    return Status::Ok();
  }
  Status put(const std::string& s) {
    buf_ += s;
    if (buf_.size() >= (1 << 20)) return flush();
    return Status::Ok();
  }
  Status close() {
    if (closed_) return Status::Ok();
    closed_ = true;
    TP_RETURN_IF_ERROR(flush());
    return w_.close();
  }
  uint64_t bytes() const { return w_.written() + buf_.size(); }

 private:
  Status flush() {
    Status st = w_.write(buf_.data(), buf_.size());
    buf_.clear();
    return st;
  }
  OutFileWriter w_;
  std::string buf_;
  bool closed_ = false;
};

}  // namespace

const std::vector<std::string>& dataset_fixture_kinds() {
  static const std::vector<std::string> k = {"ds-append",   "ds-delete", "ds-edit", "ds-reorder",
                                             "ds-addfield", "ds-shards", "ds-csv",  "ds-conll"};
  return k;
}

bool is_dataset_fixture_kind(const std::string& kind) {
  const auto& k = dataset_fixture_kinds();
  return std::find(k.begin(), k.end(), kind) != k.end();
}

Status generate_dataset_pair(const std::string& kind, uint64_t size_mb, uint64_t seed, const std::string& out) {
  if (!is_dataset_fixture_kind(kind)) return {Errc::invalid, "unknown data set fixture kind '" + kind + "'"};
  std::error_code ec;
  fs::create_directories(out + "/base", ec);
  fs::create_directories(out + "/derived", ec);
  if (ec) return {Errc::io, out + ": cannot create: " + ec.message()};
  const uint64_t target = size_mb << 20;
  const bool csv = kind == "ds-csv", conll = kind == "ds-conll";
  const std::string ext = csv ? ".csv" : conll ? ".conll" : ".jsonl";
  auto rec = [&](uint64_t i) { return csv ? csv_record(seed, i) : conll ? conll_record(seed, i) : json_record(seed, i); };

  Writer base;
  TP_RETURN_IF_ERROR(base.open(out + "/base/data" + ext));
  std::vector<std::unique_ptr<Writer>> shards;
  auto new_shard = [&]() -> Status {
    if (!shards.empty()) TP_RETURN_IF_ERROR(shards.back()->close());
    char name[64];
    std::snprintf(name, sizeof name, "/derived/data-%05zu%s", shards.size(), ext.c_str());
    shards.push_back(std::make_unique<Writer>());
    return shards.back()->open(out + name);
  };
  if (kind == "ds-shards") {
    TP_RETURN_IF_ERROR(new_shard());
  } else {
    shards.push_back(std::make_unique<Writer>());
    TP_RETURN_IF_ERROR(shards.back()->open(out + "/derived/data" + ext));
  }
  if (csv) {
    TP_RETURN_IF_ERROR(base.put("id,word,text,value\r\n"));
    TP_RETURN_IF_ERROR(shards.back()->put(kind == "ds-csv" ? "id,word,text,value,flag\r\n" : ""));
  }
  Rng r(seed ^ 0x5eed);
  std::vector<std::string> window;  // ds-reorder: shuffled in windows of 2048 records
  uint64_t i = 0;
  const uint64_t shard_bytes = std::max<uint64_t>(target / 4, 1);
  while (base.bytes() < target) {
    std::string b = rec(i);
    TP_RETURN_IF_ERROR(base.put(b));
    Writer& d = *shards.back();
    if (kind == "ds-append" || kind == "ds-shards") {
      TP_RETURN_IF_ERROR(d.put(b));
      if (kind == "ds-shards" && d.bytes() >= shard_bytes) TP_RETURN_IF_ERROR(new_shard());
    } else if (kind == "ds-delete") {
      if (r.below(10) != 0) TP_RETURN_IF_ERROR(d.put(b));
    } else if (kind == "ds-edit" || kind == "ds-conll") {
      TP_RETURN_IF_ERROR(d.put(r.below(10) == 0 ? edit(b, r) : b));
    } else if (kind == "ds-csv") {
      // A column added to every row, and one row in ten edited.
      std::string row = b.substr(0, b.size() - 2) + "," + (r.below(2) ? "true" : "false") + "\r\n";
      TP_RETURN_IF_ERROR(d.put(r.below(10) == 0 ? edit(row, r) : row));
    } else if (kind == "ds-addfield") {
      std::string row = b.substr(0, b.size() - 2) + ", \"source\": \"gen-" + std::to_string(r.below(4)) + "\"}\n";
      TP_RETURN_IF_ERROR(d.put(row));
    } else if (kind == "ds-reorder") {
      window.push_back(b);
      if (window.size() == 2048) {
        for (size_t k = window.size(); k > 1; --k) std::swap(window[k - 1], window[r.below(k)]);
        for (auto& s : window) TP_RETURN_IF_ERROR(d.put(s));
        window.clear();
      }
    }
    ++i;
  }
  for (auto& s : window) TP_RETURN_IF_ERROR(shards.back()->put(s));
  if (kind == "ds-append")  // 10% more rows, new text
    for (uint64_t k = 0, n = i / 10; k < n; ++k) TP_RETURN_IF_ERROR(shards.back()->put(rec(i + 1 + k)));
  TP_RETURN_IF_ERROR(base.close());
  for (auto& s : shards) TP_RETURN_IF_ERROR(s->close());
  return Status::Ok();
}

}  // namespace tenpak::fixtures
