// Codec 10 (patch), word-coded literals (method bit 4): the encoder; the
// model and the decoder are patch_words.cc.
#include "patch_words.h"

namespace tenpak::patch_detail::words {

void encode(const uint8_t* lit, size_t n, const uint8_t* b, uint64_t bn, std::string& out) {
  thread_local Model m;
  m.reset_and_prime(b, bn);
  rc::Encoder e(out);
  const uint8_t* p = lit;
  const uint8_t* end = lit + n;
  int kind = 0;
  while (p < end) {
    const uint32_t len = token_len(p, end, kind);
    Vocab& v = m.voc[kind];
    uint32_t id = v.find(p, len);
    code_id(e, m.id_model(kind), id);
    if (!id) {
      code_spelling(e, m, kind, p, len);
      id = v.add(p, len);
    }
    if (kind == 1) m.prev_other = id;
    p += len;
    kind ^= 1;
  }
  e.finish();
}

}  // namespace tenpak::patch_detail::words
