# moeserve operator image (moeserve-operator and moeserve-gateway): a static-ish build on Debian 12, run on distroless (no shell,
# no package manager) as the non-root user 65532, which the Helm chart also enforces.
# Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t ghcr.io/moeserve/moeserve-operator:0.1.0 .
ARG DEBIAN_IMAGE=debian:12
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

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
 && cmake --build /build --target moeserve-operator moeserve-gateway -j "$(nproc)" \
 && strip /build/bin/moeserve-operator /build/bin/moeserve-gateway \
 && docker/collect-libs.sh /out/lib /build/bin/moeserve-operator /build/bin/moeserve-gateway

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/lib/ /usr/local/lib/moeserve/
COPY --from=build /build/bin/moeserve-operator /usr/local/bin/moeserve-operator
COPY --from=build /build/bin/moeserve-gateway /usr/local/bin/moeserve-gateway
ENV LD_LIBRARY_PATH=/usr/local/lib/moeserve
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/moeserve-operator"]
CMD ["run", "--leader-elect"]
