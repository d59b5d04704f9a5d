#!/bin/sh
# Entry point of the koji-adjutant daemon image (scripts/build-daemon-image.sh). A container's
# /dev holds only the devices podman was given, and a loop device the kernel creates later
# (`mount -o loop` of a task's disk asks /dev/loop-control for the first free one) never appears
# there: make the nodes /dev/loop0..N-1 up front (N = KOJI_ADJUTANT_LOOP_DEVICES, default 256).
# Opening them still needs the device cgroup rule `b 7:* rwm` (or --privileged). Without
# CAP_MKNOD or /dev/loop-control nothing is made, and task disks fail with a message naming
# task_disk_max (set it to 0 to run without them).
n=${KOJI_ADJUTANT_LOOP_DEVICES:-256}
case $n in '' | *[!0-9]*) n=256 ;; esac
if [ -c /dev/loop-control ] && [ "$n" -gt 0 ]; then
  i=0
  while [ "$i" -lt "$n" ]; do
    if [ ! -e "/dev/loop$i" ] && ! mknod -m 0660 "/dev/loop$i" b 7 "$i" 2>/dev/null; then
      echo "koji-adjutant-entrypoint: cannot make /dev/loop$i (needs CAP_MKNOD): task disks will fail unless task_disk_max = 0" >&2
      break
    fi
    i=$((i + 1))
  done
fi
exec /usr/local/bin/node /usr/lib/koji-adjutant/dist/main.js "$@"
