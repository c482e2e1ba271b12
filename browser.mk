# Debian's Chromium and its ChromeDriver, for the explorer's tests in a real headless browser
# (tests/explorer/). Included from the main Makefile; installed once, from the OS packages.

CHROMIUM ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver

.PHONY: browser

browser:
	@if [ -x "$(CHROMIUM)" ] && [ -x "$(CHROMEDRIVER)" ]; then \
		echo "$$($(CHROMIUM) --version 2>/dev/null): $(CHROMIUM), $(CHROMEDRIVER)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver (Debian packages) for the explorer's tests"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null && \
		[ -x "$(CHROMIUM)" ] && [ -x "$(CHROMEDRIVER)" ] || { echo "error: chromium or chromedriver is still missing" >&2; exit 1; }; \
	else \
		echo "error: no $(CHROMIUM) and no apt-get: install Chromium and ChromeDriver of the same version," >&2; \
		echo "       then run with CHROMIUM=... CHROMEDRIVER=... (tests/explorer reads them from the environment)" >&2; \
		exit 1; \
	fi
