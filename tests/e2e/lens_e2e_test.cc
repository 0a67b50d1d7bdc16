// Tuned lenses through the server: LoadLens and UnloadLens (admin only), Decode through a tuned
// lens equal to the engine called directly with the same lens folder (written by tuned-lens's own
// save()), and StreamDecode's full log-probabilities consistent with its own summary.
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "core/engine/served/engine_factory.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lensd/v1/lens.grpc.pb.h"
#include "lensd/v1/models.grpc.pb.h"
#include "tests/e2e/lensd_process.h"

namespace lensd::e2e {
namespace {

using ::testing::HasSubstr;
namespace v1 = ::lensd::v1;

constexpr char kLens[] = "random-tuned";
constexpr char kPrompt[] = "And God said, Let there be light: and there was light.";

class LensTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new LensdProcess({"--models=kjv-gpt2"}); }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->Stop(), 0) << server_->Log();
    delete server_;
  }
  std::unique_ptr<v1::Models::Stub> models() { return v1::Models::NewStub(server_->channel()); }
  std::unique_ptr<v1::Lens::Stub> lens() { return v1::Lens::NewStub(server_->channel()); }
  grpc::Status LoadLens(const std::string& token, const std::string& name, v1::LensInfo* info) {
    v1::LoadLensRequest load;
    load.set_model("kjv-gpt2");
    load.set_lens(name);
    return models()->LoadLens(Context(token).get(), load, info);
  }
  grpc::Status UnloadLens(const std::string& name) {
    v1::UnloadLensRequest unload;
    unload.set_model("kjv-gpt2");
    unload.set_lens(name);
    v1::UnloadLensResponse freed;
    return models()->UnloadLens(Context(server_->admin_token()).get(), unload, &freed);
  }
  static v1::DecodeRequest TunedDecode() {
    v1::DecodeRequest r;
    r.set_model("kjv-gpt2");
    r.set_lens(kLens);
    r.mutable_input()->set_text(kPrompt);
    r.set_top_k(3);
    return r;
  }

  static LensdProcess* server_;
};
LensdProcess* LensTest::server_ = nullptr;

TEST_F(LensTest, LoadDecodeThroughAndUnloadATunedLens) {
  v1::LensInfo info;
  grpc::Status s = LoadLens(server_->read_token(), kLens, &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  s = LoadLens(server_->admin_token(), "no-such-lens", &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr(kLens));  // names the lenses there are
  s = LoadLens(server_->admin_token(), kLens, &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.name(), kLens);
  EXPECT_EQ(info.kind(), "tuned");
  EXPECT_EQ(info.memory_bytes(), 6 * (128 * 128 + 128) * 4);  // 6 float32 translators
  EXPECT_EQ(LoadLens(server_->admin_token(), kLens, &info).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  v1::DecodeResponse response;
  s = lens()->Decode(Context(server_->read_token()).get(), TunedDecode(), &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.lens(), kLens);

  auto direct = engine::LoadServedModel(LENSD_E2E_REPOSITORY "/kjv-gpt2", {});
  ASSERT_TRUE(direct.ok()) << direct.status();
  ASSERT_TRUE(
      (*direct)->LoadLens(kLens, LENSD_E2E_REPOSITORY "/kjv-gpt2/lenses/random-tuned").ok());
  DecodeSpec spec;
  for (const auto& t : response.input_tokens()) spec.tokens.push_back(t.id());
  spec.lens = kLens;
  spec.top_k = 3;
  const DecodeSpec* one = &spec;
  auto expected = (*direct)->Decode(absl::MakeConstSpan(&one, 1), nullptr, nullptr);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const DecodeOutput& e = expected->front();
  const size_t columns = e.positions.size();
  ASSERT_EQ(response.rows_size(), 7);
  for (int r = 0; r < response.rows_size(); ++r) {
    for (size_t p = 0; p < columns; ++p) {
      const v1::DecodeCell& cell = response.rows(r).cells(static_cast<int>(p));
      const size_t i = static_cast<size_t>(r) * columns + p;
      EXPECT_EQ(cell.top(0).id(), e.top_ids[i * 3]);
      EXPECT_NEAR(cell.top(0).prob(), e.top_probs[i * 3], 1e-5);
      EXPECT_NEAR(cell.entropy(), e.entropy[i], 1e-4);
      EXPECT_NEAR(cell.forward_kl(), e.forward_kl[i], 1e-4);
    }
  }

  // The logit lens cannot be unloaded; the tuned one can, once.
  EXPECT_EQ(UnloadLens("logit").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(UnloadLens(kLens).ok());
  EXPECT_EQ(UnloadLens(kLens).error_code(), grpc::StatusCode::NOT_FOUND);
  s = lens()->Decode(Context(server_->read_token()).get(), TunedDecode(), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("lens"));
}

// Reassembles StreamDecode's chunks: tensor name -> float32 values.
std::map<std::string, std::vector<float>> Collect(
    grpc::ClientReaderInterface<v1::StreamDecodeResponse>* reader, v1::DecodeResponse* summary,
    std::map<std::string, std::vector<int64_t>>* shapes) {
  std::map<std::string, std::vector<float>> tensors;
  v1::StreamDecodeResponse message;
  while (reader->Read(&message)) {
    if (message.has_summary()) {
      *summary = message.summary();
      continue;
    }
    const v1::TensorChunk& chunk = message.log_probs();
    EXPECT_EQ(chunk.dtype(), "float32");
    (*shapes)[chunk.name()].assign(chunk.shape().begin(), chunk.shape().end());
    std::vector<float>& values = tensors[chunk.name()];
    int64_t elements = 1;
    for (const int64_t d : chunk.shape()) elements *= d;
    values.resize(static_cast<size_t>(elements));
    EXPECT_EQ(chunk.offset() % 4, 0);
    EXPECT_LE(chunk.offset() + static_cast<int64_t>(chunk.data().size()), elements * 4);
    std::memcpy(reinterpret_cast<char*>(values.data()) + chunk.offset(), chunk.data().data(),
                chunk.data().size());
  }
  return tensors;
}

TEST_F(LensTest, StreamDecodeSendsEveryRowsLogProbabilitiesAndTheSummary) {
  v1::LensInfo info;
  const grpc::Status loaded = LoadLens(server_->admin_token(), kLens, &info);
  ASSERT_TRUE(loaded.ok() || loaded.error_code() == grpc::StatusCode::ALREADY_EXISTS);
  v1::DecodeRequest request = TunedDecode();
  request.add_layers(1);
  request.add_layers(4);
  const auto context = Context(server_->read_token());
  auto reader = lens()->StreamDecode(context.get(), request);
  v1::DecodeResponse summary;
  std::map<std::string, std::vector<int64_t>> shapes;
  const auto tensors = Collect(reader.get(), &summary, &shapes);
  const grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(summary.rows_size(), 3);  // layers 1 and 4, then the output
  ASSERT_EQ(tensors.size(), 3u);
  for (const v1::DecodeRow& row : summary.rows()) {
    const std::string name = "layer." + std::to_string(row.layer()) + ".log_probs";
    ASSERT_TRUE(tensors.count(name)) << name;
    const std::vector<int64_t>& shape = shapes.at(name);
    ASSERT_EQ(shape.size(), 2u);
    EXPECT_EQ(shape[0], row.cells_size());
    EXPECT_EQ(shape[1], 4096);
    const std::vector<float>& log_probs = tensors.at(name);
    for (int p = 0; p < row.cells_size(); ++p) {
      const float* values = log_probs.data() + static_cast<size_t>(p) * 4096;
      double total = 0;
      int64_t best = 0;
      for (int64_t v = 0; v < 4096; ++v) {
        total += std::exp(static_cast<double>(values[v]));
        if (values[v] > values[best]) best = v;
      }
      EXPECT_NEAR(total, 1.0, 1e-4);
      const v1::DecodeCell& cell = row.cells(p);
      EXPECT_EQ(cell.top(0).id(), best) << name << " position " << p;
      EXPECT_NEAR(std::exp(values[best]), cell.top(0).prob(), 1e-5);
      double entropy = 0;
      for (int64_t v = 0; v < 4096; ++v) entropy -= std::exp(values[v]) * values[v];
      EXPECT_NEAR(entropy, cell.entropy(), 1e-3);
    }
  }
}

}  // namespace
}  // namespace lensd::e2e
