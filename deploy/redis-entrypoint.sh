#!/bin/sh
# Start redis-server with the users of deploy/redis-users.acl, each with the password in
# REDIS_<USER>_PASSWORD (e.g. REDIS_READER_PASSWORD), read from the environment, never a file.
set -eu
rules=${REDIS_ACL_RULES:-/etc/redis/users.acl}
acl=${REDIS_ACL_FILE:-/tmp/users.acl}
umask 077
awk '
  /^[[:space:]]*(#|$)/ { next }
  $1 == "user" {
    if ($3 == "off") { print; next }
    name = "REDIS_" toupper($2) "_PASSWORD"
    password = ENVIRON[name]
    if (password == "") { print "redis-entrypoint: set " name " (see .env.example)" > "/dev/stderr"; exit 1 }
    if (password ~ /[[:space:]]/) { print "redis-entrypoint: " name " must not contain spaces" > "/dev/stderr"; exit 1 }
    print $0 " >" password
  }
' "$rules" > "$acl"
exec redis-server --aclfile "$acl" "$@"
