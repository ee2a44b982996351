// The prompt router's predictor: features computed from a prompt's text and
// a small learned model (logistic regression or a one-hidden-layer MLP) that
// gives the probability that the prompt needs the strong model, i.e. that a
// weaker model would not answer it as well. Inference is plain C++ (no
// libtorch): a sparse dot product, well under a millisecond per prompt.
//
// Contract: a RouterModel is only ever built from a file that passed every
// check of load_router (size, magic, versions, checksum, finite values) or
// from training code that filled it consistently; predict() never fails on a
// prompt that validate_prompt() accepted.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tenpak/status.h"

namespace tenpak::router {

// Changes whenever feature extraction changes: a router trained on other
// features is refused when loaded, never silently mis-scored.
inline constexpr uint32_t kFeatureVersion = 1;
// Router file format version (docs/ROUTER.md describes it byte by byte).
inline constexpr uint32_t kFormatVersion = 1;
// Largest prompt accepted (bytes): beyond it no feature is computed.
inline constexpr size_t kMaxPromptBytes = 1 << 20;

// Dense features, in file order. Their names appear in explanations.
enum Dense : int {
  kLogChars, kLogWords, kLogNumbers, kDigitFrac, kLogCode, kLogMath, kHasQuestionMark, kWhStart,
  kLogSentences, kMeanWordLen, kLogMultiStep, kOptions, kLogOptionLen, kLogStemWords, kLongWordFrac,
  kCapitalFrac, kLogNewlines, kAnswerCue, kLogNegation, kLogImperative, kNonAsciiFrac, kNumDense
};
const char* dense_name(int i);

// Checks that `prompt` is routable: non-empty (after whitespace), at most
// kMaxPromptBytes, valid UTF-8 (the error gives the byte offset).
Status validate_prompt(std::string_view prompt);

struct Features {
  // Hashed word 1-2-grams and character 3-grams of words: bucket -> value,
  // sorted by bucket, L2-normalised over the hashed part.
  std::vector<std::pair<uint32_t, float>> sparse;
  std::array<float, kNumDense> dense{};  // raw (not standardised)
};

// Features of a validated prompt, hashed into 2^hash_bits buckets. With
// `names`, also the text of what landed in each bucket (for explanations;
// slower: only for the one prompt being explained).
Features extract_features(std::string_view prompt, uint32_t hash_bits,
                          std::vector<std::pair<uint32_t, std::string>>* names = nullptr);

struct RouterModel {
  uint32_t hash_bits = 12;
  uint32_t hidden = 0;  // 0: logistic regression; else one ReLU hidden layer of this width
  // Standardisation of the dense features: (x - mean) / std, std > 0.
  std::array<float, kNumDense> dense_mean{}, dense_std{};
  // The mean predicted probability on the training data: what "an average
  // prompt" scores, the reference the catalog's quality gaps are scaled by.
  float p_ref = 0.5f;
  // Logistic: w (input_dim), b. MLP: w1 (hidden x input_dim, row-major), b1
  // (hidden), w2 (hidden), b2.
  std::vector<float> w, b1, w2;
  float b = 0, b2 = 0;
  std::string meta;  // JSON: how it was trained (command, data, seed)

  uint32_t input_dim() const { return (1u << hash_bits) + kNumDense; }
  // The input vector's dense part, standardised.
  std::array<float, kNumDense> standardise(const Features& f) const;
  // P(the prompt needs the strong model).
  float predict(const Features& f) const;
  // Per input contribution to the logit (logistic: w_i x_i; MLP: gradient x
  // input at the prompt), for explanations: (index into the input vector,
  // contribution), largest magnitude first, at most `k`.
  std::vector<std::pair<uint32_t, float>> top_contributions(const Features& f, size_t k) const;
};

// Reads and checks a router file. Errors: Errc::io (cannot read),
// Errc::corrupt (anything wrong in the bytes, with what and where),
// Errc::unsupported (another format or feature version, named).
Result<RouterModel> load_router(const std::string& path);
Result<RouterModel> parse_router(const uint8_t* p, size_t n, const std::string& what);
std::vector<uint8_t> serialize_router(const RouterModel& m);
// Writes atomically: a temporary name in the same directory, renamed when
// complete.
Status save_router(const RouterModel& m, const std::string& path);

// The router built into this binary (trained on the shared data; see
// docs/ROUTER.md for the command).
Result<RouterModel> default_router();

}  // namespace tenpak::router
