/**
 * The hooks every podman test file shares: a podman API service for the file, and no container
 * of the file's host label left at the end (any found are removed, then the file fails).
 * Separate from ./podman.ts, which the benchmarks import outside vitest.
 */
import { afterAll, beforeAll } from "vitest"
import { containersOfHost, type PodmanService, removeContainersOfHost, startPodmanService } from "./podman.js"

/** Registers the hooks in the calling describe block; `socket` is the service's socket once it runs. */
export const podmanServiceForTests = (hostName: string): { readonly socket: string } => {
  let service: PodmanService | undefined
  beforeAll(async () => {
    service = await startPodmanService()
  }, 60_000)
  afterAll(async () => {
    const left = containersOfHost(hostName)
    removeContainersOfHost(hostName)
    await service?.stop()
    if (left.length > 0) throw new Error(`containers left behind: ${left.join(", ")}`)
  })
  return {
    get socket(): string {
      if (service === undefined) throw new Error("the podman service is not started yet (read socket inside a test)")
      return service.socket
    }
  }
}
