#include "llmkit/error.hpp"

#include <cstring>

namespace llmkit {

std::string errno_message(const std::string& what, int err) {
  return what + ": " + std::strerror(err);
}

}  // namespace llmkit
