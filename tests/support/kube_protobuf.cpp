#include "tests/support/kube_protobuf.h"

#include <cstdint>
#include <string>
#include <vector>

namespace moeserve::testing {
namespace {

using nlohmann::json;

// One field of a protobuf message: number, wire type, and its value.
struct Field {
  uint32_t number = 0;
  uint32_t wire_type = 0;
  uint64_t varint = 0;
  std::string_view bytes;  // length-delimited payload
};

bool read_varint(std::string_view* in, uint64_t* out) {
  *out = 0;
  for (int shift = 0; shift < 64 && !in->empty(); shift += 7) {
    auto byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    *out |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if (!(byte & 0x80)) return true;
  }
  return false;
}

StatusOr<std::vector<Field>> parse_message(std::string_view in) {
  std::vector<Field> fields;
  while (!in.empty()) {
    uint64_t tag;
    if (!read_varint(&in, &tag)) return invalid_argument_error("protobuf: truncated tag");
    Field f;
    f.number = static_cast<uint32_t>(tag >> 3);
    f.wire_type = static_cast<uint32_t>(tag & 7);
    if (f.wire_type == 0) {
      if (!read_varint(&in, &f.varint)) return invalid_argument_error("protobuf: truncated varint");
    } else if (f.wire_type == 2) {
      uint64_t length;
      if (!read_varint(&in, &length) || length > in.size()) {
        return invalid_argument_error("protobuf: truncated length-delimited field");
      }
      f.bytes = in.substr(0, length);
      in.remove_prefix(length);
    } else if (f.wire_type == 1 || f.wire_type == 5) {
      size_t size = f.wire_type == 1 ? 8 : 4;
      if (in.size() < size) return invalid_argument_error("protobuf: truncated fixed field");
      in.remove_prefix(size);
    } else {
      return invalid_argument_error("protobuf: unsupported wire type");
    }
    fields.push_back(f);
  }
  return fields;
}

std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
  }
  if (i < bytes.size()) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= uint8_t(bytes[i + 1]) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

// A map<string, string|bytes> entry {1: key, 2: value} into `target`.
Status add_map_entry(std::string_view entry, bool base64_values, json* target) {
  MOESERVE_ASSIGN_OR_RETURN(std::vector<Field> fields, parse_message(entry));
  std::string key, value;
  for (const Field& f : fields) {
    if (f.number == 1) key = std::string(f.bytes);
    if (f.number == 2) value = std::string(f.bytes);
  }
  (*target)[key] = base64_values ? base64_encode(value) : value;
  return ok_status();
}

constexpr const char* kMetaStrings[] = {"name", "generateName", "namespace"};

StatusOr<json> decode_object_meta(std::string_view bytes) {
  MOESERVE_ASSIGN_OR_RETURN(std::vector<Field> fields, parse_message(bytes));
  json meta = json::object();
  for (const Field& f : fields) {
    switch (f.number) {
      case 1:
      case 2:
      case 3:
        // proto2 writes empty optional strings; absent and empty mean the same here.
        if (!f.bytes.empty()) meta[kMetaStrings[f.number - 1]] = std::string(f.bytes);
        break;
      case 11: MOESERVE_RETURN_IF_ERROR(add_map_entry(f.bytes, false, &meta["labels"])); break;
      case 12: MOESERVE_RETURN_IF_ERROR(add_map_entry(f.bytes, false, &meta["annotations"])); break;
      case 14: meta["finalizers"].push_back(std::string(f.bytes)); break;
      default: break;  // server-set or unused by kubectl create
    }
  }
  return meta;
}

StatusOr<json> decode_object(const std::string& kind, std::string_view raw) {
  if (kind != "ConfigMap" && kind != "Secret" && kind != "Namespace") {
    return invalid_argument_error("protobuf: kind " + kind + " is not decoded by the test server");
  }
  MOESERVE_ASSIGN_OR_RETURN(std::vector<Field> fields, parse_message(raw));
  json object = json::object();
  for (const Field& f : fields) {
    if (f.number == 1) {
      MOESERVE_ASSIGN_OR_RETURN(object["metadata"], decode_object_meta(f.bytes));
    } else if (kind == "ConfigMap" && f.number == 2) {
      MOESERVE_RETURN_IF_ERROR(add_map_entry(f.bytes, false, &object["data"]));
    } else if (kind == "ConfigMap" && f.number == 3) {
      MOESERVE_RETURN_IF_ERROR(add_map_entry(f.bytes, true, &object["binaryData"]));
    } else if (kind == "ConfigMap" && f.number == 4) {
      object["immutable"] = f.varint != 0;
    } else if (kind == "Secret" && f.number == 2) {
      MOESERVE_RETURN_IF_ERROR(add_map_entry(f.bytes, true, &object["data"]));
    } else if (kind == "Secret" && f.number == 3) {
      object["type"] = std::string(f.bytes);
    } else if (kind == "Secret" && f.number == 4) {
      MOESERVE_RETURN_IF_ERROR(add_map_entry(f.bytes, false, &object["stringData"]));
    } else if (kind == "Secret" && f.number == 5) {
      object["immutable"] = f.varint != 0;
    }
  }
  return object;
}

}  // namespace

StatusOr<json> decode_kube_protobuf(std::string_view body) {
  static constexpr std::string_view kMagic("k8s\0", 4);
  if (body.substr(0, 4) != kMagic) return invalid_argument_error("protobuf: missing k8s magic");
  MOESERVE_ASSIGN_OR_RETURN(std::vector<Field> envelope, parse_message(body.substr(4)));
  std::string api_version, kind;
  std::string_view raw;
  for (const Field& f : envelope) {
    if (f.number == 1) {
      MOESERVE_ASSIGN_OR_RETURN(std::vector<Field> type_meta, parse_message(f.bytes));
      for (const Field& t : type_meta) {
        if (t.number == 1) api_version = std::string(t.bytes);
        if (t.number == 2) kind = std::string(t.bytes);
      }
    } else if (f.number == 2) {
      raw = f.bytes;
    }
  }
  MOESERVE_ASSIGN_OR_RETURN(json object, decode_object(kind, raw));
  object["apiVersion"] = api_version;
  object["kind"] = kind;
  return object;
}

}  // namespace moeserve::testing
