# notify: `make run` starts notifyd on its embedded defaults; `make test`
# installs what the tests need (pinned) and runs every check and test.

SHELL := /bin/bash
export PATH := $(CURDIR)/.bin:$(PATH)
export GOBIN := $(CURDIR)/.bin

BUF_VERSION              := v1.75.0
PROTOC_GEN_GO_VERSION    := v1.36.12
PROTOC_GEN_GO_GRPC_VER   := v1.6.0
GRPC_GATEWAY_VERSION     := v2.33.0

NOTIFY_TEST_REDIS_URL    ?= redis://127.0.0.1:6379/15
NOTIFY_TEST_POSTGRES_DSN ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
export NOTIFY_TEST_REDIS_URL NOTIFY_TEST_POSTGRES_DSN

GO_TEST_FLAGS ?= -race -count=1 -timeout 15m

.PHONY: all run build tools generate check-generated lint breaking test test-go services clean

all: build

## run: start notifyd in dev mode (in-memory broker, dev token secret)
run:
	go run ./cmd/notifyd --dev

## build: build notifyd and notifyctl into bin/
build:
	go build -o bin/ ./cmd/...

## tools: build the pinned code generators into .bin/ when missing
tools: .bin/buf .bin/protoc-gen-go .bin/protoc-gen-go-grpc .bin/protoc-gen-grpc-gateway .bin/protoc-gen-openapiv2

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

## generate: regenerate gen/ and the OpenAPI document from proto/ (offline)
generate: tools
	buf format -w
	rm -rf gen/notify gateway/openapi
	buf generate
	cd gen && go mod tidy

## check-generated: fail when `make generate` would change anything
check-generated: tools
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	cp -r proto buf.yaml buf.gen.yaml $$tmp/ && mkdir -p $$tmp/gateway $$tmp/gen && cp gen/go.mod gen/go.sum $$tmp/gen/ && \
	(cd $$tmp && buf generate) && \
	diff -r $$tmp/gen gen && diff -r $$tmp/gateway/openapi gateway/openapi && \
	echo "generated code is up to date" || \
	{ echo "gen/ is stale: run 'make generate' and commit the result" >&2; exit 1; }

## lint: buf lint and format, gofmt, go vet
lint: tools
	buf lint
	buf format -d --exit-code
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go' | grep -v '^gen/')); \
	if [ -n "$$out" ]; then echo "gofmt needed: $$out" >&2; exit 1; fi
	go vet ./...
	cd clients/go && go vet ./...

## breaking: buf breaking (WIRE_JSON) against the previous commit of main
breaking: tools
	@if git rev-parse -q --verify HEAD~1 >/dev/null && git cat-file -e HEAD~1:buf.yaml 2>/dev/null; then \
		buf breaking --against '.git#ref=HEAD~1' && echo "no breaking change against HEAD~1"; \
	else echo "breaking: no previous commit with a contract, nothing to compare"; fi

## services: start Redis and PostgreSQL when they are not running
services:
	@bash .ci/services

## test: everything CI runs
test: tools check-generated lint breaking services test-go

test-go:
	go test $(GO_TEST_FLAGS) ./...
	cd clients/go && go test $(GO_TEST_FLAGS) ./...

clean:
	rm -rf bin
