// lensctl against the real server: every subcommand has --help; decode --json agrees with the
// Decode RPC; sae encode, attribute and dla print tables and JSON; activations writes .safetensors
// and .npy files that the reference readers (safetensors and numpy, in the test venv) load, equal
// to what GetActivations streams; errors come back as "<CODE>: <message>" with exit status 1.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lensd/v1/lens.grpc.pb.h"
#include "lensd/v1/models.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/lensd_process.h"

namespace lensd::e2e {
namespace {

using ::testing::HasSubstr;
namespace v1 = ::lensd::v1;

class LensctlTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new LensdProcess({"--models=kjv-gpt2", "--saes=kjv-gpt2/res3-topk"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  // lensctl with the server's address and `token`.
  static std::pair<std::string, int> Lensctl(const std::string& args,
                                             const std::string& token = server_->read_token()) {
    return RunCommand("LENSD_ADDRESS=127.0.0.1:" + std::to_string(server_->port()) +
                      " LENSD_TOKEN=" + token + " " LENSCTL_BINARY " " + args);
  }
  static LensdProcess* server_;
};
LensdProcess* LensctlTest::server_ = nullptr;

TEST_F(LensctlTest, EverySubcommandHasHelp) {
  const auto [help, rc] = RunCommand(LENSCTL_BINARY " --help");
  ASSERT_EQ(rc, 0) << help;
  for (const char* command :
       {"models", "info",      "tokenize",    "decode", "generate",  "activations", "load",
        "unload", "load-lens", "unload-lens", "train",  "eval",      "compare",     "jobs",
        "job",    "watch",     "cancel",      "sae",    "attribute", "dla",         "patch"}) {
    EXPECT_THAT(help, HasSubstr(std::string("  ") + command + " "));
    const auto [text, status] = RunCommand(std::string(LENSCTL_BINARY " ") + command + " --help");
    EXPECT_EQ(status, 0) << command << ": " << text;
    EXPECT_THAT(text, HasSubstr("--")) << command;
  }
}

// sae encode and attribute: readable tables, --json equal to what the table shows, usage errors
// (exit 2) and RPC errors (exit 1) told apart.
TEST_F(LensctlTest, SaeEncodeAndAttribute) {
  auto [table, rc] = Lensctl("sae encode --top_k 3 'And God said'");
  ASSERT_EQ(rc, 0) << table;
  EXPECT_THAT(table, HasSubstr("res3-topk at blocks.3.hook_resid_pre"));
  EXPECT_THAT(table, HasSubstr("_God"));
  auto [json_text, json_rc] = Lensctl("sae encode --json --top_k 3 'And God said'");
  ASSERT_EQ(json_rc, 0) << json_text;
  const nlohmann::json encoded = nlohmann::json::parse(json_text, nullptr, false);
  ASSERT_TRUE(encoded.is_object()) << json_text;
  EXPECT_EQ(encoded["saes"][0]["offsets"].size(), encoded["tokens"].size() + 1);

  std::tie(table, rc) = Lensctl("attribute --top_n 4 'And God said, Let there be light'");
  ASSERT_EQ(rc, 0) << table;
  EXPECT_THAT(table, HasSubstr("EFFECT"));
  EXPECT_THAT(table, HasSubstr("res3-topk"));
  std::tie(json_text, rc) =
      Lensctl("attribute --json --top_n 4 'And God said, Let there be light'");
  ASSERT_EQ(rc, 0) << json_text;
  const nlohmann::json nodes = nlohmann::json::parse(json_text, nullptr, false);
  ASSERT_TRUE(nodes.is_object()) << json_text;
  ASSERT_EQ(nodes["nodes"].size(), 4U);
  EXPECT_EQ(nodes["nodes"][0]["moduleName"], "blocks.3.hook_resid_pre");

  std::tie(table, rc) = Lensctl("attribute --baseline nothing 'And God said'");
  EXPECT_EQ(rc, 2) << table;
  EXPECT_THAT(table, HasSubstr("--baseline"));
  std::tie(table, rc) = Lensctl("attribute --saes nope 'And God said'");
  EXPECT_EQ(rc, 1) << table;
  EXPECT_THAT(table, HasSubstr("NOT_FOUND"));
  std::tie(table, rc) = Lensctl("sae load res3-topk");  // a reader may not attach SAEs
  EXPECT_EQ(rc, 1) << table;
  EXPECT_THAT(table, HasSubstr("PERMISSION_DENIED"));
  std::tie(table, rc) = Lensctl("sae frobnicate x");
  EXPECT_EQ(rc, 2) << table;
  std::tie(table, rc) = Lensctl("dla --per_head 'And God said'");
  ASSERT_EQ(rc, 0) << table;
  EXPECT_THAT(table, HasSubstr("5_attn_head3"));
}

TEST_F(LensctlTest, DecodeJsonAgreesWithTheRpc) {
  const auto [out, rc] = Lensctl("decode --json --layers 2,5 --top_k 2 'And God said'");
  ASSERT_EQ(rc, 0) << out;
  const nlohmann::json json = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(json.is_object()) << out;
  v1::DecodeRequest r;
  r.set_model("kjv-gpt2");
  r.mutable_input()->set_text("And God said");
  r.add_layers(2);
  r.add_layers(5);
  r.set_top_k(2);
  v1::DecodeResponse expected;
  ASSERT_TRUE(v1::Lens::NewStub(server_->channel())
                  ->Decode(Context(server_->read_token()).get(), r, &expected)
                  .ok());
  ASSERT_EQ(json["rows"].size(), 3u);
  for (int row = 0; row < 3; ++row) {
    for (int p = 0; p < expected.rows(row).cells_size(); ++p) {
      const auto& cell = json["rows"][row]["cells"][p];
      EXPECT_EQ(std::stoll(cell["top"][0]["id"].get<std::string>()),
                expected.rows(row).cells(p).top(0).id());
    }
  }
}

// --ids sends token ids as they are (models without tokenizer.json): the same cells as the text
// that tokenizes to those ids.
TEST_F(LensctlTest, DecodeTakesTokenIds) {
  v1::TokenizeRequest t;
  t.set_model("kjv-gpt2");
  t.set_text("And God said");
  v1::TokenizeResponse tokens;
  ASSERT_TRUE(v1::Models::NewStub(server_->channel())
                  ->Tokenize(Context(server_->read_token()).get(), t, &tokens)
                  .ok());
  std::string ids;
  for (const auto& token : tokens.tokens())
    ids += (ids.empty() ? "" : ",") + std::to_string(token.id());
  const auto [by_ids, rc] = Lensctl("decode --json --top_k 1 --ids " + ids);
  ASSERT_EQ(rc, 0) << by_ids;
  const auto [by_text, text_rc] = Lensctl("decode --json --top_k 1 'And God said'");
  ASSERT_EQ(text_rc, 0) << by_text;
  const nlohmann::json a = nlohmann::json::parse(by_ids, nullptr, false);
  const nlohmann::json b = nlohmann::json::parse(by_text, nullptr, false);
  ASSERT_TRUE(a.is_object() && b.is_object()) << by_ids;
  EXPECT_EQ(a["rows"], b["rows"]);
  const auto [bad, bad_rc] = Lensctl("decode --ids 1,two,3");
  EXPECT_EQ(bad_rc, 2);
  EXPECT_NE(bad.find("--ids"), std::string::npos) << bad;
}

TEST_F(LensctlTest, ActivationsFilesLoadInTheReferenceReaders) {
  const std::string dir = testing::TempDir() + "/lensctl-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const std::string hooks = "blocks.2.hook_resid_post,blocks.0.attn.hook_pattern";
  auto [out, rc] = Lensctl("activations --hooks " + hooks + " --out " + dir +
                           "/a.safetensors 'In the beginning'");
  ASSERT_EQ(rc, 0) << out;
  std::tie(out, rc) = Lensctl("activations --hooks blocks.2.hook_resid_post --out " + dir +
                              "/a.npy 'In the beginning'");
  ASSERT_EQ(rc, 0) << out;
  // Each file's tensors as {name: [shape, sum]}, read by safetensors and numpy.
  std::tie(out, rc) =
      RunCommand(std::string(LENSD_PYTHON) + " -c \"" +
                 "import json, numpy, safetensors.numpy as st; "
                 "t = st.load_file('" +
                 dir +
                 "/a.safetensors'); "
                 "t['npy'] = numpy.load('" +
                 dir +
                 "/a.npy'); "
                 "print(json.dumps({k: [list(v.shape), float(v.astype('float64').sum())]"
                 " for k, v in t.items()}))\"");
  ASSERT_EQ(rc, 0) << out;
  const nlohmann::json files = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(files.is_object()) << out;

  v1::GetActivationsRequest request;
  request.set_model("kjv-gpt2");
  request.mutable_input()->set_text("In the beginning");
  request.add_hook_points("blocks.2.hook_resid_post");
  const auto context = Context(server_->read_token());
  auto reader = v1::Lens::NewStub(server_->channel())->GetActivations(context.get(), request);
  v1::TensorChunk chunk;
  std::string bytes;
  std::vector<int64_t> shape;
  while (reader->Read(&chunk)) {
    bytes += chunk.data();
    shape.assign(chunk.shape().begin(), chunk.shape().end());
  }
  ASSERT_TRUE(reader->Finish().ok());
  double sum = 0;
  for (size_t i = 0; i < bytes.size() / 4; ++i) {
    float v = 0;
    std::memcpy(&v, bytes.data() + i * 4, 4);
    sum += v;
  }
  for (const char* name : {"blocks.2.hook_resid_post", "npy"}) {
    ASSERT_TRUE(files.contains(name)) << out;
    EXPECT_EQ(files[name][0].get<std::vector<int64_t>>(), shape) << name;
    EXPECT_NEAR(files[name][1].get<double>(), sum, 1e-3) << name;
  }
  ASSERT_TRUE(files.contains("blocks.0.attn.hook_pattern"));
  EXPECT_EQ(files["blocks.0.attn.hook_pattern"][0].size(), 4u);  // [batch, heads, query, key]
  std::filesystem::remove_all(dir);
}

TEST_F(LensctlTest, TrainWatchesAJobToTheEndAndTheLensDecodes) {
  const std::string lens_dir = LENSD_E2E_REPOSITORY "/kjv-gpt2/lenses/cli-trained";
  std::filesystem::remove_all(lens_dir);
  std::string verses;
  for (int i = 0; i < 20; ++i) verses += "And God said, Let there be light: and there was light. ";
  auto [out, rc] = Lensctl(
      "train --lens_name cli-trained --num_steps 4 --seq_len 8 "
      "--tokens_per_step 16 --watch '" +
          verses + "'",
      server_->admin_token());
  ASSERT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("4/4 steps"));
  EXPECT_THAT(out, HasSubstr("succeeded"));
  const std::string id = out.substr(out.find("job-"), 20);
  std::tie(out, rc) = Lensctl("jobs", server_->admin_token());
  EXPECT_EQ(rc, 0);
  EXPECT_THAT(out, HasSubstr(id));
  std::tie(out, rc) = Lensctl("cancel " + id, server_->admin_token());
  EXPECT_EQ(rc, 1);
  EXPECT_THAT(out, HasSubstr("FAILED_PRECONDITION"));
  std::tie(out, rc) = Lensctl("decode --lens cli-trained --layers 2 'And God said'");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("cli-trained lens on kjv-gpt2"));
  std::filesystem::remove_all(lens_dir);
}

TEST_F(LensctlTest, SteerAblateAndPatch) {
  const std::string vector = ::testing::TempDir() + "/steer.json";
  {
    std::ofstream out(vector);
    out << "[";
    for (int i = 0; i < 128; ++i) out << (i ? "," : "") << (i % 7) - 3;
    out << "]";
  }
  const auto [plain, rc0] = Lensctl("decode --json --layers 0 --top_k 1 And God said");
  ASSERT_EQ(rc0, 0) << plain;
  const auto [steered, rc1] =
      Lensctl("decode --json --layers 0 --top_k 1 --steer 'blocks.2.hook_resid_pre@" + vector +
              "*8' And God said");
  ASSERT_EQ(rc1, 0) << steered;
  EXPECT_NE(plain, steered) << "steering by 8 x v changed nothing";
  const auto [ablated, rc2] = Lensctl(
      "decode --json --top_k 1 --ablate 'blocks.0.attn.hook_z:0,1;blocks.1.hook_mlp_out' "
      "And God said");
  ASSERT_EQ(rc2, 0) << ablated;
  EXPECT_NE(plain, ablated);
  const auto [bad, rc3] = Lensctl("decode --ablate 'blocks.0.attn.hook_z:9' And God said");
  EXPECT_EQ(rc3, 1) << bad;
  EXPECT_THAT(bad, HasSubstr("INVALID_ARGUMENT: interventions[0].heads"));
  const auto [grid, rc4] = Lensctl(
      "patch --clean 'And God said, Let there be light' --corrupted 'And God said, Let there be "
      "darkness' --sweeps resid_pre,z_all_pos");
  ASSERT_EQ(rc4, 0) << grid;
  EXPECT_THAT(grid, HasSubstr("resid_pre (normalized effect)"));
  EXPECT_THAT(grid, HasSubstr("z_all_pos (normalized effect)"));
  EXPECT_THAT(grid, HasSubstr("head3"));
  const auto [json, rc5] = Lensctl(
      "patch --json --clean 'And God said' --corrupted 'And Moses said' --sweeps mlp_out_all_pos");
  ASSERT_EQ(rc5, 0) << json;
  EXPECT_THAT(json, HasSubstr("\"name\":\"mlp_out_all_pos\""));
  // The same sweep as a job: submitted, followed to its end, its grids printed as the call's.
  auto [submitted, rc6] = Lensctl(
      "patch --job --clean 'And God said, Let there be light' --corrupted 'And God said, Let "
      "there be darkness' --sweeps resid_pre,z_all_pos",
      server_->admin_token());
  ASSERT_EQ(rc6, 0) << submitted;
  ASSERT_THAT(submitted, HasSubstr("submitted job-"));
  const std::string id = submitted.substr(submitted.find("job-"), 20);
  auto [watched, rc7] = Lensctl("watch " + id, server_->admin_token());
  ASSERT_EQ(rc7, 0) << watched;
  EXPECT_THAT(watched, HasSubstr("patched runs"));
  EXPECT_THAT(watched, HasSubstr("succeeded"));
  auto [shown, rc8] = Lensctl("job " + id, server_->admin_token());
  ASSERT_EQ(rc8, 0) << shown;
  EXPECT_EQ(shown.substr(shown.find("resid_pre (normalized effect)")),
            grid.substr(grid.find("resid_pre (normalized effect)")));
}

TEST_F(LensctlTest, ErrorsPrintTheCodeAndExitWithOne) {
  auto [out, rc] = Lensctl("models", "");
  EXPECT_EQ(rc, 1);
  EXPECT_THAT(out, HasSubstr("UNAUTHENTICATED"));
  std::tie(out, rc) = Lensctl("decode --layers 9 'And God said'");
  EXPECT_EQ(rc, 1);
  EXPECT_THAT(out, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(out, HasSubstr("layers"));
  std::tie(out, rc) = Lensctl("load --model kjv-gpt2");  // a read token
  EXPECT_EQ(rc, 1);
  EXPECT_THAT(out, HasSubstr("PERMISSION_DENIED"));
  std::tie(out, rc) = Lensctl("decode --no_such_flag 1 'x'");
  EXPECT_EQ(rc, 2) << out;
  std::tie(out, rc) = Lensctl("decode");  // <prompt> is required
  EXPECT_EQ(rc, 2) << out;
  // [<text> ...] is optional: train with --data alone reaches the server (which has no data root).
  std::tie(out, rc) = Lensctl("train --lens_name x --data kjv.jsonl", server_->admin_token());
  EXPECT_EQ(rc, 1) << out;
  EXPECT_THAT(out, HasSubstr("data"));
}

TEST_F(LensctlTest, CompareShowsLensesSideBySide) {
  auto [out, rc] = Lensctl("compare --lenses logit,logit 'And God said'");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("logit lens"));
  EXPECT_THAT(out, HasSubstr("output"));
  EXPECT_THAT(out, HasSubstr("last top-1"));
  std::tie(out, rc) = Lensctl("compare --lenses logit,missing 'And God said'");
  EXPECT_EQ(rc, 1);
  EXPECT_THAT(out, HasSubstr("NOT_FOUND"));
}

}  // namespace
}  // namespace lensd::e2e
