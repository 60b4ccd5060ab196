// The CUDA emulator's launcher, barriers, shuffles and runtime; see emu.hpp.
#include "emu.hpp"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "llmkit/error.hpp"

// Switching between fibers: the callee-saved registers and the floating-point control words go
// on the current stack, the stack pointer into *from; then `to`'s are restored. No system call
// (glibc's swapcontext makes one per switch to save the signal mask: most of the emulator's
// time). System V x86-64 ABI.
#if !defined(__x86_64__)
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif
extern "C" void llmkit_emu_switch(void** from, void* to);
asm(R"(
.text
.globl llmkit_emu_switch
.type llmkit_emu_switch,@function
llmkit_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size llmkit_emu_switch, .-llmkit_emu_switch
.section .note.GNU-stack,"",@progbits
.text
)");

namespace llmkit::emu {

thread_local const uint3* tl_thread = nullptr;
thread_local uint3 tl_block;
thread_local dim3 tl_block_dim, tl_grid_dim;

namespace {

constexpr size_t kStackBytes = 64 * 1024;

struct Fiber {
  void* sp = nullptr;  // saved stack pointer while switched out
  uint3 tid;
  int linear = 0;
  bool done = false;
};

struct Barrier {
  int arrived = 0;
  uint64_t generation = 0;
};

struct Launch {
  const std::function<void()>* body = nullptr;
  std::vector<Fiber> fibers;
  std::vector<std::unique_ptr<char[]>> stacks;
  void* scheduler = nullptr;
  int current = 0;
  int threads = 0;
  Barrier block_barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<uint64_t> exchange;  // one slot per thread
  std::vector<char> shared;        // dynamic shared memory
  uint64_t progress = 0;           // barriers released and fibers finished
  std::string error;
};

thread_local Launch* tl_launch = nullptr;

void fail(const std::string& what) {
  Launch& L = *tl_launch;
  if (L.error.empty()) L.error = what;
}

void yield() {
  Launch& L = *tl_launch;
  llmkit_emu_switch(&L.fibers[static_cast<size_t>(L.current)].sp, L.scheduler);
}

// A fiber's first frame; it never returns: the scheduler does not switch to a finished fiber.
void fiber_main() {
  Launch& L = *tl_launch;
  (*L.body)();
  Fiber& f = L.fibers[static_cast<size_t>(L.current)];
  f.done = true;
  ++L.progress;
  if (L.block_barrier.arrived > 0) fail("a thread returned while others wait at __syncthreads()");
  yield();
  std::abort();
}

// A new fiber's stack as llmkit_emu_switch leaves a switched-out one: control words, six
// registers, then fiber_main as the return address (and a null one above it, where a call
// would have put its return address, keeping the ABI's 16-byte alignment at entry).
void* initial_stack(char* base, size_t bytes) {
  auto top = reinterpret_cast<uintptr_t>(base + bytes) & ~uintptr_t{15};
  auto* w = reinterpret_cast<uint64_t*>(top) - 9;
  uint32_t csr[2] = {0x1f80u, 0x037fu};  // default MXCSR, x87 control word
  std::memcpy(&w[0], csr, 8);
  for (int i = 1; i <= 6; ++i) w[i] = 0;
  w[7] = reinterpret_cast<uint64_t>(&fiber_main);
  w[8] = 0;
  return w;
}

int warp_size_of(const Launch& L, int warp) { return std::min(32, L.threads - warp * 32); }

// Waits until `expected` threads arrived at `b` (the last one to arrive releases the others).
void arrive(Barrier& b, int expected) {
  Launch& L = *tl_launch;
  if (++b.arrived == expected) {
    b.arrived = 0;
    ++b.generation;
    ++L.progress;
    return;
  }
  const uint64_t generation = b.generation;
  while (b.generation == generation) yield();
}

bool reverse_order() {
  static const bool r = [] {
    const char* e = std::getenv("LLMKIT_EMU_REVERSE");
    return e && *e && std::string(e) != "0";
  }();
  return r;
}

}  // namespace

int lane_id() { return tl_launch->fibers[static_cast<size_t>(tl_launch->current)].linear % 32; }

void syncthreads() {
  Launch& L = *tl_launch;
  arrive(L.block_barrier, L.threads);
}

void syncwarp() {
  Launch& L = *tl_launch;
  const int warp = L.fibers[static_cast<size_t>(L.current)].linear / 32;
  arrive(L.warp_barriers[static_cast<size_t>(warp)], warp_size_of(L, warp));
}

uint64_t warp_exchange(uint64_t bits, int src) {
  Launch& L = *tl_launch;
  const int me = L.fibers[static_cast<size_t>(L.current)].linear;
  const int warp = me / 32, lanes = warp_size_of(L, warp);
  Barrier& b = L.warp_barriers[static_cast<size_t>(warp)];
  L.exchange[static_cast<size_t>(me)] = bits;
  arrive(b, lanes);  // every lane has written
  const uint64_t r = src >= 0 && src < lanes ? L.exchange[static_cast<size_t>(warp * 32 + src)] : bits;
  arrive(b, lanes);  // every lane has read before the slots are reused
  return r;
}

void* dynamic_shared() { return tl_launch->shared.data(); }

void launch(dim3 grid, dim3 block, size_t dynamic_shared_bytes, const std::function<void()>& body) {
  const int threads = static_cast<int>(block.x * block.y * block.z);
  if (threads < 1 || threads > 1024) throw Error("cuda emulator", "a block of " + std::to_string(threads) + " threads (1 to 1024)");
  if (dynamic_shared_bytes > 227 * 1024) throw Error("cuda emulator", "more dynamic shared memory than an H100 block has");
  Launch L;
  L.body = &body;
  L.threads = threads;
  L.fibers.resize(static_cast<size_t>(threads));
  L.warp_barriers.resize(static_cast<size_t>((threads + 31) / 32));
  L.exchange.resize(static_cast<size_t>(threads));
  L.shared.assign(dynamic_shared_bytes + 16, 0);
  for (int i = 0; i < threads; ++i) L.stacks.emplace_back(new char[kStackBytes]);
  Launch* saved = tl_launch;
  tl_launch = &L;
  tl_grid_dim = grid;
  tl_block_dim = block;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        tl_block = {bx, by, bz};
        for (int i = 0; i < threads; ++i) {
          Fiber& f = L.fibers[static_cast<size_t>(i)];
          f = Fiber();
          f.linear = i;
          f.tid = {static_cast<unsigned>(i) % block.x, static_cast<unsigned>(i) / block.x % block.y,
                   static_cast<unsigned>(i) / (block.x * block.y)};
          f.sp = initial_stack(L.stacks[static_cast<size_t>(i)].get(), kStackBytes);
        }
        L.block_barrier = Barrier();
        for (auto& b : L.warp_barriers) b = Barrier();
        std::fill(L.shared.begin(), L.shared.end(), 0);
        int remaining = threads;
        while (remaining > 0) {
          const uint64_t before = L.progress;
          for (int k = 0; k < threads; ++k) {
            const int i = reverse_order() ? threads - 1 - k : k;
            Fiber& f = L.fibers[static_cast<size_t>(i)];
            if (f.done) continue;
            L.current = i;
            tl_thread = &f.tid;
            llmkit_emu_switch(&L.scheduler, f.sp);
            if (f.done) --remaining;
          }
          if (remaining > 0 && L.progress == before)
            fail("deadlock: threads wait at a barrier or shuffle that others never reach");
          if (!L.error.empty()) {
            tl_launch = saved;
            throw Error("cuda emulator", L.error + " (block " + std::to_string(bx) + "," + std::to_string(by) + "," +
                                             std::to_string(bz) + ")");
          }
        }
      }
  tl_launch = saved;
}

}  // namespace llmkit::emu

// ---- Runtime: device memory is host memory ----

cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = std::aligned_alloc(256, std::max<size_t>(256, (bytes + 255) / 256 * 256));
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind k, cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, k);
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  if (bytes) std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) { return cudaMemset(p, value, bytes); }
cudaError_t cudaMallocHost(void** p, size_t bytes) { return cudaMalloc(p, bytes); }
cudaError_t cudaFreeHost(void* p) { return cudaFree(p); }
// Everything runs at once in the emulator: an event is always complete.
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  static char token;
  *e = reinterpret_cast<cudaEvent_t>(&token);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaGetLastError() { return cudaSuccess; }
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }
