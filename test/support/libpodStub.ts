/**
 * A Libpod whose `ping` is what the test says and whose other calls are bugs: for services that
 * only ask whether podman answers (Readiness), without a podman.
 */
import { Effect, Layer, Stream } from "effect"
import { Libpod, PodmanError } from "../../src/containers/Libpod.js"

const unused = (what: string) => () => Effect.dieMessage(`libpod stub: ${what} is not used here`)

/** The stub; `answers` false makes ping fail as a stopped API service does. */
export const libpodStub = (answers: Effect.Effect<boolean> = Effect.succeed(true)): Layer.Layer<Libpod> =>
  Layer.succeed(Libpod, Libpod.of({
    socket: "/stub/podman.sock",
    ping: Effect.flatMap(answers, (up) =>
      up ? Effect.void : Effect.fail(new PodmanError({ operation: "ping", message: "cannot connect to the podman API socket /stub/podman.sock (ECONNREFUSED)", unreachable: true }))),
    request: unused("request"),
    stream: () => Stream.dieMessage("libpod stub: stream is not used here"),
    version: Effect.dieMessage("libpod stub: version is not used here"),
    imageExists: unused("imageExists"),
    imageInspect: unused("imageInspect"),
    imageList: unused("imageList"),
    imageRemove: unused("imageRemove"),
    containerCreate: unused("containerCreate"),
    start: unused("start"),
    wait: unused("wait"),
    logs: () => Stream.dieMessage("libpod stub: logs is not used here"),
    exec: unused("exec"),
    putArchive: unused("putArchive"),
    getArchive: unused("getArchive"),
    kill: unused("kill"),
    stop: unused("stop"),
    remove: unused("remove"),
    list: unused("list"),
    inspect: unused("inspect")
  }))
