#!/bin/sh
# Start redis-server with redis.conf and users made from secrets, never stored in git:
#
#   admin   every command: for operators and for replication
#   app     the service's user: its own keys (REDIS_KEY_PREFIX:*) and the commands it
#           needs; no FLUSHALL/FLUSHDB/CONFIG/DEBUG/KEYS/SHUTDOWN/MONITOR/ACL
#   default disabled
#
# Passwords come from REDIS_APP_PASSWORD and REDIS_ADMIN_PASSWORD, or from files named
# by REDIS_APP_PASSWORD_FILE and REDIS_ADMIN_PASSWORD_FILE (Docker secrets). They reach
# Redis only as SHA-256 hashes in an ACL file, and (for replication) in a config file,
# both readable by this user only, never on a command line.
#
# Optional, for replicated deployments (compose.yaml sets them):
#   REDIS_REPLICA_OF="host port"   start as a replica of that master
#   REDIS_CLUSTER=yes              start as a Redis Cluster node
#   REDIS_ANNOUNCE_HOSTNAME=name   the name other nodes and clients should use
# Extra arguments are passed to redis-server (compose adds --bind, tests add --port).
set -eu

conf=${REDIS_CONF:-/usr/local/etc/redis/redis.conf}
acl_dir=${REDIS_ACL_DIR:-/tmp}
prefix=${REDIS_KEY_PREFIX:-{{ cookiecutter.project_slug }}}

secret() {
    eval "value=\${$1:-}"
    eval "file=\${$1_FILE:-}"
    if [ -z "$value" ] && [ -n "$file" ]; then
        value=$(cat "$file")
    fi
    if [ -z "$value" ]; then
        echo "entrypoint.sh: set $1 (or $1_FILE)" >&2
        exit 1
    fi
    printf '%s' "$value"
}

sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum | cut -d ' ' -f 1
    else
        shasum -a 256 | cut -d ' ' -f 1
    fi
}

admin_password=$(secret REDIS_ADMIN_PASSWORD)
admin_hash=$(printf '%s' "$admin_password" | sha256)
app_hash=$(secret REDIS_APP_PASSWORD | sha256)

umask 077
acl_file="$acl_dir/redis-users.acl"
cat > "$acl_file" <<ACL
user default off resetkeys -@all
user admin on #$admin_hash ~* &* +@all
user app on #$app_hash resetkeys ~$prefix:* resetchannels{% if cookiecutter.use_realtime %} &$prefix:*{% endif %} -@all +@read +@write +@scripting +@connection{% if cookiecutter.use_realtime %} +@pubsub{% endif %} +time -@dangerous -@admin -scan -function -script|flush -script|kill -script|debug +cluster|info +cluster|slots +cluster|shards +cluster|nodes
ACL

runtime="$acl_dir/redis-runtime.conf"
{
    echo "include $conf"
    echo "aclfile $acl_file"
    if [ -n "${REDIS_REPLICA_OF:-}" ]; then
        echo "replicaof $REDIS_REPLICA_OF"
    fi
    if [ -n "${REDIS_REPLICA_OF:-}" ] || [ "${REDIS_CLUSTER:-no}" = yes ]; then
        # Replicas authenticate to their master as admin.
        echo "masteruser admin"
        echo "masterauth $admin_password"
    fi
    if [ "${REDIS_CLUSTER:-no}" = yes ]; then
        echo "cluster-enabled yes"
        echo "cluster-config-file nodes.conf"
        echo "cluster-node-timeout 5000"
    fi
    if [ -n "${REDIS_ANNOUNCE_HOSTNAME:-}" ]; then
        echo "replica-announce-ip $REDIS_ANNOUNCE_HOSTNAME"
        if [ "${REDIS_CLUSTER:-no}" = yes ]; then
            echo "cluster-announce-hostname $REDIS_ANNOUNCE_HOSTNAME"
            echo "cluster-preferred-endpoint-type hostname"
        fi
    fi
} > "$runtime"

exec redis-server "$runtime" "$@"
