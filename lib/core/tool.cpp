#include "llmkit/tool.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
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
int g_watch_pipe[2] = {-1, -1};  // the stop signals, a byte each, for watch_stop_signals' thread
constexpr int kInterruptSignal = SIGUSR2;

void on_interrupt(int) {}  // only there to make a blocked system call return EINTR

void on_stop_signal(int sig) {
  if (g_watch_pipe[1] >= 0) {
    // Told to a thread that may log and clean up (write() is async-signal-safe).
    if (g_stop_signal == 0) g_stop_signal = sig;
    const unsigned char b = static_cast<unsigned char>(sig);
    ssize_t ignored = ::write(g_watch_pipe[1], &b, 1);
    (void)ignored;
    return;
  }
  if (g_stop_signal != 0) {
    // A second signal means "now": restore the default and re-raise.
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
  g_stop_signal = sig;
}
}  // namespace

void watch_stop_signals(std::function<void(int sig, int count)> on_signal) {
  if (g_watch_pipe[1] >= 0) return;
  if (::pipe2(g_watch_pipe, O_CLOEXEC) != 0) return;  // without it, the default behaviour stays
  std::thread([fd = g_watch_pipe[0], fn = std::move(on_signal)] {
    int count = 0;
    for (;;) {
      unsigned char b;
      ssize_t r = ::read(fd, &b, 1);
      if (r == 1) fn(b, ++count);
      else if (r < 0 && errno == EINTR) continue;
      else return;
    }
  }).detach();
}

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
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) sigaction(sig, &sa, nullptr);
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
