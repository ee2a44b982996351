// Labelled routing data and the field's router scores.
//
// An Example is one prompt with the quality each of two models reached on it
// (1/0 correctness for RouteLLM's CSVs; for MT-Bench, 1 for the strong model
// and 1 or 0 for the weak one depending on whether its judge score came close
// enough). Readers name the file and line of anything malformed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tenpak/status.h"

namespace tenpak::router {

struct Example {
  std::string prompt;
  double weak = 0, strong = 0;  // quality in [0, 1]
  std::string group;            // e.g. the MMLU subject ("mmlu_anatomy"), "gsm8k", "mt_bench"
  std::string file;
  uint64_t line = 0;            // 1-based line where the record starts
};

struct ReadOptions {
  // RouteLLM CSV columns holding each model's correctness (True/False).
  std::string weak_column = "mistralai/Mixtral-8x7B-Instruct-v0.1";
  std::string strong_column = "gpt-4-1106-preview";
  // MT-Bench: the weak model "wins" a turn-1 question when its score is at
  // least strong score - margin (scores 1-10).
  double mt_bench_margin = 1.0;
};

// One RFC 4180 CSV file (quoted fields may hold commas, doubled quotes and
// newlines). Rows: vectors of fields; `lines`: the line each row starts on.
struct CsvTable {
  std::vector<std::vector<std::string>> rows;
  std::vector<uint64_t> lines;
};
Result<CsvTable> parse_csv(const std::string& text, const std::string& file);

// RouteLLM's per-prompt correctness CSV (columns prompt, <weak>, <strong>, ...).
Result<std::vector<Example>> read_routellm_csv(const std::string& path, const ReadOptions& opt = {});
// MT-Bench GPT-4 judgements (JSONL) with the questions file
// (mt_bench_question.jsonl, in the same directory): turn 1 of every question
// both models were judged on.
Result<std::vector<Example>> read_mt_bench(const std::string& judgements_path, const ReadOptions& opt = {});
// By name: *.csv -> RouteLLM CSV; *.jsonl -> MT-Bench judgements; a
// directory -> every such file under it, sorted by path.
Result<std::vector<Example>> read_data(const std::string& path, const ReadOptions& opt = {});

// k-fold assignment, stable under reordering of the files: a hash of the
// prompt's text. Equal prompts share a fold.
uint32_t fold_of(const std::string& prompt, uint32_t k);

// Routing quality: send the prompts with the highest scores to the strong
// model. accuracy[k] = mean quality when the top k of N go to the strong
// model (k = 0..N; the curve's x is k/N).
struct RoutingCurve {
  std::vector<double> accuracy;
  double weak = 0, strong = 0;  // accuracy[0], accuracy[N]
  double apgr = 0;              // (area under accuracy - weak) / (strong - weak)
  double cpt50 = 0, cpt80 = 0;  // smallest strong-call fraction reaching weak + x(strong - weak)
};
// Ties in `score` are broken by index (stable). Requires scores.size() ==
// examples.size() > 0.
RoutingCurve routing_curve(const std::vector<double>& score, const std::vector<Example>& ex);
// Random routing: the mean curve (and its scores) over `runs` seeded permutations.
RoutingCurve random_routing_curve(const std::vector<Example>& ex, uint64_t seed, int runs);
// Scores from the curve's accuracy (APGR, CPT), computed from accuracy[].
void score_curve(RoutingCurve& c);

}  // namespace tenpak::router
