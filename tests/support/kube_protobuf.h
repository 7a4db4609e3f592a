// Decodes the Kubernetes protobuf envelope that kubectl's typed clients send
// (`kubectl create configmap|secret|namespace`): the magic "k8s\0", a runtime.Unknown
// {typeMeta{apiVersion, kind}, raw}, and raw as the object's message. Only the kinds
// and fields those commands write are known: ConfigMap (data, binaryData, immutable),
// Secret (data, stringData, type, immutable), Namespace; ObjectMeta's name,
// generateName, namespace, labels, annotations, finalizers. Anything else is
// invalid_argument (the test server then answers 415, as for any unknown format).
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace moeserve::testing {

inline constexpr std::string_view kProtobufContentType = "application/vnd.kubernetes.protobuf";

StatusOr<nlohmann::json> decode_kube_protobuf(std::string_view body);

}  // namespace moeserve::testing
