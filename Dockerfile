# syntax=docker/dockerfile:1
# Build: cgo is needed for SQLite (gorm.io/driver/sqlite uses mattn/go-sqlite3).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/tandem ./cmd/tandem

# Runtime: small Debian image (glibc for the cgo binary), non-root user.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin tandem \
    && mkdir -p /data && chown tandem:tandem /data
COPY --from=build /out/tandem /usr/local/bin/tandem
USER tandem
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9736
# One image, every role: the default is the admin server (HTTPS, with the
# domain CA it creates in /data); run another role by giving its arguments,
# e.g. `docker run IMAGE nodemanager --name nm-a --admin https://ADMIN:9736
# --ca-fingerprint sha256:... --node-token-file /run/secrets/node.token`.
ENTRYPOINT ["/usr/local/bin/tandem"]
CMD ["admin", "--listen", "0.0.0.0:9736", "--data-dir", "/data"]
