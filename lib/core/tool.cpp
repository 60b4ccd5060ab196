#include "llmkit/tool.hpp"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <new>
#include <thread>

#include "llmkit/error.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"

namespace llmkit {
namespace {
volatile std::sig_atomic_t g_stop_signal = 0;
volatile std::sig_atomic_t g_stop_internal = 0;
std::atomic<bool> g_hard_exit{false};
std::atomic<bool> g_interrupts{true};  // a stop signal interrupts the main thread's blocking call
std::mutex g_watch_mutex;
std::function<void(int, int)> g_watch;  // watch_stop_signals' answer, when set
pthread_t g_main_thread;
constexpr int kInterruptSignal = SIGUSR2;

void on_interrupt(int) {}  // only there to make a blocked system call return EINTR

// The stop signals, blocked in every thread but the one that waits for them (each thread takes
// its mask from the thread that made it, and run_tool blocks them before any is made): a signal
// handler never runs on a thread that is computing. oneDNN 2.x's JIT GEMM kernels point the
// stack pointer into the heap while they run, and a signal frame pushed there corrupts the
// heap (oneDNN issue 4845); no other thread state is safe to interrupt at any instant either.
sigset_t stop_set() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) sigaddset(&set, sig);
  return set;
}

// The thread that answers the stop signals: the first sets the stop request (and interrupts a
// blocking call of the main thread, so that it sees it); with watch_stop_signals each goes to
// its answer; otherwise a second one ends the process as the signal's default action does.
void wait_for_stop_signals() {
  const sigset_t set = stop_set();
  int count = 0;
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    ++count;
    if (g_stop_signal == 0) g_stop_signal = sig;
    std::function<void(int, int)> watch;
    {
      std::lock_guard<std::mutex> lock(g_watch_mutex);
      watch = g_watch;
    }
    if (watch) {
      watch(sig, count);
      continue;
    }
    if (count == 1) {
      if (g_interrupts) pthread_kill(g_main_thread, kInterruptSignal);
      continue;
    }
    std::signal(sig, SIG_DFL);  // a second signal means "now"
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
    std::raise(sig);
  }
}
}  // namespace

void watch_stop_signals(std::function<void(int sig, int count)> on_signal) {
  std::lock_guard<std::mutex> lock(g_watch_mutex);
  g_watch = std::move(on_signal);
}

void disable_signal_interrupts() { g_interrupts = false; }

void hard_exit(int code) {
  g_hard_exit = true;
  std::_Exit(code);
}

bool stop_requested() { return g_stop_signal != 0 || g_stop_internal != 0; }
int stop_signal() { return g_stop_signal; }

void request_stop(int sig) {
  if (sig != 0)
    g_stop_signal = sig;
  else
    g_stop_internal = 1;
}

void interrupt_thread(pthread_t thread) { pthread_kill(thread, kInterruptSignal); }

void throw_if_stopped() {
  if (g_stop_internal != 0 && g_stop_signal == 0) throw Error("", "stopped after an error");
  if (g_stop_signal != 0)
    throw Error("", "stopped by signal " + std::to_string(g_stop_signal) +
                        "; no partial output was left");
}

int run_tool(const char* name, int argc, char** argv,
             const std::function<int(int, char**)>& body) {
  set_program_name(name);
  // The stop signals go to one thread that waits for them (wait_for_stop_signals), blocked here
  // before any other thread exists so that every thread inherits the block.
  g_main_thread = pthread_self();
  const sigset_t set = stop_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread(wait_for_stop_signals).detach();
  struct sigaction si {};
  si.sa_handler = on_interrupt;  // no SA_RESTART: the blocked call must return
  sigemptyset(&si.sa_mask);
  sigaction(kInterruptSignal, &si, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a closed pipe becomes EPIPE from write(), reported as an Error

  int code = kExitOk;
  // An error on this thread while watch_stop_signals' thread ends the process: let it, quietly.
  auto quiet_if_exiting = [] {
    while (g_hard_exit) ::pause();
  };
  try {
    code = body(argc, argv);
  } catch (const ExitRequest& e) {
    code = e.code;
  } catch (const UsageError& e) {
    quiet_if_exiting();
    std::fprintf(stderr, "%s: %s\nTry '%s --help' for more information.\n", name, e.what(), name);
    code = kExitUsage;
  } catch (const Error& e) {
    quiet_if_exiting();
    if (e.where().empty())
      std::fprintf(stderr, "%s: %s\n", name, e.what());
    else
      std::fprintf(stderr, "%s: %s: %s\n", name, e.where().c_str(), e.what());
    code = e.exit_code();
  } catch (const std::bad_alloc&) {
    quiet_if_exiting();
    std::fprintf(stderr, "%s: out of memory\n", name);
    code = kExitRuntime;
  } catch (const std::exception& e) {
    quiet_if_exiting();
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    code = kExitRuntime;
  }
  Comm& comm = Comm::world();
  if (comm.mpi()) {
    // One rank failing must not leave the others waiting in a collective forever.
    if (code != kExitOk && comm.size() > 1) comm.abort(code);
    comm.finalize();
  }
  return code;
}

}  // namespace llmkit
