#include "llmkit/log.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

namespace llmkit {
namespace {
std::string g_program = "llmkit";
LogLevel g_level = LogLevel::info;
}  // namespace

void set_program_name(const std::string& name) { g_program = name; }
const std::string& program_name() { return g_program; }
void set_log_level(LogLevel level) { g_level = level; }
LogLevel log_level() { return g_level; }

void log_msg(LogLevel level, const char* fmt, ...) {
  if (!log_enabled(level)) return;
  char body[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof body, fmt, ap);
  va_end(ap);
  const char* tag = level == LogLevel::warn ? "warning: " : "";
  // One write() per line so lines from threads or ranks do not interleave mid-line.
  std::string line = g_program + ": " + tag + body + "\n";
  ssize_t ignored = ::write(2, line.data(), line.size());
  (void)ignored;
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  int u = 0;
  while (std::fabs(bytes) >= 1000 && u < 5) {
    bytes /= 1000;
    ++u;
  }
  char buf[32];
  snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

double progress_interval() {
  const char* env = std::getenv("LLMKIT_PROGRESS_SECONDS");
  if (env && *env) {
    char* end = nullptr;
    double v = std::strtod(env, &end);
    if (*end == '\0' && v >= 0 && v < 1e9) return v;
  }
  return 5.0;
}

Progress::Progress(std::string what, uint64_t total_bytes)
    : what_(std::move(what)), total_bytes_(total_bytes), interval_(progress_interval()),
      uncaught_at_start_(std::uncaught_exceptions()) {
  tty_ = isatty(2) && log_enabled(LogLevel::info);
  start_ = last_ = std::chrono::steady_clock::now();
}

Progress::Progress(Counting, std::string what, uint64_t total_items, std::string unit)
    : Progress(std::move(what), 0) {
  unit_ = std::move(unit);
  total_items_ = total_items;
}

Progress::~Progress() {
  if (!finished_ && std::uncaught_exceptions() > uncaught_at_start_) {
    // Unwinding: the work is not done, so no final line. A process that stops at a closed
    // pipe is as quiet as one killed by SIGPIPE.
    finished_ = true;
    if (tty_ && drawn_) {
      ssize_t ignored = ::write(2, "\r\033[K", 4);
      (void)ignored;
    }
    return;
  }
  finish();
}

void Progress::update(uint64_t items, uint64_t bytes) {
  items_ = items;
  bytes_ = bytes;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_).count();
  if (since < (tty_ ? 0.25 : interval_)) return;
  last_ = now;
  draw(false);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  draw(true);
}

void Progress::draw(bool final) {
  if (!log_enabled(LogLevel::info)) return;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (final && !tty_ && secs < interval_) return;  // short runs need no progress line
  double rate = secs > 0 ? bytes_ / secs : 0;
  char line[256];
  int n;
  // The ETA: from the bytes against their total, or in counting mode from the items.
  double done = bytes_, total = static_cast<double>(total_bytes_), done_rate = rate;
  if (unit_.empty()) {
    n = snprintf(line, sizeof line, "%llu %s, %s, %s/s", (unsigned long long)items_, what_.c_str(),
                 human_bytes(bytes_).c_str(), human_bytes(rate).c_str());
  } else {
    char of[32] = "";
    if (total_items_ > 0) snprintf(of, sizeof of, "/%llu", (unsigned long long)total_items_);
    n = snprintf(line, sizeof line, "%llu%s %s, %llu %s, %.0f %s/s", (unsigned long long)items_, of,
                 what_.c_str(), (unsigned long long)bytes_, unit_.c_str(), rate, unit_.c_str());
    done = static_cast<double>(items_);
    total = static_cast<double>(total_items_);
    done_rate = secs > 0 ? done / secs : 0;
  }
  if (total > 0 && !final && done_rate > 0 && done < total) {
    double eta = (total - done) / done_rate;
    snprintf(line + n, sizeof line - n, ", %.0f%%, ETA %dm%02ds", 100.0 * done / total,
             int(eta) / 60, int(eta) % 60);
  } else if (final) {
    snprintf(line + n, sizeof line - n, ", %.1f s", secs);
  }
  std::string out = tty_ ? "\r\033[K" + program_name() + ": " + line + (final ? "\n" : "")
                         : program_name() + ": " + line + "\n";
  drawn_ = !final;
  ssize_t ignored = ::write(2, out.data(), out.size());
  (void)ignored;
}

}  // namespace llmkit
