#!/bin/bash
# Container health probe: GET /health/live on the service's own port, healthy on HTTP 200.
#
# The runtime image carries no HTTP client (no curl, no wget); bash's /dev/tcp is enough for one
# plain HTTP/1.0 request to the loopback interface, so the probe adds nothing to the image.
# /health/live answers 200 while the process serves requests (readiness, i.e. a working pipeline,
# is /health/ready; a collector outage must not get the container restarted).
#
# The port is the one of server.bind (METAMCP_SERVER__BIND, default 0.0.0.0:8000 in this image);
# METAMCP_HEALTHCHECK_PORT overrides it when the bind address is set another way (--bind,
# a config file).
set -u
port="${METAMCP_HEALTHCHECK_PORT:-${METAMCP_SERVER__BIND##*:}}"
port="${port:-8000}"

exec 3<>"/dev/tcp/127.0.0.1/${port}" || exit 1
printf 'GET /health/live HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: docker-healthcheck\r\n\r\n' >&3
IFS= read -r -t 5 status_line <&3 || exit 1
exec 3<&-
case "$status_line" in
    "HTTP/1."?" 200"*) exit 0 ;;
    *) echo "unhealthy: ${status_line}" >&2; exit 1 ;;
esac
