// The per-model work queue: a bounded queue that shares the model's worker time fairly among
// tenants, forms batches of compatible work (equal batch keys) up to a token budget or a short
// delay, and drops work whose deadline passed or whose client cancelled before it ran.
//
// Fair share of time, not of turns: each tenant is charged the worker time its work took (a
// batch's time split by its items' tokens), and the next batch starts with the queued tenant
// charged least, in whole milliseconds, round robin among equals. A tenant whose requests take
// 100 ms each waits while others' 5 ms requests catch up, instead of every other turn; a tenant
// that becomes active starts level with the last head's charge (no credit for idling).
//
// A long item yields between its units (a decode's rows, a generation's tokens): once it has run
// for `yield_after` and its tenant is ahead of a queued tenant by more than that, one batch of
// the queued tenant's work runs on the same thread before the long item goes on, so a light call
// waits for one unit of a hostile tenant's largest request, not all of it. That batch may yield
// in turn (to tenants running on none of the enclosing batches; at most 4 deep). The time a
// batch took is charged to its own tenants, not those of the batch it ran inside.
//
// Thread-safe. Work runs on the scheduler's own threads, never on the submitter's.
#ifndef LENSD_CORE_SCHEDULER_H_
#define LENSD_CORE_SCHEDULER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace lensd {

// A client's cancellation, set from the RPC layer (any thread) and read by the worker.
class Cancellation {
 public:
  void Cancel() { cancelled_.store(true, std::memory_order_release); }
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> cancelled_{false};
};

// Why a call stopped once its client cancelled it: DEADLINE_EXCEEDED when that came within a
// moment of the call's deadline (the client's clock reaches the deadline first and its gRPC
// cancels the stream; the server's copy of the deadline, relative to when the call arrived, ends
// a little later, by more on a loaded machine), CANCELLED otherwise.
absl::Status StoppedByClient(absl::Time deadline, absl::string_view what);

class Scheduler;

// One request's work. Subclasses hold the request and finish it (exactly once) from Run or
// Reject.
class Work {
 public:
  virtual ~Work() = default;

  // Runs `batch` (batch[0] == this; every item has this item's batch key and type) and finishes
  // every item in it.
  virtual void Run(absl::Span<Work* const> batch) = 0;
  // Finishes the item without running it (deadline passed, cancelled, queue shut down).
  virtual void Reject(const absl::Status& status) = 0;

  // OK while the work should go on; CANCELLED or DEADLINE_EXCEEDED once it should stop.
  absl::Status KeepGoing() const;
  // Called by Run between units of its work: may run other tenants' queued work first (see
  // above). Does nothing outside a scheduler's worker.
  void Yield() const;

  std::string tenant;
  int64_t tokens = 0;     // counts against the batch's token budget
  std::string batch_key;  // empty: never batched
  absl::Time deadline = absl::InfiniteFuture();
  std::shared_ptr<const Cancellation> cancellation;  // optional
  absl::Time enqueued;                               // set by Submit

 private:
  friend class Scheduler;
  Scheduler* scheduler_ = nullptr;  // the one running it, set before Run
};

// Receives the scheduler's gauges (Prometheus lives in server/).
class SchedulerObserver {
 public:
  virtual ~SchedulerObserver() = default;
  virtual void QueueDepth(const std::string& model, int64_t depth) = 0;
  virtual void Batch(const std::string& model, int64_t size, int64_t tokens) = 0;
};

struct SchedulerOptions {
  int workers = 1;                  // threads running this model's work
  int64_t max_queue = 256;          // queued items; more is RESOURCE_EXHAUSTED
  int64_t batch_max_tokens = 4096;  // tokens in one batch
  int64_t batch_max_size = 32;      // items in one batch
  // The head of a batch waits up to this long for company, but only while requests are arriving
  // concurrently (the previous batch had more than one item): a lone sequential client pays no
  // delay.
  absl::Duration batch_max_delay = absl::Milliseconds(2);
  // A running batch yields to a queued tenant charged at least this much less, once it has run
  // this long since it started or last yielded.
  absl::Duration yield_after = absl::Milliseconds(10);
  // Called on the worker thread before a batch run by a yield (optional): what it returns lives
  // while that batch runs. The engine uses it to give the batch the thread state a batch starts
  // with (its autograd mode), not that of the batch it runs inside.
  std::function<std::shared_ptr<void>()> yield_scope;
};

class Scheduler {
 public:
  // `observer` may be null; it must outlive the scheduler.
  Scheduler(std::string model, SchedulerOptions options, SchedulerObserver* observer);
  ~Scheduler();  // Drain()s
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues work. RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE once draining; on error
  // the work is returned unrun in *rejected (the caller finishes it).
  absl::Status Submit(std::unique_ptr<Work> work, std::unique_ptr<Work>* rejected);
  // Stops accepting work, runs everything already queued, waits for the workers and joins them.
  void Drain();
  // Stops accepting work, rejects everything queued with `reason` (at once, on this thread),
  // waits for the batches already running and joins the workers. What an unload does: it takes
  // as long as the longest running batch, not the queue.
  void Close(const absl::Status& reason);

  int64_t depth() const;

 private:
  friend class Work;  // Work::Yield
  struct Slice;       // the batch a worker thread is running

  void Loop();
  // Work::Yield on a worker of this scheduler.
  void YieldFrom();
  // Runs `batch`'s items still wanted (the others rejected) and charges their tenants.
  void RunBatch(const std::vector<std::unique_ptr<Work>>& batch);
  // Takes the next batch (its head from the least-charged tenant); empty once draining and idle.
  std::vector<std::unique_ptr<Work>> NextBatch();
  std::unique_ptr<Work> PopHead() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The least-charged queued tenant (ties: round robin), or queues_.end() when none is queued.
  std::map<std::string, std::deque<std::unique_ptr<Work>>>::iterator LeastCharged(
      const std::vector<std::string>& skip) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::unique_ptr<Work> Pop(std::map<std::string, std::deque<std::unique_ptr<Work>>>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A batch of another tenant's work for a yield from `slice`; empty when none is due.
  std::vector<std::unique_ptr<Work>> YieldBatch(const Slice& slice) ABSL_LOCKS_EXCLUDED(mu_);
  void Gather(const Work& head, std::vector<std::unique_ptr<Work>>* batch, int64_t* tokens)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t Compatible(const Work& head, int64_t tokens) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Publish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Charges the batch's tenants the time it ran, split by their items' tokens.
  void Charge(absl::Span<Work* const> batch, absl::Duration took) ABSL_LOCKS_EXCLUDED(mu_);
  // Joins the workers (once; later calls and concurrent ones return after the join).
  void Join();

  static thread_local Slice* current_;  // the innermost batch running on this worker thread

  const std::string model_;
  const SchedulerOptions options_;
  SchedulerObserver* const observer_;

  mutable absl::Mutex mu_;
  absl::CondVar changed_;
  std::map<std::string, std::deque<std::unique_ptr<Work>>> queues_ ABSL_GUARDED_BY(mu_);
  std::string last_tenant_ ABSL_GUARDED_BY(mu_);  // served last, for round robin among equals
  std::map<std::string, absl::Duration> charged_ ABSL_GUARDED_BY(mu_);  // worker time used
  // The charge of the last batch's head tenant (never decreases): where a tenant that becomes
  // active starts, so that idling earns no credit and the tenants in flight count too.
  absl::Duration virtual_now_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  int64_t last_batch_size_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t depth_ ABSL_GUARDED_BY(mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex join_mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(join_mu_);
};

}  // namespace lensd

#endif  // LENSD_CORE_SCHEDULER_H_
