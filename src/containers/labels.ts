/** Labels put on every container koji-adjutant creates, so a later start can find orphans (DESIGN §5). */
export const LABEL_HOST = "io.koji.adjutant.host"
/** The koji task id owning the container. */
export const LABEL_TASK = "io.koji.adjutant.task"
/** The hub buildroot id the container serves. */
export const LABEL_BUILDROOT = "io.koji.adjutant.buildroot"
/** What the container is for: build, buildroot, scm, createrepo, runroot, test. */
export const LABEL_ROLE = "io.koji.adjutant.role"

/** Who a container belongs to, as read back from its labels. */
export interface ContainerOwner {
  readonly host: string
  readonly taskId?: number | undefined
  readonly buildrootId?: number | undefined
  readonly role?: string | undefined
}

/** The labels for a container of `hostName` with the given owner fields. */
export const containerLabels = (
  hostName: string,
  owner: { readonly role: string; readonly taskId?: number | undefined; readonly buildrootId?: number | undefined }
): Record<string, string> => ({
  [LABEL_HOST]: hostName,
  [LABEL_ROLE]: owner.role,
  ...(owner.taskId === undefined ? {} : { [LABEL_TASK]: String(owner.taskId) }),
  ...(owner.buildrootId === undefined ? {} : { [LABEL_BUILDROOT]: String(owner.buildrootId) })
})

/** The list filter (`key=value`) selecting the containers of `hostName`. */
export const hostLabelFilter = (hostName: string): string => `${LABEL_HOST}=${hostName}`

const intLabel = (v: string | undefined): number | undefined => {
  if (v === undefined || !/^\d+$/.test(v)) return undefined
  return Number(v)
}

/** Reads the owner back from a container's labels; undefined when it carries no host label. */
export const ownerOf = (labels: Readonly<Record<string, string>> | null | undefined): ContainerOwner | undefined => {
  const host = labels?.[LABEL_HOST]
  if (labels == null || host === undefined) return undefined
  return {
    host,
    taskId: intLabel(labels[LABEL_TASK]),
    buildrootId: intLabel(labels[LABEL_BUILDROOT]),
    role: labels[LABEL_ROLE]
  }
}
