// CUDA kernels against the CPU backend on random inputs of awkward shapes (not multiples of the
// block sizes). Exit 77 (CTest: skipped) when there is no GPU.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "llmkit/backend.hpp"
#include "llmkit/cuda.hpp"

using namespace llmkit;

namespace {

int failures = 0;

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel, double abs_tol,
                  const char* what) {
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double err = std::abs(static_cast<double>(got[i]) - want[i]);
    double allowed = abs_tol + rel * std::abs(static_cast<double>(want[i]));
    worst = std::max(worst, err / allowed);
  }
  std::printf("%-40s worst error %.3g of the tolerance %s\n", what, worst, worst <= 1 ? "ok" : "FAILED");
  failures += worst > 1;
}

std::vector<float> random(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

struct Dev {
  float* p;
  size_t n;
  explicit Dev(const std::vector<float>& h) : p(cuda::alloc(h.size())), n(h.size()) { cuda::upload(p, h.data(), n); }
  explicit Dev(size_t count) : p(cuda::alloc(count)), n(count) {}
  ~Dev() { cuda::release(p); }
  std::vector<float> get() const {
    std::vector<float> h(n);
    cuda::download(h.data(), p, n);
    return h;
  }
};

// fp32 on both sides; tolerance 1e-5 relative (sums in another order).
void rmsnorm(Backend& cpu, std::mt19937& rng, int N, int C) {
  auto x = random(static_cast<size_t>(N) * C, rng), w = random(static_cast<size_t>(C), rng),
       dy = random(static_cast<size_t>(N) * C, rng), dx0 = random(static_cast<size_t>(N) * C, rng),
       dw0 = random(static_cast<size_t>(C), rng);
  std::vector<float> out(x.size()), rstd(static_cast<size_t>(N)), dx = dx0, dw = dw0;
  cpu.rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f);
  cpu.rmsnorm_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), N, C);
  Dev gx(x), gw(w), gdy(dy), gdx(dx0), gdw(dw0), gout(x.size()), grstd(static_cast<size_t>(N));
  cuda::rmsnorm_forward(gout.p, grstd.p, gx.p, gw.p, N, C, 1e-5f);
  cuda::rmsnorm_backward(gdx.p, gdw.p, gdy.p, gx.p, gw.p, grstd.p, N, C);
  char name[64];
  std::snprintf(name, sizeof name, "rmsnorm forward N=%d C=%d", N, C);
  expect_close(gout.get(), out, 1e-5, 1e-6, name);
  expect_close(grstd.get(), rstd, 1e-5, 1e-6, "  rstd");
  expect_close(gdx.get(), dx, 1e-4, 1e-5, "  backward dinp (accumulated)");
  expect_close(gdw.get(), dw, 1e-4, 1e-4, "  backward dw (accumulated)");
}

}  // namespace

int main() {
  if (cuda_device_count() == 0) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  std::printf("device 0: %s\n", cuda_device_name(0).c_str());
  auto cpu = make_cpu_backend();
  std::mt19937 rng(1);
  for (auto [N, C] : {std::pair{1, 1}, {7, 33}, {37, 1000}, {130, 768}, {300, 4099}}) rmsnorm(*cpu, rng, N, C);
  std::printf("%d failures\n", failures);
  return failures ? 1 : 0;
}
