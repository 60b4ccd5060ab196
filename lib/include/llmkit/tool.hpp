// The frame every command's main() runs in: maps llmkit::Error to "llm-x: WHERE: WHAT" on stderr
// and to the exit status (1 runtime/data, 2 usage), and installs the stop-signal handlers.
#pragma once
#include <pthread.h>

#include <functional>

namespace llmkit {

int run_tool(const char* name, int argc, char** argv, const std::function<int(int, char**)>& body);

// SIGTERM, SIGINT, SIGUSR1 set a flag instead of killing the process, so long jobs can finish
// the current item, leave no partial file and exit non-zero (Slurm sends one before time-out).
bool stop_requested();
int stop_signal();  // the signal that asked to stop, 0 if none
void throw_if_stopped();  // throws Error("", "stopped by signal N") when a stop was requested
// Asks for a stop from inside the program (sig 0: an error elsewhere is unwinding).
void request_stop(int sig);
// Interrupts a system call blocked in another thread (EINTR), so it can see the stop request.
void interrupt_thread(pthread_t thread);

// Stop signals are handled on a thread of their own, which waits for them; every other thread
// blocks them, so no signal ever interrupts computation (oneDNN 2.x's GEMM kernels must not be
// interrupted). The first sets the stop request and interrupts a blocking system call of the
// main thread (EINTR), unless disable_signal_interrupts() was called; a second kills the
// process as the signal's default action does.
//
// For long jobs that answer a stop signal with work (a checkpoint): `on_signal(sig, count)` runs
// on that thread as each stop signal arrives (count 1, 2, ...), free to log and to clean up,
// while the first signal sets the stop request as usual, and interrupts nothing. `on_signal`
// may end the process with hard_exit().
void watch_stop_signals(std::function<void(int sig, int count)> on_signal);
// Stop signals only set the stop request, which the program polls: for programs whose main
// thread computes (models) and reads nothing that could block.
void disable_signal_interrupts();
// Ends the process at once with `code`: for a second stop signal, after its clean-up. An error
// that unwinds on another thread meanwhile is not reported (the process is going away).
[[noreturn]] void hard_exit(int code);

}  // namespace llmkit
