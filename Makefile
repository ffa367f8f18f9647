# patchbay — build, test and run. `make help` lists the targets.

# Versions of the tools built into the user cache (PATCHBAY_CACHE, default
# ~/.cache/patchbay), cached by version outside the clone: a fresh clone, as in
# CI, builds nothing that an earlier clone on this machine built.
CONTROLLER_GEN_VERSION ?= v0.23.0
HELM_VERSION ?= v3.22.0
KWOK_VERSION ?= v0.8.0
# golangci-lint and kube-api-linter: .custom-gcl.yml pins both (the file
# `golangci-lint custom` reads), so they are read from there.
GOLANGCI_LINT_VERSION ?= $(shell sed -n 's/^version: *//p' .custom-gcl.yml)
KUBE_API_LINTER_VERSION ?= $(shell sed -n 's/^ \{1,\}version: *//p' .custom-gcl.yml)

IMG_REGISTRY ?= ghcr.io/patchbay-dev
VERSION ?= 0.1.0
IMG ?= $(IMG_REGISTRY)/patchbay-manager:$(VERSION)
RUNTIME_IMG ?= $(IMG_REGISTRY)/patchbay-runtime:$(VERSION)
DEMO_STEP_IMG ?= $(IMG_REGISTRY)/demo-step:$(VERSION)
# The NATS server image is built from the nats-server module go.mod requires, and
# tagged with its version (evaluated only by the targets that use it).
NATS_IMG ?= $(IMG_REGISTRY)/nats-server:$(shell go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
PAUSE_IMG ?= $(IMG_REGISTRY)/pause:$(VERSION)
LOCAL_PATH_HELPER_IMG ?= $(IMG_REGISTRY)/local-path-helper:$(VERSION)
PROBE_IMG ?= $(IMG_REGISTRY)/cluster-probe:$(VERSION)

LOCALBIN ?= $(CURDIR)/bin
IMAGES_DIR ?= $(LOCALBIN)/images
PATCHBAY_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/patchbay
export PATCHBAY_CACHE
TOOLS ?= $(PATCHBAY_CACHE)/tools
CONTROLLER_GEN ?= $(TOOLS)/controller-gen-$(CONTROLLER_GEN_VERSION)/controller-gen
HELM ?= $(TOOLS)/helm-$(HELM_VERSION)/helm
KWOK_DIR ?= $(TOOLS)/kwok-$(KWOK_VERSION)
KWOK ?= $(KWOK_DIR)/kwok
KWOKCTL ?= $(KWOK_DIR)/kwokctl
GOLANGCI_LINT ?= $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint
GOLANGCI_KAL ?= $(TOOLS)/golangci-lint-kal-$(GOLANGCI_LINT_VERSION)-$(KUBE_API_LINTER_VERSION)/golangci-lint-kal

CHART ?= charts/patchbay

# go test flags; CI may add -race or -count=1.
TEST_FLAGS ?=
GO_TEST_PACKAGES ?= ./...

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRDs and the manager's RBAC from the API types and markers, and copy them into the chart.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases
	@# config/ is the one source; the chart carries generated copies (make verify checks them).
	rm -f $(CHART)/crds/*.yaml && cp config/crd/bases/*.yaml $(CHART)/crds/
	cp config/rbac/role.yaml $(CHART)/files/role.yaml

.PHONY: generate
generate: controller-gen ## Generate the DeepCopy methods of the API types.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (.golangci.yml) on the whole module, the cluster tiers' tags included.
	$(GOLANGCI_LINT) run ./...

.PHONY: lint-fix
lint-fix: golangci-lint ## Run golangci-lint and apply the fixes its linters offer (review the diff).
	$(GOLANGCI_LINT) run --fix ./...

.PHONY: lint-api
lint-api: golangci-kal ## Run kube-api-linter (.golangci-kal.yml) on the API types.
	$(GOLANGCI_KAL) run -c .golangci-kal.yml ./api/...

.PHONY: verify
verify: controller-gen golangci-lint golangci-kal ## Fail if generated code (CRDs, RBAC, deepcopy) is stale, code is not gofmt-clean, or go vet, golangci-lint or kube-api-linter complains.
	hack/verify-generated.sh
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "Not gofmt-clean (run 'make fmt'):"; echo "$$unformatted"; exit 1; fi
	go mod tidy -diff
	go vet ./...
	@# The cluster tiers and the fault-injection suite build only under their tags.
	go vet -tags cluster,e2e,faults ./test/...
	$(MAKE) -s lint lint-api

.PHONY: test
test: test-unit test-faults test-cluster ## Run every test tier: test-unit, test-faults, then test-cluster on the local real node (needs root).

.PHONY: test-unit
test-unit: manifests generate envtest helm ## Unit, golden, fuzz seeds, chart rendering, envtest suites and data-plane e2e: no cluster, no root.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" HELM=$(HELM) go test $(TEST_FLAGS) $(GO_TEST_PACKAGES)

.PHONY: test-e2e
test-e2e: manifests helm kwok cluster-assets ## Cluster e2e on kwok: helm install the chart, run the manager, apply config/samples, expect Ready.
	HELM=$(HELM) KWOKCTL=$(KWOKCTL) KWOK=$(KWOK) KUBE_ASSETS="$$(hack/cluster-assets.sh)" TEST_FLAGS="$(TEST_FLAGS)" \
		hack/test-e2e.sh

# The Ginkgo label filter of make test-faults: every case whose feature has
# landed. Cases still waiting for theirs carry Label("pending-feature:NAME");
# add NAME here to run them, e.g.
# FAULTS_LABEL_FILTER='pending-feature: isEmpty || pending-feature: consistsOf {run-deadline}'.
FAULTS_LABEL_FILTER ?= pending-feature: isEmpty

.PHONY: test-faults
test-faults: ## Fault injection: role processes and a nats-server SIGKILLed under 500 runs per async style, and every predicted failure as its own case (docs/testing.md).
	go test -tags faults -count=1 -timeout=30m -v ./test/faults/ -args -ginkgo.label-filter='$(FAULTS_LABEL_FILTER)'

.PHONY: chart-lint
chart-lint: manifests helm ## Lint and render the Helm chart, and test what it renders.
	$(HELM) lint --strict $(CHART)
	$(HELM) template patchbay $(CHART) --namespace patchbay-system >/dev/null
	HELM=$(HELM) go test -count=1 ./test/chart/...

.PHONY: test-update-golden
test-update-golden: ## Rewrite the golden files from the current code; review the diff.
	UPDATE_GOLDEN=1 go test ./internal/...

##@ Benchmarks

# Flags of test/bench, such as BENCH_FLAGS="-hop-duration 30s -operator-workflows 200".
BENCH_FLAGS ?=
BENCH = $(LOCALBIN)/bench

.PHONY: bench
bench: envtest bench-build ## Measure the performance targets (README, Benchmarks) against baselines of the same run and print a table (about 9 minutes).
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" $(BENCH) -runtime $(LOCALBIN)/patchbay-runtime -sidecar $(LOCALBIN)/patchbay-sidecar $(BENCH_FLAGS)

.PHONY: bench-hop
bench-hop: bench-build ## Measure the sync hop (fortio: direct, bare ReverseProxy, sidecar), the breaker, raw NATS and the sync wrapper.
	$(BENCH) -run hop,breaker,nats -runtime $(LOCALBIN)/patchbay-runtime -sidecar $(LOCALBIN)/patchbay-sidecar $(BENCH_FLAGS)

.PHONY: bench-operator
bench-operator: envtest bench-build ## Measure the manager converging Workflows on envtest against a plain client, and its writes after a restart.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" $(BENCH) -run operator $(BENCH_FLAGS)

.PHONY: bench-build
bench-build: build-runtime ## Build the benchmark command (test/bench) and patchbay-runtime into bin/.
	go build -o $(BENCH) ./test/bench

##@ Build

.PHONY: build
build: ## Build the manager binary into bin/.
	go build -o $(LOCALBIN)/manager .

.PHONY: run
run: manifests ## Run the manager against the cluster of the current kubeconfig.
	go run . --metrics-bind-address=:8080 --health-probe-bind-address=:8081

.PHONY: docker-build
docker-build: ## Build the manager image (needs a Docker engine).
	docker build -t $(IMG) .

.PHONY: build-runtime
build-runtime: ## Build patchbay-runtime, patchbay-sidecar (as the image has it) and demo-step into bin/.
	CGO_ENABLED=0 go build -o $(LOCALBIN)/patchbay-runtime ./images/runtime
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o $(LOCALBIN)/patchbay-sidecar ./images/runtime/sidecar
	CGO_ENABLED=0 go build -o $(LOCALBIN)/demo-step ./images/demo-step

.PHONY: runtime-image
runtime-image: ## Build the patchbay-runtime image: sidecar (patchbay-sidecar), orchestrator, gateway, dev (needs a Docker engine).
	docker build -f images/runtime/Dockerfile -t $(RUNTIME_IMG) .

.PHONY: demo-step-image
demo-step-image: ## Build the demo-step image used by the samples (needs a Docker engine).
	docker build -f images/demo-step/Dockerfile -t $(DEMO_STEP_IMG) .

.PHONY: images
images: ## Build the manager, runtime, demo-step, NATS, pause, local-path helper and cluster probe image archives into bin/images without Docker (import with ctr images import or kind load image-archive).
	go run ./hack/images -out $(IMAGES_DIR) -img $(IMG) -runtime-img $(RUNTIME_IMG) -demo-step-img $(DEMO_STEP_IMG) \
		-nats-img $(NATS_IMG) -pause-img $(PAUSE_IMG) -local-path-helper-img $(LOCAL_PATH_HELPER_IMG) -probe-img $(PROBE_IMG)

.PHONY: dev
dev: ## Run a Workflow's data plane locally: make dev WORKFLOW=config/samples/sync-chain.yaml
	go run ./images/runtime dev -f $(or $(WORKFLOW),config/samples/sync-orchestrated.yaml)

.PHONY: graph
graph: ## Draw a Workflow's topology: make graph WORKFLOW=config/samples/hybrid.yaml [FORMAT=dot] (Mermaid by default)
	@go run ./images/runtime graph -f $(or $(WORKFLOW),config/samples/sync-orchestrated.yaml) --format $(or $(FORMAT),mermaid)

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the cluster of the current kubeconfig.
	kubectl apply --server-side -k config/crd

.PHONY: uninstall
uninstall: ## Remove the CRDs (and every Workflow and Broker) from the cluster.
	kubectl delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the manager with kustomize (config/default).
	kubectl apply --server-side -k config/default

.PHONY: undeploy
undeploy: ## Remove the manager deployed with 'make deploy'.
	kubectl delete --ignore-not-found -k config/default

.PHONY: helm-install
helm-install: manifests helm ## Install (or upgrade) the chart into namespace patchbay-system of the current kubeconfig.
	$(HELM) upgrade --install patchbay $(CHART) --namespace patchbay-system --create-namespace

##@ Tools

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Build controller-gen into the tools cache (once per version).
$(CONTROLLER_GEN):
	GOBIN=$(dir $(CONTROLLER_GEN)) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT) ## Build golangci-lint into the tools cache (once per version).
$(GOLANGCI_LINT):
	GOBIN=$(dir $(GOLANGCI_LINT)) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: golangci-kal
golangci-kal: $(GOLANGCI_KAL) ## Build golangci-lint with kube-api-linter (golangci-lint custom, .custom-gcl.yml) into the tools cache (once per version pair).
$(GOLANGCI_KAL): | $(GOLANGCI_LINT)
	hack/golangci-custom.sh $(GOLANGCI_LINT) $(dir $(GOLANGCI_KAL))

.PHONY: envtest
envtest: ## Download or build kube-apiserver, etcd and kubectl for envtest into the tools cache (once per version).
	@hack/envtest-assets.sh >/dev/null

.PHONY: helm
helm: $(HELM) ## Build helm into the tools cache (once per version).
$(HELM):
	GOBIN=$(dir $(HELM)) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

.PHONY: kwok
kwok: $(KWOK) $(KWOKCTL) ## Build kwok and kwokctl into the tools cache (once per version).
$(KWOK):
	GOBIN=$(KWOK_DIR) go install sigs.k8s.io/kwok/cmd/kwok@$(KWOK_VERSION)
$(KWOKCTL):
	GOBIN=$(KWOK_DIR) go install sigs.k8s.io/kwok/cmd/kwokctl@$(KWOK_VERSION)

.PHONY: cluster-assets
cluster-assets: envtest ## Build kube-controller-manager and kube-scheduler next to the envtest assets in the tools cache (once per version).
	@hack/cluster-assets.sh >/dev/null

##@ Local cluster (a real node on this machine, no Docker)

.PHONY: cluster-up
cluster-up: cluster-assets images ## Start the one-node local cluster (hack/local-cluster.sh up); prints the KUBECONFIG line.
	hack/local-cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and remove every process, mount, bridge and iptables chain it made.
	hack/local-cluster.sh down

.PHONY: cluster-status
cluster-status: ## Say what of the local cluster runs.
	hack/local-cluster.sh status

.PHONY: test-cluster
test-cluster: manifests helm cluster-assets images ## The cluster tier on the local real node: chart, samples from host and pod, NATS cluster, policies, faults.
	HELM=$(HELM) VERSION=$(VERSION) NATS_IMG=$(NATS_IMG) PROBE_IMG=$(PROBE_IMG) TEST_FLAGS="$(TEST_FLAGS)" hack/test-cluster.sh

.PHONY: demo
demo: manifests helm cluster-assets images ## The demo: local cluster, chart, Broker, every sample, one request per style.
	HELM=$(HELM) VERSION=$(VERSION) NATS_IMG=$(NATS_IMG) hack/demo.sh local

.PHONY: demo-down
demo-down: ## Remove the demo and the local cluster.
	hack/local-cluster.sh down

.PHONY: kind-demo
kind-demo: manifests helm images ## The same demo on a kind cluster named patchbay (needs Docker and kind).
	HELM=$(HELM) VERSION=$(VERSION) NATS_IMG=$(NATS_IMG) hack/demo.sh kind
