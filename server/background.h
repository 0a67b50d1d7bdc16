// One thread for slow admin work (model and lens loads and unloads), so that gRPC threads never
// block on it. Tasks run in submission order. Thread-safe; the destructor finishes queued tasks.
#ifndef LENSD_SERVER_BACKGROUND_H_
#define LENSD_SERVER_BACKGROUND_H_

#include <deque>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace lensd::server {

class Background {
 public:
  Background();
  ~Background();
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  void Run(std::function<void()> task);

 private:
  void Loop();

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_BACKGROUND_H_
