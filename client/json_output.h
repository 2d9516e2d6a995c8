// JSON output for `--json`: every object is printed on ONE line (JSON Lines), so a
// script can read a stream of updates line by line and `jq` reads each line.
//
// Messages are printed with protobuf's canonical JSON mapping (MessageToJsonString)
// with the .proto field names kept (`shards_done`, not `shardsDone`), enum values as
// names ("JOB_RUNNING"), and fields at their default value printed too, so a script
// never has to guess whether an absent field means 0.
#ifndef QCAL_CLIENT_JSON_OUTPUT_H_
#define QCAL_CLIENT_JSON_OUTPUT_H_

#include <string>

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "proto/qcal/v1/operations.pb.h"

namespace qcal::client {

// One line, no trailing newline. INTERNAL if the message cannot be printed (e.g. an
// Any of a type this binary does not know).
absl::StatusOr<std::string> MessageToJsonLine(const google::protobuf::Message& message);

// An Operation as one JSON line. Its metadata / response are google.protobuf.Any of
// kinds this client may not know; those are printed as
// {"@type": URL, "value": "<base64 of the serialized message>"} instead of failing.
std::string OperationToJsonLine(const v1::Operation& operation);

}  // namespace qcal::client

#endif  // QCAL_CLIENT_JSON_OUTPUT_H_
