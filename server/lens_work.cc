#include "server/lens_work.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/convert.h"

namespace lensd::server {

void Schedule(const CallInfo& info, std::shared_ptr<const Cancellation> cancellation,
              int64_t tokens, Work* work) {
  work->tenant = info.principal().tenant;
  work->deadline = info.deadline();
  work->cancellation = std::move(cancellation);
  work->tokens = tokens;
}

absl::StatusOr<Admitted> Admit(const ServerEnv& env, CallInfo& info, const std::string& model,
                               const v1::Input& input) {
  LENSD_RETURN_IF_ERROR(info.Admit(Role::kRead));
  if (model.empty()) return absl::InvalidArgumentError("model: name a loaded model");
  info.set_model(model);
  Admitted a;
  LENSD_ASSIGN_OR_RETURN(a.context.model, env.registry->Get(model));
  LENSD_ASSIGN_OR_RETURN(a.tokens,
                         ResolveInput(input, *a.context.model, env.limits, &a.text_bytes));
  LENSD_ASSIGN_OR_RETURN(std::unique_ptr<TenantLimiter::Ticket> ticket,
                         env.tenants->Acquire(info.principal().tenant));
  info.Hold(std::move(ticket));
  info.add_tokens(static_cast<int64_t>(a.tokens.size()));
  return a;
}

void Submit(const LoadedModel& model, std::unique_ptr<Work> work) {
  std::unique_ptr<Work> rejected;
  const absl::Status s = model.scheduler->Submit(std::move(work), &rejected);
  if (!s.ok()) rejected->Reject(s);
}

void UnaryWork::Run(absl::Span<Work* const> batch) {
  absl::Status s = KeepGoing();
  if (s.ok()) {
    s = fn_([this] {
      Yield();
      return KeepGoing();
    });
  }
  call_->Done(s);
}

void RunOnModel(const ServerEnv& env, UnaryCall* call, const std::string& model,
                const v1::Input& input,
                const std::function<absl::StatusOr<UnaryFn>(const Admitted&)>& prepare) {
  absl::StatusOr<Admitted> a = Admit(env, call->info(), model, input);
  absl::StatusOr<UnaryFn> fn = a.ok() ? prepare(*a) : a.status();
  if (!fn.ok()) {
    call->Done(fn.status());
    return;
  }
  const std::shared_ptr<const LoadedModel> loaded = a->context.model;
  const auto tokens = static_cast<int64_t>(a->tokens.size());
  auto work = std::make_unique<UnaryWork>(call, std::move(a->context), *std::move(fn));
  Schedule(call->info(), call->cancellation(), tokens, work.get());
  Submit(*loaded, std::move(work));
}

absl::Status WriteChunks(const std::string& name, const HostTensor& tensor, int64_t chunk_bytes,
                         const std::function<absl::Status(v1::TensorChunk)>& write) {
  const auto total = static_cast<int64_t>(tensor.data.size());
  int64_t offset = 0;
  do {
    const int64_t n = std::min(chunk_bytes, total - offset);
    v1::TensorChunk chunk;
    chunk.set_name(name);
    chunk.set_dtype(tensor.dtype);
    for (const int64_t d : tensor.shape) chunk.add_shape(d);
    chunk.set_offset(offset);
    chunk.set_data(tensor.data.substr(static_cast<size_t>(offset), static_cast<size_t>(n)));
    offset += n;
    chunk.set_last(offset >= total);
    if (absl::Status s = write(std::move(chunk)); !s.ok()) return s;
  } while (offset < total);
  return absl::OkStatus();
}

DecodeWork::DecodeWork(UnaryCall* call, const v1::DecodeRequest* request,
                       v1::DecodeResponse* response, WorkContext context, DecodeSpec spec,
                       double nats_to_bpb)
    : call_(call),
      request_(request),
      response_(response),
      context_(std::move(context)),
      spec_(std::move(spec)),
      nats_to_bpb_(nats_to_bpb) {
  batch_key = spec_.BatchKey();
}

void DecodeWork::Run(absl::Span<Work* const> batch) {
  std::vector<const DecodeSpec*> specs;
  std::vector<DecodeWork*> items;
  for (Work* w : batch) {
    items.push_back(static_cast<DecodeWork*>(w));
    specs.push_back(&items.back()->spec_);
  }
  // A batch goes on while any of its requests still wants the result.
  const auto keep_going = [&items]() {
    items.front()->Yield();  // between rows
    absl::Status last;
    for (const DecodeWork* w : items) {
      last = w->KeepGoing();
      if (last.ok()) return last;
    }
    return last;
  };
  absl::StatusOr<std::vector<DecodeOutput>> outputs =
      context_.model->model->Decode(specs, keep_going, nullptr);
  for (size_t i = 0; i < items.size(); ++i) {
    items[i]->Yield();  // between the answers' formatting
    if (outputs.ok()) {
      items[i]->Finish((*outputs)[i]);
    } else {
      items[i]->Finish(outputs.status());
    }
  }
}

void DecodeWork::Finish(const absl::StatusOr<DecodeOutput>& output) {
  if (!output.ok()) {
    call_->Done(output.status());
    return;
  }
  if (absl::Status s = KeepGoing(); !s.ok()) {
    call_->Done(s);
    return;
  }
  FillDecodeResponse(*request_, *output, *context_.model, spec_.tokens, nats_to_bpb_, response_);
  call_->info().set_batch_size(output->batch_size);
  call_->Done(absl::OkStatus());
}

StreamDecodeWork::StreamDecodeWork(StreamCall<v1::StreamDecodeResponse>* call,
                                   v1::DecodeRequest request, WorkContext context, DecodeSpec spec,
                                   double nats_to_bpb)
    : call_(call),
      request_(std::move(request)),
      context_(std::move(context)),
      spec_(std::move(spec)),
      nats_to_bpb_(nats_to_bpb) {}

void StreamDecodeWork::Run(absl::Span<Work* const> batch) {
  const DecodeSpec* spec = &spec_;
  const auto sink = [this](size_t, int64_t layer, const HostTensor& log_probs) {
    return WriteChunks(absl::StrCat("layer.", layer, ".log_probs"), log_probs, 1 << 20,
                       [this](v1::TensorChunk chunk) {
                         v1::StreamDecodeResponse message;
                         *message.mutable_log_probs() = std::move(chunk);
                         return call_->Write(message);
                       });
  };
  absl::StatusOr<std::vector<DecodeOutput>> outputs = context_.model->model->Decode(
      absl::MakeConstSpan(&spec, 1),
      [this] {
        Yield();  // between rows: others' queued calls need not wait for all of them
        return KeepGoing();
      },
      sink);
  if (!outputs.ok()) {
    call_->Done(outputs.status());
    return;
  }
  Yield();  // before the summary is formatted
  v1::StreamDecodeResponse summary;
  FillDecodeResponse(request_, outputs->front(), *context_.model, spec_.tokens, nats_to_bpb_,
                     summary.mutable_summary());
  call_->Done(call_->Write(summary));
}

GenerateWork::GenerateWork(StreamCall<v1::GenerateResponse>* call, WorkContext context,
                           GenerateSpec spec)
    : call_(call), context_(std::move(context)), spec_(std::move(spec)) {}

namespace {

// The last message's whole-continuation fields.
void FillGenerateEnd(const LoadedModel& model, const GenerateOutput& output, bool unedited,
                     v1::GenerateResponse* message) {
  const auto text = [&](const std::vector<int64_t>& tokens) {
    if (model.tokenizer == nullptr) return std::string();
    return model.tokenizer->Decode(std::vector<int32_t>(tokens.begin(), tokens.end()), false);
  };
  message->set_finish_reason(output.finish_reason);
  message->set_text(text(output.tokens));
  if (!unedited) return;
  for (const int64_t id : output.unedited_tokens) {
    FillToken(model, id, message->add_unedited_tokens());
  }
  message->set_unedited_text(text(output.unedited_tokens));
  message->set_unedited_finish_reason(output.unedited_finish_reason);
}

}  // namespace

void GenerateWork::Run(absl::Span<Work* const> batch) {
  const LoadedModel& model = *context_.model;
  // Each token is sent when the next one exists, so that the last message can say finished.
  int64_t pending = -1;
  int64_t pending_step = -1;
  const auto send = [&](bool finished, const GenerateOutput* output) {
    v1::GenerateResponse message;
    message.set_step(pending_step);
    FillToken(model, pending, message.mutable_token());
    message.set_finished(finished);
    if (output != nullptr) FillGenerateEnd(model, *output, spec_.also_unedited, &message);
    return call_->Write(message);
  };
  absl::StatusOr<GenerateOutput> output =
      model.model->Generate(spec_, [&](int64_t step, int64_t token) -> absl::Status {
        if (pending >= 0) {
          if (absl::Status s = send(false, nullptr); !s.ok()) return s;
        }
        pending = token;
        pending_step = step;
        Yield();  // between tokens
        return KeepGoing();
      });
  if (!output.ok()) {
    call_->Done(output.status());
    return;
  }
  call_->info().add_tokens(static_cast<int64_t>(output->tokens.size()));
  call_->Done(pending >= 0 ? send(true, &*output) : absl::OkStatus());
}

ActivationsWork::ActivationsWork(StreamCall<v1::TensorChunk>* call, WorkContext context,
                                 ActivationsSpec spec, int64_t chunk_bytes)
    : call_(call),
      context_(std::move(context)),
      spec_(std::move(spec)),
      chunk_bytes_(chunk_bytes) {}

void ActivationsWork::Run(absl::Span<Work* const> batch) {
  if (absl::Status s = KeepGoing(); !s.ok()) {
    call_->Done(s);
    return;
  }
  call_->Done(context_.model->model->Activations(
      spec_, [this](const std::string& name, const HostTensor& tensor) {
        Yield();  // between hook points
        return WriteChunks(name, tensor, chunk_bytes_,
                           [this](const v1::TensorChunk& chunk) { return call_->Write(chunk); });
      }));
}

}  // namespace lensd::server
