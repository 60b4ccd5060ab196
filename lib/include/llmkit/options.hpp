// Command-line parsing shared by every command: the common options (--threads, --seed, -q, -v,
// --stats, --help, --version) are added here once, and --help is generated from the same table
// the parser uses, so usage text and behaviour cannot drift apart.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace llmkit {

struct CommonOptions {
  int threads = 0;  // 0: all cores
  uint64_t seed = 0;
  int verbosity = 0;  // -q: -1 per use, -v: +1 per use
  std::string stats_file;
};

// "a,b,,c" -> {"a", "b", "c"}: the comma lists options take (--lang en,zh, --special ...).
std::vector<std::string> split_list(const std::string& s);

class OptionParser {
 public:
  // synopsis: the lines after "Usage:", e.g. "llm-clean [OPTIONS] [INPUT...]".
  OptionParser(std::string program, std::string synopsis, std::string summary);

  // Section headings group options in --help.
  void section(const std::string& title);
  void flag(const std::string& long_name, char short_name, bool* target, const std::string& help);
  // Option taking a value. `set` throws UsageError (or any std::exception) on a bad value.
  void value(const std::string& long_name, char short_name, const std::string& metavar,
             std::function<void(const std::string&)> set, const std::string& help);
  void string(const std::string& long_name, char short_name, const std::string& metavar,
              std::string* target, const std::string& help);
  void integer(const std::string& long_name, char short_name, const std::string& metavar,
               int64_t* target, const std::string& help);
  void number(const std::string& long_name, char short_name, const std::string& metavar,
              double* target, const std::string& help);
  // Extra text printed after the options in --help (examples, exit status).
  void epilog(const std::string& text);
  // Adds --config FILE: a JSON object of long options (flags true/false, repeatable ones as
  // lists) read before the command line, which wins (training tools).
  void enable_config() { config_ = true; }

  // Parses argv; returns the positional arguments. Throws UsageError on a bad command line and
  // ExitRequest{0} after printing --help or --version to stdout. Applies the common options
  // (log level, thread count) as a side effect.
  std::vector<std::string> parse(int argc, char** argv);

  void print_usage(std::FILE* out) const;
  const CommonOptions& common() const { return common_; }

 private:
  struct Opt {
    std::string long_name;
    char short_name;
    std::string metavar;  // empty: a flag
    std::string help;
    std::function<void(const std::string&)> set;
    std::string section;
  };
  const Opt* find_long(const std::string& name) const;
  const Opt* find_short(char c) const;
  std::vector<std::string> config_args(const std::string& file) const;
  bool config_ = false;
  std::string program_, synopsis_, summary_, epilog_, current_section_;
  std::vector<Opt> opts_;
  CommonOptions common_;
};

// Strict conversions for option values and config fields; throw UsageError naming `what`.
int64_t parse_int(const std::string& text, const std::string& what);
double parse_double(const std::string& text, const std::string& what);
uint64_t parse_bytes(const std::string& text, const std::string& what);  // 64K, 200M, 1G

}  // namespace llmkit
