// Errors returned by libllmkit. The library never exits and never prints to stdout: it throws
// llmkit::Error, and the command's main (see tool.hpp) prints "llm-x: WHERE: WHAT" and exits.
#pragma once
#include <stdexcept>
#include <string>

namespace llmkit {

enum ExitCode { kExitOk = 0, kExitRuntime = 1, kExitUsage = 2 };

class Error : public std::runtime_error {
 public:
  // where: "FILE:LINE", "FILE", or "" when no place applies.
  Error(std::string where, const std::string& what, int exit_code = kExitRuntime)
      : std::runtime_error(what), where_(std::move(where)), exit_code_(exit_code) {}
  const std::string& where() const { return where_; }
  int exit_code() const { return exit_code_; }

 private:
  std::string where_;
  int exit_code_;
};

// A bad command line: exit status 2.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& what) : Error("", what, kExitUsage) {}
};

// Thrown by the option parser after --help or --version has printed: the tool returns `code`.
struct ExitRequest {
  int code;
};

// Formats errno into "what: strerror".
std::string errno_message(const std::string& what, int err);

}  // namespace llmkit
