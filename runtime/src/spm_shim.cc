// libtenpak_spm: a C interface to Debian's libsentencepiece, loaded by the
// tokenizer with dlopen(RTLD_LOCAL | RTLD_DEEPBIND) and never linked into a
// program. Why: libsentencepiece.so.0 exports the protobuf-lite 3.14 it
// bundles, libtorch loads libprotobuf.so.32 (3.21); linked together, the
// first one's symbols interpose on the other's and the program aborts at
// start ("compiled against version 3.14.0 ... installed version 3.21.12").
// Loaded deep-bound, sentencepiece resolves its own protobuf first and
// interposes on nothing. Every function returns plain C types; errors are
// written into `err`.
#include <sentencepiece_processor.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using sentencepiece::SentencePieceProcessor;

extern "C" {

void* tp_spm_load(const char* bytes, size_t n, char* err, size_t errn) {
  auto* sp = new SentencePieceProcessor();
  auto st = sp->LoadFromSerializedProto(absl::string_view(bytes, n));
  if (!st.ok()) {
    std::snprintf(err, errn, "%s", st.ToString().c_str());
    delete sp;
    return nullptr;
  }
  return sp;
}

void tp_spm_free(void* h) { delete static_cast<SentencePieceProcessor*>(h); }

int tp_spm_size(void* h) { return static_cast<SentencePieceProcessor*>(h)->GetPieceSize(); }

// Bytes of piece `id` copied into buf (at most cap); returns its length.
int tp_spm_piece(void* h, int id, char* buf, int cap) {
  const std::string& p = static_cast<SentencePieceProcessor*>(h)->IdToPiece(id);
  std::memcpy(buf, p.data(), std::min<size_t>(p.size(), static_cast<size_t>(cap)));
  return static_cast<int>(p.size());
}

float tp_spm_score(void* h, int id) { return static_cast<SentencePieceProcessor*>(h)->GetScore(id); }

// 1: control, 2: unknown, 4: byte piece.
int tp_spm_kind(void* h, int id) {
  auto* sp = static_cast<SentencePieceProcessor*>(h);
  return (sp->IsControl(id) ? 1 : 0) | (sp->IsUnknown(id) ? 2 : 0) | (sp->IsByte(id) ? 4 : 0);
}

// 0: <s>, 1: </s>, 2: <unk> (-1 when the model has none).
int tp_spm_special(void* h, int which) {
  auto* sp = static_cast<SentencePieceProcessor*>(h);
  return which == 0 ? sp->bos_id() : which == 1 ? sp->eos_id() : sp->unk_id();
}

// Ids of text into out (at most cap); returns how many there are.
int tp_spm_encode(void* h, const char* text, size_t n, int* out, int cap) {
  std::vector<int> ids;
  static_cast<SentencePieceProcessor*>(h)->Encode(absl::string_view(text, n), &ids).IgnoreError();
  for (size_t i = 0; i < ids.size() && static_cast<int>(i) < cap; ++i) out[i] = ids[i];
  return static_cast<int>(ids.size());
}

// Text of ids into out (at most cap bytes); returns its length.
int tp_spm_decode(void* h, const int* ids, int n, char* out, int cap) {
  std::string s;
  static_cast<SentencePieceProcessor*>(h)->Decode(std::vector<int>(ids, ids + n), &s).IgnoreError();
  std::memcpy(out, s.data(), std::min<size_t>(s.size(), static_cast<size_t>(cap)));
  return static_cast<int>(s.size());
}

}  // extern "C"
