# notifyd's container image: a static notifyd, the demo web app and the CA
# certificates in an empty (scratch) image, run as an unprivileged user.
# docs/DEPLOY.md ("Image") says how to build and run it.
#
# Default build, with no registry needed: `make image`, which stages the
# files into bin/image/ (a static binary built with CGO_ENABLED=0, the web
# app, the CA bundle, an empty data directory) and runs
#   podman build --format docker -t notifyd .
# (--format docker keeps the HEALTHCHECK, which OCI images have no field for;
# `docker build` always does).

# Stage 1 (default): what `make image` staged in bin/image/.
FROM scratch AS binary
COPY bin/image/ /out/

# Stage 1, alternative for a machine that reaches a registry: build
# everything inside the build, from a clean checkout, with no `make image`
# first. Replace the stage above with the two below (the second keeps the
# name "binary").
#
# FROM node:22-bookworm AS web
# WORKDIR /src/clients/web
# COPY clients/web/package.json clients/web/package-lock.json ./
# RUN npm ci --no-audit --no-fund
# COPY clients/web/ ./
# RUN npm run build
#
# FROM golang:1.26-bookworm AS binary
# WORKDIR /src
# COPY go.mod go.sum ./
# COPY gen/go.mod gen/go.sum gen/
# COPY clients/go/go.mod clients/go/go.sum clients/go/
# RUN go mod download
# COPY . .
# ARG VERSION=dev
# RUN CGO_ENABLED=0 go build -trimpath \
#       -ldflags "-s -w -X github.com/maxloyalty/notify/internal/node.Version=${VERSION}" \
#       -o /out/notifyd ./cmd/notifyd \
#  && mkdir /out/data \
#  && cp /etc/ssl/certs/ca-certificates.crt /out/
# COPY --from=web /src/clients/web/dist /out/web

# The image.
FROM scratch
COPY --from=binary /out/notifyd /usr/local/bin/notifyd
COPY --from=binary /out/web /usr/share/notify/web
# For TLS to Redis, PostgreSQL and push services.
COPY --from=binary /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# The SQLite inbox when no PostgreSQL store is set: mount a volume here.
COPY --from=binary --chown=65532:65532 /out/data /var/lib/notify
USER 65532:65532
WORKDIR /var/lib/notify
ENV NOTIFY_GRPC_ADDR=:9090 \
    NOTIFY_HTTP_ADDR=:8080 \
    NOTIFY_DATA_DIR=/var/lib/notify \
    NOTIFY_WEB_DIR=/usr/share/notify/web
# 9090: native gRPC. 8080: grpc-web, REST, websockets, /metrics, /healthz,
# /readyz and the web app.
EXPOSE 9090 8080
# No shell in the image: notifyd GETs its own /healthz (liveness). Point a
# load balancer at /readyz instead, which also checks the store and broker.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/notifyd", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/notifyd"]
