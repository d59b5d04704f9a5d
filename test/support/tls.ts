/**
 * Test PKI made with the `openssl` CLI: a CA, a server certificate for 127.0.0.1/localhost,
 * and client certificates whose CN is the koji user (kojid's `cert` = one PEM with cert + key).
 * Everything lives in a scoped temp dir.
 */
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** PEM texts and file paths of a generated PKI. */
export interface TestPki {
  readonly dir: string
  /** CA certificate (kojid `serverca`). */
  readonly caFile: string
  readonly caPem: string
  readonly serverKeyPem: string
  readonly serverCertPem: string
  /** Client PEM file (certificate + key) for each requested CN (kojid `cert`). */
  readonly clientFiles: Readonly<Record<string, string>>
  /** A second CA, not trusted by anyone, for verification failures. */
  readonly otherCaFile: string
}

const run = (dir: string, args: ReadonlyArray<string>) => {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] })
}

const makeCa = (dir: string, name: string) => {
  run(dir, ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.crt`, "-days", "2", "-subj", `/CN=${name}`])
}

/** Generates the PKI synchronously in `dir`. */
export const generatePki = (dir: string, clientCns: ReadonlyArray<string>): TestPki => {
  makeCa(dir, "ca")
  makeCa(dir, "otherca")
  fs.writeFileSync(path.join(dir, "server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
  run(dir, ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"])
  run(dir, ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext"])
  fs.writeFileSync(path.join(dir, "client.ext"), "extendedKeyUsage=clientAuth\n")
  const clientFiles: Record<string, string> = {}
  for (const cn of clientCns) {
    run(dir, ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${cn}.key`, "-out", `${cn}.csr`, "-subj", `/CN=${cn}`])
    run(dir, ["x509", "-req", "-in", `${cn}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${cn}.crt`, "-days", "2", "-extfile", "client.ext"])
    const pem = path.join(dir, `${cn}.pem`)
    fs.writeFileSync(pem, fs.readFileSync(path.join(dir, `${cn}.crt`), "utf8") + fs.readFileSync(path.join(dir, `${cn}.key`), "utf8"))
    clientFiles[cn] = pem
  }
  return {
    dir,
    caFile: path.join(dir, "ca.crt"),
    caPem: fs.readFileSync(path.join(dir, "ca.crt"), "utf8"),
    serverKeyPem: fs.readFileSync(path.join(dir, "server.key"), "utf8"),
    serverCertPem: fs.readFileSync(path.join(dir, "server.crt"), "utf8"),
    clientFiles,
    otherCaFile: path.join(dir, "otherca.crt")
  }
}

/** A PKI in a temp dir removed when the scope closes. */
export const testPki = (clientCns: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync(() => generatePki(fs.mkdtempSync(path.join(os.tmpdir(), "adjutant-pki-")), clientCns)),
    (pki) => Effect.sync(() => fs.rmSync(pki.dir, { recursive: true, force: true }))
  )

/** A scoped temp dir. */
export const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), prefix))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )
