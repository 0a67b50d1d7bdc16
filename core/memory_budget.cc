#include "core/memory_budget.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace lensd {

std::string HumanBytes(int64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (std::abs(value) >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  return unit == 0 ? absl::StrCat(bytes, " B") : absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

absl::StatusOr<int64_t> ParseBytes(const std::string& text, int64_t total) {
  static const std::pair<const char*, double> kSuffixes[] = {{"tib", 1099511627776.0},
                                                             {"gib", 1073741824.0},
                                                             {"mib", 1048576.0},
                                                             {"kib", 1024.0},
                                                             {"tb", 1e12},
                                                             {"gb", 1e9},
                                                             {"mb", 1e6},
                                                             {"kb", 1e3},
                                                             {"b", 1.0}};
  std::string s = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  double scale = 0;  // 0: no suffix
  for (const auto& [suffix, factor] : kSuffixes) {
    if (absl::EndsWith(s, suffix)) {
      s.resize(s.size() - std::char_traits<char>::length(suffix));
      scale = factor;
      break;
    }
  }
  double value = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(s), &value) || value < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", text, "\" is not a size (examples: 16GiB, 512MiB, 2e9, or 0.8 for a fraction)"));
  }
  if (scale == 0) scale = value <= 1.0 ? static_cast<double>(total) : 1.0;
  return static_cast<int64_t>(value * scale);
}

absl::Status MemoryBudget::Reserve(const std::string& device, int64_t bytes,
                                   const std::string& what) {
  const auto budget = budgets_.find(device);
  if (budget == budgets_.end()) {
    std::string known;
    for (const auto& [name, b] : budgets_) absl::StrAppend(&known, known.empty() ? "" : ", ", name);
    return absl::NotFoundError(
        absl::StrCat("device ", device, " is not served (devices: ", known, ")"));
  }
  absl::MutexLock lock(&mu_);
  int64_t& used = used_[device];
  if (used + bytes > budget->second) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, " needs ", HumanBytes(bytes), " on ", device, ", but only ",
                     HumanBytes(std::max<int64_t>(0, budget->second - used)), " of its ",
                     HumanBytes(budget->second), " budget is free (", HumanBytes(used),
                     " in use); unload something or raise --memory_budget"));
  }
  used += bytes;
  return absl::OkStatus();
}

void MemoryBudget::Charge(const std::string& device, int64_t bytes) {
  absl::MutexLock lock(&mu_);
  used_[device] += bytes;
}

void MemoryBudget::Release(const std::string& device, int64_t bytes) {
  absl::MutexLock lock(&mu_);
  int64_t& used = used_[device];
  used = std::max<int64_t>(0, used - bytes);
}

std::vector<MemoryBudget::Device> MemoryBudget::Devices() const {
  absl::MutexLock lock(&mu_);
  std::vector<Device> out;
  for (const auto& [name, budget] : budgets_) {
    const auto used = used_.find(name);
    out.push_back({name, budget, used == used_.end() ? 0 : used->second});
  }
  return out;
}

}  // namespace lensd
