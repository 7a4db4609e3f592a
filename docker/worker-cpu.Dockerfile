# moeserve worker image for CPUs (gloo collectives over TCP), Debian 12. Ships the tiny
# random test model at /opt/moeserve/models/tiny (deploy/examples/tiny-cpu.yaml), and
# moeserve-fetch, which the operator's init container runs for hf:// sources (with the
# CA certificates it needs to verify the Hub's TLS).
# Build from the repository root:
#   docker build -f docker/worker-cpu.Dockerfile -t ghcr.io/moeserve/moeserve-worker:0.1.0-cpu .
ARG DEBIAN_IMAGE=debian:12
ARG RUNTIME_IMAGE=debian:12-slim

FROM ${DEBIAN_IMAGE} AS build
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      build-essential cmake ninja-build pkg-config ca-certificates \
      libboost-dev libboost-system-dev libssl-dev \
      libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc \
      prometheus-cpp-dev nlohmann-json3-dev libyaml-cpp-dev libgloo-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOESERVE_CUDA=OFF \
      -DMOESERVE_TESTS=OFF -DMOESERVE_BENCH=OFF \
 && cmake --build /build --target moeserve-worker moeserve-fetch moeserve-make-tiny-model \
      -j "$(nproc)" \
 && strip /build/bin/moeserve-worker /build/bin/moeserve-fetch \
 && /build/bin/moeserve-make-tiny-model --out /out/models/tiny \
 && docker/collect-libs.sh /out/lib /build/bin/moeserve-worker /build/bin/moeserve-fetch

FROM ${RUNTIME_IMAGE}
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 moeserve \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin moeserve
COPY --from=build /out/lib/ /usr/local/lib/moeserve/
COPY --from=build /build/bin/moeserve-worker /usr/local/bin/moeserve-worker
COPY --from=build /build/bin/moeserve-fetch /usr/local/bin/moeserve-fetch
COPY --from=build /out/models/tiny /opt/moeserve/models/tiny
ENV LD_LIBRARY_PATH=/usr/local/lib/moeserve
USER 65532:65532
EXPOSE 8000 29500
ENTRYPOINT ["moeserve-worker"]
CMD ["--help"]
