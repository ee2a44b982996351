// Prompt features (feature version 1). Everything here is part of the router
// file's contract: a change means a new kFeatureVersion.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <unordered_map>

#include "tenpak/hash.h"
#include "tenpak/router.h"

namespace tenpak::router {

namespace {

const char* const kDenseNames[kNumDense] = {
    "length (log chars)", "length (log words)", "numbers", "digit fraction", "code markers", "maths markers",
    "question mark", "question word first", "sentences", "mean word length", "multi-step words",
    "answer options", "answer option length", "question stem length", "long-word fraction",
    "capitalised-word fraction", "line breaks", "\"Answer:\" cue", "negations (not, except, ...)",
    "writing verbs (write, explain, ...)", "non-ASCII fraction"};

bool is_word_byte(unsigned char c) { return std::isalnum(c) || c >= 0x80; }

bool in_list(std::string_view w, std::initializer_list<std::string_view> l) {
  return std::find(l.begin(), l.end(), w) != l.end();
}

size_t count_of(std::string_view s, std::string_view pat) {
  size_t n = 0;
  for (size_t i = s.find(pat); i != std::string_view::npos; i = s.find(pat, i + pat.size())) ++n;
  return n;
}

float lg(double x) { return static_cast<float>(std::log1p(x)); }

// Tags keep word, bigram and character n-grams apart in one hash space.
uint32_t bucket(char tag, std::string_view a, std::string_view b, uint32_t mask, std::string& buf) {
  buf.clear();
  buf.push_back(tag);
  buf.append(a);
  if (!b.empty()) {
    buf.push_back(' ');
    buf.append(b);
  }
  return static_cast<uint32_t>(xxh64(buf.data(), buf.size())) & mask;
}

}  // namespace

const char* dense_name(int i) { return i >= 0 && i < kNumDense ? kDenseNames[i] : "?"; }

Status validate_prompt(std::string_view p) {
  if (p.size() > kMaxPromptBytes)
    return {Errc::invalid, "prompt of " + std::to_string(p.size()) + " bytes: the router takes at most " +
                               std::to_string(kMaxPromptBytes) + " bytes"};
  bool blank = true;
  for (unsigned char c : p)
    if (!std::isspace(c)) { blank = false; break; }
  if (blank) return {Errc::invalid, "empty prompt"};
  // UTF-8 (RFC 3629): no overlongs, no surrogates, at most U+10FFFF.
  const auto* s = reinterpret_cast<const unsigned char*>(p.data());
  size_t n = p.size();
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) { ++i; continue; }
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return {Errc::invalid, "prompt is not valid UTF-8 (byte " + std::to_string(i) + ")"};
    if (i + len > n) return {Errc::invalid, "prompt is not valid UTF-8 (truncated sequence at byte " + std::to_string(i) + ")"};
    for (size_t k = 1; k < len; ++k) {
      unsigned d = s[i + k];
      unsigned l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
      if (d < l || d > h) return {Errc::invalid, "prompt is not valid UTF-8 (byte " + std::to_string(i + k) + ")"};
    }
    i += len;
  }
  return Status::Ok();
}

Features extract_features(std::string_view p, uint32_t hash_bits, std::vector<std::pair<uint32_t, std::string>>* names) {
  Features f;
  const uint32_t mask = (1u << hash_bits) - 1;
  std::string low(p);
  for (char& c : low) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));

  // Words: runs of letters/digits (any non-ASCII byte counts as a letter).
  std::vector<std::string_view> words;
  size_t capitals = 0, long_words = 0, numbers = 0, word_chars = 0, non_ascii = 0;
  for (size_t i = 0; i < low.size();) {
    if (!is_word_byte(static_cast<unsigned char>(low[i]))) { ++i; continue; }
    size_t j = i;
    while (j < low.size() && is_word_byte(static_cast<unsigned char>(low[j]))) ++j;
    words.emplace_back(low.data() + i, j - i);
    if (std::isupper(static_cast<unsigned char>(p[i]))) ++capitals;
    if (j - i >= 9) ++long_words;
    if (std::isdigit(static_cast<unsigned char>(low[i]))) ++numbers;
    word_chars += j - i;
    i = j;
  }
  size_t digits = 0;
  for (unsigned char c : p) {
    if (std::isdigit(c)) ++digits;
    if (c >= 0x80) ++non_ascii;
  }

  // Hashed n-grams: log(1 + count) per bucket, L2-normalised.
  std::unordered_map<uint32_t, float> counts;
  counts.reserve(words.size() * 6);
  std::unordered_map<uint32_t, std::string> first_text;  // only with `names`
  std::string buf;
  auto add = [&](uint32_t b, std::string_view text) {
    counts[b] += 1;
    if (names) first_text.try_emplace(b, text);
  };
  std::string gram;
  for (size_t i = 0; i < words.size(); ++i) {
    add(bucket('w', words[i], {}, mask, buf), words[i]);
    if (i + 1 < words.size()) {
      uint32_t b = bucket('b', words[i], words[i + 1], mask, buf);
      add(b, names ? std::string(words[i]) + " " + std::string(words[i + 1]) : std::string());
    }
    // Character 3-grams of the word padded with spaces (sub-word cues:
    // suffixes, units, chemical and legal vocabulary).
    if (words[i].size() > 2 && words[i].size() < 40) {
      gram = " " + std::string(words[i]) + " ";
      for (size_t k = 0; k + 3 <= gram.size(); ++k) add(bucket('c', std::string_view(gram).substr(k, 3), {}, mask, buf), std::string_view(gram).substr(k, 3));
    }
  }
  if (names)
    for (auto& [b, t] : first_text) names->emplace_back(b, std::move(t));
  double norm = 0;
  f.sparse.reserve(counts.size());
  for (auto& [b, c] : counts) {
    float v = lg(c);
    f.sparse.emplace_back(b, v);
    norm += double(v) * v;
  }
  std::sort(f.sparse.begin(), f.sparse.end());
  if (norm > 0) {
    float inv = static_cast<float>(1 / std::sqrt(norm));
    for (auto& e : f.sparse) e.second *= inv;
  }

  // Lines: answer options ("A. ...", "B) ...") and the stem before them.
  size_t options = 0, option_chars = 0, stem_words = 0, newlines = 0;
  bool in_options = false;
  size_t line_start = 0;
  for (size_t i = 0; i <= p.size(); ++i) {
    if (i < p.size() && p[i] != '\n') continue;
    std::string_view line = p.substr(line_start, i - line_start);
    if (i < p.size()) ++newlines;
    size_t k = 0;
    while (k < line.size() && (line[k] == ' ' || line[k] == '\t')) ++k;
    if (k + 1 < line.size() && line[k] >= 'A' && line[k] <= 'J' && (line[k + 1] == '.' || line[k + 1] == ')')) {
      ++options;
      option_chars += line.size() - k - 2;
      in_options = true;
    } else if (!in_options) {
      size_t w = 0;
      for (size_t q = 0; q < line.size();) {
        if (!is_word_byte(static_cast<unsigned char>(line[q]))) { ++q; continue; }
        while (q < line.size() && is_word_byte(static_cast<unsigned char>(line[q]))) ++q;
        ++w;
      }
      stem_words += w;
    }
    line_start = i + 1;
  }

  size_t code = 0;
  for (std::string_view m : {"```", "def ", "return ", "#include", "function", "{", "}", ";\n", "print(", "import ",
                             "class ", "=>", "//", "void ", "select ", "</", "()", "python", "code"})
    code += count_of(low, m);
  size_t maths = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '=' || c == '^' || c == '%' || c == '\\') ++maths;
    else if ((c == '+' || c == '*' || c == '/' || c == '-' || c == '$') && i + 1 < p.size() &&
             (std::isdigit(static_cast<unsigned char>(p[i + 1])) || p[i + 1] == ' '))
      ++maths;
  }
  size_t sentences = 0;
  for (size_t i = 0; i < p.size(); ++i)
    if ((p[i] == '.' || p[i] == '?' || p[i] == '!') && (i + 1 == p.size() || std::isspace(static_cast<unsigned char>(p[i + 1]))))
      ++sentences;
  size_t multistep = 0, negation = 0, imperative = 0;
  for (auto w : words) {
    if (in_list(w, {"then", "after", "each", "per", "total", "remaining", "twice", "half", "times", "percent", "every",
                    "more", "less", "left", "rest", "average", "altogether", "already", "first", "second", "third",
                    "combined", "if", "than", "how"}))
      ++multistep;
    if (in_list(w, {"not", "except", "least", "false", "incorrect", "never", "none", "cannot"})) ++negation;
    if (in_list(w, {"write", "compose", "draft", "explain", "describe", "create", "imagine", "suggest", "rewrite",
                    "summarize", "list", "give", "pretend", "discuss", "design"}))
      ++imperative;
  }
  std::string_view trimmed = p;
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back()))) trimmed.remove_suffix(1);

  auto& d = f.dense;
  const double nw = std::max<size_t>(words.size(), 1);
  d[kLogChars] = lg(p.size());
  d[kLogWords] = lg(words.size());
  d[kLogNumbers] = lg(numbers);
  d[kDigitFrac] = p.empty() ? 0.f : static_cast<float>(double(digits) / p.size());
  d[kLogCode] = lg(code);
  d[kLogMath] = lg(maths);
  d[kHasQuestionMark] = p.find('?') != std::string_view::npos ? 1.f : 0.f;
  d[kWhStart] = !words.empty() && in_list(words[0], {"what", "which", "who", "whom", "whose", "when", "where", "why", "how",
                                                     "is", "are", "do", "does", "can", "could", "would", "should"})
                    ? 1.f : 0.f;
  d[kLogSentences] = lg(sentences);
  d[kMeanWordLen] = static_cast<float>(word_chars / nw);
  d[kLogMultiStep] = lg(multistep);
  d[kOptions] = static_cast<float>(std::min<size_t>(options, 10));
  d[kLogOptionLen] = options ? lg(double(option_chars) / options) : 0.f;
  d[kLogStemWords] = lg(stem_words);
  d[kLongWordFrac] = static_cast<float>(long_words / nw);
  d[kCapitalFrac] = static_cast<float>(capitals / nw);
  d[kLogNewlines] = lg(newlines);
  d[kAnswerCue] = trimmed.size() >= 7 && trimmed.substr(trimmed.size() - 7) == "Answer:" ? 1.f : 0.f;
  d[kLogNegation] = lg(negation);
  d[kLogImperative] = lg(imperative);
  d[kNonAsciiFrac] = p.empty() ? 0.f : static_cast<float>(double(non_ascii) / p.size());
  return f;
}

}  // namespace tenpak::router
