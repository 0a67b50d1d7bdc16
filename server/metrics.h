// Prometheus metrics, served on their own port (/metrics). Names follow the Prometheus
// conventions (lensd_*_total counters, *_seconds and *_bytes units).
//
//   lensd_requests_total{method,code}           finished RPCs
//   lensd_request_duration_seconds{method}      latency histogram (from receipt to finish)
//   lensd_queue_depth{model}                    requests waiting in a model's queue
//   lensd_batch_size{model}                     requests per batch run (histogram)
//   lensd_tokens_processed_total{model}         input tokens run through a model
//   lensd_model_memory_bytes{model,device}      weights and lenses of a loaded model
//   lensd_models_loaded                         loaded models
//   lensd_device_memory_budget_bytes{device}    each device's budget
//   lensd_device_memory_used_bytes{device}      bytes held on each device
//   lensd_device_memory_{total,free,allocated,reserved}_bytes{device}   the device's memory now
//                                               (total and free from the driver; allocated and
//                                               reserved by lensd's CUDA caching allocator)
//   lensd_jobs{state}                           jobs in the store by state (every tenant's)
//
// Model, device and job figures are read again before each scrape (OnScrape).
//
// Thread-safe.
#ifndef LENSD_SERVER_METRICS_H_
#define LENSD_SERVER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/jobs/job_store.h"
#include "core/model_registry.h"
#include "core/scheduler.h"
#include "server/metrics_http.h"

namespace lensd::server {

class Metrics : public SchedulerObserver {
 public:
  // Serves /metrics on `address` ("127.0.0.1:9464"; port 0 picks one); an empty address keeps
  // the metrics in process only. INVALID_ARGUMENT when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Metrics>> Create(const std::string& address);

  void Request(const std::string& method, const char* code, double seconds);
  void Tokens(const std::string& model, int64_t tokens);
  // Re-reads model memory, loaded models and device usage from the registry.
  void Refresh(const ModelRegistry& registry);
  // Sets lensd_jobs{state} (states missing from `counts` read 0).
  void Jobs(const std::map<JobState, int64_t>& counts);
  // Runs `refresh` before each /metrics answer is collected; an empty function stops it (and
  // waits for a scrape running it to finish, so what it uses may be freed afterwards).
  void OnScrape(std::function<void()> refresh);

  void QueueDepth(const std::string& model, int64_t depth) override;
  void Batch(const std::string& model, int64_t size, int64_t tokens) override;

  int port() const { return port_; }

 private:
  Metrics();
  prometheus::Family<prometheus::Gauge>& NewGauge(const std::string& name, const std::string& help);

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsHttp> http_;
  int port_ = 0;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& duration_;
  prometheus::Family<prometheus::Gauge>& queue_depth_;
  prometheus::Family<prometheus::Histogram>& batch_size_;
  prometheus::Family<prometheus::Counter>& tokens_;
  prometheus::Family<prometheus::Gauge>& model_memory_;
  prometheus::Gauge& models_loaded_;
  prometheus::Family<prometheus::Gauge>& budget_;
  prometheus::Family<prometheus::Gauge>& used_;
  prometheus::Family<prometheus::Gauge>& total_;
  prometheus::Family<prometheus::Gauge>& free_;
  prometheus::Family<prometheus::Gauge>& allocated_;
  prometheus::Family<prometheus::Gauge>& reserved_;
  prometheus::Family<prometheus::Gauge>& jobs_;
  absl::Mutex scrape_mu_;
  std::function<void()> on_scrape_ ABSL_GUARDED_BY(scrape_mu_);
  absl::Mutex mu_;
  // Every model memory series made so far; Refresh sets those of unloaded models to zero.
  std::map<std::string, prometheus::Gauge*> memory_series_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lensd::server

#endif  // LENSD_SERVER_METRICS_H_
