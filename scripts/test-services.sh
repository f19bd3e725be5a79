#!/usr/bin/env bash
# Best effort, before the test suite: the browser and services the end-to-end tests use, from
# Debian's packages, and PostgreSQL started on 127.0.0.1 with a test role. Where this cannot run
# (not root, no apt), the tests that need them skip and say why.
set -u
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "test-services: not root or no apt-get; the UI, PostgreSQL and compose tests may skip"
  exit 0
fi
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
command -v docker-compose >/dev/null || missing+=(docker-compose)  # the client only: no Docker engine
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-services: installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if command -v pg_lsclusters >/dev/null; then
  read -r version cluster _ < <(pg_lsclusters -h | head -n 1)
  if [ -n "${version:-}" ]; then
    pg_ctlcluster "$version" "$cluster" start 2>/dev/null || true
    su postgres -c "psql -qtAc \"select 1 from pg_roles where rolname = 'greenery'\"" | grep -q 1 \
      || su postgres -c "psql -qc \"create role greenery login createdb password 'greenery'\""
  fi
fi
exit 0
