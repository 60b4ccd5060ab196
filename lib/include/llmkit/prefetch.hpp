// Runs a producer on a second thread one step ahead of the consumer (the next batch of
// documents is read while this one is processed). If the consumer stops early (an error, a
// stop signal) the producer is interrupted even when it is blocked reading a pipe.
#pragma once
#include <functional>
#include <future>
#include <thread>

#include "llmkit/tool.hpp"

namespace llmkit {

// T: what one step produces (a batch). The producer fills a T& and returns false when there
// is nothing more.
template <class T>
class Prefetch {
 public:
  explicit Prefetch(std::function<bool(T&)> produce) : produce_(std::move(produce)) { start(); }
  ~Prefetch() {
    if (!thread_.joinable()) return;
    // We are unwinding: ask the producer to stop and interrupt a blocking read until it does.
    request_stop(0);
    while (result_.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready)
      interrupt_thread(thread_.native_handle());
    thread_.join();
  }
  // Waits for the step in flight (rethrowing its exception) and swaps what it produced into
  // `out`; if it produced something, the next step starts at once.
  bool get(T& out) {
    // A stop signal may land on this thread while the producer sits in a blocking read:
    // pass it on, so the producer sees the stop and returns.
    while (result_.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready)
      if (stop_requested()) interrupt_thread(thread_.native_handle());
    thread_.join();
    bool more = result_.get();  // rethrows the producer's exception
    std::swap(out, slot_);
    if (more) start();
    return more;
  }

 private:
  void start() {
    std::packaged_task<bool()> task([this] { return produce_(slot_); });
    result_ = task.get_future();
    thread_ = std::thread(std::move(task));
  }
  std::function<bool(T&)> produce_;
  T slot_{};
  std::future<bool> result_;
  std::thread thread_;
};

}  // namespace llmkit
