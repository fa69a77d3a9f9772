# notify: `make run` starts notifyd on its embedded defaults; `make test`
# installs what the tests need (pinned) and runs every check and test.

SHELL := /bin/bash
export PATH := $(CURDIR)/.bin:$(PATH)
export GOBIN := $(CURDIR)/.bin

BUF_VERSION              := v1.75.0
PROTOC_GEN_GO_VERSION    := v1.36.12
PROTOC_GEN_GO_GRPC_VER   := v1.6.0
GRPC_GATEWAY_VERSION     := v2.33.0
# h2spec has no go.mod (hence +incompatible); v2.2.1 is its newest version that
# the module proxy serves. go install resolves its dependencies to their latest.
H2SPEC_VERSION           := v2.2.1+incompatible

NOTIFY_TEST_REDIS_URL    ?= redis://127.0.0.1:6379/15
NOTIFY_TEST_POSTGRES_DSN ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
export NOTIFY_TEST_REDIS_URL NOTIFY_TEST_POSTGRES_DSN

GO_TEST_FLAGS ?= -race -count=1 -timeout 15m
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

# The browser client (clients/web): npm packages pinned by its package-lock.json.
WEB_DIR       := clients/web
WEB_DEPS      := $(WEB_DIR)/node_modules/.deps-stamp
WEB_SRC       := $(shell find $(WEB_DIR)/src $(WEB_DIR)/public -type f 2>/dev/null) \
                 $(wildcard $(WEB_DIR)/index.html $(WEB_DIR)/vite.config.ts $(WEB_DIR)/vite.sw.config.ts \
                   $(WEB_DIR)/tsconfig.json $(WEB_DIR)/tsconfig.sw.json)
# Absolute, so that check-generated can run buf in a temporary directory.
PROTOC_GEN_ES := $(CURDIR)/$(WEB_DIR)/node_modules/.bin/protoc-gen-es

.PHONY: bench all run build tools generate check-generated lint lint-openapi breaking test test-go services clean web-deps web test-web check-deploy

all: build

## run: build the web app, then start notifyd in dev mode (in-memory broker,
## dev token secret; the demo app at http://127.0.0.1:8080/)
run: web
	go run ./cmd/notifyd --dev --web-dir $(WEB_DIR)/dist

## build: build notifyd and notifyctl into bin/
build:
	go build -ldflags "-X github.com/maxloyalty/notify/internal/node.Version=$(VERSION)" -o bin/ ./cmd/...

## bench: the hub's Go benchmarks, then a short load run of every mode (a few
## seconds each, small sizes) against a dev notifyd that notifybench starts on
## free ports and stops, browsers' and phones' streams on connections of their
## own included (native with grpc-go's client, plain and over TLS, grpc-web over
## HTTP/1.1 and over HTTP/2 with TLS); each row gives the server's CPU per delivery and, for idle
## runs, its live heap and stacks per stream. The full-size runs are in
## docs/PERFORMANCE.md. The
## publish mode drives unary gRPC with h2load and REST with wrk: their Debian
## packages (nghttp2-client, wrk) are installed when missing
.PHONY: bench
bench:
	@missing=; command -v h2load >/dev/null || missing="$$missing nghttp2-client"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then echo "installing$$missing (Debian packages)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	go test -run '^$$' -bench . -benchmem ./internal/hub/
	@mkdir -p bin
	go build -o bin/ ./cmd/notifyd ./cmd/notifybench
	./bin/notifybench suite --spawn ./bin/notifyd

## soak: SOAK_DURATION (default 2m) of subscriber churn against a dev notifyd
## with its default settings that notifybench starts on free ports: streams
## dropped and resumed, connections closed, slow consumers cut, publishing
## throughout; fails when an event is lost or duplicated or when the server's
## RSS, goroutines or open files keep growing (docs/PERFORMANCE.md, "Soak")
SOAK_DURATION ?= 2m
.PHONY: soak
soak:
	@mkdir -p bin
	go build -o bin/ ./cmd/notifyd ./cmd/notifybench
	./bin/notifybench soak --spawn ./bin/notifyd --duration $(SOAK_DURATION)

## tools: build the pinned code generators and h2spec (HTTP/2 conformance,
## run by internal/node's TestH2spec) into .bin/ when missing
tools: .bin/buf .bin/protoc-gen-go .bin/protoc-gen-go-grpc .bin/protoc-gen-grpc-gateway .bin/protoc-gen-openapiv2 .bin/h2spec

.bin/buf:
	go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
.bin/protoc-gen-go:
	go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
.bin/protoc-gen-go-grpc:
	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VER)
.bin/protoc-gen-grpc-gateway:
	go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY_VERSION)
.bin/protoc-gen-openapiv2:
	go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)
.bin/h2spec:
	go install github.com/summerwind/h2spec/cmd/h2spec@$(H2SPEC_VERSION)

## generate: regenerate gen/ and the OpenAPI document from proto/ (offline)
generate: tools web-deps
	buf format -w
	rm -rf gen/notify gen/gw internal/gateway/openapi $(WEB_DIR)/src/gen
	buf generate
	cd gen && go mod tidy

## check-generated: fail when `make generate` would change anything
check-generated: tools web-deps
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	cp -r proto buf.yaml buf.gen.yaml $$tmp/ && mkdir -p $$tmp/gateway $$tmp/gen && cp gen/go.mod gen/go.sum $$tmp/gen/ && \
	mkdir -p $$tmp/$(WEB_DIR)/node_modules/.bin && ln -s $(PROTOC_GEN_ES) $$tmp/$(WEB_DIR)/node_modules/.bin/protoc-gen-es && \
	(cd $$tmp && buf generate) && \
	diff -r $$tmp/gen gen && diff -r $$tmp/internal/gateway/openapi internal/gateway/openapi && \
	diff -r $$tmp/$(WEB_DIR)/src/gen $(WEB_DIR)/src/gen && \
	echo "generated code is up to date" || \
	{ echo "generated code (gen/, internal/gateway/openapi, $(WEB_DIR)/src/gen) is stale: run 'make generate' and commit the result" >&2; exit 1; }

## check-tidy: fail when `go mod tidy` would change go.mod or go.sum of any module
.PHONY: check-tidy
check-tidy:
	@for m in . gen clients/go; do \
		(cd $$m && go mod tidy -diff) || { echo "go.mod of $$m is not tidy: run 'cd $$m && go mod tidy'" >&2; exit 1; }; \
	done; echo "go.mod files are tidy"

## lint: buf lint and format, gofmt, go vet, and the OpenAPI document's lint
lint: tools lint-openapi
	buf lint
	buf format -d --exit-code
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go' | grep -v '^gen/')); \
	if [ -n "$$out" ]; then echo "gofmt needed: $$out" >&2; exit 1; fi
	go vet ./...
	cd clients/go && go vet ./...

# The OpenAPI linter: Redocly CLI, pinned by tools/openapi/package-lock.json.
OPENAPI_LINT_DIR  := tools/openapi
OPENAPI_LINT_DEPS := $(OPENAPI_LINT_DIR)/node_modules/.deps-stamp

## lint-openapi: lint internal/gateway/openapi/notify.swagger.json with Redocly CLI's
## recommended-strict rules (tools/openapi/redocly.yaml); no telemetry
lint-openapi: $(OPENAPI_LINT_DEPS)
	cd $(OPENAPI_LINT_DIR) && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true npm run --silent lint

$(OPENAPI_LINT_DEPS): $(OPENAPI_LINT_DIR)/package-lock.json $(OPENAPI_LINT_DIR)/package.json
	cd $(OPENAPI_LINT_DIR) && npm ci --no-audit --no-fund
	touch $@

## breaking: buf breaking (WIRE_JSON) against the previous commit of main
breaking: tools
	@if git rev-parse -q --verify HEAD~1 >/dev/null && git cat-file -e HEAD~1:buf.yaml 2>/dev/null; then \
		buf breaking --against '.git#ref=HEAD~1' && echo "no breaking change against HEAD~1"; \
	else echo "breaking: no previous commit with a contract, nothing to compare"; fi

## check-deploy: validate the nginx configuration for several nodes (nginx -t)
check-deploy:
	@command -v nginx >/dev/null || { [ "$${CI:-}" = true ] && apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; } || true
	@if command -v nginx >/dev/null; then nginx -q -t -c $(CURDIR)/deploy/nginx/notify.conf && echo "deploy/nginx/notify.conf is valid"; \
	else echo "check-deploy: nginx is not installed, skipped"; fi

## check-alerts: promtool checks deploy/prometheus: the alerting rules, their
## unit tests (alerts_test.yaml) and the example prometheus.yml. promtool comes
## with Debian's prometheus package, installed when missing (in CI a failed
## install fails; elsewhere the check is skipped); internal/node's deploy tests
## use its prometheus and promtool too
.PHONY: check-alerts
check-alerts:
	@if ! command -v promtool >/dev/null; then \
		echo "installing promtool (Debian package prometheus)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null || true; \
	fi; \
	if ! command -v promtool >/dev/null; then \
		if [ "$${CI:-}" = true ]; then echo "check-alerts: promtool could not be installed" >&2; exit 1; fi; \
		echo "check-alerts: promtool is not installed, skipped"; exit 0; \
	fi; \
	cd deploy/prometheus && promtool check rules alerts.yaml && promtool test rules alerts_test.yaml && \
	promtool check config prometheus.yml

# The container image: IMAGE names it, IMAGE_TOOL (podman or docker) builds
# it with IMAGE_BUILD_FLAGS.
IMAGE      ?= notifyd:$(VERSION)
IMAGE_TOOL ?= podman
IMAGE_BUILD_FLAGS ?=
CHECK_IMAGE := localhost/notifyd-check:$(shell echo $$PPID)

## image-context: stage what the Dockerfile's default first stage copies into
## bin/image/: notifyd built static (CGO_ENABLED=0; the SQLite driver is pure
## Go), the web app, the CA certificates and an empty data directory
.PHONY: image-context image check-image
image-context: web
	rm -rf bin/image
	mkdir -p bin/image/data
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/maxloyalty/notify/internal/node.Version=$(VERSION)" -o bin/image/notifyd ./cmd/notifyd
	cp -r $(WEB_DIR)/dist bin/image/web
	cp /etc/ssl/certs/ca-certificates.crt bin/image/

## image: build the container image $(IMAGE) from the Dockerfile (a scratch
## image: no registry needed), e.g. `make image IMAGE=notifyd:1.4`
image: image-context
	$(IMAGE_TOOL) build $(if $(filter podman,$(IMAGE_TOOL)),--format docker) $(IMAGE_BUILD_FLAGS) -t $(IMAGE) .

## check-image: build the image with podman (installed when missing; in CI a
## failed install fails, elsewhere the check is skipped), check its user,
## entrypoint, ports and health check (podman image inspect), and run the
## notifyd copied out of it against /healthz: cmd/notifyd's TestContainerImage
## (build tag image). Podman builds a scratch image here but cannot run it.
check-image:
	@if ! command -v podman >/dev/null; then \
		echo "installing podman (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null || true; \
	fi; \
	if ! command -v podman >/dev/null; then \
		if [ "$${CI:-}" = true ]; then echo "check-image: podman could not be installed" >&2; exit 1; fi; \
		echo "check-image: podman is not installed, skipped"; exit 0; \
	fi; \
	$(MAKE) --no-print-directory image IMAGE_TOOL=podman IMAGE=$(CHECK_IMAGE) IMAGE_BUILD_FLAGS=--layers=false && \
	NOTIFY_TEST_IMAGE=$(CHECK_IMAGE) go test $(GO_TEST_FLAGS) -tags image -run '^TestContainerImage$$' ./cmd/notifyd/; \
	status=$$?; podman rmi -f $(CHECK_IMAGE) >/dev/null 2>&1; exit $$status

## check-compose: validate deploy/compose.yaml, monitoring profile included,
## with docker-compose config (Debian's docker-compose, installed when missing;
## in CI a failed install fails, elsewhere the check is skipped)
.PHONY: check-compose
check-compose:
	@if ! command -v docker-compose >/dev/null; then \
		echo "installing docker-compose (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null || true; \
	fi; \
	if ! command -v docker-compose >/dev/null; then \
		if [ "$${CI:-}" = true ]; then echo "check-compose: docker-compose could not be installed" >&2; exit 1; fi; \
		echo "check-compose: docker-compose is not installed, skipped"; exit 0; \
	fi; \
	NOTIFY_JWT_SECRET=check-compose-secret-of-at-least-32-bytes docker-compose -f deploy/compose.yaml --profile monitoring config -q && \
	echo "deploy/compose.yaml is valid"

## services: start Redis and PostgreSQL when they are not running
services:
	@bash .ci/services

## test: everything CI runs
test: tools check-generated check-tidy lint breaking check-deploy check-alerts check-compose check-image services test-go test-web

## test-go: every Go test, then the node suite and notifyd's tests again with
## the nodes they start on the wire transport (the default run uses grpc-go)
test-go:
	go test $(GO_TEST_FLAGS) ./...
	NOTIFY_TEST_GRPC_TRANSPORT=grpc-go go test $(GO_TEST_FLAGS) ./internal/node/ ./cmd/notifyd/
	cd clients/go && go test $(GO_TEST_FLAGS) ./...

## fuzz: run every fuzz target for FUZZTIME each (default 10s), one after the
## other, and fail at the end if any found a failure (the failing input is
## written to the package's testdata/fuzz/<Target>/). Targets:
##   internal/room FuzzParse, internal/auth FuzzVerify, internal/store FuzzCursor,
##   internal/hub FuzzEventType, internal/validate FuzzValidate,
##   internal/broker FuzzParseResult, internal/node FuzzConfigFile,
##   FuzzRESTBodies and FuzzResumePositions.
## Their seed corpora (f.Add and testdata/fuzz) already run in `make test`.
FUZZTIME ?= 10s
FUZZ_TARGETS := ./internal/room:FuzzParse ./internal/auth:FuzzVerify ./internal/store:FuzzCursor \
                ./internal/hub:FuzzEventType ./internal/validate:FuzzValidate ./internal/broker:FuzzParseResult \
                ./internal/node:FuzzConfigFile ./internal/node:FuzzRESTBodies ./internal/node:FuzzResumePositions ./internal/wire:FuzzConn ./internal/gateway:FuzzWebsocketCall
.PHONY: fuzz
fuzz:
	@failed=; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg), $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || failed="$$failed $$name"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failures in:$$failed" >&2; exit 1; fi

## web-deps: npm ci in clients/web when node_modules is missing or the lockfile changed
web-deps: $(WEB_DEPS)

$(WEB_DEPS): $(WEB_DIR)/package-lock.json $(WEB_DIR)/package.json
	cd $(WEB_DIR) && npm ci --no-audit --no-fund
	touch $@

## web: build the demo app into clients/web/dist when its sources changed
web: $(WEB_DIR)/dist/index.html

$(WEB_DIR)/dist/index.html: $(WEB_DEPS) $(WEB_SRC)
	cd $(WEB_DIR) && npm run build

## test-web: the web client's unit tests (vitest) and browser tests (playwright-core
## with Debian's chromium, installed when missing) against a real notifyd
test-web: web
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "installing chromium (Debian package)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi
	cd $(WEB_DIR) && npm test
	cd $(WEB_DIR) && npm run test:browser

clean:
	rm -rf bin $(WEB_DIR)/dist
