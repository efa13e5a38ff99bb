// An independent check of a JSON value against the JSON-schema subset the gateway's constrained
// decoding supports (type, properties, required, additionalProperties, enum, const, items,
// minItems, maxItems, minLength, maxLength), for tests. "" when it validates, else why not.
#pragma once

#include <string>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace swarm::gateway::test_schema {

inline bool HasType(const nlohmann::json& v, const std::string& t) {
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "string") return v.is_string();
  if (t == "number") return v.is_number();
  if (t == "integer") return v.is_number_integer();
  if (t == "boolean") return v.is_boolean();
  if (t == "null") return v.is_null();
  return false;
}

inline std::string Check(const nlohmann::json& v, const nlohmann::json& s,
                         const std::string& at = "$") {
  using nlohmann::json;
  if (s.contains("type")) {
    bool ok = false;
    if (s["type"].is_string()) ok = HasType(v, s["type"]);
    for (const json& t : s["type"].is_array() ? s["type"] : json::array()) ok |= HasType(v, t);
    if (!ok) return absl::StrCat(at, ": not of type ", s["type"].dump(), ": ", v.dump());
  }
  if (s.contains("enum")) {
    bool found = false;
    for (const json& e : s["enum"]) found |= e == v;
    if (!found) return absl::StrCat(at, ": ", v.dump(), " not in the enum");
  }
  if (s.contains("const") && s["const"] != v) return absl::StrCat(at, ": not the const");
  if (v.is_object()) {
    const json props = s.value("properties", json::object());
    for (const json& r : s.value("required", json::array())) {
      if (!v.contains(r.get<std::string>())) return absl::StrCat(at, ": missing ", r.dump());
    }
    for (const auto& [k, sub] : v.items()) {
      if (props.contains(k)) {
        if (std::string e = Check(sub, props[k], at + "." + k); !e.empty()) return e;
      } else if (s.contains("additionalProperties") && s["additionalProperties"] == false) {
        return absl::StrCat(at, ": unexpected property ", k);
      }
    }
  }
  if (v.is_array()) {
    if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>()) {
      return absl::StrCat(at, ": fewer than minItems");
    }
    if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>()) {
      return absl::StrCat(at, ": more than maxItems");
    }
    if (s.contains("items")) {
      for (size_t i = 0; i < v.size(); ++i) {
        if (std::string e = Check(v[i], s["items"], absl::StrCat(at, "[", i, "]")); !e.empty()) {
          return e;
        }
      }
    }
  }
  if (v.is_string()) {
    // Characters, as code points.
    size_t n = 0;
    for (unsigned char c : v.get<std::string>()) n += (c & 0xC0) != 0x80;
    if (s.contains("minLength") && n < s["minLength"].get<size_t>()) return at + ": too short";
    if (s.contains("maxLength") && n > s["maxLength"].get<size_t>()) return at + ": too long";
  }
  return "";
}

}  // namespace swarm::gateway::test_schema
