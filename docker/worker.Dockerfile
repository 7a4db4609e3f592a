# moeserve worker image for NVIDIA GPUs (Hopper, sm_90). The worker has no GPU path yet:
# the CUDA kernels (kernels/cuda) and the NCCL communicator build with their tests, but
# moeserve-worker links neither, so today this image runs the CPU engine on a GPU node.
# Built on NVIDIA's CUDA devel image, run on its runtime image (which ships libnccl2);
# the driver comes from the node through the NVIDIA container runtime.
# Build and run stages use the same Ubuntu release, so the libraries collected from the
# build stage match the runtime's C library.
# The image also ships moeserve-fetch, which the operator's init container runs for
# hf:// sources, and the CA certificates it needs to verify the Hub's TLS.
# Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t ghcr.io/moeserve/moeserve-worker:0.1.0 .
ARG CUDA_VERSION=12.6.3
ARG UBUNTU=ubuntu24.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      build-essential cmake ninja-build pkg-config ca-certificates \
      libboost-dev libboost-system-dev libssl-dev \
      libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc \
      prometheus-cpp-dev nlohmann-json3-dev libyaml-cpp-dev libgloo-dev \
      libnccl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOESERVE_CUDA=ON \
      -DMOESERVE_TESTS=OFF -DMOESERVE_BENCH=OFF \
 && cmake --build /build --target moeserve-worker moeserve-fetch -j "$(nproc)" \
 && strip /build/bin/moeserve-worker /build/bin/moeserve-fetch \
 && docker/collect-libs.sh /out/lib /build/bin/moeserve-worker /build/bin/moeserve-fetch

FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU}
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 moeserve \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin moeserve
COPY --from=build /out/lib/ /usr/local/lib/moeserve/
COPY --from=build /build/bin/moeserve-worker /usr/local/bin/moeserve-worker
COPY --from=build /build/bin/moeserve-fetch /usr/local/bin/moeserve-fetch
ENV LD_LIBRARY_PATH=/usr/local/lib/moeserve \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 65532:65532
EXPOSE 8000 29500
ENTRYPOINT ["moeserve-worker"]
CMD ["--help"]
