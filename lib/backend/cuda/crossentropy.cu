// Cross-entropy over the first V of Vp logit columns: one block per row, the log-sum-exp by a
// max pass and a sum pass (fp32). The backward writes d(loss)/d(logits) from d(loss)/d(logp),
// in place over the logits when asked (each element is read before it is written).
#include "kernels.cuh"

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

constexpr unsigned kThreads = 512;

__device__ float row_log_sum_exp(Ref l, int V) {
  float m = -INFINITY;
  for (int j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, l.get(j));
  m = block_max(m);
  float s = 0.0f;
  for (int j = threadIdx.x; j < V; j += blockDim.x) s += __expf(l.get(j) - m);
  return m + logf(block_sum(s));
}

__global__ void crossentropy_forward_kernel(float* logp, Ref logits, const int32_t* targets, int V, int Vp) {
  const size_t row = blockIdx.x;
  const int target = targets[row];
  if (target < 0) {  // the whole block leaves together: no barrier is skipped by some threads only
    if (threadIdx.x == 0) logp[row] = 0.0f;
    return;
  }
  const Ref l = logits.at(row * Vp);
  const float lse = row_log_sum_exp(l, V);
  if (threadIdx.x == 0) logp[row] = l.get(target) - lse;
}

// lse_given: the rows' log-sum-exp over a whole vocabulary this is a shard of (Backend::
// crossentropy_backward); a target < 0 is then on another shard, and the row is still written.
__global__ void crossentropy_backward_kernel(Ref dlogits, Ref logits, const int32_t* targets, const float* dlogp, int V,
                                             int Vp, const float* lse_given) {
  const size_t row = blockIdx.x;
  const int target = targets[row];
  const float c = target < 0 && !lse_given ? 0.0f : dlogp[row];
  const Ref d = dlogits.at(row * Vp);
  if (c == 0.0f) {
    for (int j = threadIdx.x; j < Vp; j += blockDim.x) d.set(j, 0.0f);
    return;
  }
  const Ref l = logits.at(row * Vp);
  // row_log_sum_exp ends with a barrier: every read of l is done before d is written over it.
  // A given lse needs none: each thread reads then writes its own columns.
  const float lse = lse_given ? lse_given[row] : row_log_sum_exp(l, V);
  for (int j = threadIdx.x; j < Vp; j += blockDim.x)
    d.set(j, j < V ? (j == target ? c : 0.0f) - c * __expf(l.get(j) - lse) : 0.0f);
}

__global__ void logsumexp_kernel(float* lse, Ref logits, int V, int Vp) {
  const size_t row = blockIdx.x;
  if (V <= 0) {
    if (threadIdx.x == 0) lse[row] = -INFINITY;
    return;
  }
  const float s = row_log_sum_exp(logits.at(row * Vp), V);
  if (threadIdx.x == 0) lse[row] = s;
}

// Knowledge distillation: the cross-entropy's gradient plus kd_weight times a divergence's
// (Backend::distill_backward; the CPU backend's DivergenceRow is the same arithmetic). form 0:
// forward KL(t || s) times scale, 1: reverse KL(s || t), 2: the beta mixture.
struct DivergenceArgs {
  int form;
  float inv_tau, beta, log_beta, log_1mbeta, scale;
};

__device__ float log_mix(const DivergenceArgs& a, float ls, float lt) {
  const float x = ls + a.log_1mbeta, y = lt + a.log_beta;
  const float hi = fmaxf(x, y), lo = fminf(x, y);
  return hi + log1pf(expf(lo - hi));
}

// log sum exp(x / tau) over the row
__device__ float row_scaled_lse(Ref x, int V, float inv_tau) {
  float m = -INFINITY;
  for (int j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, x.get(j));
  m = block_max(m);
  float s = 0.0f;
  for (int j = threadIdx.x; j < V; j += blockDim.x) s += expf((x.get(j) - m) * inv_tau);
  return m * inv_tau + logf(block_sum(s));
}

__global__ void distill_backward_kernel(Ref dlogits, float* kd_loss, Ref logits, Ref teacher, const int32_t* targets,
                                        const float* dlogp, const float* kd_weight, int V, int Vp, DivergenceArgs a) {
  const size_t row = blockIdx.x;
  const int target = targets[row];
  const float c = target < 0 ? 0.0f : dlogp[row], w = kd_weight[row];
  const Ref d = dlogits.at(row * Vp), l = logits.at(row * Vp), t = teacher.at(row * Vp);
  if (c == 0.0f && w == 0.0f) {
    for (int j = threadIdx.x; j < Vp; j += blockDim.x) d.set(j, 0.0f);
    if (threadIdx.x == 0) kd_loss[row] = 0.0f;
    return;
  }
  const float lse = c != 0.0f ? row_log_sum_exp(l, V) : 0.0f;
  float lse_s = 0.0f, lse_t = 0.0f, loss = 0.0f, gbar = 0.0f;
  if (w != 0.0f) {
    lse_s = row_scaled_lse(l, V, a.inv_tau);
    lse_t = row_scaled_lse(t, V, a.inv_tau);
    float part = 0.0f, gpart = 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
      const float ls = l.get(j) * a.inv_tau - lse_s, lt = t.get(j) * a.inv_tau - lse_t;
      const float ps = expf(ls), pt = expf(lt);
      if (a.form == 0) {
        part += pt * (lt - ls);
      } else if (a.form == 1) {
        part += ps * (ls - lt);
      } else {
        const float lm = log_mix(a, ls, lt);
        part += a.beta * pt * (lt - lm) + (1.0f - a.beta) * ps * (ls - lm);
        gpart += ps * (1.0f - a.beta) * (ls - lm);
      }
    }
    loss = block_sum(part);
    gbar = block_sum(gpart);  // ends with a barrier: every read before the writes below is done
  } else {
    __syncthreads();  // the log-sum-exp's reads of l are done (row_log_sum_exp ends with one too)
  }
  if (threadIdx.x == 0) kd_loss[row] = w != 0.0f ? a.scale * loss : 0.0f;
  for (int j = threadIdx.x; j < Vp; j += blockDim.x) {
    float g = 0.0f;
    if (j < V) {
      const float z = l.get(j);
      if (c != 0.0f) g = (j == target ? c : 0.0f) - c * __expf(z - lse);
      if (w != 0.0f) {
        const float ls = z * a.inv_tau - lse_s, lt = t.get(j) * a.inv_tau - lse_t, ps = expf(ls);
        float k;
        if (a.form == 0) k = a.scale * a.inv_tau * (ps - expf(lt));
        else if (a.form == 1) k = ps * ((ls - lt) - loss) * a.inv_tau;
        else k = ps * ((1.0f - a.beta) * (ls - log_mix(a, ls, lt)) - gbar) * a.inv_tau;
        g += w * k;
      }
    }
    d.set(j, g);
  }
}

// Block per row: the largest value, then the smallest index holding it (indices below 2^24
// are exact as floats).
__global__ void argmax_kernel(int32_t* out, float* values, Ref logits, int V, int Vp) {
  const size_t row = blockIdx.x;
  const Ref l = logits.at(row * Vp);
  float m = -INFINITY;
  for (int j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, l.get(j));
  m = block_max(m);
  float first = -INFINITY;  // -index of the first column holding m
  for (int j = threadIdx.x; j < V; j += blockDim.x)
    if (l.get(j) == m) {
      first = -static_cast<float>(j);
      break;
    }
  first = block_max(first);
  if (threadIdx.x == 0) out[row] = first == -INFINITY ? 0 : static_cast<int32_t>(-first);
  if (threadIdx.x == 0 && values) values[row] = m;
}

}  // namespace

void argmax(int32_t* out_dev, float* values_dev, Ref logits, int N, int V, int Vp) {
  if (N <= 0) return;
  LLMKIT_LAUNCH(argmax_kernel, N, kThreads, 0, out_dev, values_dev, logits, V, Vp);
  check_launch("argmax");
}

void crossentropy_forward(float* logp, Ref logits, const int32_t* targets_dev, int N, int V, int Vp) {
  if (N <= 0) return;
  LLMKIT_LAUNCH(crossentropy_forward_kernel, N, kThreads, 0, logp, logits, targets_dev, V, Vp);
  check_launch("crossentropy_forward");
}

void crossentropy_backward(Ref dlogits, Ref logits, const int32_t* targets_dev, const float* dlogp, int N, int V, int Vp,
                           const float* lse) {
  if (N <= 0) return;
  LLMKIT_LAUNCH(crossentropy_backward_kernel, N, kThreads, 0, dlogits, logits, targets_dev, dlogp, V, Vp, lse);
  check_launch("crossentropy_backward");
}

void logsumexp(float* lse, Ref logits, int N, int V, int Vp) {
  if (N <= 0) return;
  LLMKIT_LAUNCH(logsumexp_kernel, N, kThreads, 0, lse, logits, V, Vp);
  check_launch("logsumexp");
}

void distill_backward(Ref dlogits, float* kd_loss, Ref logits, Ref teacher, const int32_t* targets_dev, const float* dlogp,
                      const float* kd_weight, int N, int V, int Vp, const Divergence& d) {
  if (N <= 0) return;
  DivergenceArgs a{};
  a.inv_tau = 1.0f / d.temperature;
  a.beta = d.beta;
  a.scale = 1.0f;
  if (d.kind == Divergence::Kind::kl) {
    a.form = 0;
    a.scale = d.temperature * d.temperature;
  } else {
    a.form = d.beta <= 0.0f ? 0 : d.beta >= 1.0f ? 1 : 2;
    a.log_beta = std::log(d.beta);
    a.log_1mbeta = std::log1p(-d.beta);
  }
  LLMKIT_LAUNCH(distill_backward_kernel, N, kThreads, 0, dlogits, kd_loss, logits, teacher, targets_dev, dlogp, kd_weight, V, Vp, a);
  check_launch("distill_backward");
}

}  // namespace llmkit::LLMKIT_CUDA_NS
