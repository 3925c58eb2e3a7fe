# sluice as a container (a sidecar next to an application, or on its own).
#
#   podman build -t sluice .        # or: docker build -t sluice .
#
# Stage `build` compiles a static binary (musl), so the image holds nothing but
# sluice, CA certificates (for AWS over HTTPS) and time zone data (for prefixes
# with a time_zone): no shell, no package manager, no libc to patch.
#
# With a static binary already built (`cargo build --release --target
# x86_64-unknown-linux-musl`), an image of it can stand in for the build stage:
# `--build-arg BINARY=IMAGE`, where IMAGE holds the same /out and /state trees
# the build stage makes (scripts/test.sh does this to test the image without a registry).
#
# Run (see README "Container sidecar" for ECS and Kubernetes):
#   podman run -v sluice-state:/var/lib/sluice -v ./configs:/etc/sluice:ro sluice
#   podman run -v sluice-state:/var/lib/sluice -e SLUICE_STREAM="$(cat s.toml)" \
#       sluice run --config env:SLUICE_STREAM
ARG BINARY=build

FROM docker.io/library/rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-tools ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin sluice \
    && install -D -m 0755 target/x86_64-unknown-linux-musl/release/sluice /out/usr/bin/sluice \
    && install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt \
    && mkdir -p /out/usr/share /out/etc/sluice/transforms /out/var/lib /state \
    && cp -a /usr/share/zoneinfo /out/usr/share/zoneinfo

# The binary and its files, from `build` or from the image named by BINARY.
FROM ${BINARY} AS binary

FROM scratch
COPY --from=binary /out/ /
# The state volume belongs to the unprivileged user the daemon runs as (an
# empty directory copied into place: COPY --chown owns what it creates).
COPY --from=binary --chown=65532:65532 /state/ /var/lib/sluice/
USER 65532:65532
# Loopback by default: a sidecar's application reaches it on localhost (a pod's
# or an ECS task's containers share one network namespace), and probes use
# `sluice health` inside the container, not an HTTP GET from outside.
ENV SLUICE_LISTEN=127.0.0.1:4195 \
    SLUICE_STATE_DIR=/var/lib/sluice \
    SLUICE_TRANSFORMS_DIR=/etc/sluice/transforms \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# Write-ahead logs and checkpoints: what was acknowledged and not yet delivered
# survives a restart only if this outlives the container.
VOLUME ["/var/lib/sluice"]
EXPOSE 4195
HEALTHCHECK --interval=15s --timeout=6s --start-period=120s --retries=3 \
    CMD ["/usr/bin/sluice", "health"]
# SIGTERM drains: buffered records are delivered within --drain-timeout-secs
# (80 s by default; give the runtime's stop timeout more than that).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/sluice"]
CMD ["run", "--config", "/etc/sluice"]
