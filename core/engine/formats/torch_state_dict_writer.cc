#include "core/engine/formats/torch_state_dict_writer.h"

#include <zlib.h>

#include <set>

#include "absl/strings/str_cat.h"

namespace lensd::engine {
namespace {

constexpr uint32_t kMax32 = 0xFFFFFFFFu;
constexpr uint64_t kAlignment = 64;  // torch.save aligns every record's data

void Put16(std::string* out, uint16_t v) {
  for (int i = 0; i < 2; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void Put32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void Put64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

const char* StorageClass(FileDtype dtype) {
  switch (dtype) {
    case FileDtype::kF64:
      return "DoubleStorage";
    case FileDtype::kF32:
      return "FloatStorage";
    case FileDtype::kF16:
      return "HalfStorage";
    case FileDtype::kBF16:
      return "BFloat16Storage";
    case FileDtype::kI64:
      return "LongStorage";
    case FileDtype::kI32:
      return "IntStorage";
    case FileDtype::kI16:
      return "ShortStorage";
    case FileDtype::kI8:
      return "CharStorage";
    case FileDtype::kU8:
      return "ByteStorage";
    case FileDtype::kBool:
      return "BoolStorage";
  }
  return nullptr;
}

// Pickle protocol 2, the subset torch.save's data.pkl uses.
class Pickler {
 public:
  Pickler() { out_ = std::string("\x80\x02", 2); }
  void Global(const std::string& module, const std::string& name) {
    out_ += absl::StrCat("c", module, "\n", name, "\n");
  }
  void Mark() { out_ += '('; }
  void Tuple() { out_ += 't'; }
  void EmptyTuple() { out_ += ')'; }
  void Reduce() { out_ += 'R'; }
  void PersistentId() { out_ += 'Q'; }
  void SetItems() { out_ += 'u'; }
  void False() { out_ += '\x89'; }
  void Stop() { out_ += '.'; }
  void String(const std::string& s) {
    out_ += 'X';
    Put32(&out_, static_cast<uint32_t>(s.size()));
    out_ += s;
  }
  void Int(int64_t v) {
    if (v >= INT32_MIN && v <= INT32_MAX) {
      out_ += 'J';
      Put32(&out_, static_cast<uint32_t>(static_cast<int32_t>(v)));
      return;
    }
    out_ += '\x8a';  // LONG1: 8 little-endian two's-complement bytes
    out_ += '\x08';
    Put64(&out_, static_cast<uint64_t>(v));
  }
  void Ints(const std::vector<int64_t>& values) {
    Mark();
    for (const int64_t v : values) Int(v);
    Tuple();
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// data.pkl: OrderedDict([(key, _rebuild_tensor_v2(storage, 0, shape, strides, False,
// OrderedDict())), ...]) with storage = persistent id ("storage", torch.<T>Storage, "<i>", "cpu",
// numel).
std::string DataPickle(const std::vector<TensorToWrite>& tensors) {
  Pickler p;
  p.Global("collections", "OrderedDict");
  p.EmptyTuple();
  p.Reduce();
  p.Mark();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorToWrite& t = tensors[i];
    std::vector<int64_t> strides(t.shape.size(), 1);
    int64_t numel = 1;
    for (size_t d = t.shape.size(); d-- > 0;) {
      strides[d] = numel;
      numel *= t.shape[d];
    }
    p.String(t.key);
    p.Global("torch._utils", "_rebuild_tensor_v2");
    p.Mark();
    p.Mark();
    p.String("storage");
    p.Global("torch", StorageClass(t.dtype));
    p.String(std::to_string(i));
    p.String("cpu");
    p.Int(numel);
    p.Tuple();
    p.PersistentId();
    p.Int(0);
    p.Ints(t.shape);
    p.Ints(strides);
    p.False();
    p.Global("collections", "OrderedDict");
    p.EmptyTuple();
    p.Reduce();
    p.Tuple();
    p.Reduce();
  }
  p.SetItems();
  p.Stop();
  return p.Take();
}

struct Record {
  std::string name;
  const std::string* data;
  uint64_t header_offset = 0;
  uint32_t crc = 0;
};

class ZipWriter {
 public:
  void Add(std::string name, const std::string* data) {
    Record r{std::move(name), data};
    r.header_offset = out_.size();
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t done = 0; done < data->size();) {
      const size_t n = std::min<size_t>(data->size() - done, 1u << 30);
      crc = crc32(crc, reinterpret_cast<const Bytef*>(data->data() + done), static_cast<uInt>(n));
      done += n;
    }
    r.crc = static_cast<uint32_t>(crc);
    const bool big = data->size() >= kMax32;
    const uint64_t zip64_bytes = big ? 20 : 0;
    const uint64_t before_pad = out_.size() + 30 + r.name.size() + zip64_bytes + 4;
    const uint64_t pad = (kAlignment - before_pad % kAlignment) % kAlignment;
    Put32(&out_, 0x04034b50);
    Put16(&out_, big ? 45 : 20);
    Put16(&out_, 0);     // flags
    Put16(&out_, 0);     // stored
    Put16(&out_, 0);     // time
    Put16(&out_, 0x21);  // date: 1980-01-01
    Put32(&out_, r.crc);
    Put32(&out_, big ? kMax32 : static_cast<uint32_t>(data->size()));
    Put32(&out_, big ? kMax32 : static_cast<uint32_t>(data->size()));
    Put16(&out_, static_cast<uint16_t>(r.name.size()));
    Put16(&out_, static_cast<uint16_t>(zip64_bytes + 4 + pad));
    out_ += r.name;
    if (big) {
      Put16(&out_, 0x0001);
      Put16(&out_, 16);
      Put64(&out_, data->size());
      Put64(&out_, data->size());
    }
    Put16(&out_, 0x4246);  // "FB": padding, as torch.save writes it
    Put16(&out_, static_cast<uint16_t>(pad));
    out_.append(pad, 'Z');
    out_ += *data;
    records_.push_back(std::move(r));
  }

  std::string Finish() {
    const uint64_t directory_offset = out_.size();
    for (const Record& r : records_) {
      const bool big = r.data->size() >= kMax32 || r.header_offset >= kMax32;
      Put32(&out_, 0x02014b50);
      Put16(&out_, big ? 45 : 20);
      Put16(&out_, big ? 45 : 20);
      Put16(&out_, 0);
      Put16(&out_, 0);
      Put16(&out_, 0);
      Put16(&out_, 0x21);
      Put32(&out_, r.crc);
      Put32(&out_, big ? kMax32 : static_cast<uint32_t>(r.data->size()));
      Put32(&out_, big ? kMax32 : static_cast<uint32_t>(r.data->size()));
      Put16(&out_, static_cast<uint16_t>(r.name.size()));
      Put16(&out_, big ? 28 : 0);
      Put16(&out_, 0);  // comment
      Put16(&out_, 0);  // disk
      Put16(&out_, 0);  // internal attributes
      Put32(&out_, 0);  // external attributes
      Put32(&out_, big ? kMax32 : static_cast<uint32_t>(r.header_offset));
      out_ += r.name;
      if (big) {
        Put16(&out_, 0x0001);
        Put16(&out_, 24);
        Put64(&out_, r.data->size());
        Put64(&out_, r.data->size());
        Put64(&out_, r.header_offset);
      }
    }
    const uint64_t directory_size = out_.size() - directory_offset;
    const uint64_t entries = records_.size();
    const bool big = directory_offset >= kMax32 || directory_size >= kMax32 || entries >= 0xFFFF;
    if (big) {
      const uint64_t record_offset = out_.size();
      Put32(&out_, 0x06064b50);
      Put64(&out_, 44);
      Put16(&out_, 45);
      Put16(&out_, 45);
      Put32(&out_, 0);
      Put32(&out_, 0);
      Put64(&out_, entries);
      Put64(&out_, entries);
      Put64(&out_, directory_size);
      Put64(&out_, directory_offset);
      Put32(&out_, 0x07064b50);
      Put32(&out_, 0);
      Put64(&out_, record_offset);
      Put32(&out_, 1);
    }
    Put32(&out_, 0x06054b50);
    Put16(&out_, 0);
    Put16(&out_, 0);
    Put16(&out_, big ? 0xFFFF : static_cast<uint16_t>(entries));
    Put16(&out_, big ? 0xFFFF : static_cast<uint16_t>(entries));
    Put32(&out_, big ? kMax32 : static_cast<uint32_t>(directory_size));
    Put32(&out_, big ? kMax32 : static_cast<uint32_t>(directory_offset));
    Put16(&out_, 0);
    return std::move(out_);
  }

 private:
  std::string out_;
  std::vector<Record> records_;
};

}  // namespace

absl::StatusOr<std::string> WriteTorchStateDict(const std::vector<TensorToWrite>& tensors,
                                                const std::string& archive_name) {
  std::set<std::string> keys;
  for (const TensorToWrite& t : tensors) {
    if (!keys.insert(t.key).second) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.key, "\" appears twice"));
    }
    if (StorageClass(t.dtype) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.key, "\": no torch storage"));
    }
    uint64_t numel = 1;
    for (const int64_t d : t.shape) {
      if (d < 0) return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.key, "\": shape"));
      numel *= static_cast<uint64_t>(d);
    }
    if (numel * ElementSize(t.dtype) != t.data.size()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.key, "\": ", t.data.size(),
                                                     " bytes for ", numel, " elements of ",
                                                     DtypeName(t.dtype)));
    }
  }
  const std::string pickle = DataPickle(tensors);
  const std::string byteorder = "little";
  const std::string version = "3\n";
  ZipWriter zip;
  zip.Add(archive_name + "/data.pkl", &pickle);
  zip.Add(archive_name + "/byteorder", &byteorder);
  for (size_t i = 0; i < tensors.size(); ++i) {
    zip.Add(absl::StrCat(archive_name, "/data/", i), &tensors[i].data);
  }
  zip.Add(archive_name + "/version", &version);
  return zip.Finish();
}

}  // namespace lensd::engine
