// A restricted unpickler for torch.save files (torch-free): it builds plain values (None, bools,
// integers, floats, strings, bytes, tuples, lists, dicts) and never runs code. Calls to globals
// (REDUCE, NEWOBJ) go through a caller-supplied function that accepts only what it knows, such as
// collections.OrderedDict or torch._utils._rebuild_tensor_v2.
// Pure function of its input; thread-safe.
#ifndef LENSD_CORE_ENGINE_FORMATS_PICKLE_READER_H_
#define LENSD_CORE_ENGINE_FORMATS_PICKLE_READER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lensd::engine {

struct PickleValue {
  enum class Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kBytes,
    kTuple,
    kList,
    kDict,
    kGlobal,
    kPersistentId,
    kObject
  };
  Kind kind = Kind::kNone;
  bool boolean = false;
  int64_t integer = 0;
  double floating = 0;
  std::string text;                       // kString, kBytes; "module.name" for kGlobal and kObject
  std::vector<const PickleValue*> items;  // kTuple, kList; kPersistentId: {pid}; kObject: args
  std::vector<std::pair<const PickleValue*, const PickleValue*>> entries;  // kDict
};

// All values of one unpickling; pointers between them stay valid while it lives.
class PickleArena {
 public:
  PickleValue* New(PickleValue::Kind kind);
  size_t size() const { return values_.size(); }

 private:
  std::vector<std::unique_ptr<PickleValue>> values_;
};

// Decides what calling `global` ("module.name") with `args` (a tuple) gives; an error refuses the
// file.
using PickleCall = std::function<absl::StatusOr<const PickleValue*>(
    absl::string_view global, const PickleValue& args, PickleArena* arena)>;

// Runs the pickle program in `bytes` (protocols 0-5 opcodes that torch.save emits). Returns the
// root value; INVALID_ARGUMENT for malformed input or a refused call.
absl::StatusOr<const PickleValue*> Unpickle(absl::string_view bytes, const PickleCall& call,
                                            PickleArena* arena);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_FORMATS_PICKLE_READER_H_
