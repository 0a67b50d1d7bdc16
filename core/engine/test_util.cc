#include "core/engine/test_util.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lensd::engine::testing {
namespace {

const char* FileDtypeName(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return "F32";
    case at::kHalf:
      return "F16";
    case at::kBFloat16:
      return "BF16";
    case at::kLong:
      return "I64";
    default:
      return "U8";
  }
}

}  // namespace

size_t WriteSafetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& [name, tensor] : tensors) {
    const at::Tensor t = tensor.contiguous();
    const size_t begin = data.size();
    data.append(static_cast<const char*>(t.data_ptr()),
                static_cast<size_t>(t.numel() * t.element_size()));
    header[name] = {{"dtype", FileDtypeName(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {begin, data.size()}}};
  }
  std::string text = header.dump();
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');  // the reference writer pads to 8
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xFF));
  out << text << data;
  return 8 + text.size() + data.size();
}

std::string TempDir(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string test =
      info != nullptr ? std::string(info->test_suite_name()) + "." + info->name() : "";
  // Per process (the same test binary may run twice at once), removed when the process exits.
  struct ProcessDir {
    std::filesystem::path path =
        std::filesystem::temp_directory_path() / "lensd-tests" / std::to_string(::getpid());
    ~ProcessDir() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  };
  static const ProcessDir process;
  std::filesystem::path dir = process.path / test / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::map<std::string, at::Tensor> WriteTinyGpt2(const std::string& dir, at::ScalarType dtype) {
  const int64_t d = 8, v = 16, ctx = 8, mlp = 32;
  at::manual_seed(7);
  const auto r = [&](const std::vector<int64_t>& shape) {
    return (at::randn(shape) * 0.3).to(dtype);
  };
  std::map<std::string, at::Tensor> t = {{"transformer.wte.weight", r({v, d})},
                                         {"transformer.wpe.weight", r({ctx, d})},
                                         {"transformer.h.0.ln_1.weight", r({d})},
                                         {"transformer.h.0.ln_1.bias", r({d})},
                                         {"transformer.h.0.attn.c_attn.weight", r({d, 3 * d})},
                                         {"transformer.h.0.attn.c_attn.bias", r({3 * d})},
                                         {"transformer.h.0.attn.c_proj.weight", r({d, d})},
                                         {"transformer.h.0.attn.c_proj.bias", r({d})},
                                         {"transformer.h.0.ln_2.weight", r({d})},
                                         {"transformer.h.0.ln_2.bias", r({d})},
                                         {"transformer.h.0.mlp.c_fc.weight", r({d, mlp})},
                                         {"transformer.h.0.mlp.c_fc.bias", r({mlp})},
                                         {"transformer.h.0.mlp.c_proj.weight", r({mlp, d})},
                                         {"transformer.h.0.mlp.c_proj.bias", r({d})},
                                         {"transformer.ln_f.weight", r({d})},
                                         {"transformer.ln_f.bias", r({d})}};
  WriteText(dir + "/config.json", nlohmann::json{{"model_type", "gpt2"},
                                                 {"vocab_size", v},
                                                 {"n_embd", d},
                                                 {"n_layer", 1},
                                                 {"n_head", 2},
                                                 {"n_positions", ctx}}
                                      .dump());
  WriteSafetensors(dir + "/model.safetensors", t);
  return t;
}

}  // namespace lensd::engine::testing
