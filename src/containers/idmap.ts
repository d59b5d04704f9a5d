/**
 * User-namespace id maps for the containers that run package code (builds, BuildRequires
 * installs, SCM checkouts): container ids 0…size-1 are host ids base…base+size-1, a range no host
 * user has, so neither the build user nor the container's root is anyone on the host (processes
 * in host `ps`, files left in bind mounts). Podman's explicit map (notes §5.2: `userns` private +
 * `idmappings`); runc 1.1 has no idmapped bind mounts, so the daemon chowns what a container
 * must write to the mapped host ids.
 */
import type { IdMap } from "../config/values.js"

export type { IdMap } from "../config/values.js"

/** The host id of container id `id` (identity without a map). */
export const hostId = (map: IdMap | null, id: number): number => (map === null ? id : map.base + id)

/**
 * Host uid and gid of a `uid[:gid]` container user, or undefined for a user given by name
 * (resolved in the image, unknown to the host).
 */
export const hostIdsOf = (map: IdMap | null, user: string): { readonly uid: number; readonly gid: number } | undefined => {
  const [u, g] = user.split(":")
  const uid = Number(u)
  const gid = g === undefined ? uid : Number(g)
  if (u === undefined || u === "" || !Number.isInteger(uid) || !Number.isInteger(gid)) return undefined
  return { uid: hostId(map, uid), gid: hostId(map, gid) }
}

/** The podman SpecGenerator fields of a map (notes §5.2). */
export const idMappings = (map: IdMap) => {
  const ids = [{ container_id: 0, host_id: map.base, size: map.size }]
  return { userns: { nsmode: "private" as const }, idmappings: { UIDMap: ids, GIDMap: ids } }
}

/** Who else has ids in a range: a user or group, or a subordinate range. */
interface Claim {
  readonly who: string
  readonly first: number
  readonly last: number
}

const overlaps = (map: IdMap, c: Claim): boolean => c.first <= map.base + map.size - 1 && c.last >= map.base

/** Users (passwd) or groups (group) as claims of their one id. */
const idClaims = (text: string, kind: string): Array<Claim> =>
  text.split("\n").flatMap((line) => {
    const f = line.split(":")
    const id = Number(f[2])
    return f.length >= 3 && f[2] !== "" && Number.isInteger(id) ? [{ who: `${kind} ${f[0]} (${id})`, first: id, last: id }] : []
  })

/** `name:start:count` lines of /etc/subuid or /etc/subgid as claims. */
const rangeClaims = (text: string, file: string): Array<Claim> =>
  text.split("\n").flatMap((line) => {
    const f = line.trim().split(":")
    const start = Number(f[1])
    const count = Number(f[2])
    return f.length === 3 && Number.isInteger(start) && Number.isInteger(count) && count > 0
      ? [{ who: `${file} range ${f[0]}:${start}:${count}`, first: start, last: start + count - 1 }]
      : []
  })

/** The host's account files (missing ones empty). */
export interface AccountFiles {
  readonly passwd: string
  readonly group: string
  readonly subuid: string
  readonly subgid: string
}

/**
 * What stands in `map` on this host: `users` — a user of /etc/passwd or a group of /etc/group
 * (a build would run as them: refused); `ranges` — subordinate ranges of /etc/subuid or
 * /etc/subgid (another user's containers could share ids with builds: warned).
 */
export const idMapConflicts = (map: IdMap, files: AccountFiles): { readonly users: ReadonlyArray<string>; readonly ranges: ReadonlyArray<string> } => ({
  users: [...idClaims(files.passwd, "user"), ...idClaims(files.group, "group")].filter((c) => overlaps(map, c)).map((c) => c.who),
  ranges: [...rangeClaims(files.subuid, "/etc/subuid"), ...rangeClaims(files.subgid, "/etc/subgid")].filter((c) => overlaps(map, c)).map((c) => c.who)
})
