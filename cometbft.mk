# The pinned CometBFT binary (the `cometbft` engine and its e2e tests), included from the main
# Makefile. Built from source by the Go module proxy: `go install` into .tools/bin, skipped when
# the binary there already reports the pinned version.

COMETBFT_VERSION := v0.38.26
COMETBFT := .tools/bin/cometbft
GO ?= go

.PHONY: cometbft

cometbft:
	@if [ -x "$(COMETBFT)" ] && [ "$$($(COMETBFT) version 2>/dev/null)" = "$(COMETBFT_VERSION:v%=%)" ]; then \
		echo "$(COMETBFT) is $(COMETBFT_VERSION)"; \
	else \
		if ! command -v $(GO) >/dev/null 2>&1; then \
			echo "error: '$(GO)' not found: CometBFT $(COMETBFT_VERSION) is built from source with Go >= 1.22" >&2; \
			echo "       (install Go from your OS packages or https://go.dev/dl, then run 'make cometbft')" >&2; \
			exit 1; \
		fi; \
		echo "building CometBFT $(COMETBFT_VERSION) into $(COMETBFT) (takes a few minutes)"; \
		GOBIN=$(CURDIR)/.tools/bin CGO_ENABLED=0 $(GO) install github.com/cometbft/cometbft/cmd/cometbft@$(COMETBFT_VERSION) && \
		test "$$($(COMETBFT) version)" = "$(COMETBFT_VERSION:v%=%)" || \
		{ echo "error: $(COMETBFT) does not report version $(COMETBFT_VERSION:v%=%)" >&2; exit 1; }; \
	fi
