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

void Work::Yield() const {
  if (scheduler_ != nullptr) scheduler_->YieldFrom();
}

struct Scheduler::Slice {
  const Scheduler* owner = nullptr;
  Slice* outer = nullptr;            // the batch that yielded to this one, if any
  int depth = 1;                     // batches running on this thread, this one included
  std::vector<std::string> tenants;  // of this batch's items and every outer batch's
  double head_share = 1;             // the head's part of the batch's tokens (what it is charged)
  absl::Time began;                  // when the batch started
  absl::Time since;                  // when it started or last yielded
  absl::Duration yielded = absl::ZeroDuration();  // spent running others' work inside it
};

namespace {
// Batches one worker thread may hold open inside each other (a yield's batch can yield too: a
// heavy item a yield picked must not hold up the light ones behind it).
constexpr int kMaxYieldDepth = 4;
}  // namespace

thread_local Scheduler::Slice* Scheduler::current_ = nullptr;

Scheduler::Scheduler(std::string model, SchedulerOptions options, SchedulerObserver* observer)
    : model_(std::move(model)), options_(std::move(options)), observer_(observer) {
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

std::map<std::string, std::deque<std::unique_ptr<Work>>>::iterator Scheduler::LeastCharged(
    const std::vector<std::string>& skip) {
  // The least-charged tenant in whole milliseconds; among equals, the first after the one served
  // last, in name order, wrapping around.
  if (queues_.empty()) return queues_.end();
  auto start = queues_.upper_bound(last_tenant_);
  if (start == queues_.end()) start = queues_.begin();
  auto it = queues_.end();
  int64_t least = std::numeric_limits<int64_t>::max();
  for (auto candidate = start;;) {
    const int64_t ms = absl::ToInt64Milliseconds(charged_[candidate->first]);
    if (ms < least && std::find(skip.begin(), skip.end(), candidate->first) == skip.end()) {
      least = ms;
      it = candidate;
    }
    if (++candidate == queues_.end()) candidate = queues_.begin();
    if (candidate == start) break;
  }
  return it;
}

std::unique_ptr<Work> Scheduler::Pop(
    std::map<std::string, std::deque<std::unique_ptr<Work>>>::iterator it) {
  std::unique_ptr<Work> head = std::move(it->second.front());
  it->second.pop_front();
  last_tenant_ = it->first;
  virtual_now_ = std::max(virtual_now_, charged_[it->first]);
  if (it->second.empty()) queues_.erase(it);
  --depth_;
  return head;
}

std::unique_ptr<Work> Scheduler::PopHead() { return Pop(LeastCharged({})); }

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

std::vector<std::unique_ptr<Work>> Scheduler::YieldBatch(const Slice& slice) {
  std::vector<std::unique_ptr<Work>> batch;
  absl::MutexLock lock(&mu_);
  if (depth_ == 0) return batch;                // (a draining scheduler still runs what is queued)
  const auto it = LeastCharged(slice.tenants);  // never a tenant already running here
  if (it == queues_.end()) return batch;
  // The running batch's head tenant, charged as if its batch ended now.
  const auto head = charged_.find(slice.tenants.front());
  const absl::Duration running =
      std::max(head != charged_.end() ? head->second : absl::ZeroDuration(), virtual_now_) +
      (absl::Now() - slice.began - slice.yielded) * slice.head_share;
  if (charged_[it->first] + options_.yield_after > running) return batch;
  batch.push_back(Pop(it));
  int64_t tokens = batch.front()->tokens;
  if (!batch.front()->batch_key.empty()) Gather(*batch.front(), &batch, &tokens);
  Publish();
  if (observer_ != nullptr) {
    observer_->Batch(model_, static_cast<int64_t>(batch.size()), tokens);
  }
  return batch;
}

void Scheduler::YieldFrom() {
  Slice* const slice = current_;
  if (slice == nullptr || slice->owner != this || slice->depth >= kMaxYieldDepth) return;
  if (absl::Now() - slice->since < options_.yield_after) return;
  std::vector<std::unique_ptr<Work>> batch = YieldBatch(*slice);
  if (batch.empty()) return;
  const absl::Time start = absl::Now();
  RunBatch(batch);
  slice->since = absl::Now();
  slice->yielded += slice->since - start;
}

void Scheduler::RunBatch(const std::vector<std::unique_ptr<Work>>& batch) {
  std::vector<Work*> live;
  for (const auto& w : batch) {
    const absl::Status s = w->KeepGoing();
    if (s.ok()) {
      live.push_back(w.get());
    } else {
      w->Reject(absl::Status(s.code(), absl::StrCat(s.message(), " before it ran")));
    }
  }
  if (live.empty()) return;
  Slice slice;
  slice.owner = this;
  slice.outer = current_;
  slice.began = slice.since = absl::Now();
  int64_t tokens = 0;
  for (Work* w : live) {
    w->scheduler_ = this;
    slice.tenants.push_back(w->tenant);
    tokens += std::max<int64_t>(w->tokens, 1);
  }
  slice.head_share =
      static_cast<double>(std::max<int64_t>(live.front()->tokens, 1)) / static_cast<double>(tokens);
  if (slice.outer != nullptr) {
    slice.depth = slice.outer->depth + 1;
    slice.tenants.insert(slice.tenants.end(), slice.outer->tenants.begin(),
                         slice.outer->tenants.end());
  }
  const std::shared_ptr<void> scope =
      slice.outer != nullptr && options_.yield_scope ? options_.yield_scope() : nullptr;
  current_ = &slice;
  live.front()->Run(live);
  current_ = slice.outer;
  Charge(live, absl::Now() - slice.began - slice.yielded);  // `batch` still owns the items
}

void Scheduler::Loop() {
  while (true) {
    std::vector<std::unique_ptr<Work>> batch = NextBatch();
    if (batch.empty()) return;
    RunBatch(batch);
  }
}

}  // namespace lensd
