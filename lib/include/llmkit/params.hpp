// Named numeric parameters (filter thresholds and the like), set with `-P NAME=VALUE` and listed
// with --list-params, so a stage can expose many published thresholds without one option each.
#pragma once
#include <string>
#include <vector>

namespace llmkit {

struct Param {
  std::string name;  // "stage.parameter", e.g. "gopher_quality.min_doc_words"
  double* value;
  std::string help;
};

// Applies "NAME=VALUE"; throws UsageError for an unknown name or a bad number.
void set_param(const std::vector<Param>& params, const std::string& assignment);
// "NAME = VALUE  HELP" lines, for --list-params.
std::string format_params(const std::vector<Param>& params);

}  // namespace llmkit
