// An adaptive binary range coder (carry-less-by-cache design, 12-bit
// probabilities), the entropy stage of the sub_ctx codec. Small and exact:
// docs/FORMAT.md specifies it bit for bit so other readers can decode it.
#pragma once
#include <cstdint>
#include <string>

namespace tenpak::rc {

constexpr int kProbBits = 12;
constexpr uint16_t kProbInit = 1 << (kProbBits - 1);
constexpr uint32_t kTop = 1u << 24;

// Probability (of a 0 bit) with a state-dependent adaptation rate: fast
// while the context is young, slower (more precise) once it has seen data.
// p stays within [1, 4095] by construction (p >> rate is 0 below 2^rate).
struct Prob {
  uint16_t p = kProbInit;
  uint8_t n = 0;  // bits seen by this context; only n < 40 matters (it stops counting there)
  // n < 2: 2, n < 6: 3, n < 14: 4, n < 40: 5, else 6; a table (n <= 40),
  // not a chain of compares: this runs once per coded bit.
  static constexpr uint8_t kRate[41] = {2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5,
                                        5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 6};
  int rate() const { return kRate[n]; }
  void update(int bit) {
    const int r = rate();
    const uint16_t down = static_cast<uint16_t>(p - (p >> r));
    const uint16_t up = static_cast<uint16_t>(p + (((1 << kProbBits) - p) >> r));
    p = bit ? down : up;  // a select, not a branch: bits are hard to predict
    n = static_cast<uint8_t>(n + (n < 40));
  }
};

class Encoder {
 public:
  explicit Encoder(std::string& out) : out_(out) {}
  void bit(Prob& pr, int b) {
    uint32_t bound = (range_ >> kProbBits) * pr.p;
    if (!b) {
      range_ = bound;
    } else {
      low_ += bound;
      range_ -= bound;
    }
    pr.update(b);
    while (range_ < kTop) {
      range_ <<= 8;
      shift_low();
    }
  }
  void finish() {
    for (int i = 0; i < 5; ++i) shift_low();
  }

 private:
  void shift_low() {
    if (static_cast<uint32_t>(low_) < 0xff000000u || (low_ >> 32) != 0) {
      uint8_t carry = static_cast<uint8_t>(low_ >> 32);
      uint8_t temp = cache_;
      do {
        out_.push_back(static_cast<char>(static_cast<uint8_t>(temp + carry)));
        temp = 0xff;
      } while (--cache_size_ != 0);
      cache_ = static_cast<uint8_t>(low_ >> 24);
    }
    ++cache_size_;
    low_ = (low_ & 0x00ffffffu) << 8;
  }
  std::string& out_;
  uint64_t low_ = 0;
  uint32_t range_ = 0xffffffffu;
  uint8_t cache_ = 0;
  uint64_t cache_size_ = 1;
};

class Decoder {
 public:
  Decoder(const uint8_t* p, size_t n) : p_(p), end_(p + n) {
    for (int i = 0; i < 5; ++i) code_ = (code_ << 8) | next();
  }
  int bit(Prob& pr) { return bit(pr, pr.p); }
  // The same, with pr.p already loaded by the caller (`p` must equal it):
  // a tree decoder loads both children before the bit that picks one is
  // known, which keeps the load off the chain of dependent decisions.
  int bit(Prob& pr, uint16_t p) {
    const uint32_t bound = (range_ >> kProbBits) * p;
    // Branch-free: mask is all ones when the bit is 1.
    const uint32_t mask = 0u - static_cast<uint32_t>(code_ >= bound);
    const int b = static_cast<int>(mask & 1);
    code_ -= bound & mask;
    range_ = (bound & ~mask) | ((range_ - bound) & mask);
    pr.update(b);
    while (range_ < kTop) {
      range_ <<= 8;
      code_ = (code_ << 8) | next();
    }
    return b;
  }
  // The same decision as bit(pr, p), with a branch on the decoded bit
  // instead of masks: for models whose bits are mostly predictable (the
  // word-coded literals' id trees), a predicted branch keeps the compare off
  // the chain of dependent decisions; the masked form cost 11% more there.
  int bit_branchy(Prob& pr, uint16_t p) {
    const uint32_t bound = (range_ >> kProbBits) * p;
    int b;
    if (code_ >= bound) {
      code_ -= bound;
      range_ -= bound;
      b = 1;
    } else {
      range_ = bound;
      b = 0;
    }
    pr.update(b);
    while (range_ < kTop) {
      range_ <<= 8;
      code_ = (code_ << 8) | next();
    }
    return b;
  }
  int bit_branchy(Prob& pr) { return bit_branchy(pr, pr.p); }
  // True when the decoder read more than 4 bytes past its input: the payload
  // was truncated (the encoder's flush guarantees at most 4 are ever needed).
  bool overrun() const { return over_ > 4; }
  // True when the decoder read its input exactly: every byte, none past the
  // end. The encoder's flush makes the decoder read exactly what it wrote,
  // so a stricter reader (codec 10's word-coded literals) refuses anything
  // else: a truncated or padded stream.
  bool exact_end() const { return p_ == end_ && over_ == 0; }

 private:
  uint8_t next() {
    if (p_ < end_) return *p_++;
    ++over_;
    return 0;
  }
  const uint8_t* p_;
  const uint8_t* end_;
  uint32_t code_ = 0;
  uint32_t range_ = 0xffffffffu;
  unsigned over_ = 0;
};

}  // namespace tenpak::rc
