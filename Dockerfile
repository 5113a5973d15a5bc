# The shop binary, rules built in. Used by compose.yaml.
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release -p shop && cp target/release/shop /shop

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/shop shop && mkdir -p /var/lib/shop && chown shop /var/lib/shop
COPY --from=build /shop /usr/local/bin/shop
USER shop
WORKDIR /var/lib/shop
EXPOSE 8080
ENTRYPOINT ["shop"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
