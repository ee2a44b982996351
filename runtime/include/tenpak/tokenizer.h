// Tokenizers of the model directories the runtime loads.
//
// Supported: the llama2.c tokenizer file (tokenizer.bin in the model
// directory; `tenpak convert llama2c` puts it there): sentencepiece-style BPE
// by scores, byte fallback pieces "<0xNN>", a dummy prefix space, ids 0/1/2
// = <unk>/<s>/</s>. Encoding follows llama2.c's run.c `encode` (start from
// UTF-8 code points or their byte fallbacks, merge the adjacent pair whose
// merged piece has the highest score, leftmost on ties, until no merge is in
// the vocabulary).
//
// Also sentencepiece's tokenizer.model (Llama 1/2, Mistral), through
// Debian's libsentencepiece when the build found it (tokenizer_has_sentencepiece()):
// encoding and decoding are the library's own, ids of <unk>/<s>/</s> are the
// model's. The library is reached through the module libtenpak_spm, loaded
// on first use (spm_shim.cc says why it is never linked); it is looked for
// at $TENPAK_SPM_MODULE, next to the running executable, then where the
// build wrote it. Other tokenizers (Hugging Face tokenizer.json) are refused with
// Errc::unsupported naming the file.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tenpak/status.h"

namespace tenpak::rt {

// Whether this build reads sentencepiece tokenizer.model files.
bool tokenizer_has_sentencepiece();

class Tokenizer {
 public:
  // Loads DIR/tokenizer.bin, else DIR/tokenizer.model; a path to either file
  // is accepted too (a file whose name ends in ".model" is read as
  // sentencepiece).
  static Result<Tokenizer> load(const std::string& dir_or_file);
  // Parses a serialized sentencepiece ModelProto (the bytes of a
  // tokenizer.model). Errc::corrupt when the library refuses it,
  // Errc::unsupported without libsentencepiece. `file` names it in errors.
  static Result<Tokenizer> from_sentencepiece(const std::string& bytes, const std::string& file);
  // Parses a llama2.c tokenizer file; `vocab_size` pieces (0: until the end
  // of the file). `file` names it in errors.
  static Result<Tokenizer> from_llama2c(const std::string& bytes, const std::string& file, int64_t vocab_size = 0);

  // Ids of `text`, with <s> first when `bos`. Deterministic.
  std::vector<int64_t> encode(const std::string& text, bool bos) const;
  // Text of `ids`: <s>, </s> and <unk> are dropped, byte pieces become their
  // byte, and the dummy prefix space of the first piece is removed, so
  // decode(encode(t, any)) == t for valid UTF-8 text.
  std::string decode(const std::vector<int64_t>& ids) const;
  // One piece as it appears in decoded text (after `prev`, for the prefix rule).
  std::string piece_text(int64_t prev, int64_t id) const;

  int64_t vocab_size() const { return static_cast<int64_t>(pieces_.size()); }
  const std::string& piece(int64_t id) const { return pieces_.at(id); }
  float score(int64_t id) const { return scores_.at(id); }
  int64_t bos_id() const { return bos_; }
  int64_t eos_id() const { return eos_; }
  bool is_sentencepiece() const { return spm_ != nullptr; }
  // Id of an exact piece, -1 when absent.
  int64_t find(const std::string& piece) const;

 private:
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int64_t> ids_;
  int32_t max_token_length_ = 0;
  int64_t bos_ = 1, eos_ = 2, unk_ = 0;
  std::shared_ptr<void> spm_;  // libtenpak_spm's handle, set for tokenizer.model
};

}  // namespace tenpak::rt
