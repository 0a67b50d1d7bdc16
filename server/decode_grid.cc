#include "server/decode_grid.h"

#include <cstring>
#include <string>
#include <vector>

#include "server/convert.h"

namespace lensd::server {
namespace {

template <typename T>
void Pack(const std::vector<T>& values, const char* dtype, const std::vector<int64_t>& shape,
          v1::Tensor* out) {
  out->set_dtype(dtype);
  for (const int64_t d : shape) out->add_shape(d);
  std::string* data = out->mutable_data();
  data->resize(values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(data->data(), values.data(), data->size());
}

// A statistic in nats, scaled to the response's units.
std::vector<float> Scaled(const std::vector<float>& values, double scale) {
  if (scale == 1.0) return values;
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    out[i] = static_cast<float>(values[i] * scale);
  }
  return out;
}

}  // namespace

void FillDecodeGrid(const DecodeOutput& out, const LoadedModel& model, double scale,
                    v1::DecodeGrid* grid) {
  const auto rows = static_cast<int64_t>(out.rows.size());
  const auto columns = static_cast<int64_t>(out.positions.size());
  grid->set_num_layers(model.model->info().num_layers);
  grid->mutable_layers()->Assign(out.rows.begin(), out.rows.end());
  grid->mutable_positions()->Assign(out.positions.begin(), out.positions.end());
  grid->mutable_targets()->Assign(out.targets.begin(), out.targets.end());
  const int64_t k = out.top_ids.empty() ? 0 : out.top_k;
  Pack(out.top_ids, "int64", {rows, columns, k}, grid->mutable_top_ids());
  Pack(out.top_probs, "float32", {rows, columns, k}, grid->mutable_top_probs());
  auto& texts = *grid->mutable_token_texts();
  for (const int64_t id : out.top_ids) {
    if (texts.count(id) == 0) texts[id] = TokenText(model, id);
  }
  auto& statistics = *grid->mutable_statistics();
  const auto in_units = [&](const char* name, const std::vector<float>& values) {
    if (!values.empty()) Pack(Scaled(values, scale), "float32", {rows, columns}, &statistics[name]);
  };
  const auto as_is = [&](const char* name, const std::vector<float>& values) {
    if (!values.empty()) Pack(values, "float32", {rows, columns}, &statistics[name]);
  };
  in_units("entropy", out.entropy);
  in_units("forward_kl", out.forward_kl);
  in_units("cross_entropy", out.cross_entropy);
  if (!out.target_rank.empty()) {
    Pack(out.target_rank, "int64", {rows, columns}, &statistics["target_rank"]);
  }
  as_is("max_probability", out.max_probability);
  as_is("log_prob_diff", out.log_prob_diff);
  in_units("kl_to_compare", out.kl_to_other);
  in_units("symmetric_kl_to_compare", out.symmetric_kl);
  as_is("max_abs_prob_diff_to_compare", out.max_abs_prob_diff);
}

}  // namespace lensd::server
