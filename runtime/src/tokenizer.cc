#include "tenpak/tokenizer.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <queue>
#include <sstream>
#include <type_traits>
#include <vector>

#ifdef TENPAK_HAVE_SENTENCEPIECE
#include <dlfcn.h>
#include <mutex>
#endif

namespace fs = std::filesystem;

namespace tenpak::rt {

#ifdef TENPAK_HAVE_SENTENCEPIECE
namespace {

// libtenpak_spm's C interface (spm_shim.cc).
struct SpmApi {
  void* (*load)(const char*, size_t, char*, size_t) = nullptr;
  void (*free)(void*) = nullptr;
  int (*size)(void*) = nullptr;
  int (*piece)(void*, int, char*, int) = nullptr;
  float (*score)(void*, int) = nullptr;
  int (*kind)(void*, int) = nullptr;
  int (*special)(void*, int) = nullptr;
  int (*encode)(void*, const char*, size_t, int*, int) = nullptr;
  int (*decode)(void*, const int*, int, char*, int) = nullptr;
  std::string error;  // why it could not be loaded
};

const SpmApi& spm_api() {
  static SpmApi api;
  static std::once_flag once;
  std::call_once(once, [] {
    std::vector<std::string> paths;
    if (const char* e = std::getenv("TENPAK_SPM_MODULE")) paths.push_back(e);
    std::error_code ec;
    auto exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) paths.push_back((exe.parent_path() / "libtenpak_spm.so").string());
    paths.push_back(TENPAK_SPM_MODULE);
    void* h = nullptr;
    std::string tried;
    for (auto& p : paths) {
      if (!fs::exists(p, ec)) continue;
      h = ::dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (h) break;
      tried += " " + p + ": " + ::dlerror() + ";";
    }
    if (!h) {
      api.error = "libtenpak_spm (the sentencepiece module) not found or not loadable:" +
                  (tried.empty() ? std::string(" looked at $TENPAK_SPM_MODULE, next to the executable and ") +
                                       TENPAK_SPM_MODULE
                                 : tried);
      return;
    }
    auto sym = [&](auto& f, const char* name) { f = reinterpret_cast<std::decay_t<decltype(f)>>(::dlsym(h, name)); };
    sym(api.load, "tp_spm_load");
    sym(api.free, "tp_spm_free");
    sym(api.size, "tp_spm_size");
    sym(api.piece, "tp_spm_piece");
    sym(api.score, "tp_spm_score");
    sym(api.kind, "tp_spm_kind");
    sym(api.special, "tp_spm_special");
    sym(api.encode, "tp_spm_encode");
    sym(api.decode, "tp_spm_decode");
    if (!api.load || !api.free || !api.size || !api.piece || !api.score || !api.kind || !api.special ||
        !api.encode || !api.decode) {
      api.load = nullptr;
      api.error = "libtenpak_spm lacks a tp_spm_* function (a module from another build?)";
    }
  });
  return api;
}

}  // namespace
#endif

bool tokenizer_has_sentencepiece() {
#ifdef TENPAK_HAVE_SENTENCEPIECE
  return spm_api().load != nullptr;
#else
  return false;
#endif
}

Result<Tokenizer> Tokenizer::from_sentencepiece(const std::string& bytes, const std::string& file) {
#ifdef TENPAK_HAVE_SENTENCEPIECE
  const auto& api = spm_api();
  if (!api.load) return Status{Errc::unsupported, file + ": sentencepiece tokenizer, but " + api.error};
  char err[512] = {0};
  void* h = api.load(bytes.data(), bytes.size(), err, sizeof err);
  if (!h) return Status{Errc::corrupt, file + ": not a sentencepiece model: " + err};
  Tokenizer t;
  t.spm_ = std::shared_ptr<void>(h, api.free);
  const int n = api.size(h);
  std::vector<char> buf(256);
  for (int i = 0; i < n; ++i) {
    int len = api.piece(h, i, buf.data(), static_cast<int>(buf.size()));
    if (len > static_cast<int>(buf.size())) {
      buf.resize(len);
      len = api.piece(h, i, buf.data(), len);
    }
    t.pieces_.emplace_back(buf.data(), len);
    t.scores_.push_back(api.score(h, i));
    t.ids_.emplace(t.pieces_.back(), i);
  }
  t.bos_ = api.special(h, 0);
  t.eos_ = api.special(h, 1);
  t.unk_ = api.special(h, 2);
  return t;
#else
  (void)bytes;
  return Status{Errc::unsupported, file + ": sentencepiece tokenizer, but this build has no libsentencepiece "
                                          "(Debian: apt install libsentencepiece-dev, then reconfigure)"};
#endif
}

Result<Tokenizer> Tokenizer::from_llama2c(const std::string& b, const std::string& file, int64_t vocab_size) {
  Tokenizer t;
  size_t off = 0;
  auto need = [&](size_t n, const char* what) -> Status {
    if (b.size() - off < n)
      return {Errc::corrupt, file + ": truncated at byte " + std::to_string(off) + " (reading " + what + " of token " +
                                 std::to_string(t.pieces_.size()) + ")"};
    return Status::Ok();
  };
  TP_RETURN_IF_ERROR(need(4, "max_token_length"));
  std::memcpy(&t.max_token_length_, b.data(), 4);
  off = 4;
  if (t.max_token_length_ <= 0 || t.max_token_length_ > 4096)
    return Status{Errc::corrupt, file + ": max_token_length " + std::to_string(t.max_token_length_) +
                                     " is not a llama2.c tokenizer header"};
  while (vocab_size > 0 ? static_cast<int64_t>(t.pieces_.size()) < vocab_size : off < b.size()) {
    float score;
    int32_t len;
    TP_RETURN_IF_ERROR(need(4, "score"));
    std::memcpy(&score, b.data() + off, 4);
    off += 4;
    TP_RETURN_IF_ERROR(need(4, "length"));
    std::memcpy(&len, b.data() + off, 4);
    off += 4;
    if (len < 0 || len > t.max_token_length_ * 4 + 16)
      return Status{Errc::corrupt, file + ": token " + std::to_string(t.pieces_.size()) + " has length " +
                                       std::to_string(len)};
    TP_RETURN_IF_ERROR(need(static_cast<size_t>(len), "bytes"));
    std::string piece = b.substr(off, len);
    off += len;
    if (!std::isfinite(score))
      return Status{Errc::corrupt, file + ": token " + std::to_string(t.pieces_.size()) + " has a non-finite score"};
    t.ids_.emplace(piece, static_cast<int64_t>(t.pieces_.size()));  // first occurrence wins, as a sorted lookup
    t.pieces_.push_back(std::move(piece));
    t.scores_.push_back(score);
  }
  if (t.pieces_.size() < 3 + 256)
    return Status{Errc::corrupt, file + ": " + std::to_string(t.pieces_.size()) +
                                     " tokens; a llama2.c tokenizer has <unk>, <s>, </s> and 256 byte pieces"};
  for (int i = 0; i < 256; ++i) {
    char want[8];
    std::snprintf(want, sizeof want, "<0x%02X>", i);
    if (t.pieces_[3 + i] != want)
      return Status{Errc::corrupt, file + ": token " + std::to_string(3 + i) + " is \"" + t.pieces_[3 + i] +
                                       "\", expected the byte piece " + want};
  }
  return t;
}

Result<Tokenizer> Tokenizer::load(const std::string& path) {
  std::string file = path;
  if (fs::is_directory(path)) {
    const fs::path d(path);
    if (fs::exists(d / "tokenizer.bin")) {
      file = (d / "tokenizer.bin").string();
    } else if (fs::exists(d / "tokenizer.model")) {
      file = (d / "tokenizer.model").string();
    } else if (fs::exists(d / "tokenizer.json")) {
      return Status{Errc::unsupported,
                    (d / "tokenizer.json").string() +
                        ": Hugging Face tokenizers (tokenizer.json) are not supported: only llama2.c's tokenizer.bin "
                        "and sentencepiece's tokenizer.model"};
    } else {
      return Status{Errc::invalid, path + ": no tokenizer (tokenizer.bin or tokenizer.model) in the model directory"};
    }
  }
  std::ifstream f(file, std::ios::binary);
  if (!f) return Status{Errc::invalid, file + ": cannot open"};
  std::stringstream ss;
  ss << f.rdbuf();
  if (file.size() >= 6 && file.ends_with(".model")) return from_sentencepiece(ss.str(), file);
  return from_llama2c(ss.str(), file);
}

int64_t Tokenizer::find(const std::string& piece) const {
  auto it = ids_.find(piece);
  return it == ids_.end() ? -1 : it->second;
}

// The merge order is llama2.c's: repeatedly the adjacent pair whose merged
// piece scores highest, the leftmost among equals. A heap of candidate pairs
// keyed by (score, left position) with lazy invalidation picks the same pair
// at every step (list order equals original position order), in
// O(n log n) instead of llama2.c's O(n^2), which matters for whole corpora.
std::vector<int64_t> Tokenizer::encode(const std::string& text, bool bos) const {
#ifdef TENPAK_HAVE_SENTENCEPIECE
  if (spm_) {
    const auto& api = spm_api();
    std::vector<int> ids(text.size() + 8);
    int n = api.encode(spm_.get(), text.data(), text.size(), ids.data(), static_cast<int>(ids.size()));
    if (n > static_cast<int>(ids.size())) {
      ids.resize(n);
      n = api.encode(spm_.get(), text.data(), text.size(), ids.data(), n);
    }
    std::vector<int64_t> out;
    out.reserve(n + 1);
    if (bos && bos_ >= 0) out.push_back(bos_);
    out.insert(out.end(), ids.begin(), ids.begin() + n);
    return out;
  }
#endif
  std::vector<int64_t> syms;
  if (!text.empty()) {
    int64_t sp = find(" ");
    if (sp >= 0) syms.push_back(sp);
  }
  for (size_t i = 0; i < text.size();) {
    size_t n = 1;
    while (i + n < text.size() && n < 4 && (static_cast<unsigned char>(text[i + n]) & 0xC0) == 0x80) ++n;
    int64_t id = find(text.substr(i, n));
    if (id >= 0) {
      syms.push_back(id);
    } else {
      for (size_t k = 0; k < n; ++k) syms.push_back(static_cast<unsigned char>(text[i + k]) + 3);
    }
    i += n;
  }
  const int64_t N = static_cast<int64_t>(syms.size());
  std::vector<int64_t> prev(N), next(N);
  std::vector<int64_t> version(N, 0);  // bumps when a symbol changes or dies
  for (int64_t i = 0; i < N; ++i) prev[i] = i - 1, next[i] = i + 1 < N ? i + 1 : -1;
  struct Cand {
    float score;
    int64_t left, right, id, vl, vr;
    bool operator<(const Cand& o) const {  // max-heap: higher score, then smaller left
      if (score != o.score) return score < o.score;
      return left > o.left;
    }
  };
  std::priority_queue<Cand> heap;
  auto consider = [&](int64_t l) {
    if (l < 0) return;
    int64_t r = next[l];
    if (r < 0) return;
    int64_t id = find(pieces_[syms[l]] + pieces_[syms[r]]);
    if (id >= 0) heap.push({scores_[id], l, r, id, version[l], version[r]});
  };
  for (int64_t i = 0; i + 1 < N; ++i) consider(i);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    if (version[c.left] != c.vl || version[c.right] != c.vr || next[c.left] != c.right) continue;
    syms[c.left] = c.id;
    ++version[c.left];
    ++version[c.right];  // dead
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    next[c.right] = -2;
    consider(prev[c.left]);
    consider(c.left);
  }
  std::vector<int64_t> out;
  out.reserve(N + 1);
  if (bos) out.push_back(bos_id());
  for (int64_t i = N ? 0 : -1; i >= 0; i = next[i]) out.push_back(syms[i]);
  return out;
}

std::string Tokenizer::piece_text(int64_t prev, int64_t id) const {
#ifdef TENPAK_HAVE_SENTENCEPIECE
  if (spm_) {
    if (id < 0 || id >= vocab_size()) return {};
    const int kind = spm_api().kind(spm_.get(), static_cast<int>(id));
    if (kind & 3) return {};  // control or unknown
    const std::string& p = pieces_[id];
    if ((kind & 4) && p.size() == 6) return std::string(1, static_cast<char>(std::stoi(p.substr(3, 2), nullptr, 16)));
    std::string out;
    for (size_t i = 0; i < p.size();) {
      if (p.compare(i, 3, "\xE2\x96\x81") == 0) {  // U+2581, sentencepiece's whitespace mark
        out += ' ';
        i += 3;
      } else {
        out += p[i++];
      }
    }
    if (prev == bos_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
  }
#endif
  if (id < 0 || id >= vocab_size() || id == 0 || id == bos_id() || id == eos_id()) return {};
  if (id >= 3 && id < 3 + 256) return std::string(1, static_cast<char>(id - 3));
  const std::string& p = pieces_[id];
  if (prev == bos_id() && !p.empty() && p[0] == ' ') return p.substr(1);
  return p;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
#ifdef TENPAK_HAVE_SENTENCEPIECE
  if (spm_) {
    const auto& api = spm_api();
    std::vector<int> v;
    for (int64_t id : ids)
      if (id >= 0 && id < vocab_size()) v.push_back(static_cast<int>(id));
    std::string out(v.size() * 8 + 16, '\0');
    int n = api.decode(spm_.get(), v.data(), static_cast<int>(v.size()), out.data(), static_cast<int>(out.size()));
    if (n > static_cast<int>(out.size())) {
      out.resize(n);
      n = api.decode(spm_.get(), v.data(), static_cast<int>(v.size()), out.data(), n);
    }
    out.resize(n);
    return out;
  }
#endif
  std::string out;
  int64_t prev = bos_id();  // the first piece's dummy prefix goes, with or without <s>
  for (int64_t id : ids) {
    if (id == bos_id() || id == eos_id() || id == 0) continue;
    out += piece_text(prev, id);
    prev = id;
  }
  return out;
}

}  // namespace tenpak::rt
