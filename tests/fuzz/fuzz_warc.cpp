// libFuzzer target: the WARC reader on arbitrary (decompressed) bytes. It may throw
// llmkit::Error (not a WARC file) but must not crash, hang or return a record whose payload
// exceeds the size limit.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "llmkit/error.hpp"
#include "llmkit/warc.hpp"

namespace {

class MemoryInput : public llmkit::InputStream {
 public:
  MemoryInput(const uint8_t* data, size_t size, size_t step) : data_(data), size_(size), step_(step) {}
  size_t read(char* buf, size_t n) override {
    n = std::min({n, step_, size_ - pos_});
    if (n > 0) std::memcpy(buf, data_ + pos_, n);
    pos_ += n;
    return n;
  }
  uint64_t raw_bytes_read() const override { return pos_; }

 private:
  const uint8_t* data_;
  size_t size_, pos_ = 0, step_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kMax = 1 << 16;
  // Small reads now and then, to hit the buffer refill paths.
  MemoryInput in(data, size, size % 3 == 0 ? 5 : SIZE_MAX);
  llmkit::text::WarcReader reader(in, "fuzz.warc", kMax);
  llmkit::text::WarcRecord rec;
  try {
    uint64_t last = 0;
    bool first = true;
    while (reader.next(rec)) {
      if (rec.payload.size() > kMax) __builtin_trap();
      if (!first && rec.offset <= last) __builtin_trap();  // records move forward
      first = false;
      last = rec.offset;
      (void)llmkit::text::is_html_document(rec);
      (void)llmkit::text::is_text_document(rec);
    }
  } catch (const llmkit::Error&) {
  }
  return 0;
}
