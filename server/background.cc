#include "server/background.h"

#include <utility>

namespace lensd::server {

Background::Background() : thread_([this] { Loop(); }) {}

Background::~Background() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void Background::Run(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

void Background::Loop() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Background* b)
               ABSL_NO_THREAD_SAFETY_ANALYSIS { return b->stopping_ || !b->tasks_.empty(); },
          this));
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace lensd::server
