#include "llmkit/tool.hpp"

#include <csignal>
#include <cstdio>
#include <exception>
#include <new>

#include "llmkit/error.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"

namespace llmkit {
namespace {
volatile std::sig_atomic_t g_stop_signal = 0;
volatile std::sig_atomic_t g_stop_internal = 0;
constexpr int kInterruptSignal = SIGUSR2;

void on_interrupt(int) {}  // only there to make a blocked system call return EINTR

void on_stop_signal(int sig) {
  if (g_stop_signal != 0) {
    // A second signal means "now": restore the default and re-raise.
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
  g_stop_signal = sig;
}
}  // namespace

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
  try {
    code = body(argc, argv);
  } catch (const ExitRequest& e) {
    code = e.code;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: %s\nTry '%s --help' for more information.\n", name, e.what(), name);
    code = kExitUsage;
  } catch (const Error& e) {
    if (e.where().empty())
      std::fprintf(stderr, "%s: %s\n", name, e.what());
    else
      std::fprintf(stderr, "%s: %s: %s\n", name, e.where().c_str(), e.what());
    code = e.exit_code();
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: out of memory\n", name);
    code = kExitRuntime;
  } catch (const std::exception& e) {
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
