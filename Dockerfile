# syntax=docker/dockerfile:1
# The `wpa` image: `wpa serve` (admission webhook + reconciler) as a non-root user on distroless.
#
#   docker build -t wpa:0.1.0 .
#
# The product crate's default feature `dev-tools` (`wpa demo`, `wpa bench` and the local control plane)
# stays off: `--no-default-features`.

FROM rust:1-bookworm AS build
WORKDIR /src
# The sources the crate compiles in (src/ includes scripts/, examples/ and webhook-config/ files, and
# Cargo.toml declares a test under tests/); .dockerignore keeps target/ and .git/ out.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --bin wpa \
    && cp target/release/wpa /wpa

# glibc and libgcc (the binary links them dynamically; ring and mimalloc are C) and CA roots, no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /wpa /wpa
USER 65532:65532
# 8443: admission webhook (HTTPS); 8080: /healthz, /readyz, /metrics.
EXPOSE 8443 8080
ENTRYPOINT ["/wpa"]
CMD ["serve"]
