// Logging to stderr, and progress reporting. stdout is data only, so nothing here touches it.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace llmkit {

enum class LogLevel { error = 0, warn = 1, info = 2, debug = 3 };

void set_program_name(const std::string& name);
const std::string& program_name();
void set_log_level(LogLevel level);
LogLevel log_level();
inline bool log_enabled(LogLevel l) { return static_cast<int>(l) <= static_cast<int>(log_level()); }

// "llm-x: message" on stderr when the level is enabled. Thread-safe (one write per line).
void log_msg(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
#define LLMKIT_WARN(...) ::llmkit::log_msg(::llmkit::LogLevel::warn, __VA_ARGS__)
#define LLMKIT_INFO(...) ::llmkit::log_msg(::llmkit::LogLevel::info, __VA_ARGS__)
#define LLMKIT_DEBUG(...) ::llmkit::log_msg(::llmkit::LogLevel::debug, __VA_ARGS__)

// Human-readable sizes and rates for logs: "1.5 MB", "12.3 MB/s".
std::string human_bytes(double bytes);

// Seconds between two progress log lines when stderr is not a terminal: $LLMKIT_PROGRESS_SECONDS
// when it holds a number >= 0 (0: a line at every update), else 5.
double progress_interval();

// Progress of a streaming job. On a terminal: a live line redrawn at most 4 times a second
// (items, bytes, rate, ETA when the total is known). Elsewhere: one log line every
// progress_interval() seconds. `what` names the items ("documents"). Call update() from one
// thread as often as you like; it is cheap when nothing is due.
// The final line (finish(), or the destructor) says the work is done: a Progress destroyed by
// an exception (an error, a closed output pipe, a stop signal) draws none, and on a terminal
// clears its live line so that the error message starts a clean line.
class Progress {
 public:
  Progress(std::string what, uint64_t total_bytes = 0);
  // Counting items of a known total (0: unknown) instead of bytes, with a second count in
  // `unit` ("tokens") and its rate: "37/120 examples, 9214 tokens, 2650 tokens/s, 31%, ETA 0m03s".
  struct Counting {};
  Progress(Counting, std::string what, uint64_t total_items, std::string unit);
  ~Progress();
  // items done, and bytes (the second count in counting mode) done
  void update(uint64_t items, uint64_t bytes);
  void finish();  // final line; called by the destructor if not before

 private:
  void draw(bool final);
  std::string what_, unit_;  // unit_: "" for bytes
  uint64_t total_bytes_, total_items_ = 0, items_ = 0, bytes_ = 0;
  double interval_;
  bool tty_, finished_ = false, drawn_ = false;
  int uncaught_at_start_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace llmkit
