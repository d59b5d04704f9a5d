#!/usr/local/bin/node
// koji-adjutant-healthcheck HOST:PORT — the container health check: exit 0 when the daemon's
// status endpoint (`[adjutant] status_listen`) answers GET /healthz with 200, else 1.
const target = process.argv[2] ?? "127.0.0.1:8775"
try {
  const res = await fetch(`http://${target}/healthz`, { signal: AbortSignal.timeout(5000) })
  process.stdout.write(`${res.status} ${await res.text()}\n`)
  process.exit(res.status === 200 ? 0 : 1)
} catch (e) {
  process.stdout.write(`no answer from http://${target}/healthz: ${e instanceof Error ? e.message : String(e)}\n`)
  process.exit(1)
}
