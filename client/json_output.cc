#include "client/json_output.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace qcal::client {
namespace {

using Json = nlohmann::ordered_json;

Json AnyToJson(const google::protobuf::Any& any) {
  auto line = MessageToJsonLine(any);
  if (line.ok()) {
    Json parsed = Json::parse(*line, nullptr, /*allow_exceptions=*/false);
    if (!parsed.is_discarded()) return parsed;
  }
  Json out = Json::object();
  out["@type"] = any.type_url();
  out["value"] = absl::Base64Escape(any.value());
  return out;
}

}  // namespace

absl::StatusOr<std::string> MessageToJsonLine(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("cannot print ",
                                            message.GetDescriptor()->full_name(),
                                            " as JSON: ", status.message().as_string()));
  }
  return out;
}

std::string OperationToJsonLine(const v1::Operation& operation) {
  auto line = MessageToJsonLine(operation);
  if (line.ok()) return *line;
  Json out = Json::object();
  out["name"] = operation.name();
  if (operation.has_metadata()) out["metadata"] = AnyToJson(operation.metadata());
  out["done"] = operation.done();
  if (operation.has_error()) {
    Json error = Json::object();
    error["code"] = operation.error().code();
    error["message"] = operation.error().message();
    Json details = Json::array();
    for (const auto& detail : operation.error().details()) details.push_back(AnyToJson(detail));
    error["details"] = details;
    out["error"] = error;
  }
  if (operation.has_response()) out["response"] = AnyToJson(operation.response());
  return out.dump();
}

}  // namespace qcal::client
