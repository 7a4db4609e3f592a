// moeserve-fake-engine: a test double for a vLLM or SGLang group leader, which cannot
// run without GPUs. It serves only what the real engine serves to the operator, in its
// exact format: GET /health (200, empty body) and GET /metrics (Prometheus text 0.0.4
// as prometheus_client writes it: HELP and TYPE lines, counters with _total and
// _created, vLLM's series per data-parallel engine="<i>", SGLang's scheduler gauges per
// rank and tokenizer counters per model); anything else is 404.
//
// The values come from --state FILE, read on every scrape, so a test advances the
// counters by rewriting it: a JSON object {"prompt_tokens", "generation_tokens",
// "running", "waiting", "kv_cache_usage", "ttft_seconds": [observations]} (missing keys
// are 0 / empty; a missing file is all zeros). Runs until SIGINT or SIGTERM.
#include <signal.h>

#include <cmath>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/flags.h"
#include "common/http_server.h"

namespace {

struct EngineState {
  double prompt_tokens = 0;
  double generation_tokens = 0;
  double running = 0;
  double waiting = 0;
  double kv_cache_usage = 0;
  std::vector<double> ttft_seconds;
};

EngineState read_state(const std::string& path) {
  EngineState s;
  std::ifstream in(path);
  if (!in) return s;
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object()) return s;
  s.prompt_tokens = j.value("prompt_tokens", 0.0);
  s.generation_tokens = j.value("generation_tokens", 0.0);
  s.running = j.value("running", 0.0);
  s.waiting = j.value("waiting", 0.0);
  s.kv_cache_usage = j.value("kv_cache_usage", 0.0);
  s.ttft_seconds = j.value("ttft_seconds", std::vector<double>{});
  return s;
}

// Python's repr of a float, as prometheus_client's floatToGoString writes it.
std::string py_float(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::ostringstream out;
    out.precision(0);
    out << std::fixed << v << ".0";
    return out.str();
  }
  for (int precision = 1; precision <= 17; ++precision) {
    std::ostringstream out;
    out.precision(precision);
    out << v;
    if (std::stod(out.str()) == v) return out.str();
  }
  return std::to_string(v);
}

void family(std::ostringstream& out, const std::string& name, const std::string& type,
            const std::string& help) {
  out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
}

// Histogram series for `labels` ("a=\"b\"," prefix, may be empty) with buckets `le`.
void histogram(std::ostringstream& out, const std::string& name, const std::string& labels,
               const std::vector<double>& le, const std::vector<double>& observations,
               bool le_first) {
  double sum = 0;
  for (double o : observations) sum += o;
  std::vector<double> bounds = le;
  bounds.push_back(INFINITY);
  for (double bound : bounds) {
    double count = 0;
    for (double o : observations) count += o <= bound ? 1 : 0;
    const std::string le_label = "le=\"" + py_float(bound) + "\"";
    out << name << "_bucket{"
        << (le_first ? le_label + (labels.empty() ? "" : "," + labels)
                     : labels + (labels.empty() ? "" : ",") + le_label)
        << "} " << py_float(count) << "\n";
  }
  out << name << "_count{" << labels << "} " << py_float(observations.size()) << "\n";
  out << name << "_sum{" << labels << "} " << py_float(sum) << "\n";
}

// vLLM v0.11's PrometheusStatLogger (vllm/v1/metrics/loggers.py): labels model_name and
// engine; the API server reports every data-parallel engine. Tokens and requests are
// attributed to engine 0, the others report 0.
std::string vllm_metrics(const EngineState& s, const std::string& model, int engines) {
  static const std::vector<double> kTtftBuckets = {
      0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
      1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
  auto labels = [&](int e) {
    return "model_name=\"" + model + "\",engine=\"" + std::to_string(e) + "\"";
  };
  auto share = [&](double v, int e) { return e == 0 ? v : 0.0; };
  std::ostringstream out;
  const std::pair<const char*, double> gauges[] = {{"num_requests_running", s.running},
                                                   {"num_requests_waiting", s.waiting},
                                                   {"kv_cache_usage_perc", s.kv_cache_usage}};
  const char* gauge_help[] = {"Number of requests in model execution batches.",
                              "Number of requests waiting to be processed.",
                              "KV-cache usage. 1 means 100 percent usage."};
  for (int g = 0; g < 3; ++g) {
    family(out, std::string("vllm:") + gauges[g].first, "gauge", gauge_help[g]);
    for (int e = 0; e < engines; ++e) {
      out << "vllm:" << gauges[g].first << "{" << labels(e) << "} "
          << py_float(share(gauges[g].second, e)) << "\n";
    }
  }
  const std::pair<const char*, double> counters[] = {{"prompt_tokens", s.prompt_tokens},
                                                     {"generation_tokens", s.generation_tokens}};
  const char* counter_help[] = {"Number of prefill tokens processed.",
                                "Number of generation tokens processed."};
  for (int c = 0; c < 2; ++c) {
    const std::string name = std::string("vllm:") + counters[c].first;
    family(out, name + "_total", "counter", counter_help[c]);
    for (int e = 0; e < engines; ++e) {
      out << name << "_total{" << labels(e) << "} " << py_float(share(counters[c].second, e))
          << "\n";
    }
    family(out, name + "_created", "gauge", counter_help[c]);
    for (int e = 0; e < engines; ++e) out << name << "_created{" << labels(e) << "} 1.7649e+09\n";
  }
  family(out, "vllm:time_to_first_token_seconds", "histogram",
         "Histogram of time to first token in seconds.");
  for (int e = 0; e < engines; ++e) {
    histogram(out, "vllm:time_to_first_token_seconds", labels(e), kTtftBuckets,
              e == 0 ? s.ttft_seconds : std::vector<double>{}, false);
  }
  return out.str();
}

// SGLang's metrics collectors (python/sglang/srt/metrics/collector.py) through
// prometheus_client's multiprocess collector: scheduler gauges labelled per rank,
// tokenizer counters and histograms per model, labels in sorted order.
std::string sglang_metrics(const EngineState& s, const std::string& model) {
  static const std::vector<double> kTtftBuckets = {0.1,  0.2,  0.4,  0.6,   0.8,   1.0,
                                                   2.0,  4.0,  6.0,  8.0,   10.0,  20.0,
                                                   40.0, 60.0, 80.0, 100.0, 200.0, 400.0};
  const std::string rank =
      "engine_type=\"unified\",model_name=\"" + model + "\",pp_rank=\"0\",tp_rank=\"0\"";
  const std::string per_model = "model_name=\"" + model + "\"";
  std::ostringstream out;
  family(out, "sglang:num_running_reqs", "gauge", "The number of running requests.");
  out << "sglang:num_running_reqs{" << rank << "} " << py_float(s.running) << "\n";
  family(out, "sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue.");
  out << "sglang:num_queue_reqs{" << rank << "} " << py_float(s.waiting) << "\n";
  family(out, "sglang:token_usage", "gauge", "The token usage.");
  out << "sglang:token_usage{" << rank << "} " << py_float(s.kv_cache_usage) << "\n";
  family(out, "sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.");
  out << "sglang:prompt_tokens_total{" << per_model << "} " << py_float(s.prompt_tokens) << "\n";
  family(out, "sglang:generation_tokens_total", "counter",
         "Number of generation tokens processed.");
  out << "sglang:generation_tokens_total{" << per_model << "} " << py_float(s.generation_tokens)
      << "\n";
  family(out, "sglang:time_to_first_token_seconds", "histogram",
         "Histogram of time to first token in seconds.");
  histogram(out, "sglang:time_to_first_token_seconds", per_model, kTtftBuckets, s.ttft_seconds,
            true);
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  std::string engine, host = "127.0.0.1", model, state;
  int64_t port = 0, data_parallel = 1;
  moeserve::FlagSet flags(
      "moeserve-fake-engine --engine vllm|sglang --port P --served-model-name M --state FILE",
      "A test double for a vLLM or SGLang leader: /health and /metrics only.");
  flags.add_string("engine", &engine, "vllm or sglang");
  flags.add_string("host", &host, "Listen address");
  flags.add_int("port", &port, "TCP port");
  flags.add_string("served-model-name", &model, "The model_name label");
  flags.add_string("state", &state, "JSON file of the values to serve, read per scrape");
  flags.add_int("data-parallel-size", &data_parallel, "vLLM: engines reported (engine=\"i\")");
  if (std::optional<int> exit_code = flags.parse_main(argc, argv)) return *exit_code;
  if ((engine != "vllm" && engine != "sglang") || port <= 0 || port > 65535 || model.empty() ||
      state.empty() || data_parallel < 1) {
    std::cerr << "moeserve-fake-engine: need --engine vllm|sglang, --port 1..65535, "
                 "--served-model-name, --state and --data-parallel-size >= 1\n"
              << flags.help();
    return 2;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  moeserve::http::ServerOptions options;
  options.host = host;
  options.port = static_cast<uint16_t>(port);
  options.handler_threads = 2;
  moeserve::http::Server server(options);
  server.route("GET", "/health", [](const moeserve::http::Request&) {
    return moeserve::http::text_response(200, "");
  });
  server.route("GET", "/metrics", [&](const moeserve::http::Request&) {
    const EngineState s = read_state(state);
    return moeserve::http::text_response(
        200, engine == "vllm" ? vllm_metrics(s, model, static_cast<int>(data_parallel))
                              : sglang_metrics(s, model));
  });
  if (moeserve::Status started = server.start(); !started.ok()) {
    std::cerr << started.to_string() << "\n";
    return 1;
  }
  std::cout << "listening on " << host << ":" << server.port() << std::endl;
  int received = 0;
  sigwait(&signals, &received);
  return 0;
}
