#include "core/scheduler.h"

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace lensd {

absl::Status StoppedByClient(absl::Time deadline, absl::string_view what) {
  // A deadline header is relative: the server's deadline trails the client's by the time the
  // call took to arrive and be read.
  constexpr absl::Duration kDeadlineSkew = absl::Milliseconds(500);
  if (absl::Now() + kDeadlineSkew >= deadline) {
    return absl::DeadlineExceededError("the request's deadline passed");
  }
  return absl::CancelledError(absl::StrCat("the client cancelled the ", what));
}

absl::Status Work::KeepGoing() const {
  // The deadline first: gRPC also cancels a call whose deadline passed.
  if (absl::Now() >= deadline) {
    return absl::DeadlineExceededError("the request's deadline passed");
  }
  if (cancellation != nullptr && cancellation->cancelled()) {
    return StoppedByClient(deadline, "request");
  }
  return absl::OkStatus();
}

Scheduler::Scheduler(std::string model, SchedulerOptions options, SchedulerObserver* observer)
    : model_(std::move(model)), options_(options), observer_(observer) {
  const int workers = options_.workers > 0 ? options_.workers : 1;
  absl::MutexLock lock(&join_mu_);
  for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { Loop(); });
}

Scheduler::~Scheduler() { Drain(); }

absl::Status Scheduler::Submit(std::unique_ptr<Work> work, std::unique_ptr<Work>* rejected) {
  absl::MutexLock lock(&mu_);
  if (draining_) {
    *rejected = std::move(work);
    return absl::UnavailableError(
        absl::StrCat("model ", model_, " is unloading; retry once it is loaded again"));
  }
  if (depth_ >= options_.max_queue) {
    *rejected = std::move(work);
    return absl::ResourceExhaustedError(absl::StrCat("model ", model_, " has ", depth_,
                                                     " requests queued (the limit is ",
                                                     options_.max_queue, "); retry later"));
  }
  work->enqueued = absl::Now();
  if (queues_.count(work->tenant) == 0) {
    // Active again: level with the least-charged queued tenant, no credit for the idle time.
    absl::Duration& mine = charged_[work->tenant];
    mine = std::max(mine, virtual_now_);
  }
  queues_[work->tenant].push_back(std::move(work));
  ++depth_;
  Publish();
  changed_.SignalAll();
  return absl::OkStatus();
}

void Scheduler::Drain() {
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    changed_.SignalAll();
  }
  Join();
}

void Scheduler::Close(const absl::Status& reason) {
  std::vector<std::unique_ptr<Work>> queued;
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    for (auto& [tenant, queue] : queues_) {
      for (auto& w : queue) queued.push_back(std::move(w));
    }
    queues_.clear();
    depth_ = 0;
    Publish();
    changed_.SignalAll();
  }
  // Outside the lock: a rejection finishes an RPC.
  for (const auto& w : queued) w->Reject(reason);
  queued.clear();
  Join();
}

void Scheduler::Join() {
  absl::MutexLock lock(&join_mu_);
  // Never called from a worker: the registry closes a scheduler before it drops its reference.
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

int64_t Scheduler::depth() const {
  absl::MutexLock lock(&mu_);
  return depth_;
}

void Scheduler::Publish() {
  if (observer_ != nullptr) observer_->QueueDepth(model_, depth_);
}

std::unique_ptr<Work> Scheduler::PopHead() {
  // The least-charged tenant in whole milliseconds; among equals, the first after the one served
  // last, in name order, wrapping around.
  auto start = queues_.upper_bound(last_tenant_);
  if (start == queues_.end()) start = queues_.begin();
  auto it = start;
  int64_t least = std::numeric_limits<int64_t>::max();
  for (auto candidate = start;;) {
    const int64_t ms = absl::ToInt64Milliseconds(charged_[candidate->first]);
    if (ms < least) {
      least = ms;
      it = candidate;
    }
    if (++candidate == queues_.end()) candidate = queues_.begin();
    if (candidate == start) break;
  }
  std::unique_ptr<Work> head = std::move(it->second.front());
  it->second.pop_front();
  last_tenant_ = it->first;
  virtual_now_ = std::max(virtual_now_, charged_[it->first]);
  if (it->second.empty()) queues_.erase(it);
  --depth_;
  return head;
}

int64_t Scheduler::Compatible(const Work& head, int64_t tokens) const {
  int64_t count = 1;
  for (const auto& [tenant, queue] : queues_) {
    for (const auto& w : queue) {
      if (w->batch_key != head.batch_key) continue;
      tokens += w->tokens;
      if (tokens > options_.batch_max_tokens || count >= options_.batch_max_size) return count;
      ++count;
    }
  }
  return count;
}

void Scheduler::Gather(const Work& head, std::vector<std::unique_ptr<Work>>* batch,
                       int64_t* tokens) {
  // Take compatible items tenant by tenant, one per tenant per round, so that a batch is shared
  // fairly too.
  bool took = true;
  while (took) {
    took = false;
    for (auto it = queues_.begin(); it != queues_.end();) {
      auto& queue = it->second;
      auto match = queue.begin();
      while (match != queue.end() && (*match)->batch_key != head.batch_key) ++match;
      const bool fits = match != queue.end() &&
                        *tokens + (*match)->tokens <= options_.batch_max_tokens &&
                        static_cast<int64_t>(batch->size()) < options_.batch_max_size;
      if (fits) {
        *tokens += (*match)->tokens;
        batch->push_back(std::move(*match));
        queue.erase(match);
        --depth_;
        took = true;
      }
      it = queue.empty() ? queues_.erase(it) : std::next(it);
    }
  }
}

std::vector<std::unique_ptr<Work>> Scheduler::NextBatch() {
  absl::MutexLock lock(&mu_);
  while (depth_ == 0 && !draining_) changed_.Wait(&mu_);
  std::vector<std::unique_ptr<Work>> batch;
  if (depth_ == 0) return batch;  // draining and idle
  batch.push_back(PopHead());
  const Work& head = *batch.front();
  int64_t tokens = head.tokens;
  if (!head.batch_key.empty()) {
    const absl::Time until =
        last_batch_size_ > 1 ? head.enqueued + options_.batch_max_delay : absl::InfinitePast();
    while (!draining_ && Compatible(head, tokens) < options_.batch_max_size &&
           absl::Now() < until) {
      // Stop waiting once the budget would be full anyway.
      int64_t queued = tokens;
      for (const auto& [tenant, queue] : queues_) {
        for (const auto& w : queue) {
          if (w->batch_key == head.batch_key) queued += w->tokens;
        }
      }
      if (queued >= options_.batch_max_tokens) break;
      changed_.WaitWithDeadline(&mu_, until);
    }
    Gather(head, &batch, &tokens);
    last_batch_size_ = static_cast<int64_t>(batch.size());
  }
  Publish();
  if (observer_ != nullptr) {
    observer_->Batch(model_, static_cast<int64_t>(batch.size()), tokens);
  }
  return batch;
}

void Scheduler::Charge(absl::Span<Work* const> batch, absl::Duration took) {
  int64_t tokens = 0;
  for (const Work* w : batch) tokens += std::max<int64_t>(w->tokens, 1);
  absl::MutexLock lock(&mu_);
  for (const Work* w : batch) {
    charged_[w->tenant] +=
        took * static_cast<double>(std::max<int64_t>(w->tokens, 1)) / static_cast<double>(tokens);
  }
  // Forget idle tenants that are not ahead: they come back level with virtual_now_ anyway.
  for (auto it = charged_.begin(); it != charged_.end();) {
    if (queues_.count(it->first) == 0 && it->second <= virtual_now_) {
      it = charged_.erase(it);
    } else {
      ++it;
    }
  }
}

void Scheduler::Loop() {
  while (true) {
    std::vector<std::unique_ptr<Work>> batch = NextBatch();
    if (batch.empty()) return;
    std::vector<Work*> live;
    for (const auto& w : batch) {
      const absl::Status s = w->KeepGoing();
      if (s.ok()) {
        live.push_back(w.get());
      } else {
        w->Reject(absl::Status(s.code(), absl::StrCat(s.message(), " before it ran")));
      }
    }
    if (live.empty()) continue;
    const absl::Time start = absl::Now();
    live.front()->Run(live);
    Charge(live, absl::Now() - start);  // `batch` still owns the work items
  }
}

}  // namespace lensd
