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

# Each fuzz target for FUZZTIME (go test -fuzz runs one target at a time).
fuzz:
	$(GO) test ./predictor -run XXX -fuzz '^FuzzTokenize$$' -fuzztime $(FUZZTIME)
	$(GO) test ./predictor -run XXX -fuzz '^FuzzRules$$' -fuzztime $(FUZZTIME)
	$(GO) test ./predictor -run XXX -fuzz '^FuzzNormalize$$' -fuzztime $(FUZZTIME)
	$(GO) test ./predictor -run XXX -fuzz '^FuzzLoadExport$$' -fuzztime $(FUZZTIME)
	$(GO) test ./predictor -run XXX -fuzz '^FuzzLoadExports$$' -fuzztime $(FUZZTIME)
	$(GO) test ./predictor -run XXX -fuzz '^FuzzLint$$' -fuzztime $(FUZZTIME)
	$(GO) test ./predictor -run XXX -fuzz '^FuzzLintBreakdowns$$' -fuzztime $(FUZZTIME)
	$(GO) test ./predictor -run XXX -fuzz '^FuzzWordFacts$$' -fuzztime $(FUZZTIME)
	$(GO) test ./predictor -run XXX -fuzz '^FuzzResolveSink$$' -fuzztime $(FUZZTIME)
	$(GO) test ./worker/sidekiq -run XXX -fuzz '^FuzzParseJob$$' -fuzztime $(FUZZTIME)
	$(GO) test ./model -run XXX -fuzz '^FuzzReadCRFsuite$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s
	$(GO) test ./model -run XXX -fuzz '^FuzzReadPickle$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s
	$(GO) test ./model -run XXX -fuzz '^FuzzReadNative$$' -fuzztime $(FUZZTIME)

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
