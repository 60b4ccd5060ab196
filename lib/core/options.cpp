#include "llmkit/options.hpp"

#include <nlohmann/json.hpp>

#include <sstream>

#include <omp.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"

namespace llmkit {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  for (size_t b = 0; b <= s.size();) {
    size_t e = s.find(',', b);
    if (e == std::string::npos) e = s.size();
    if (e > b) out.push_back(s.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

OptionParser::OptionParser(std::string program, std::string synopsis, std::string summary)
    : program_(std::move(program)), synopsis_(std::move(synopsis)), summary_(std::move(summary)) {
  set_program_name(program_);
}

void OptionParser::section(const std::string& title) { current_section_ = title; }

void OptionParser::flag(const std::string& long_name, char short_name, bool* target,
                        const std::string& help) {
  opts_.push_back({long_name, short_name, "", help,
                   [target](const std::string&) { *target = true; }, current_section_});
}

void OptionParser::value(const std::string& long_name, char short_name, const std::string& metavar,
                         std::function<void(const std::string&)> set, const std::string& help) {
  opts_.push_back({long_name, short_name, metavar, help, std::move(set), current_section_});
}

void OptionParser::string(const std::string& long_name, char short_name, const std::string& metavar,
                          std::string* target, const std::string& help) {
  value(long_name, short_name, metavar, [target](const std::string& v) { *target = v; }, help);
}

void OptionParser::integer(const std::string& long_name, char short_name,
                           const std::string& metavar, int64_t* target, const std::string& help) {
  value(long_name, short_name, metavar,
        [target, long_name](const std::string& v) { *target = parse_int(v, "--" + long_name); },
        help);
}

void OptionParser::number(const std::string& long_name, char short_name, const std::string& metavar,
                          double* target, const std::string& help) {
  value(long_name, short_name, metavar,
        [target, long_name](const std::string& v) { *target = parse_double(v, "--" + long_name); },
        help);
}

void OptionParser::epilog(const std::string& text) { epilog_ = text; }

const OptionParser::Opt* OptionParser::find_long(const std::string& name) const {
  for (const auto& o : opts_)
    if (o.long_name == name) return &o;
  return nullptr;
}

const OptionParser::Opt* OptionParser::find_short(char c) const {
  for (const auto& o : opts_)
    if (c && o.short_name == c) return &o;
  return nullptr;
}

void OptionParser::print_usage(std::FILE* out) const {
  std::fprintf(out, "Usage: %s\n\n%s\n", synopsis_.c_str(), summary_.c_str());
  std::string last_section = "\x01";
  for (const auto& o : opts_) {
    if (o.section != last_section) {
      std::fprintf(out, "\n%s:\n", o.section.empty() ? "Options" : o.section.c_str());
      last_section = o.section;
    }
    std::string left = o.short_name ? std::string("  -") + o.short_name + ", " : "      ";
    left += "--" + o.long_name;
    if (!o.metavar.empty()) left += " " + o.metavar;
    std::string help = o.help;  // continuation lines line up under the first
    for (size_t at = help.find('\n'); at != std::string::npos; at = help.find('\n', at + 29))
      help.insert(at + 1, 28, ' ');
    if (left.size() < 28)
      std::fprintf(out, "%-28s%s\n", left.c_str(), help.c_str());
    else
      std::fprintf(out, "%s\n%-28s%s\n", left.c_str(), "", help.c_str());
  }
  if (!epilog_.empty()) std::fprintf(out, "\n%s\n", epilog_.c_str());
}

// A config file's options as command-line words: {"lr": 2e-4, "packing": true, "data": ["a",
// "b"]} is --lr 2e-4 --packing --data a --data b; false leaves a flag off.
std::vector<std::string> OptionParser::config_args(const std::string& file) const {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(file));
  } catch (const nlohmann::json::exception& e) {
    throw UsageError("--config " + file + ": not JSON (" + std::string(e.what()) + ")");
  }
  if (!j.is_object()) throw UsageError("--config " + file + ": not a JSON object of options");
  std::vector<std::string> out;
  auto word = [&](const std::string& key, const nlohmann::json& v) -> std::string {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
    if (v.is_number()) {
      std::ostringstream s;
      s.precision(17);
      s << v.get<double>();
      return s.str();
    }
    throw UsageError("--config " + file + ": \"" + key + "\" is not a string, number, boolean or list of them");
  };
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key == "config") throw UsageError("--config " + file + ": a config file cannot name another");
    const Opt* o = find_long(key);
    if (!o) throw UsageError("--config " + file + ": unknown option \"" + key + "\" (see --help)");
    if (o->metavar.empty()) {
      if (!it.value().is_boolean()) throw UsageError("--config " + file + ": \"" + key + "\" is a flag: true or false");
      if (it.value().get<bool>()) out.push_back("--" + key);
      continue;
    }
    if (it.value().is_array()) {
      for (const auto& v : it.value()) out.insert(out.end(), {"--" + key, word(key, v)});
    } else {
      out.insert(out.end(), {"--" + key, word(key, it.value())});
    }
  }
  return out;
}

std::vector<std::string> OptionParser::parse(int argc, char** argv) {
  // The common options are registered last so they close the --help listing.
  bool help = false, version = false;
  int64_t threads = 0, seed = 0;
  int quiet = 0, verbose = 0;
  section("Common options");
  if (config_)
    value("config", 0, "FILE", [](const std::string&) {},  // read before the command line
          "options from a JSON object {\"lr\": 2e-4, \"steps\": 1000, ...}; the\ncommand line wins");
  integer("threads", 0, "N", &threads, "worker threads (default: all cores)");
  integer("seed", 0, "N", &seed, "random seed (default 0)");
  value("quiet", 'q', "", [&quiet](const std::string&) { ++quiet; },
        "less output on stderr (repeat for errors only)");
  value("verbose", 'v', "", [&verbose](const std::string&) { ++verbose; },
        "more output on stderr (repeat for debug output)");
  string("stats", 0, "FILE", &common_.stats_file,
         "write run statistics (counts, drops per reason, time, memory) as JSON");
  flag("help", 'h', &help, "print this help and exit");
  flag("version", 0, &version, "print the version and exit");
  // The setters above point at locals: drop them again when parse() returns.
  struct Unregister {
    std::vector<Opt>& opts;
    size_t keep;
    ~Unregister() { opts.resize(keep); }
  } unregister{opts_, opts_.size() - 7 - (config_ ? 1 : 0)};

  std::vector<std::string> positional;
  auto consume = [&](const std::vector<std::string>& args, const std::string& from) {
    bool only_positional = false;
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& arg = args[i];
      if (only_positional || arg == "-" || arg.size() < 2 || arg[0] != '-') {
        if (!from.empty()) throw UsageError(from + ": '" + arg + "' is not an option");
        positional.push_back(arg);
        continue;
      }
      if (arg == "--") {
        only_positional = true;
        continue;
      }
      if (arg[1] == '-') {
        std::string name = arg.substr(2), val;
        size_t eq = name.find('=');
        bool has_val = eq != std::string::npos;
        if (has_val) {
          val = name.substr(eq + 1);
          name = name.substr(0, eq);
        }
        const Opt* o = find_long(name);
        if (!o) throw UsageError((from.empty() ? "" : from + ": ") + "unknown option '--" + name + "' (see --help)");
        if (o->metavar.empty()) {
          if (has_val) throw UsageError("option '--" + name + "' takes no value");
        } else if (!has_val) {
          if (i + 1 >= args.size()) throw UsageError("option '--" + name + "' needs a value " + o->metavar);
          val = args[++i];
        }
        o->set(val);
        continue;
      }
      // Bundled short options: -qv, -o FILE, -oFILE.
      for (size_t k = 1; k < arg.size(); ++k) {
        const Opt* o = find_short(arg[k]);
        if (!o) throw UsageError(std::string("unknown option '-") + arg[k] + "' (see --help)");
        if (o->metavar.empty()) {
          o->set("");
          continue;
        }
        std::string val = arg.substr(k + 1);
        if (val.empty()) {
          if (i + 1 >= args.size())
            throw UsageError(std::string("option '-") + arg[k] + "' needs a value " + o->metavar);
          val = args[++i];
        }
        o->set(val);
        break;
      }
    }
  };
  std::vector<std::string> args(argv + 1, argv + argc);
  // --config FILE first, so that the command line wins: its keys are long options.
  if (config_) {
    for (size_t i = 0; i < args.size(); ++i) {
      std::string file;
      if (args[i] == "--config" && i + 1 < args.size()) file = args[i + 1];
      else if (args[i].rfind("--config=", 0) == 0) file = args[i].substr(9);
      if (!file.empty()) consume(config_args(file), file);
    }
  }
  consume(args, "");
  if (help) {
    print_usage(stdout);
    throw ExitRequest{kExitOk};
  }
  if (version) {
    std::printf("%s (llmkit) %s\n", program_.c_str(), LLMKIT_VERSION);
    throw ExitRequest{kExitOk};
  }
  if (threads < 0) throw UsageError("--threads must be >= 0");
  check_output_file(common_.stats_file, "--stats");
  common_.threads = static_cast<int>(threads);
  common_.seed = static_cast<uint64_t>(seed);
  common_.verbosity = verbose - quiet;
  int level = static_cast<int>(LogLevel::info) + common_.verbosity;
  set_log_level(static_cast<LogLevel>(std::clamp(level, 0, 3)));
  if (common_.threads > 0) omp_set_num_threads(common_.threads);
  return positional;
}

int64_t parse_int(const std::string& text, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE)
    throw UsageError(what + ": '" + text + "' is not an integer");
  return v;
}

double parse_double(const std::string& text, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
    throw UsageError(what + ": '" + text + "' is not a number");
  return v;
}

uint64_t parse_bytes(const std::string& text, const std::string& what) {
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end == text.c_str() || errno == ERANGE || v < 0)
    throw UsageError(what + ": '" + text + "' is not a size");
  std::string unit(end);
  double mul = 1;
  if (unit == "" || unit == "B") mul = 1;
  else if (unit == "K" || unit == "k" || unit == "KiB") mul = 1024.0;
  else if (unit == "M" || unit == "MiB") mul = 1024.0 * 1024;
  else if (unit == "G" || unit == "GiB") mul = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "TiB") mul = 1024.0 * 1024 * 1024 * 1024;
  else throw UsageError(what + ": unknown size unit '" + unit + "' (use K, M, G, T)");
  return static_cast<uint64_t>(v * mul);
}

}  // namespace llmkit
