#include "clients/cli/output.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "core/engine/formats/safetensors_writer.h"

namespace lensctl {
namespace {

size_t CodePoints(const std::string& s) {
  size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

std::string Pad(const std::string& text, size_t width) {
  const size_t n = CodePoints(text);
  return text + std::string(n < width ? width - n : 1, ' ');
}

}  // namespace

std::string Readable(const std::string& text, size_t width) {
  std::string s = absl::StrReplaceAll(text, {{" ", "_"}, {"\n", "\\n"}, {"\t", "\\t"}});
  if (CodePoints(s) <= width) return s;
  std::string cut;
  size_t count = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && ++count > width - 1) break;
    cut.push_back(s[i]);
  }
  return cut + "\xE2\x80\xA6";
}

std::string DecodeTable(const lensd::v1::DecodeResponse& r, size_t width) {
  std::ostringstream out;
  const size_t label = 8;
  out << Pad("layer", label);
  std::vector<int64_t> positions;
  if (r.rows_size() > 0) {
    for (const auto& cell : r.rows(0).cells()) positions.push_back(cell.position());
  }
  for (const int64_t p : positions)
    out << Pad(Readable(r.input_tokens(static_cast<int>(p)).text(), width), width + 7);
  out << "\n";
  for (const auto& row : r.rows()) {
    out << Pad(row.is_output() ? "output" : std::to_string(row.layer()), label);
    for (const auto& cell : row.cells()) {
      if (cell.top_size() == 0) {
        out << Pad("-", width + 7);
        continue;
      }
      out << Pad(
          absl::StrFormat("%s %.2f", Readable(cell.top(0).text(), width), cell.top(0).prob()),
          width + 7);
    }
    out << "\n";
  }
  out << "(" << r.lens() << " lens on " << r.model() << "; rows: the stream entering each block, "
      << "then the model's output; cells: top-1 token and its probability)\n";
  return out.str();
}

std::string SideBySideTable(const std::vector<lensd::v1::DecodeResponse>& responses, size_t width) {
  std::ostringstream out;
  const size_t label = 8, cell = width + 7, number = 9;
  out << Pad("", label);
  for (const auto& r : responses) out << Pad(r.lens() + " lens", cell + 2 * number + 2);
  out << "\n" << Pad("layer", label);
  for (size_t i = 0; i < responses.size(); ++i) {
    out << Pad("last top-1", cell) << Pad("KL", number) << Pad("CE", number) << "  ";
  }
  out << "\n";
  const int rows = responses.empty() ? 0 : responses[0].rows_size();
  for (int i = 0; i < rows; ++i) {
    const auto& first = responses[0].rows(i);
    out << Pad(first.is_output() ? "output" : std::to_string(first.layer()), label);
    for (const auto& r : responses) {
      const auto& row = r.rows(i);
      double kl = 0, ce = 0;
      int scored = 0;
      for (int k = 0; k < row.cells_size(); ++k) {
        kl += row.cells(k).forward_kl();
        // The next input token; the last position's target (EOS) is not part of the prompt.
        if (k + 1 < row.cells_size() && row.cells(k).target() >= 0) {
          ce += row.cells(k).cross_entropy();
          ++scored;
        }
      }
      const auto& last = row.cells(row.cells_size() - 1);
      out << Pad(last.top_size() == 0
                     ? "-"
                     : absl::StrFormat("%s %.2f", Readable(last.top(0).text(), width),
                                       last.top(0).prob()),
                 cell)
          << Pad(absl::StrFormat("%.3f", kl / std::max(row.cells_size(), 1)), number)
          << Pad(absl::StrFormat("%.3f", ce / std::max(scored, 1)), number) << "  ";
    }
    out << "\n";
  }
  const std::string units = responses.empty() ? "" : responses[0].units();
  out << "(rows: the stream entering each block, then the model's output; last top-1: the most "
         "likely next token after the prompt; KL: mean KL(model output || lens), CE: mean "
         "next-token cross-entropy, in "
      << units << ")\n";
  return out.str();
}

std::string WriteTensors(const std::string& path, const std::map<std::string, Assembled>& tensors) {
  static const std::map<std::string, std::pair<std::string, std::string>> kTypes = {
      {"float32", {"F32", "<f4"}},
      {"float16", {"F16", "<f2"}},
      {"bfloat16", {"BF16", ""}},
      {"int64", {"I64", "<i8"}},
      {"int32", {"I32", "<i4"}}};
  const bool npy = path.size() > 4 && path.substr(path.size() - 4) == ".npy";
  if (npy) {
    if (tensors.size() != 1)
      return "a .npy file holds one tensor; ask for one hook or write .safetensors";
    const Assembled& t = tensors.begin()->second;
    const auto type = kTypes.find(t.dtype);
    if (type == kTypes.end() || type->second.second.empty()) {
      return absl::StrCat("numpy has no ", t.dtype, "; write .safetensors or ask for float32");
    }
    std::vector<std::string> dims;
    dims.reserve(t.shape.size());
    for (const int64_t d : t.shape) dims.push_back(std::to_string(d));
    std::string header =
        absl::StrCat("{'descr': '", type->second.second, "', 'fortran_order': False, 'shape': (",
                     absl::StrJoin(dims, ", "), dims.size() == 1 ? ",), }" : "), }");
    // Magic, version 1.0, and a header padded with spaces to a multiple of 64 bytes.
    const size_t total = 10 + header.size() + 1;
    header += std::string((64 - total % 64) % 64, ' ') + "\n";
    std::ofstream f(path, std::ios::binary);
    const uint16_t len = static_cast<uint16_t>(header.size());
    f << "\x93NUMPY" << '\x01' << '\x00';
    f.put(static_cast<char>(len & 0xFF));
    f.put(static_cast<char>(len >> 8));
    f << header << t.data;
    return f ? "" : absl::StrCat("cannot write ", path);
  }
  std::vector<lensd::engine::TensorToWrite> list;
  for (const auto& [name, t] : tensors) {
    const std::optional<lensd::engine::FileDtype> dtype = lensd::engine::DtypeFromName(t.dtype);
    if (!dtype.has_value()) return absl::StrCat("unknown dtype ", t.dtype);
    list.push_back({name, *dtype, t.shape, t.data});
  }
  const absl::StatusOr<std::string> bytes = lensd::engine::SafetensorsBytes(list, {});
  if (!bytes.ok()) return std::string(bytes.status().message());
  std::ofstream f(path, std::ios::binary);
  f << *bytes;
  return f ? "" : absl::StrCat("cannot write ", path);
}

std::string JsonOf(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::MessageToJsonString(message, &json);
  return json;
}

std::string PatchingTables(const lensd::v1::ActivationPatchingResult& result) {
  std::string out = absl::StrFormat(
      "clean metric %.4f, corrupted %.4f; %d patched runs in %d passes\n", result.clean_metric(),
      result.corrupted_metric(), result.patched_runs(), result.forward_passes());
  for (const lensd::v1::PatchingGrid& g : result.grids()) {
    const int64_t layers = g.shape(0);
    const int64_t columns = g.shape_size() > 1 ? g.shape(1) : 1;
    const int64_t heads = g.shape_size() > 2 ? g.shape(2) : 1;
    const bool by_position = g.dims_size() > 1 && g.dims(1) == "position";
    absl::StrAppend(&out, "\n", g.name(), " (normalized effect)\n",
                    absl::StrFormat("%6s", "layer"));
    for (int64_t j = 0; j < columns; ++j) {
      const std::string label =
          by_position
              ? Readable(result.clean_tokens(static_cast<int>(result.positions(j))).text(), 8)
          : g.shape_size() > 1 ? absl::StrCat("head", j)
                               : "all";
      absl::StrAppendFormat(&out, " %9s", label);
    }
    absl::StrAppend(&out, "\n");
    for (int64_t l = layers - 1; l >= 0; --l) {
      absl::StrAppendFormat(&out, "%6d", result.layers(static_cast<int>(l)));
      for (int64_t j = 0; j < columns; ++j) {
        int64_t best = 0;
        for (int64_t h = 1; h < heads; ++h) {
          if (std::abs(g.normalized((l * columns + j) * heads + h)) >
              std::abs(g.normalized((l * columns + j) * heads + best))) {
            best = h;
          }
        }
        const float v = g.normalized(static_cast<int>((l * columns + j) * heads + best));
        if (heads > 1) {
          absl::StrAppendFormat(&out, " h%-2d%6.2f", best, v);
        } else {
          absl::StrAppendFormat(&out, " %9.2f", v);
        }
      }
      absl::StrAppend(&out, "\n");
    }
  }
  return out;
}

}  // namespace lensctl
