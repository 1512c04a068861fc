# maskpredictor: common tasks. `make test` is what CI runs (see .ci/run).
GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 30s
BIN     ?= bin/maskpredictor

.PHONY: build test test-short race vet lint fuzz bench model clean

build:
	$(GO) build -o $(BIN) ./cmd/maskpredictor

# The whole suite: vet, formatting, and every test with the race detector.
test: lint
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

vet:
	$(GO) vet $(PKGS)

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Every fuzz target of the module (found in the sources) for FUZZTIME each.
fuzz:
	scripts/fuzz-all $(FUZZTIME)

# Benchmarks pinned to one CPU, as BENCHMARKS.md reports them.
bench:
	taskset -c 0 $(GO) test -run XXX -bench . -benchmem -count 10 ./model ./predictor

# The embedded default model (predictor/default_model.mpcrf): feature set v4
# and the parameters cross-validation chose (BENCHMARKS.md), trained on all of
# testdata/train.json (fixed under docs/labelling.md) and
# testdata/labelled_extra.json, with the 5-fold plain and grouped-by-maker CV
# figures recorded in the model.
# Deterministic: the same data and flags give a byte-identical file.
# The training files are copied to predictor/basedata/ (embedded for
# `maskpredictor retrain`), whose constants match MODEL_FLAGS (its tests check
# both).
MODEL_FLAGS ?= --features v4 --c1 0.05 --c2 0.01 --max-iterations 200 --cv 5 --group-by maker
model:
	cp testdata/train.json testdata/labelled_extra.json predictor/basedata/
	$(GO) run ./cmd/maskpredictor train --data testdata/train.json --data testdata/labelled_extra.json --out predictor/default_model.mpcrf $(MODEL_FLAGS)

clean:
	rm -rf bin
