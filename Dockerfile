# The sliceguard image: `sliceguard serve` (and `register`, `place`, ...), built from this repository.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sliceguard-scheduler --bin sliceguard

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sliceguard /usr/local/bin/sliceguard
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sliceguard"]
