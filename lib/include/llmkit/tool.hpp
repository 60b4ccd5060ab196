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

}  // namespace llmkit
