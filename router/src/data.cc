// Readers of labelled routing data and the routing scores (APGR, CPT).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tenpak/hash.h"
#include "tenpak/router.h"
#include "tenpak/router_data.h"

namespace tenpak::router {

namespace fs = std::filesystem;

namespace {

Result<std::string> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status{Errc::io, path + ": cannot open"};
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status{Errc::io, path + ": read error"};
  return ss.str();
}

Status at(const std::string& file, uint64_t line, const std::string& msg) {
  return {Errc::corrupt, file + ":" + std::to_string(line) + ": " + msg};
}

Result<double> parse_bool(const std::string& v, const std::string& file, uint64_t line, const std::string& col) {
  if (v == "True" || v == "true" || v == "1") return 1.0;
  if (v == "False" || v == "false" || v == "0") return 0.0;
  return at(file, line, "column \"" + col + "\": expected True or False, got \"" + v.substr(0, 40) + "\"");
}

}  // namespace

Result<CsvTable> parse_csv(const std::string& t, const std::string& file) {
  CsvTable out;
  std::vector<std::string> row;
  std::string field;
  uint64_t line = 1, row_line = 1;
  bool quoted = false, field_started = false, after_quote = false;
  size_t i = 0;
  auto end_field = [&] {
    row.push_back(std::move(field));
    field.clear();
    field_started = after_quote = false;
  };
  auto end_row = [&] {
    end_field();
    if (!(row.size() == 1 && row[0].empty())) {  // blank lines are skipped
      out.rows.push_back(std::move(row));
      out.lines.push_back(row_line);
    }
    row.clear();
  };
  for (; i < t.size(); ++i) {
    char c = t[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < t.size() && t[i + 1] == '"') { field.push_back('"'); ++i; }
        else { quoted = false; after_quote = true; }
      } else {
        if (c == '\n') ++line;
        field.push_back(c);
      }
      continue;
    }
    if (c == ',') { end_field(); continue; }
    if (c == '\r' && i + 1 < t.size() && t[i + 1] == '\n') continue;
    if (c == '\n') { end_row(); ++line; row_line = line; continue; }
    if (after_quote) return at(file, line, "unexpected character after a closing quote");
    if (c == '"') {
      if (field_started) return at(file, line, "quote inside an unquoted field");
      quoted = field_started = true;
      continue;
    }
    field_started = true;
    field.push_back(c);
  }
  if (quoted) return at(file, row_line, "quoted field not closed before the end of the file");
  if (field_started || !row.empty()) end_row();
  return out;
}

Result<std::vector<Example>> read_routellm_csv(const std::string& path, const ReadOptions& opt) {
  auto text = slurp(path);
  if (!text.ok()) return text.status();
  auto tab = parse_csv(*text, path);
  if (!tab.ok()) return tab.status();
  if (tab->rows.empty()) return at(path, 1, "empty file (expected a header: prompt,<weak model>,<strong model>)");
  const auto& head = tab->rows[0];
  auto col = [&](const std::string& name) -> int {
    auto it = std::find(head.begin(), head.end(), name);
    return it == head.end() ? -1 : static_cast<int>(it - head.begin());
  };
  int cp = col("prompt"), cw = col(opt.weak_column), cs = col(opt.strong_column);
  if (cp < 0 || cw < 0 || cs < 0)
    return at(path, 1, "header must name columns \"prompt\", \"" + opt.weak_column + "\" and \"" + opt.strong_column + "\"");
  std::string group = fs::path(path).stem().string();
  if (group.rfind("gsm8k", 0) == 0) group = "gsm8k";
  std::vector<Example> out;
  for (size_t r = 1; r < tab->rows.size(); ++r) {
    const auto& row = tab->rows[r];
    uint64_t line = tab->lines[r];
    if (row.size() != head.size())
      return at(path, line, std::to_string(row.size()) + " fields, the header has " + std::to_string(head.size()));
    Example e;
    e.prompt = row[cp];
    if (e.prompt.empty()) return at(path, line, "empty prompt");
    auto w = parse_bool(row[cw], path, line, opt.weak_column);
    if (!w.ok()) return w.status();
    auto s = parse_bool(row[cs], path, line, opt.strong_column);
    if (!s.ok()) return s.status();
    e.weak = *w;
    e.strong = *s;
    e.group = group;
    e.file = path;
    e.line = line;
    out.push_back(std::move(e));
  }
  if (out.empty()) return at(path, 1, "no rows after the header");
  return out;
}

Result<std::vector<Example>> read_mt_bench(const std::string& path, const ReadOptions& opt) {
  std::string qpath = (fs::path(path).parent_path() / "mt_bench_question.jsonl").string();
  auto qtext = slurp(qpath);
  if (!qtext.ok()) return Status{Errc::io, path + ": MT-Bench judgements need the questions file next to them: " + qtext.status().message()};
  std::map<std::string, std::string> question;  // id -> turn 1
  {
    std::istringstream in(*qtext);
    std::string l;
    for (uint64_t line = 1; std::getline(in, l); ++line) {
      if (l.find_first_not_of(" \t\r") == std::string::npos) continue;
      auto j = nlohmann::json::parse(l, nullptr, false);
      if (j.is_discarded() || !j.is_object()) return at(qpath, line, "not a JSON object");
      if (!j.contains("question_id") || !j.contains("turns") || !j["turns"].is_array() || j["turns"].empty() || !j["turns"][0].is_string())
        return at(qpath, line, "expected question_id and a non-empty array \"turns\" of strings");
      question[j["question_id"].dump()] = j["turns"][0].get<std::string>();
      if (j["question_id"].is_string()) question[j["question_id"].get<std::string>()] = j["turns"][0].get<std::string>();
    }
  }
  auto text = slurp(path);
  if (!text.ok()) return text.status();
  struct Scores { double weak = -1, strong = -1; uint64_t line = 0; };
  std::map<std::string, Scores> by_q;
  std::istringstream in(*text);
  std::string l;
  for (uint64_t line = 1; std::getline(in, l); ++line) {
    if (l.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto j = nlohmann::json::parse(l, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return at(path, line, "not a JSON object");
    for (const char* k : {"question_id", "model", "score", "turn"})
      if (!j.contains(k)) return at(path, line, std::string("missing field \"") + k + "\"");
    auto num = [](const nlohmann::json& v, double& out) {
      if (v.is_number()) { out = v.get<double>(); return true; }
      if (!v.is_string()) return false;
      try { size_t used; out = std::stod(v.get<std::string>(), &used); return used == v.get<std::string>().size(); } catch (...) { return false; }
    };
    double score, turn;
    if (!num(j["score"], score) || score < 1 || score > 10) return at(path, line, "\"score\" must be a number from 1 to 10");
    if (!num(j["turn"], turn)) return at(path, line, "\"turn\" must be a number");
    if (turn != 1) continue;
    std::string qid = j["question_id"].is_string() ? j["question_id"].get<std::string>() : j["question_id"].dump();
    std::string model = j["model"].is_string() ? j["model"].get<std::string>() : "";
    auto& s = by_q[qid];
    if (model == opt.weak_column) s.weak = score;
    else if (model == opt.strong_column) s.strong = score;
    else continue;
    if (!s.line) s.line = line;
  }
  std::vector<Example> out;
  for (auto& [qid, s] : by_q) {
    if (s.weak < 0 || s.strong < 0) continue;
    auto q = question.find(qid);
    if (q == question.end()) return at(path, s.line, "question_id " + qid + " is not in " + qpath);
    Example e;
    e.prompt = q->second;
    e.strong = 1;
    e.weak = s.weak >= s.strong - opt.mt_bench_margin ? 1 : 0;
    e.group = "mt_bench";
    e.file = path;
    e.line = s.line;
    out.push_back(std::move(e));
  }
  if (out.empty()) return at(path, 1, "no turn-1 question judged for both \"" + opt.weak_column + "\" and \"" + opt.strong_column + "\"");
  return out;
}

Result<std::vector<Example>> read_data(const std::string& path, const ReadOptions& opt) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::vector<std::string> files;
    for (auto& e : fs::recursive_directory_iterator(path, ec)) {
      auto ext = e.path().extension().string();
      auto name = e.path().filename().string();
      if (e.is_regular_file() && (ext == ".csv" || (ext == ".jsonl" && name.find("judgement") != std::string::npos)))
        files.push_back(e.path().string());
    }
    if (ec) return Status{Errc::io, path + ": cannot list: " + ec.message()};
    std::sort(files.begin(), files.end());
    if (files.empty()) return Status{Errc::invalid, path + ": no *.csv or *judgement*.jsonl data files in this directory"};
    std::vector<Example> all;
    for (auto& f : files) {
      auto r = read_data(f, opt);
      if (!r.ok()) return r.status();
      std::move(r->begin(), r->end(), std::back_inserter(all));
    }
    return all;
  }
  if (!fs::exists(path, ec)) return Status{Errc::invalid, path + ": no such file"};
  auto ext = fs::path(path).extension().string();
  if (ext == ".csv") return read_routellm_csv(path, opt);
  if (ext == ".jsonl") return read_mt_bench(path, opt);
  return Status{Errc::invalid, path + ": unknown data file (expected RouteLLM *.csv or MT-Bench judgements *.jsonl)"};
}

uint32_t fold_of(const std::string& prompt, uint32_t k) {
  return static_cast<uint32_t>(xxh64(prompt.data(), prompt.size()) % k);
}

void score_curve(RoutingCurve& c) {
  const size_t n = c.accuracy.size() - 1;
  c.weak = c.accuracy.front();
  c.strong = c.accuracy.back();
  double area = 0;
  for (size_t k = 0; k < n; ++k) area += (c.accuracy[k] + c.accuracy[k + 1]) / 2;
  area /= n;
  const double gap = c.strong - c.weak;
  c.apgr = gap != 0 ? (area - c.weak) / gap : 0;
  auto cpt = [&](double x) {
    double target = c.weak + x * gap;
    for (size_t k = 0; k <= n; ++k)
      if (c.accuracy[k] >= target - 1e-12) return double(k) / n;
    return 1.0;
  };
  c.cpt50 = cpt(0.5);
  c.cpt80 = cpt(0.8);
}

RoutingCurve routing_curve(const std::vector<double>& score, const std::vector<Example>& ex) {
  const size_t n = ex.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] > score[b]; });
  RoutingCurve c;
  c.accuracy.resize(n + 1);
  double sum = 0;
  for (auto& e : ex) sum += e.weak;
  c.accuracy[0] = sum / n;
  for (size_t k = 0; k < n; ++k) {
    const auto& e = ex[order[k]];
    sum += e.strong - e.weak;
    c.accuracy[k + 1] = sum / n;
  }
  score_curve(c);
  return c;
}

RoutingCurve random_routing_curve(const std::vector<Example>& ex, uint64_t seed, int runs) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  RoutingCurve mean;
  mean.accuracy.assign(ex.size() + 1, 0);
  std::vector<double> s(ex.size());
  for (int r = 0; r < runs; ++r) {
    for (auto& v : s) v = u(rng);
    auto c = routing_curve(s, ex);
    for (size_t k = 0; k < c.accuracy.size(); ++k) mean.accuracy[k] += c.accuracy[k] / runs;
  }
  score_curve(mean);
  return mean;
}

}  // namespace tenpak::router
