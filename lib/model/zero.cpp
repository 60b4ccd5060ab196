// ZeRO-3 in the model (ModelOptions::zero3): the flat parameters sharded over the data-parallel
// ranks, each block's gathered into one window just before it runs. The flat layout stays the
// one every other part knows (offsets, checkpoints, the optimizer's segments); only where the
// values are held changes:
//   whole:   w_ = [all parameters]
//   sharded: w_ = [before the blocks | the window: one block | after the blocks]
//            wshard_ = this rank's segment [seg_lo_, seg_hi_) of the flat layout
// The tensors before and after the blocks (embeddings, final norm, heads) stay whole on every
// rank: they are used at both ends of every pass.
#include <algorithm>

#include "llmkit/error.hpp"
#include "llmkit/model.hpp"
#include "llmkit/parallel.hpp"

namespace llmkit {

size_t Model::largest_block(const std::vector<size_t>& begins) {
  size_t n = 0;
  for (size_t l = 0; l + 1 < begins.size(); ++l) n = std::max(n, begins[l + 1] - begins[l]);
  return n;
}

size_t Model::windowed(const std::vector<size_t>& begins, size_t window, size_t offset) {
  const size_t first = begins.front(), end = begins.back();
  if (offset < first) return offset;
  if (offset >= end) return first + window + (offset - end);
  const size_t l = static_cast<size_t>(std::upper_bound(begins.begin(), begins.end(), offset) - begins.begin()) - 1;
  return first + (offset - begins[l]);
}

// Every block's tensors are bound to the window: only the fetched block's values are there.
float* Model::weight_at(size_t offset) { return w_ + (sharded_ ? windowed(layer_begin_, wwindow_, offset) : offset); }

namespace {

// The parts of [begin, end) in each rank's segment, in rank order (they tile it).
std::vector<size_t> pieces(const std::vector<size_t>& counts, size_t begin, size_t end) {
  std::vector<size_t> out(counts.size(), 0);
  for_each_owner(counts, begin, end - begin, [&](size_t, size_t len, int owner) { out[static_cast<size_t>(owner)] = len; });
  return out;
}

}  // namespace

void Model::shard() {
  if (!opts_.zero3) throw Error("", "internal: shard() of a model without ZeRO-3");
  if (sharded_) return;
  if (total_grads_ != total_ || qtotal_) throw Error("", "internal: ZeRO-3 of a model with frozen or quantized tensors");
  Collectives& c = *opts_.zero3;
  seg_counts_ = segment_counts(total_, c.size());
  seg_lo_ = 0;
  for (int r = 0; r < c.rank(); ++r) seg_lo_ += seg_counts_[static_cast<size_t>(r)];
  seg_hi_ = seg_lo_ + seg_counts_[static_cast<size_t>(c.rank())];
  const size_t first = layer_begin_.front(), end = layer_begin_.back();
  wwindow_ = largest_block(layer_begin_);
  wfloats_ = windowed(layer_begin_, wwindow_, total_);
  if (!wshard_) wshard_ = be_.alloc(std::max<size_t>(1, seg_hi_ - seg_lo_));
  be_.copy(wshard_, w_ + seg_lo_, seg_hi_ - seg_lo_);
  float* compact = be_.alloc(std::max<size_t>(1, wfloats_));
  be_.copy(compact, w_, first);
  be_.copy(compact + first + wwindow_, w_ + end, total_ - end);
  be_.release(w_);
  w_ = compact;
  sharded_ = true;
  fetched_ = -1;
  be_.set_parameters(w_, wfloats_);
  bind();
}

void Model::materialize() {
  if (!sharded_) return;
  Collectives& c = *opts_.zero3;
  float* whole = be_.alloc(total_);
  be_.copy(whole + seg_lo_, wshard_, seg_hi_ - seg_lo_);
  c.all_gather(whole, seg_counts_);  // every rank's segment, the tensors outside the blocks too
  be_.release(w_);
  w_ = whole;
  sharded_ = false;
  fetched_ = -1;
  be_.set_parameters(w_, total_);
  bind();
  be_.parameters_changed();
}

// The range [begin, end) of the flat layout, held at `dst` (dst[0] is value `begin`), from its
// owners' segments.
static void gather_range(Backend& be, Collectives& c, const std::vector<size_t>& counts, size_t lo, size_t hi,
                         const float* shard, size_t begin, size_t end, float* dst) {
  if (begin >= end) return;
  const size_t b = std::max(lo, begin), e = std::min(hi, end);
  if (b < e) be.copy(dst + (b - begin), shard + (b - lo), e - b);
  c.all_gather(dst, pieces(counts, begin, end));
}

void Model::sync_replicated() {
  if (!sharded_) return;
  Collectives& c = *opts_.zero3;
  const size_t first = layer_begin_.front(), end = layer_begin_.back();
  gather_range(be_, c, seg_counts_, seg_lo_, seg_hi_, wshard_, 0, first, w_);
  gather_range(be_, c, seg_counts_, seg_lo_, seg_hi_, wshard_, end, total_, w_ + first + wwindow_);
  fetched_ = -1;  // the segments changed: a block is gathered again
  be_.parameters_changed();
}

void Model::fetch_block(int layer) {
  if (!sharded_ || fetched_ == layer) return;
  const size_t l = static_cast<size_t>(layer);
  gather_range(be_, *opts_.zero3, seg_counts_, seg_lo_, seg_hi_, wshard_, layer_begin_[l], layer_begin_[l + 1],
               w_ + layer_begin_.front());
  fetched_ = layer;
  be_.parameters_changed();
}

}  // namespace llmkit
