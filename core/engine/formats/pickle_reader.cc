#include "core/engine/formats/pickle_reader.h"

#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace lensd::engine {

PickleValue* PickleArena::New(PickleValue::Kind kind) {
  values_.push_back(std::make_unique<PickleValue>());
  values_.back()->kind = kind;
  return values_.back().get();
}

namespace {

using Kind = PickleValue::Kind;

class Machine {
 public:
  Machine(absl::string_view bytes, const PickleCall& call, PickleArena* arena)
      : bytes_(bytes), call_(call), arena_(arena) {}

  absl::StatusOr<const PickleValue*> Run();

 private:
  absl::Status Bad(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("pickle: ", what, " at byte ", pos_));
  }
  bool Take(size_t n, absl::string_view* out) {
    if (bytes_.size() - pos_ < n) return false;
    *out = bytes_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  bool Unsigned(size_t n, uint64_t* out) {
    absl::string_view b;
    if (!Take(n, &b)) return false;
    *out = 0;
    for (size_t i = 0; i < n; ++i)
      *out |= static_cast<uint64_t>(static_cast<unsigned char>(b[i])) << (8 * i);
    return true;
  }
  bool Line(absl::string_view* out) {
    const size_t end = bytes_.find('\n', pos_);
    if (end == absl::string_view::npos) return false;
    *out = bytes_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return true;
  }
  PickleValue* Push(Kind kind) {
    PickleValue* v = arena_->New(kind);
    stack_.push_back(v);
    return v;
  }
  absl::StatusOr<PickleValue*> Pop() {
    if (stack_.empty() || (!marks_.empty() && marks_.back() == stack_.size())) {
      return Bad("stack underflow");
    }
    PickleValue* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  // The values above the last mark, removed from the stack with the mark.
  absl::StatusOr<std::vector<PickleValue*>> PopToMark() {
    if (marks_.empty()) return Bad("no mark");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<PickleValue*> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark),
                                    stack_.end());
    stack_.resize(mark);
    return items;
  }
  absl::Status PushSizedString(size_t length_bytes, Kind kind) {
    uint64_t n = 0;
    absl::string_view text;
    if (!Unsigned(length_bytes, &n) || n > bytes_.size() || !Take(static_cast<size_t>(n), &text)) {
      return Bad("string runs off the end");
    }
    Push(kind)->text = std::string(text);
    return absl::OkStatus();
  }
  absl::Status Call(PickleValue* callable, PickleValue* args) {
    if (callable->kind != Kind::kGlobal || args->kind != Kind::kTuple) {
      return Bad("call of something that is not a global with a tuple of arguments");
    }
    absl::StatusOr<const PickleValue*> result = call_(callable->text, *args, arena_);
    if (!result.ok()) return result.status();
    stack_.push_back(const_cast<PickleValue*>(*result));
    return absl::OkStatus();
  }
  absl::Status Step(unsigned char op);

  absl::string_view bytes_;
  size_t pos_ = 0;
  const PickleCall& call_;
  PickleArena* arena_;
  std::vector<PickleValue*> stack_;
  std::vector<size_t> marks_;
  absl::flat_hash_map<uint64_t, PickleValue*> memo_;
  bool stopped_ = false;
};

absl::Status Machine::Step(unsigned char op) {
  uint64_t n = 0;
  absl::string_view text;
  switch (op) {
    case 0x80:  // PROTO
    case 0x95:  // FRAME (8-byte length, ignored)
      if (!Unsigned(op == 0x80 ? 1 : 8, &n)) return Bad("truncated header");
      return absl::OkStatus();
    case '.':
      stopped_ = true;
      return absl::OkStatus();
    case '(':
      marks_.push_back(stack_.size());
      return absl::OkStatus();
    case '0':
      return Pop().status();
    case '1':
      return PopToMark().status();
    case '2':
      if (stack_.empty()) return Bad("DUP on an empty stack");
      stack_.push_back(stack_.back());
      return absl::OkStatus();
    case 'N':
      Push(Kind::kNone);
      return absl::OkStatus();
    case 0x88:
    case 0x89:
      Push(Kind::kBool)->boolean = op == 0x88;
      return absl::OkStatus();
    case 'J':
      if (!Unsigned(4, &n)) return Bad("truncated BININT");
      Push(Kind::kInt)->integer = static_cast<int32_t>(static_cast<uint32_t>(n));
      return absl::OkStatus();
    case 'K':
    case 'M':
      if (!Unsigned(op == 'K' ? 1 : 2, &n)) return Bad("truncated integer");
      Push(Kind::kInt)->integer = static_cast<int64_t>(n);
      return absl::OkStatus();
    case 0x8a:    // LONG1
    case 0x8b: {  // LONG4
      if (!Unsigned(op == 0x8a ? 1 : 4, &n) || n > 8 || !Take(static_cast<size_t>(n), &text)) {
        return Bad("long integer too large or truncated");
      }
      uint64_t v = 0;
      for (size_t i = 0; i < n; ++i)
        v |= static_cast<uint64_t>(static_cast<unsigned char>(text[i])) << (8 * i);
      if (n > 0 && n < 8 && (static_cast<unsigned char>(text[n - 1]) & 0x80))
        v |= ~uint64_t{0} << (8 * n);
      Push(Kind::kInt)->integer = static_cast<int64_t>(v);
      return absl::OkStatus();
    }
    case 'I':
    case 'L': {
      int64_t v = 0;
      if (!Line(&text)) return Bad("truncated INT");
      if (!text.empty() && text.back() == 'L') text.remove_suffix(1);
      if (text == "01" || text == "00") {
        Push(Kind::kBool)->boolean = text == "01";
        return absl::OkStatus();
      }
      if (!absl::SimpleAtoi(text, &v)) return Bad("malformed INT");
      Push(Kind::kInt)->integer = v;
      return absl::OkStatus();
    }
    case 'G': {
      if (!Take(8, &text)) return Bad("truncated BINFLOAT");
      uint64_t bits = 0;
      for (int i = 0; i < 8; ++i)
        bits = (bits << 8) | static_cast<unsigned char>(text[static_cast<size_t>(i)]);
      double d = 0;
      std::memcpy(&d, &bits, sizeof(d));
      Push(Kind::kFloat)->floating = d;
      return absl::OkStatus();
    }
    case 'X':
      return PushSizedString(4, Kind::kString);
    case 0x8c:
      return PushSizedString(1, Kind::kString);
    case 0x8d:
      return PushSizedString(8, Kind::kString);
    case 'T':
      return PushSizedString(4, Kind::kString);
    case 'U':
      return PushSizedString(1, Kind::kString);
    case 'B':
      return PushSizedString(4, Kind::kBytes);
    case 'C':
      return PushSizedString(1, Kind::kBytes);
    case 0x8e:
      return PushSizedString(8, Kind::kBytes);
    case ')':
      Push(Kind::kTuple);
      return absl::OkStatus();
    case ']':
      Push(Kind::kList);
      return absl::OkStatus();
    case '}':
      Push(Kind::kDict);
      return absl::OkStatus();
    case 't':
    case 'l': {
      absl::StatusOr<std::vector<PickleValue*>> items = PopToMark();
      if (!items.ok()) return items.status();
      PickleValue* v = Push(op == 't' ? Kind::kTuple : Kind::kList);
      v->items.assign(items->begin(), items->end());
      return absl::OkStatus();
    }
    case 0x85:
    case 0x86:
    case 0x87: {
      const size_t count = op - 0x84u;
      std::vector<const PickleValue*> items(count);
      for (size_t i = count; i > 0; --i) {
        absl::StatusOr<PickleValue*> item = Pop();
        if (!item.ok()) return item.status();
        items[i - 1] = *item;
      }
      Push(Kind::kTuple)->items = std::move(items);
      return absl::OkStatus();
    }
    case 'a':
    case 'e': {
      std::vector<PickleValue*> items;
      if (op == 'a') {
        absl::StatusOr<PickleValue*> item = Pop();
        if (!item.ok()) return item.status();
        items.push_back(*item);
      } else {
        absl::StatusOr<std::vector<PickleValue*>> popped = PopToMark();
        if (!popped.ok()) return popped.status();
        items = *std::move(popped);
      }
      if (stack_.empty() || stack_.back()->kind != Kind::kList) return Bad("APPEND to a non-list");
      stack_.back()->items.insert(stack_.back()->items.end(), items.begin(), items.end());
      return absl::OkStatus();
    }
    case 'd':
    case 's':
    case 'u': {
      std::vector<PickleValue*> items;
      if (op == 's') {
        absl::StatusOr<PickleValue*> value = Pop();
        absl::StatusOr<PickleValue*> key = value.ok() ? Pop() : value;
        if (!key.ok()) return key.status();
        items = {*key, *value};
      } else {
        absl::StatusOr<std::vector<PickleValue*>> popped = PopToMark();
        if (!popped.ok()) return popped.status();
        items = *std::move(popped);
      }
      if (items.size() % 2 != 0) return Bad("odd number of dict items");
      PickleValue* dict = op == 'd' ? Push(Kind::kDict) : nullptr;
      if (dict == nullptr) {
        if (stack_.empty() || stack_.back()->kind != Kind::kDict)
          return Bad("SETITEM on a non-dict");
        dict = stack_.back();
      }
      for (size_t i = 0; i < items.size(); i += 2)
        dict->entries.emplace_back(items[i], items[i + 1]);
      return absl::OkStatus();
    }
    case 'c': {
      absl::string_view module, name;
      if (!Line(&module) || !Line(&name)) return Bad("truncated GLOBAL");
      Push(Kind::kGlobal)->text = absl::StrCat(module, ".", name);
      return absl::OkStatus();
    }
    case 0x93: {  // STACK_GLOBAL
      absl::StatusOr<PickleValue*> name = Pop();
      absl::StatusOr<PickleValue*> module = name.ok() ? Pop() : name;
      if (!module.ok()) return module.status();
      if ((*module)->kind != Kind::kString || (*name)->kind != Kind::kString) {
        return Bad("STACK_GLOBAL of non-strings");
      }
      Push(Kind::kGlobal)->text = absl::StrCat((*module)->text, ".", (*name)->text);
      return absl::OkStatus();
    }
    case 'R':
    case 0x81:    // NEWOBJ
    case 0x92: {  // NEWOBJ_EX (keyword arguments dropped)
      if (op == 0x92 && !Pop().ok()) return Bad("truncated NEWOBJ_EX");
      absl::StatusOr<PickleValue*> args = Pop();
      absl::StatusOr<PickleValue*> callable = args.ok() ? Pop() : args;
      if (!callable.ok()) return callable.status();
      return Call(*callable, *args);
    }
    case 'b': {  // BUILD: state for the object below; dicts keep their entries
      absl::StatusOr<PickleValue*> state = Pop();
      if (!state.ok()) return state.status();
      if (stack_.empty()) return Bad("BUILD on an empty stack");
      return absl::OkStatus();
    }
    case 'Q': {
      absl::StatusOr<PickleValue*> pid = Pop();
      if (!pid.ok()) return pid.status();
      Push(Kind::kPersistentId)->items = {*pid};
      return absl::OkStatus();
    }
    case 'q':
    case 'r':
    case 0x94:
      if (op != 0x94 && !Unsigned(op == 'q' ? 1 : 4, &n)) return Bad("truncated PUT");
      if (op == 0x94) n = memo_.size();
      if (stack_.empty()) return Bad("PUT on an empty stack");
      memo_[n] = stack_.back();
      return absl::OkStatus();
    case 'h':
    case 'j': {
      if (!Unsigned(op == 'h' ? 1 : 4, &n)) return Bad("truncated GET");
      const auto it = memo_.find(n);
      if (it == memo_.end()) return Bad(absl::StrCat("GET of unset memo entry ", n));
      stack_.push_back(it->second);
      return absl::OkStatus();
    }
    default:
      return Bad(absl::StrFormat("unsupported opcode 0x%02x", op));
  }
}

absl::StatusOr<const PickleValue*> Machine::Run() {
  while (!stopped_) {
    if (pos_ >= bytes_.size()) return Bad("no STOP opcode (truncated)");
    const auto op = static_cast<unsigned char>(bytes_[pos_++]);
    if (absl::Status s = Step(op); !s.ok()) return s;
    if (stack_.size() > bytes_.size()) return Bad("stack larger than the input");
  }
  if (stack_.size() != 1 || !marks_.empty()) return Bad("STOP with an unbalanced stack");
  return stack_.back();
}

}  // namespace

absl::StatusOr<const PickleValue*> Unpickle(absl::string_view bytes, const PickleCall& call,
                                            PickleArena* arena) {
  Machine machine(bytes, call, arena);
  return machine.Run();
}

}  // namespace lensd::engine
