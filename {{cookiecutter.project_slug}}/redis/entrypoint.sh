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
# Redis only as SHA-256 hashes in an ACL file that only this user can read.
# Extra arguments are passed to redis-server (compose adds --bind, tests add --port).
set -eu

conf=${REDIS_CONF:-/usr/local/etc/redis/redis.conf}
acl_dir=${REDIS_ACL_DIR:-/tmp}
prefix=${REDIS_KEY_PREFIX:-{{ cookiecutter.project_slug }}}

secret_hash() {
    eval "value=\${$1:-}"
    eval "file=\${$1_FILE:-}"
    if [ -z "$value" ] && [ -n "$file" ]; then
        value=$(cat "$file")
    fi
    if [ -z "$value" ]; then
        echo "entrypoint.sh: set $1 (or $1_FILE)" >&2
        exit 1
    fi
    if command -v sha256sum >/dev/null 2>&1; then
        printf '%s' "$value" | sha256sum | cut -d ' ' -f 1
    else
        printf '%s' "$value" | shasum -a 256 | cut -d ' ' -f 1
    fi
}

admin_hash=$(secret_hash REDIS_ADMIN_PASSWORD)
app_hash=$(secret_hash REDIS_APP_PASSWORD)

umask 077
acl_file="$acl_dir/redis-users.acl"
cat > "$acl_file" <<ACL
user default off resetkeys -@all
user admin on #$admin_hash ~* &* +@all
user app on #$app_hash resetkeys ~$prefix:* resetchannels -@all +@read +@write +@scripting +@connection +time -@dangerous -@admin -scan -function -script|flush -script|kill -script|debug +cluster|info +cluster|slots +cluster|shards +cluster|nodes
ACL

exec redis-server "$conf" --aclfile "$acl_file" "$@"
