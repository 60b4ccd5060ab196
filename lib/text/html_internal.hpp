// Private to the HTML extractor: the block list the gumbo walk produces (html_extract.cpp) and
// the classification that keeps main-content blocks (html_classify.cpp).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "llmkit/html.hpp"

namespace llmkit::text::detail {

enum class BlockKind : unsigned char { text, heading, list_item, pre, table_cell, table_row };

struct Block {
  std::string text;          // whitespace-collapsed, trimmed; in <pre> exactly as written
                             // but for leading blank lines and trailing whitespace
  size_t weight = 0;         // code points, CJK counted as 3
  size_t link_weight = 0;    // the part of `weight` inside <a href>
  BlockKind kind = BlockKind::text;
};

// Blocks [begin, end) produced inside one element.
struct Range {
  size_t begin = 0, end = 0;
};

// Length in code points, CJK ideographs, kana and Hangul counted as 3.
size_t weighted_length(std::string_view utf8);

std::string collapse_whitespace(std::string_view s);

// Length of a Unicode blank (other than ' ' and '\t') starting at p, else 0: U+00A0, U+1680,
// U+2000..U+200A, U+202F, U+205F, U+3000 (unicode.cpp; the blanks repair's
// normalize_whitespace collapses).
size_t unicode_blank_len(const unsigned char* p, size_t left);

// Drops start tags nested deeper than max_depth (and as many end tags after them) from `html`
// into `out`; returns false, leaving `out` alone, when nothing is that deep.
bool limit_depth(std::string_view html, size_t max_depth, std::string& out);

// Chooses the container, classifies its blocks and joins the kept ones with "\n\n".
std::string select_text(const std::vector<Block>& blocks, const std::vector<Range>& articles,
                        const std::vector<Range>& mains, const std::vector<Range>& boiler,
                        const ExtractConfig& cfg);

}  // namespace llmkit::text::detail
