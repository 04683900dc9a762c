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
ENTRYPOINT ["/usr/local/bin/tandem"]
CMD ["admin", "--listen", "0.0.0.0:9736", "--data-dir", "/data"]
