#!/bin/sh
# Start a Redis Sentinel that watches the master `REDIS_SENTINEL_SERVICE` (default
# mymaster) at REDIS_MASTER_HOST:REDIS_MASTER_PORT, logging in to the data nodes as admin.
# Sentinel rewrites its config as it learns the deployment, so the file is generated
# into a writable directory at start. Secrets come from the environment (or *_FILE).
set -eu

secret() {
    eval "value=\${$1:-}"
    eval "file=\${$1_FILE:-}"
    if [ -z "$value" ] && [ -n "$file" ]; then
        value=$(cat "$file")
    fi
    printf '%s' "$value"
}

service=${REDIS_SENTINEL_SERVICE:-mymaster}
admin_password=$(secret REDIS_ADMIN_PASSWORD)
sentinel_password=$(secret REDIS_SENTINEL_PASSWORD)
if [ -z "$admin_password" ]; then
    echo "sentinel.sh: set REDIS_ADMIN_PASSWORD (or REDIS_ADMIN_PASSWORD_FILE)" >&2
    exit 1
fi

umask 077
conf="${SENTINEL_DIR:-/tmp}/sentinel.conf"
{
    echo "port ${SENTINEL_PORT:-26379}"
    echo "sentinel resolve-hostnames yes"
    echo "sentinel announce-hostnames yes"
    # Two of the three sentinels must agree that the master is down.
    echo "sentinel monitor $service ${REDIS_MASTER_HOST:-redis} ${REDIS_MASTER_PORT:-6379} 2"
    echo "sentinel auth-user $service admin"
    echo "sentinel auth-pass $service $admin_password"
    # Declared down after 5 s without an answer; a failover then takes a few seconds more.
    echo "sentinel down-after-milliseconds $service 5000"
    echo "sentinel failover-timeout $service 60000"
    echo "sentinel parallel-syncs $service 1"
    if [ -n "$sentinel_password" ]; then
        echo "requirepass $sentinel_password"
        echo "sentinel sentinel-pass $sentinel_password"
    fi
} > "$conf"

exec redis-server "$conf" --sentinel "$@"
