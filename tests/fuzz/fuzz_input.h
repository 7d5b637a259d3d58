// Splits one libFuzzer input into the pieces a target needs: small integers taken from the
// front (choices, split points), the rest as bytes. Reading past the end yields zeros and an
// empty rest, so every input is valid for every target.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace weir::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size)
      : data_(reinterpret_cast<const char*>(data)), size_(size) {}

  uint8_t byte() { return pos_ < size_ ? static_cast<uint8_t>(data_[pos_++]) : 0; }
  uint16_t u16() { return static_cast<uint16_t>(byte() | (byte() << 8)); }
  bool flag() { return (byte() & 1) != 0; }
  // Up to `max` bytes ending at the next '\n' (excluded), or the rest when there is none.
  std::string_view line(size_t max = SIZE_MAX) {
    std::string_view rest = this->rest();
    size_t end = rest.find('\n');
    size_t n = end == std::string_view::npos ? rest.size() : end;
    if (n > max) n = max;
    pos_ += n + (n < rest.size() && rest[n] == '\n' ? 1 : 0);
    return rest.substr(0, n);
  }
  std::string_view rest() const { return std::string_view(data_ + pos_, size_ - pos_); }
  void skip_all() { pos_ = size_; }

 private:
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace weir::fuzz

// A broken invariant is a finding: say which, then abort so libFuzzer keeps the input.
#define WEIR_FUZZ_CHECK(cond, what)                                                               \
  do {                                                                                            \
    if (!(cond)) {                                                                                \
      std::fprintf(stderr, "fuzz invariant broken at %s:%d: %s (%s)\n", __FILE__, __LINE__, what, \
                   #cond);                                                                        \
      std::abort();                                                                               \
    }                                                                                             \
  } while (0)
