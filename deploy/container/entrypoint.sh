#!/usr/bin/env bash
# Entrypoint of the Co-op Flywheel images (the node image and the Flower image).
#
#   coop-entrypoint node        prepare the data directory, then serve (the node image's default)
#   coop-entrypoint prepare     only prepare: `coop init` on first start, node.public_url,
#                               the eval token copied for the SuperNode
#   coop-entrypoint pin-peers   pin the peers listed in COOP_PEERS (`coop peers add`), once each
#   coop-entrypoint superlink   a Flower SuperLink: TLS, SuperNode authentication, nothing installed at run time
#   coop-entrypoint supernode   a Flower SuperNode for one node (refuses to start if it can see node data)
#   coop-entrypoint register    register SuperNode public keys with the SuperLink (`flwr supernode register`)
#   coop-entrypoint health ROLE exit 0 when ROLE (node, superlink, supernode) answers
#   coop-entrypoint CMD ...     anything else runs as given (e.g. `coop backup ...`)
#
# Settings come from the environment; every default below is the image's layout.
set -euo pipefail

COOP_DATA="${COOP_DATA:-/var/lib/coop/data}"
COOP_EVAL_SHARE="${COOP_EVAL_SHARE:-/var/lib/coop/eval}"
COOP_EVAL_GROUP="${COOP_EVAL_GROUP:-coop-eval}"
COOP_HOST="${COOP_HOST:-0.0.0.0}"
COOP_PORT="${COOP_PORT:-8000}"
COOP_SERVER="${COOP_SERVER:-granian}"
COOP_PEERS="${COOP_PEERS:-}"
COOP_PEER_WAIT="${COOP_PEER_WAIT:-120}"
FLWR_PORT="${FLWR_PORT:-9093}"
FLWR_STATE="${FLWR_STATE:-/var/lib/flwr}"
FLWR_CLIENTAPPIO_PORT="${FLWR_CLIENTAPPIO_PORT:-9094}"
# Nothing of a run leaves the machine: no telemetry, no update checks, no usage statistics.
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1 RAY_USAGE_STATS_ENABLED=0
# Everything a node writes (database, keys, releases, backups) is private to its user.
umask 077

log() { printf 'coop-entrypoint: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 2
}

# -- the node ---------------------------------------------------------------------------------

prepare() {
    if [ ! -f "$COOP_DATA/node.toml" ]; then
        [ -n "${COOP_NAME:-}" ] || die "no node in $COOP_DATA yet: set COOP_NAME (the co-op's name) for the first start"
        log "first start: creating the node in $COOP_DATA"
        coop init "$COOP_DATA" --name "$COOP_NAME" >/dev/null
        log "node id $(coop identity show "$COOP_DATA" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node_id"])')"
    fi
    if [ -n "${COOP_PUBLIC_URL:-}" ]; then
        # node.toml is validated by the node's own Config type: an unknown or bad value fails here.
        python3 - "$COOP_DATA/node.toml" "$COOP_PUBLIC_URL" <<'PY'
import sys
from pathlib import Path

import msgspec

from coop.node.config import load_config, write_config

path, url = Path(sys.argv[1]), sys.argv[2].rstrip("/")
config = load_config(path)
if config.node.public_url != url:
    write_config(path, msgspec.structs.replace(config, node=msgspec.structs.replace(config.node, public_url=url)))
PY
    fi
    # Opening the evaluation service creates keys/eval.token (mode 0600) when it is missing.
    coop eval requests "$COOP_DATA" --json >/dev/null
    export_eval_token
}

export_eval_token() {
    # The SuperNode gets a copy of the eval token and nothing else of the data directory.
    if [ ! -d "$COOP_EVAL_SHARE" ] || [ ! -w "$COOP_EVAL_SHARE" ]; then
        log "no writable $COOP_EVAL_SHARE: the eval token is not shared (no SuperNode next to this node)"
        return 0
    fi
    local tmp="$COOP_EVAL_SHARE/.eval.token.$$"
    cp "$COOP_DATA/keys/eval.token" "$tmp"
    if id -nG | tr ' ' '\n' | grep -qx "$COOP_EVAL_GROUP"; then
        chgrp "$COOP_EVAL_GROUP" "$tmp"
        chmod 0440 "$tmp"
    else
        chmod 0400 "$tmp"
    fi
    mv -f "$tmp" "$COOP_EVAL_SHARE/eval.token"
}

pinned_urls() {
    coop peers list "$COOP_DATA" --json | python3 -c 'import json,sys; print("\n".join(p["url"] for p in json.load(sys.stdin)))'
}

fetch_node_id() {
    # Trust on first use: the peer's id as its node says it, over the network. Compare the
    # fingerprint printed here with the peer's admin before relying on it.
    python3 - "$1" "$COOP_PEER_WAIT" <<'PY'
import json
import sys
import time
import urllib.request

url, wait = sys.argv[1].rstrip("/"), float(sys.argv[2])
deadline = time.monotonic() + wait
while True:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/federation/identity", timeout=5) as response:
            info = json.load(response)
        print(info["node_id"], info["fingerprint"])
        break
    except (OSError, ValueError, KeyError) as exc:
        if time.monotonic() > deadline:
            sys.exit(f"{url} did not tell its node id within {wait:g} s: {exc}")
        time.sleep(2)
PY
}

pin_peers() {
    [ -n "$COOP_PEERS" ] || {
        log "COOP_PEERS is empty: no peers to pin"
        return 0
    }
    [ -f "$COOP_DATA/node.toml" ] || die "no node in $COOP_DATA: start the node first"
    local pinned entry url key info
    pinned="$(pinned_urls)"
    # Entries are URL (the id is fetched from the peer) or URL,NODE_ID (the id compared out of band).
    for entry in $COOP_PEERS; do
        url="${entry%%,*}"
        url="${url%/}"
        key=""
        [ "$entry" = "${entry#*,}" ] || key="${entry#*,}"
        if printf '%s\n' "$pinned" | grep -qxF "$url"; then
            log "$url is already pinned"
            continue
        fi
        if [ -z "$key" ]; then
            info="$(fetch_node_id "$url")" || die "could not learn the node id of $url"
            key="${info%% *}"
            log "$url says its node id is $key (fingerprint ${info#* }): trusted on first use"
        fi
        coop peers add "$COOP_DATA" "$url" --key "$key" >/dev/null
        log "pinned $url"
    done
}

# -- Flower ------------------------------------------------------------------------------------

require_file() {
    [ -r "$2" ] || die "$1 ($2) is missing or unreadable"
}

superlink() {
    require_file FLWR_CA_CERT "${FLWR_CA_CERT:-}"
    require_file FLWR_SERVER_CERT "${FLWR_SERVER_CERT:-}"
    require_file FLWR_SERVER_KEY "${FLWR_SERVER_KEY:-}"
    mkdir -p "$FLWR_STATE"
    exec flower-superlink \
        --ssl-ca-certfile "$FLWR_CA_CERT" \
        --ssl-certfile "$FLWR_SERVER_CERT" \
        --ssl-keyfile "$FLWR_SERVER_KEY" \
        --enable-supernode-auth \
        --disable-runtime-dependency-installation \
        --host "${FLWR_HOST:-0.0.0.0}" --port "$FLWR_PORT" \
        --database "$FLWR_STATE/superlink.db"
}

supernode() {
    : "${FLWR_SUPERLINK:?set FLWR_SUPERLINK (host:port of the SuperLink)}"
    : "${COOP_EVAL_URL:?set COOP_EVAL_URL (the node on loopback, e.g. http://127.0.0.1:8000)}"
    local token="${COOP_EVAL_TOKEN_FILE:-$COOP_EVAL_SHARE/eval.token}"
    require_file FLWR_CA_CERT "${FLWR_CA_CERT:-}"
    require_file FLWR_SUPERNODE_KEY "${FLWR_SUPERNODE_KEY:-}"
    require_file COOP_EVAL_TOKEN_FILE "$token"
    # The ClientApp is code the requester ships: it must not be able to read any node's data.
    if [ -e "$COOP_DATA/node.toml" ] || [ -e "$COOP_DATA/keys" ]; then
        die "this SuperNode can see a node's data directory ($COOP_DATA): do not mount it here"
    fi
    exec flower-supernode \
        --superlink "$FLWR_SUPERLINK" \
        --root-certificates "$FLWR_CA_CERT" \
        --auth-supernode-private-key "$FLWR_SUPERNODE_KEY" \
        --port "$FLWR_CLIENTAPPIO_PORT" \
        --node-config "coop-eval-url='${COOP_EVAL_URL%/}' coop-eval-token-file='$token'"
}

register() {
    : "${FLWR_SUPERLINK:?set FLWR_SUPERLINK (host:port of the SuperLink)}"
    require_file FLWR_CA_CERT "${FLWR_CA_CERT:-}"
    [ "$#" -gt 0 ] || die "name the SuperNode public keys to register (ssh-keygen .pub files)"
    # `flwr` reads its connection from FLWR_HOME/config.toml.
    export FLWR_HOME="${FLWR_HOME:-$(mktemp -d)}"
    mkdir -p "$FLWR_HOME"
    cat >"$FLWR_HOME/config.toml" <<EOF
[superlink]
default = "coop"

[superlink.coop]
address = "$FLWR_SUPERLINK"
root-certificates = "$FLWR_CA_CERT"
EOF
    local failed=0 pub
    for pub in "$@"; do
        require_file "public key" "$pub"
        if flwr supernode register "$pub" coop; then
            log "registered $pub"
        else
            log "could not register $pub (already registered? see: flwr supernode list coop)"
            failed=1
        fi
    done
    return "$failed"
}

health() {
    case "${1:-}" in
        node) python3 -c 'import sys, urllib.request; sys.exit(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=4).status != 200)' "$COOP_PORT" ;;
        superlink) python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=4).close()' "$FLWR_PORT" ;;
        supernode) python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=4).close()' "$FLWR_CLIENTAPPIO_PORT" ;;
        *) die "health takes node, superlink or supernode" ;;
    esac
}

main() {
    local mode="${1:-node}"
    [ "$#" -eq 0 ] || shift
    case "$mode" in
        node)
            prepare
            exec coop serve "$COOP_DATA" --host "$COOP_HOST" --port "$COOP_PORT" --server "$COOP_SERVER"
            ;;
        prepare) prepare ;;
        pin-peers) pin_peers ;;
        superlink) superlink ;;
        supernode) supernode ;;
        register) register "$@" ;;
        health) health "$@" ;;
        *) exec "$mode" "$@" ;;
    esac
}

main "$@"
