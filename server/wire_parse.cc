#include "server/wire_parse.h"

#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"

namespace lensd::server {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::internal::WireFormatLite;

// The offset of the first byte that breaks UTF-8 (overlong forms, surrogates and code points past
// U+10FFFF included), or -1.
int64_t FirstInvalidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return static_cast<int64_t>(i);
    }
    for (size_t j = 1; j <= n; ++j) {
      if (i + j >= s.size()) return static_cast<int64_t>(i);
      const auto d = static_cast<unsigned char>(s[i + j]);
      if ((d & 0xC0) != 0x80) return static_cast<int64_t>(i);
      cp = (cp << 6) | (d & 0x3F);
    }
    const bool overlong = (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000);
    if (overlong || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return static_cast<int64_t>(i);
    }
    i += n + 1;
  }
  return -1;
}

std::string FieldPath(const std::string& prefix, const FieldDescriptor* field, int index) {
  std::string name = prefix.empty() ? field->name() : absl::StrCat(prefix, ".", field->name());
  if (field->is_repeated()) absl::StrAppend(&name, "[", index, "]");
  return name;
}

// Walks the wire format of one message; the first problem found, or "".
std::string Walk(absl::string_view bytes, const Descriptor* type, const std::string& prefix,
                 int depth) {
  if (depth > 32) return absl::StrCat(prefix, ": nested more than 32 messages deep");
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  std::vector<int> counts(static_cast<size_t>(type->field_count()), 0);
  const std::string where = prefix.empty() ? "the message" : prefix;
  while (true) {
    const int at = in.CurrentPosition();
    const uint32_t tag = in.ReadTag();
    if (tag == 0) {  // the end, or a tag that is not one
      if (at == static_cast<int>(bytes.size())) return "";
      return absl::StrCat(where, ": the field tag at byte ", at, " is malformed");
    }
    const int number = WireFormatLite::GetTagFieldNumber(tag);
    const FieldDescriptor* field = type->FindFieldByNumber(number);
    int index = 0;
    if (field != nullptr) index = counts[static_cast<size_t>(field->index())]++;
    const std::string name =
        field != nullptr ? FieldPath(prefix, field, index) : absl::StrCat(where, " field ", number);
    const auto ended = [&] {
      return absl::StrCat(name, ": the message ends inside this field (byte ", at, "; truncated?)");
    };
    switch (WireFormatLite::GetTagWireType(tag)) {
      case WireFormatLite::WIRETYPE_VARINT: {
        uint64_t v = 0;
        if (!in.ReadVarint64(&v)) return ended();
        break;
      }
      case WireFormatLite::WIRETYPE_FIXED64: {
        uint64_t v = 0;
        if (!in.ReadLittleEndian64(&v)) return ended();
        break;
      }
      case WireFormatLite::WIRETYPE_FIXED32: {
        uint32_t v = 0;
        if (!in.ReadLittleEndian32(&v)) return ended();
        break;
      }
      case WireFormatLite::WIRETYPE_LENGTH_DELIMITED: {
        uint32_t length = 0;
        std::string value;
        if (!in.ReadVarint32(&length) || !in.ReadString(&value, static_cast<int>(length))) {
          return ended();
        }
        if (field == nullptr) break;
        if (field->type() == FieldDescriptor::TYPE_STRING) {
          const int64_t bad = FirstInvalidUtf8(value);
          if (bad >= 0) {
            return absl::StrCat(name, " is not UTF-8 (byte ", bad,
                                " of the field); send text as UTF-8");
          }
        } else if (field->type() == FieldDescriptor::TYPE_MESSAGE) {
          std::string inner = Walk(value, field->message_type(), name, depth + 1);
          if (!inner.empty()) return inner;
        }
        break;
      }
      default:
        return absl::StrCat(name, ": wire type ", WireFormatLite::GetTagWireType(tag), " at byte ",
                            at, " is not used by lensd (groups are not supported)");
    }
  }
}

}  // namespace

std::string DescribeMalformed(absl::string_view bytes, const google::protobuf::Message& message) {
  return Walk(bytes, message.GetDescriptor(), "", 0);
}

absl::Status ParseRequest(absl::string_view bytes, google::protobuf::Message* message) {
  if (message->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::OkStatus();
  }
  std::string why = DescribeMalformed(bytes, *message);
  if (why.empty()) why = "its bytes do not parse as this message (a field of the wrong type?)";
  message->Clear();
  return absl::InvalidArgumentError(
      absl::StrCat("request is not a valid ", message->GetDescriptor()->full_name(), ": ", why));
}

absl::Status ParseRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message* message) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) {
    return absl::InvalidArgumentError("request: its bytes could not be read");
  }
  if (slices.size() == 1) {
    return ParseRequest(
        absl::string_view(reinterpret_cast<const char*>(slices[0].begin()), slices[0].size()),
        message);
  }
  std::string bytes;
  bytes.reserve(buffer.Length());
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return ParseRequest(bytes, message);
}

}  // namespace lensd::server
