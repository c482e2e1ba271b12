# The Solidity side (contracts/), included from the main Makefile.
#
# Tools come from npm, pinned in package.json / package-lock.json: forge, anvil and cast from
# @foundry-rs/* (the packages carry the real binaries), the compiler is solc-js behind
# contracts/solc-js-wrapper (named in foundry.toml), OpenZeppelin and forge-std as sources.

NPM ?= npm
NODE_MODULES := node_modules
# Touched after a successful `npm ci`; npm ci empties node_modules first, so a stale stamp
# never outlives the install it stands for.
NODE_STAMP := $(NODE_MODULES)/.installed-from-lock

# Paths of the tools (the .bin entries are small node launchers that pick the platform's binary
# and forward SIGINT/SIGTERM to it). Python code and tests find anvil at node_modules/.bin/anvil.
FORGE := $(NODE_MODULES)/.bin/forge
ANVIL := $(NODE_MODULES)/.bin/anvil
CAST := $(NODE_MODULES)/.bin/cast
# The linux-amd64 binaries themselves, for callers that want no node process in between.
ANVIL_BINARY := $(NODE_MODULES)/@foundry-rs/anvil-linux-amd64/bin/anvil
FORGE_BINARY := $(NODE_MODULES)/@foundry-rs/forge-linux-amd64/bin/forge

# build_artifacts.py needs the standard library only.
CONTRACTS_PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: node-tools contracts forge-test contracts-clean

# package.json's allowScripts denies the @foundry-rs packages' postinstall scripts: they would
# download the binaries that the platform packages (@foundry-rs/*-linux-amd64) already carry.
node-tools: $(NODE_STAMP)

$(NODE_STAMP): package.json package-lock.json
	$(NPM) ci --no-audit --no-fund
	$(ANVIL) --version >/dev/null
	$(FORGE) --version >/dev/null
	touch $@

# Compile and refresh the committed ABI/bytecode files in contracts/artifacts/.
contracts: node-tools
	$(FORGE) build
	$(CONTRACTS_PYTHON) contracts/build_artifacts.py

forge-test: node-tools
	$(FORGE) test

contracts-clean:
	rm -rf contracts/out contracts/cache
