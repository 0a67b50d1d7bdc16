#include "server/metrics.h"

#include <exception>
#include <vector>

#include "absl/strings/str_cat.h"

namespace lensd::server {
namespace {

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* const kBuckets = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  return *kBuckets;
}

const prometheus::Histogram::BucketBoundaries& BatchBuckets() {
  static const auto* const kBuckets =
      new prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64};
  return *kBuckets;
}

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("lensd_requests_total")
                    .Help("Finished RPCs by method and gRPC status code")
                    .Register(*registry_)),
      duration_(prometheus::BuildHistogram()
                    .Name("lensd_request_duration_seconds")
                    .Help("RPC latency from receipt to finish, in seconds")
                    .Register(*registry_)),
      queue_depth_(prometheus::BuildGauge()
                       .Name("lensd_queue_depth")
                       .Help("Requests waiting in a model's queue")
                       .Register(*registry_)),
      batch_size_(prometheus::BuildHistogram()
                      .Name("lensd_batch_size")
                      .Help("Requests run together in one batch")
                      .Register(*registry_)),
      tokens_(prometheus::BuildCounter()
                  .Name("lensd_tokens_processed_total")
                  .Help("Input tokens run through a model")
                  .Register(*registry_)),
      model_memory_(prometheus::BuildGauge()
                        .Name("lensd_model_memory_bytes")
                        .Help("Bytes of weights and lenses of a loaded model on its device")
                        .Register(*registry_)),
      models_loaded_(prometheus::BuildGauge()
                         .Name("lensd_models_loaded")
                         .Help("Models loaded and serving")
                         .Register(*registry_)
                         .Add({})),
      budget_(prometheus::BuildGauge()
                  .Name("lensd_device_memory_budget_bytes")
                  .Help("Bytes of weights a device may hold")
                  .Register(*registry_)),
      used_(prometheus::BuildGauge()
                .Name("lensd_device_memory_used_bytes")
                .Help("Bytes of weights a device holds")
                .Register(*registry_)),
      total_(NewGauge("lensd_device_memory_total_bytes", "Physical memory of a device")),
      free_(NewGauge("lensd_device_memory_free_bytes", "Free memory of a device, all processes")),
      allocated_(NewGauge("lensd_device_memory_allocated_bytes",
                          "Bytes of live tensors lensd holds on a device (CUDA)")),
      reserved_(NewGauge("lensd_device_memory_reserved_bytes",
                         "Bytes lensd's allocator holds on a device, its cache included (CUDA)")),
      jobs_(NewGauge("lensd_jobs", "Jobs in the job store by state, every tenant's")) {}

prometheus::Family<prometheus::Gauge>& Metrics::NewGauge(const std::string& name,
                                                         const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(*registry_);
}

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Create(const std::string& address) {
  std::unique_ptr<Metrics> metrics(new Metrics());
  if (address.empty()) return metrics;
  Metrics* raw = metrics.get();
  auto http = MetricsHttp::Start(address, metrics->registry_, [raw] {
    absl::MutexLock lock(&raw->scrape_mu_);
    if (raw->on_scrape_) raw->on_scrape_();
  });
  if (!http.ok()) return http.status();
  metrics->http_ = *std::move(http);
  metrics->port_ = metrics->http_->port();
  return metrics;
}

void Metrics::Request(const std::string& method, const char* code, double seconds) {
  requests_.Add({{"method", method}, {"code", code}}).Increment();
  duration_.Add({{"method", method}}, LatencyBuckets()).Observe(seconds);
}

void Metrics::OnScrape(std::function<void()> refresh) {
  absl::MutexLock lock(&scrape_mu_);
  on_scrape_ = std::move(refresh);
}

void Metrics::Jobs(const std::map<JobState, int64_t>& counts) {
  for (const JobState state : {JobState::kQueued, JobState::kRunning, JobState::kSucceeded,
                               JobState::kFailed, JobState::kCancelled}) {
    const auto it = counts.find(state);
    jobs_.Add({{"state", JobStateName(state)}})
        .Set(static_cast<double>(it == counts.end() ? 0 : it->second));
  }
}

void Metrics::Tokens(const std::string& model, int64_t tokens) {
  tokens_.Add({{"model", model}}).Increment(static_cast<double>(tokens));
}

void Metrics::QueueDepth(const std::string& model, int64_t depth) {
  queue_depth_.Add({{"model", model}}).Set(static_cast<double>(depth));
}

void Metrics::Batch(const std::string& model, int64_t size, int64_t tokens) {
  batch_size_.Add({{"model", model}}, BatchBuckets()).Observe(static_cast<double>(size));
}

void Metrics::Refresh(const ModelRegistry& registry) {
  absl::MutexLock lock(&mu_);
  int loaded = 0;
  // Unloaded models drop to zero rather than disappearing, so a dashboard sees the unload.
  for (auto& [key, gauge] : memory_series_) gauge->Set(0);
  for (const ModelStatus& m : registry.List()) {
    if (m.loaded == nullptr) continue;
    ++loaded;
    int64_t bytes = m.loaded->model->info().parameter_bytes;
    for (const LensDescription& l : m.lenses) bytes += l.bytes;
    prometheus::Gauge& gauge = model_memory_.Add({{"model", m.name}, {"device", m.loaded->device}});
    gauge.Set(static_cast<double>(bytes));
    memory_series_[absl::StrCat(m.name, "@", m.loaded->device)] = &gauge;
  }
  models_loaded_.Set(loaded);
  for (const MemoryBudget::Device& d : registry.Devices()) {
    budget_.Add({{"device", d.name}}).Set(static_cast<double>(d.budget));
    used_.Add({{"device", d.name}}).Set(static_cast<double>(d.used));
    const DeviceMemoryReading now = registry.DeviceMemory(d.name);
    total_.Add({{"device", d.name}}).Set(static_cast<double>(now.total));
    free_.Add({{"device", d.name}}).Set(static_cast<double>(now.free));
    allocated_.Add({{"device", d.name}}).Set(static_cast<double>(now.allocated));
    reserved_.Add({{"device", d.name}}).Set(static_cast<double>(now.reserved));
  }
}

}  // namespace lensd::server
