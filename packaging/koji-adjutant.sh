#!/bin/sh
# /usr/bin/koji-adjutant: runs the daemon's JavaScript on Node.js 24 or newer.
# The node binary: $KOJI_ADJUTANT_NODE when set (koji-adjutant.service reads it from
# /etc/sysconfig/koji-adjutant), else /usr/bin/node-24 (Fedora's and EL's versioned Node.js 24
# package), else the first node on PATH. exec keeps the PID: systemd's notify and watchdog
# protocol, kill -USR1 and the daemon's own re-exec all address this process.
node=${KOJI_ADJUTANT_NODE:-}
if [ -z "$node" ]; then
    if [ -x /usr/bin/node-24 ]; then node=/usr/bin/node-24; else node=node; fi
fi
exec "$node" @APPDIR@/dist/main.js "$@"
