# syntax=docker/dockerfile:1
#
# The `telltale` image: one binary, one subcommand per role (collector, aggregator,
# alerting), as deploy/*.yaml run it.
#
#   docker build -t ghcr.io/telltale/telltale:latest .
#   docker run --rm ghcr.io/telltale/telltale:latest collector --once --no-kube
#
# The cache mounts (BuildKit, the default builder) keep the cargo registry and the target
# directory between builds, so a source change recompiles only the workspace's crates.

# ---- build ----
# Cargo.toml's rust-version is 1.85; `rust:1` is the newest stable 1.x.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin telltale \
    && install -D -m 0755 target/release/telltale /out/telltale

# ---- run ----
FROM debian:bookworm-slim
# CA roots for remote write, webhooks and SMTP over TLS (rustls-native-certs reads them).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 telltale \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin telltale \
    && install -d -o 65532 -g 65532 -m 0750 /var/lib/telltale
COPY --from=build /out/telltale /usr/local/bin/telltale
# Example policies and price table, and the Grafana dashboards, for copying into
# ConfigMaps, and for standalone in a container:
#   docker run -p 9201:9201 ghcr.io/telltale/telltale standalone \
#     --policies /usr/share/telltale/examples/policies.yml \
#     --prices /usr/share/telltale/examples/prices.yml --aggregator-listen 0.0.0.0:9201
COPY examples/ /usr/share/telltale/examples/
COPY dashboards/ /usr/share/telltale/dashboards/
USER 65532:65532
# The default relative directories (./telltale-data, ./telltale-buffer,
# ./telltale-alerting) land here when no flag names another; with a read-only root
# filesystem, mount a volume here or pass --data-dir, --buffer-dir, --state-dir.
WORKDIR /var/lib/telltale
# collector /metrics, aggregator API, alerting API
EXPOSE 9101 9201 9301
ENTRYPOINT ["telltale"]
