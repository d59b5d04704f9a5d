/**
 * The container path check's logic (src/daemon/hostPaths.ts): finding our own container id,
 * resolving a path through the container's volumes to the host, and the message for each kind of
 * mismatch. The check against a real podman is in test/image/daemon-image.podman.test.ts.
 */
import { assert, describe, it } from "vitest"
import {
  checkPaths, containerIdFromMountinfo, type HostPath, hostPathsOf, hostPathsOptions, type InspectMount, isSharedMount, parseContainerEnv,
  resolveOnHost
} from "../../src/daemon/hostPaths.js"
import { parseConfig } from "../../src/config/AdjutantConfig.js"
import { Either } from "effect"

const ID = "b586050a9c4b091c1db6e3a3cd03c4adf03c20ab88224cefc8d7de3dd7e6337d"

const podmanMountinfo = [
  "173 103 0:56 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/containers/storage/overlay/l/X",
  `180 173 254:0 /run/containers/storage/overlay-containers/${ID}/userdata/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw`,
  "185 173 254:0 /var/tmp/koji /var/tmp/koji rw,relatime shared:2 - ext4 /dev/vda rw",
  "186 173 254:0 /srv/cache /var/lib/koji-adjutant rw,relatime - ext4 /dev/vda rw",
  "187 173 254:0 /srv/a\\040b /srv/a\\040b rw,relatime shared:7 - ext4 /dev/vda rw"
].join("\n")

const bind = (source: string, destination: string, propagation = "rprivate"): InspectMount => ({
  Type: "bind",
  Source: source,
  Destination: destination,
  RW: true,
  Propagation: propagation
})

const workdir: HostPath = { key: "workdir", path: "/var/tmp/koji", severity: "error", mountsBelow: true }
const cache: HostPath = { key: "buildroot_cache_dir", path: "/var/lib/koji-adjutant/buildroots", severity: "error" }
const everywhere = () => true

describe("finding this container", () => {
  it("reads the id podman writes into /run/.containerenv of privileged containers", () => {
    const env = parseContainerEnv(`engine="podman-4.3.1"\nname="koji-adjutant"\nid="${ID}"\nimage="localhost/koji-adjutant:latest"\nrootless=0\n`)
    assert.strictEqual(env["id"], ID)
    assert.strictEqual(env["name"], "koji-adjutant")
    assert.deepStrictEqual(parseContainerEnv(""), {})
  })

  it("finds the id in the host path of podman's /etc/hostname bind, and docker's", () => {
    assert.strictEqual(containerIdFromMountinfo(podmanMountinfo), ID)
    const docker = `600 500 8:1 /var/lib/docker/containers/${ID}/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw`
    assert.strictEqual(containerIdFromMountinfo(docker), ID)
    // A host's own mountinfo names no container.
    assert.isUndefined(containerIdFromMountinfo("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw"))
    // A bind of such a path somewhere else is not the container's own hostname.
    assert.isUndefined(containerIdFromMountinfo(`90 27 254:0 /run/containers/storage/overlay-containers/${ID}/userdata/hostname /mnt/x rw - ext4 /dev/vda rw`))
  })

  it("tells a shared mount from a private one, with mountinfo's escapes", () => {
    assert.isTrue(isSharedMount(podmanMountinfo, "/var/tmp/koji"))
    assert.isFalse(isSharedMount(podmanMountinfo, "/var/lib/koji-adjutant"))
    assert.isTrue(isSharedMount(podmanMountinfo, "/srv/a b"))
    assert.isUndefined(isSharedMount(podmanMountinfo, "/nowhere"))
  })
})

describe("resolving paths through the container's volumes", () => {
  const mounts = [bind("/var/tmp/koji", "/var/tmp/koji", "rshared"), bind("/srv/cache", "/var/lib/koji-adjutant"), bind("/srv/x", "/var/lib/koji-adjutant/buildroots/deep")]

  it("takes the deepest volume at or above the path, and the rest of the path under its source", () => {
    assert.strictEqual(resolveOnHost(mounts, "/var/tmp/koji/tasks/1")?.hostPath, "/var/tmp/koji/tasks/1")
    assert.strictEqual(resolveOnHost(mounts, "/var/lib/koji-adjutant/buildroots")?.hostPath, "/srv/cache/buildroots")
    assert.strictEqual(resolveOnHost(mounts, "/var/lib/koji-adjutant/buildroots/deep/a")?.hostPath, "/srv/x/a")
    // A sibling that merely shares a prefix is not under the volume.
    assert.isUndefined(resolveOnHost(mounts, "/var/tmp/kojix"))
    assert.isUndefined(resolveOnHost(mounts, "/etc/kojid"))
  })
})

describe("the check's verdict", () => {
  it("passes same-path volumes, with rshared on the workdir", () => {
    const r = checkPaths([bind("/var/tmp/koji", "/var/tmp/koji", "rshared"), bind("/var/lib/koji-adjutant", "/var/lib/koji-adjutant")], [workdir, cache], everywhere)
    assert.deepStrictEqual(r, { errors: [], warnings: [] })
  })

  it("names a path on no volume and the -v that fixes it", () => {
    const r = checkPaths([], [workdir, cache], everywhere)
    assert.deepStrictEqual(r.errors, [
      "workdir /var/tmp/koji is not on a volume of this container, so the host's podman would use the host's own /var/tmp/koji, " +
        "not the daemon's: run the container with -v /var/tmp/koji:/var/tmp/koji:rshared (the same path inside and outside)",
      "buildroot_cache_dir /var/lib/koji-adjutant/buildroots is not on a volume of this container, so the host's podman would use the " +
        "host's own /var/lib/koji-adjutant/buildroots, not the daemon's: run the container with " +
        "-v /var/lib/koji-adjutant/buildroots:/var/lib/koji-adjutant/buildroots (the same path inside and outside)"
    ])
  })

  it("names the host path of a volume mounted elsewhere, and both ways to fix it", () => {
    const r = checkPaths([bind("/srv/work", "/var/tmp/koji", "rshared")], [workdir], everywhere)
    assert.deepStrictEqual(r.errors, [
      "workdir /var/tmp/koji is /srv/work on the host (volume /srv/work:/var/tmp/koji): the host's podman binds host paths, so mount it " +
        "at the same path: -v /srv/work:/srv/work:rshared with workdir = /srv/work, or -v /var/tmp/koji:/var/tmp/koji:rshared"
    ])
  })

  it("wants shared propagation only where the daemon mounts below", () => {
    const r = checkPaths([bind("/var/tmp/koji", "/var/tmp/koji"), bind("/var/lib/koji-adjutant", "/var/lib/koji-adjutant")], [workdir, cache], everywhere)
    assert.strictEqual(r.errors.length, 1)
    assert.include(r.errors[0], "workdir /var/tmp/koji is on the volume /var/tmp/koji:/var/tmp/koji with rprivate propagation")
    assert.include(r.errors[0], "add :rshared")
  })

  it("treats a named volume as another host path", () => {
    const vol: InspectMount = { Type: "volume", Source: "/var/lib/containers/storage/volumes/work/_data", Destination: "/var/tmp/koji", Propagation: "rshared" }
    const r = checkPaths([vol], [workdir], everywhere)
    assert.include(r.errors[0], "is /var/lib/containers/storage/volumes/work/_data on the host (volume named volume at")
  })

  it("only warns about a missing optional path and about the log's directory", () => {
    const topdir: HostPath = { key: "topdir", path: "/mnt/koji", severity: "error", optional: true }
    const log: HostPath = { key: "log_file directory", path: "/var/log", severity: "warning", consequence: "the log lives only in this container and goes with it" }
    const r = checkPaths([bind("/var/tmp/koji", "/var/tmp/koji", "rshared")], [workdir, topdir, log], (p) => p !== "/mnt/koji")
    assert.deepStrictEqual(r.errors, [])
    assert.deepStrictEqual(r.warnings, [
      "topdir /mnt/koji does not exist in this container: tasks that need it will fail; mount it with -v /mnt/koji:/mnt/koji",
      "log_file directory /var/log is not on a volume of this container, so the log lives only in this container and goes with it: " +
        "run the container with -v /var/log:/var/log (the same path inside and outside)"
    ])
  })
})

describe("the paths of a config", () => {
  const config = (extra: string) => {
    const parsed = parseConfig(`[kojid]\nserver = https://hub/kojihub\ntopurl = https://hub/kojifiles\n${extra}`, "/etc/kojid/kojid.conf", {})
    if (Either.isLeft(parsed)) throw new Error(parsed.left.message)
    return parsed.right
  }

  it("checks the workdir (with mounts below), the buildroot cache, the topdir, scm credentials and the log's directory", () => {
    const c = config("workdir = /srv/work\nscm_credentials_dir = /etc/kojid/scm\n[adjutant]\nlog_file = /var/log/koji-adjutant/kojid.log\n")
    assert.deepStrictEqual(hostPathsOf(c).map((p) => [p.key, p.path, p.severity, p.mountsBelow === true]), [
      ["workdir", "/srv/work", "error", true],
      ["buildroot_cache_dir", "/var/lib/koji-adjutant/buildroots", "error", false],
      ["topdir", "/mnt/koji", "error", false],
      ["scm_credentials_dir", "/etc/kojid/scm", "error", false],
      ["log_file directory", "/var/log/koji-adjutant", "warning", false]
    ])
  })

  it("takes KOJI_ADJUTANT_CONTAINER as auto, yes or no (anything else is auto)", () => {
    const c = config("")
    assert.strictEqual(hostPathsOptions(c, undefined).inContainer, "auto")
    assert.strictEqual(hostPathsOptions(c, "no").inContainer, "no")
    assert.strictEqual(hostPathsOptions(c, " YES ").inContainer, "yes")
    assert.strictEqual(hostPathsOptions(c, "maybe").inContainer, "auto")
    assert.strictEqual(hostPathsOptions(c, "").inContainer, "auto")
    assert.strictEqual(hostPathsOptions(c, undefined).socket, "/run/podman/podman.sock")
  })
})
