#include "llmkit/params.hpp"

#include <cstdio>

#include "llmkit/error.hpp"
#include "llmkit/options.hpp"

namespace llmkit {

void set_param(const std::vector<Param>& params, const std::string& assignment) {
  size_t eq = assignment.find('=');
  if (eq == std::string::npos)
    throw UsageError("-P expects NAME=VALUE, got '" + assignment + "'");
  std::string name = assignment.substr(0, eq);
  for (const auto& p : params)
    if (p.name == name) {
      *p.value = parse_double(assignment.substr(eq + 1), name);
      return;
    }
  throw UsageError("unknown parameter '" + name + "' (see --list-params)");
}

std::string format_params(const std::vector<Param>& params) {
  std::string out;
  for (const auto& p : params) {
    char buf[512];
    snprintf(buf, sizeof buf, "%-44s %-10g %s\n", p.name.c_str(), *p.value, p.help.c_str());
    out += buf;
  }
  return out;
}

}  // namespace llmkit
