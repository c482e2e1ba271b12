# Debian's docker-compose (1.29): tests/test_compose.py validates docker-compose.yml with
# `docker-compose config` (no Docker engine needed). Included from the main Makefile.

DOCKER_COMPOSE ?= docker-compose

.PHONY: docker-compose-tool

docker-compose-tool:
	@if command -v $(DOCKER_COMPOSE) >/dev/null 2>&1; then \
		echo "$$($(DOCKER_COMPOSE) version --short 2>/dev/null || echo present): $$(command -v $(DOCKER_COMPOSE))"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		echo "installing docker-compose (Debian package) to check docker-compose.yml"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq docker-compose >/dev/null && \
		command -v $(DOCKER_COMPOSE) >/dev/null || { echo "error: docker-compose is still missing" >&2; exit 1; }; \
	else \
		echo "error: $(DOCKER_COMPOSE) not found and no apt-get: install docker-compose 1.29 (pip or your OS packages)" >&2; \
		exit 1; \
	fi
