// The torch.save writer: files read back by lensd's own reader and by torch.load itself (the
// reference, in the test venv) with the same keys, order, dtypes, shapes and values; every
// storage 64-byte aligned; bad input refused.
#include "core/engine/formats/torch_state_dict_writer.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/engine/formats/torch_state_dict.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lensd::engine {
namespace {

using ::testing::HasSubstr;

template <typename T>
std::string Bytes(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

std::vector<TensorToWrite> Sample() {
  std::vector<TensorToWrite> tensors;
  tensors.push_back({"0.weight", FileDtype::kF32, {2, 3}, Bytes<float>({1, 2, 3, 4, 5, -6.5f})});
  tensors.push_back({"0.bias", FileDtype::kF32, {2}, Bytes<float>({0.25f, -1})});
  tensors.push_back({"step", FileDtype::kI64, {}, Bytes<int64_t>({12345678901234})});
  // float16 1.0 and -2.0; bfloat16 1.0 and 3.0
  tensors.push_back({"half", FileDtype::kF16, {2}, Bytes<uint16_t>({0x3C00, 0xC000})});
  tensors.push_back({"bf16", FileDtype::kBF16, {1, 2}, Bytes<uint16_t>({0x3F80, 0x4040})});
  return tensors;
}

TEST(TorchStateDictWriter, ReadsBackWithLensdsReader) {
  auto file = WriteTorchStateDict(Sample(), "params");
  ASSERT_TRUE(file.ok()) << file.status();
  auto read = ReadTorchStateDict(*file);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 5u);
  const StoredTensor& w = read->at("0.weight");
  EXPECT_EQ(w.dtype, FileDtype::kF32);
  EXPECT_EQ(w.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(w.strides, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(std::string(w.storage), Sample()[0].data);
  // Storages start on 64-byte boundaries of the file, as torch.save writes them.
  EXPECT_EQ((w.storage.data() - file->data()) % 64, 0);
  EXPECT_EQ(read->at("step").shape, std::vector<int64_t>{});
  EXPECT_EQ(std::string(read->at("bf16").storage), Sample()[4].data);
}

TEST(TorchStateDictWriter, TorchLoadReadsTheSameTensors) {
  auto file = WriteTorchStateDict(Sample(), "params");
  ASSERT_TRUE(file.ok()) << file.status();
  const std::string path =
      (std::filesystem::temp_directory_path() / ("writer-" + std::to_string(getpid()) + ".pt"))
          .string();
  std::ofstream(path, std::ios::binary) << *file;
  const std::string script =
      "import torch, collections; d = torch.load('" + path +
      "'); assert type(d) is collections.OrderedDict; "
      "print(';'.join(f'{k}|{v.dtype}|{list(v.shape)}|{v.double().flatten().tolist()}' "
      "for k, v in d.items()))";
  FILE* pipe = popen((std::string(LENSD_PYTHON) + " -c \"" + script + "\" 2>&1").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buffer[4096];
  size_t n = 0;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  ASSERT_EQ(pclose(pipe), 0) << out;
  std::filesystem::remove(path);
  EXPECT_EQ(out,
            "0.weight|torch.float32|[2, 3]|[1.0, 2.0, 3.0, 4.0, 5.0, -6.5];"
            "0.bias|torch.float32|[2]|[0.25, -1.0];"
            "step|torch.int64|[]|[12345678901234.0];"
            "half|torch.float16|[2]|[1.0, -2.0];"
            "bf16|torch.bfloat16|[1, 2]|[1.0, 3.0]\n");
}

TEST(TorchStateDictWriter, RefusesBadInput) {
  std::vector<TensorToWrite> tensors = Sample();
  tensors[1].data.pop_back();
  EXPECT_THAT(WriteTorchStateDict(tensors, "params").status().message(),
              HasSubstr("\"0.bias\": 7 bytes for 2 elements of F32"));
  tensors = Sample();
  tensors[2].key = "0.weight";
  EXPECT_THAT(WriteTorchStateDict(tensors, "params").status().message(),
              HasSubstr("\"0.weight\" appears twice"));
}

}  // namespace
}  // namespace lensd::engine
