/**
 * The hostile packages (issue 10): each a small spec that attacks through what a build controls —
 * names it leaves for a shell, output the daemon takes, the host's disk, the ids it runs as — or
 * re-tries what was already contained (network, secrets, writes outside, fork bomb, memory, a
 * process that outlives the build). A case says what the build does and what must come of it;
 * `support.ts` builds each through build-local and the daemon's buildArch and judges it.
 *
 * Payloads compute their markers only when run: `$(echo${IFS}INJ$((6*7))ECTED)` prints INJ42ECTED
 * if a shell ever evaluates it, and a spec prints HOSTILE-ESCAPED (spelled at run time) when an
 * attack it expects to fail worked — so neither text is in a spec, its SRPM or rpm's xtrace.
 */
import type { WatchReport } from "./host.js"

/** What a shell prints if it ever runs a payload. */
export const INJECTION_MARKER = "INJ42ECTED"
/** What a spec prints when an attack it expects to fail worked. */
export const ESCAPE_MARKER = "HOSTILE-ESCAPED"
/** Files hostile builds try to write outside their area are named with this prefix. */
export const SENTINEL = "HOSTILE_SENTINEL"

/** `$(…)`, `;…;` and backtick payloads (no marker text: it appears only when evaluated). */
export const PAYLOAD = {
  dollar: "$(echo${IFS}INJ$((6*7))ECTED)",
  semicolon: ";echo${IFS}INJ$((6*7))ECTED;",
  backtick: "`echo${IFS}INJ$((6*7))ECTED`"
} as const

/** Shell text that prints the escape marker with `what` (the marker is assembled at run time). */
const escaped = (what: string): string => `M=ESC; echo "HOSTILE-\${M}APED ${what}"`

/** The four classes and the regressions. */
export type HostileClass = "injection" | "output" | "disk" | "uids" | "regression"

/** Where a case runs: build-local (buildLocal with the daemon's config) or the daemon's buildArch against the fake hub. */
export type Mode = "local" | "daemon"

/** The parts of a hostile spec (the rest is a noarch package with one file). */
export interface SpecBody {
  readonly buildRequires?: ReadonlyArray<string>
  /** `%generate_buildrequires`; it runs in rpmbuild -ba (no /result/buildreqs yet) and again in -br (/result/buildreqs made). */
  readonly generate?: string
  readonly build?: string
  /** Appended to %install, after the package's own file. */
  readonly install?: string
}

/** How a case must end. */
export type Expectation =
  | { readonly closes: true }
  | { readonly closes: false; readonly faultIncludes?: ReadonlyArray<string>; readonly faultMatches?: RegExp }

/** One finished build of a case, as the checks see it. */
export interface CaseRun {
  readonly name: string
  readonly mode: Mode
  readonly closed: boolean
  /** The fault string (daemon) or build-local's one-line error; "" when it closed. */
  readonly fault: string
  /** The daemon's faultCode. */
  readonly faultCode?: number
  /** The hub's task directory (daemon) or build-local's result directory. */
  readonly outDir: string
  /** The daemon's task result when it closed. */
  readonly result?: unknown
  /** The task's own wall time (hub start → completion; build-local: the buildLocal call). */
  readonly seconds: number
  /** When it ended (ms since the epoch). */
  readonly endedAt: number
}

/** What case checks may look at besides the run. */
export interface CheckEnv {
  readonly watch: WatchReport
  readonly logMaxSize: number
  /** Output file content (bounded read), or undefined when absent. */
  readonly read: (run: CaseRun, name: string) => Buffer | undefined
  /** Names in the output directory. */
  readonly names: (run: CaseRun) => ReadonlyArray<string>
  readonly accounts: { readonly uids: ReadonlySet<number>; readonly gids: ReadonlySet<number> }
  readonly inRange: (id: number) => boolean
  /** The first line of the host's /etc/shadow ("" when unreadable): what a link to it would leak. */
  readonly hostShadowLine: string
  /** Connections the host's loopback listener got (the network case). */
  readonly listenerConnections: () => number
}

/** A hostile package and what must come of it. */
export interface HostileCase {
  /** Package name (or the SCM case's name). */
  readonly name: string
  readonly cls: HostileClass
  readonly about: string
  readonly spec?: SpecBody
  /** A buildSRPMFromSCM URL instead of a spec (daemon only), given the git daemon's port. */
  readonly scmUrl?: (port: number) => string
  readonly modes: ReadonlyArray<Mode>
  readonly expect: Expectation
  /** Files the build made that must not come out of it. */
  readonly refused?: ReadonlyArray<string>
  /** Further checks; each returned string is a way the case was not contained. */
  readonly check?: (run: CaseRun, env: CheckEnv) => ReadonlyArray<string>
}

/** What the catalogue needs from the test's setup. */
export interface CaseInputs {
  /** A host file with a secret in it (a fake client certificate). */
  readonly secretFile: string
  /** The podman API socket of the test (a build reaching it would own the host). */
  readonly podmanSocket: string
  /** A TCP port on the host's loopback where a listener counts connections. */
  readonly listenerPort: number
}

const BOTH: ReadonlyArray<Mode> = ["local", "daemon"]

/** A `%generate_buildrequires` that asks for a missing package in -ba, then runs `inBr` in -br (and fails it). */
const inBuildreqsRound = (inBr: string): string => `if [ -d /result/buildreqs ]; then
${inBr}
  exit 1
fi
echo fixture-extra`

/** A nosrc name the -br round leaves, and the checks of the case. */
const buildreqsName = (name: string, payload: string, about: string): HostileCase => {
  const file = `x${payload}.nosrc.rpm`
  return {
    name, cls: "injection", modes: BOTH, about,
    spec: { generate: inBuildreqsRound(`  cp %{SOURCE10} '/result/buildreqs/${file}'`) },
    expect: { closes: false, faultIncludes: ["unsafe file name", JSON.stringify(file)] },
    refused: [file]
  }
}

/** The payloads reached dnf as plain arguments: root.log names them literally (so the attack was delivered, and not run). */
const deliveredToDnf = (...payloads: ReadonlyArray<string>) => (run: CaseRun, env: CheckEnv): ReadonlyArray<string> => {
  const log = env.read(run, "root.log")?.toString("utf8") ?? ""
  return payloads.filter((p) => !log.includes(p)).map((p) => `root.log does not show ${JSON.stringify(p)} reaching dnf`)
}

/** A log in the output no longer than the cap plus the note, with the note (when `cut`). */
const cappedLog = (run: CaseRun, env: CheckEnv, name: string, tailText: string): ReadonlyArray<string> => {
  const log = env.read(run, name)
  if (log === undefined) return [`${name} did not come out`]
  const problems: Array<string> = []
  if (log.length > env.logMaxSize + 512) problems.push(`${name} came out with ${log.length} bytes, over log_max_size ${env.logMaxSize} + the note`)
  const text = log.toString("latin1")
  if (!text.includes("were cut here")) problems.push(`${name} has no truncation note`)
  if (!text.includes(tailText)) problems.push(`${name} lost its tail (${JSON.stringify(tailText)})`)
  if (run.mode === "daemon" && run.closed) {
    const truncated = typeof run.result === "object" && run.result !== null && "truncated_logs" in run.result ? run.result.truncated_logs : undefined
    if (!Array.isArray(truncated) || !truncated.some((t) => typeof t === "string" && t.endsWith(`/${name}`))) {
      problems.push(`the task result does not list ${name} in truncated_logs: ${JSON.stringify(run.result)}`)
    }
  }
  return problems
}

/** Processes of the build seen with `marker`: there must be one, and none may be a host account or hold capabilities. */
const buildProcesses = (env: CheckEnv, marker: string): ReadonlyArray<string> => {
  const seen = env.watch.procs.filter((p) => p.cmdline.includes(marker))
  if (seen.length === 0) return [`no process with ${marker} was seen while the build ran (the watch missed it)`]
  return seen.flatMap((p) => [
    ...p.uids.filter((u) => env.accounts.uids.has(u) || !env.inRange(u)).map((u) => `build process ${p.pid} runs as host uid ${u} (${p.cmdline})`),
    ...p.gids.filter((g) => env.accounts.gids.has(g) || !env.inRange(g)).map((g) => `build process ${p.pid} runs as host gid ${g} (${p.cmdline})`),
    ...(p.capEff !== 0n ? [`build process ${p.pid} has capabilities CapEff=${p.capEff.toString(16)}`] : []),
    ...(!p.noNewPrivs ? [`build process ${p.pid} may gain privileges (NoNewPrivs 0)`] : [])
  ])
}

/** The catalogue. */
export const hostileCases = (inputs: CaseInputs): ReadonlyArray<HostileCase> => [
  // ---- 1. build-controlled strings reaching a shell -------------------------------------------
  buildreqsName("hostile-inj-nosrc-dollar", PAYLOAD.dollar, "%generate_buildrequires leaves x$(…).nosrc.rpm for dnf builddep"),
  buildreqsName("hostile-inj-nosrc-semicolon", PAYLOAD.semicolon, "%generate_buildrequires leaves x;echo …;.nosrc.rpm for dnf builddep"),
  buildreqsName("hostile-inj-nosrc-backtick", PAYLOAD.backtick, "%generate_buildrequires leaves x`…`.nosrc.rpm for dnf builddep"),
  {
    name: "hostile-inj-dynamic-br", cls: "injection", modes: BOTH,
    about: "%generate_buildrequires asks for packages named with $(…) and ;…;",
    spec: { generate: `echo 'z${PAYLOAD.dollar}'\necho 'w${PAYLOAD.semicolon}'` },
    expect: { closes: false, faultMatches: /dnf builddep exited with status \d+/ },
    check: deliveredToDnf(`z${PAYLOAD.dollar}`, `w${PAYLOAD.semicolon}`)
  },
  {
    name: "hostile-inj-static-br-dollar", cls: "injection", modes: BOTH,
    about: "BuildRequires: fixture-base$(…)",
    spec: { buildRequires: [`fixture-base${PAYLOAD.dollar}`] },
    expect: { closes: false, faultMatches: /dnf builddep exited with status \d+/ },
    check: deliveredToDnf(`fixture-base${PAYLOAD.dollar}`)
  },
  {
    name: "hostile-inj-static-br-semicolon", cls: "injection", modes: BOTH,
    about: "BuildRequires: x;echo …; and y`…`",
    spec: { buildRequires: [`x${PAYLOAD.semicolon}`, `y${PAYLOAD.backtick}`] },
    expect: { closes: false, faultMatches: /dnf builddep exited with status \d+/ },
    check: deliveredToDnf(`x${PAYLOAD.semicolon}`, `y${PAYLOAD.backtick}`)
  },
  {
    name: "scm-ref-dollar", cls: "injection", modes: ["daemon"],
    about: "buildSRPMFromSCM of git://…/fixture-hello.git#$(…)",
    scmUrl: (port) => `git://127.0.0.1:${port}/fixture-hello.git#${PAYLOAD.dollar}`,
    expect: { closes: false, faultIncludes: [PAYLOAD.dollar] }
  },
  {
    name: "scm-ref-semicolon", cls: "injection", modes: ["daemon"],
    about: "buildSRPMFromSCM of git://…/fixture-hello.git#main;echo …;",
    scmUrl: (port) => `git://127.0.0.1:${port}/fixture-hello.git#main${PAYLOAD.semicolon}`,
    expect: { closes: false, faultIncludes: [`main${PAYLOAD.semicolon}`] }
  },
  {
    name: "scm-module-backtick", cls: "injection", modes: ["daemon"],
    about: "buildSRPMFromSCM of git://…/fixture-hello.git?x`…`#main (a module named with a payload)",
    scmUrl: (port) => `git://127.0.0.1:${port}/fixture-hello.git?x${PAYLOAD.backtick}#main`,
    expect: { closes: false, faultIncludes: [`x${PAYLOAD.backtick}`] }
  },

  // ---- 2. output of the build trusted ---------------------------------------------------------
  {
    name: "hostile-out-setuid", cls: "output", modes: BOTH,
    about: "a real noarch rpm left as kit-setuid (4755) and kit-setgid (2755): accepted, but copied 0644",
    spec: {
      install: [
        "cp %{SOURCE10} /result/kit-setuid-1.0-1.noarch.rpm", "chmod 4755 /result/kit-setuid-1.0-1.noarch.rpm",
        "cp %{SOURCE10} /result/kit-setgid-1.0-1.noarch.rpm", "chmod 2755 /result/kit-setgid-1.0-1.noarch.rpm",
        "chmod 6755 /logs/build.log",
        "ls -l /result /logs", "sleep 2"
      ].join("\n")
    },
    expect: { closes: true },
    check: (run, env) => {
      const problems: Array<string> = []
      for (const n of ["kit-setuid-1.0-1.noarch.rpm", "kit-setgid-1.0-1.noarch.rpm"]) {
        const planted = env.watch.resultEntries.find((e) => e.name === n && (e.mode & 0o6000) !== 0)
        if (planted === undefined) problems.push(`the build's ${n} was never seen with its setuid/setgid bit (the attack did not happen)`)
        if (!env.names(run).includes(n)) problems.push(`${n}, a valid rpm, did not come out`)
      }
      return problems
    }
  },
  {
    name: "hostile-out-symlink", cls: "output", modes: BOTH, about: "kit-link-1.0-1.noarch.rpm → /etc/shadow",
    spec: { install: "ln -s /etc/shadow /result/kit-link-1.0-1.noarch.rpm" },
    expect: { closes: false, faultIncludes: ['"kit-link-1.0-1.noarch.rpm" is not a regular file (a symbolic link)'] },
    refused: ["kit-link-1.0-1.noarch.rpm"],
    check: (run, env) => {
      const line = env.hostShadowLine
      return line !== "" && env.names(run).some((n) => env.read(run, n)?.includes(line) === true) ? ["the host's /etc/shadow came out"] : []
    }
  },
  {
    name: "hostile-out-fifo", cls: "output", modes: BOTH, about: "a FIFO named kit-fifo-1.0-1.noarch.rpm",
    spec: { install: "mkfifo /result/kit-fifo-1.0-1.noarch.rpm" },
    expect: { closes: false, faultIncludes: ['"kit-fifo-1.0-1.noarch.rpm" is not a regular file (a FIFO)'] },
    refused: ["kit-fifo-1.0-1.noarch.rpm"]
  },
  {
    name: "hostile-out-hardlink", cls: "output", modes: BOTH, about: "a real rpm hard-linked under a second name",
    spec: { install: "cp %{SOURCE10} /result/kit-hard-1.0-1.noarch.rpm\nln /result/kit-hard-1.0-1.noarch.rpm /result/kit-hard2-1.0-1.noarch.rpm" },
    expect: { closes: false, faultMatches: /"kit-hard2?-1\.0-1\.noarch\.rpm" has 2 hard links/ },
    refused: ["kit-hard-1.0-1.noarch.rpm", "kit-hard2-1.0-1.noarch.rpm"]
  },
  {
    name: "hostile-out-newline", cls: "output", modes: BOTH, about: "a real rpm named kit-nl<newline>x-1.0-1.noarch.rpm",
    spec: { install: "n=$(printf 'kit-nl\\nx-1.0-1.noarch.rpm')\ncp %{SOURCE10} \"/result/$n\"" },
    expect: { closes: false, faultIncludes: ["unsafe file name", JSON.stringify("kit-nl\nx-1.0-1.noarch.rpm")] },
    refused: ["kit-nl\nx-1.0-1.noarch.rpm"]
  },
  {
    name: "hostile-out-dotdot", cls: "output", modes: BOTH, about: "real rpms named ..kit-1.0-1.noarch.rpm and kit..x-1.0-1.noarch.rpm",
    spec: { install: "cp %{SOURCE10} /result/..kit-1.0-1.noarch.rpm\ncp %{SOURCE10} /result/kit..x-1.0-1.noarch.rpm" },
    expect: { closes: false, faultMatches: /unsafe file name "(\.\.kit|kit\.\.x)-1\.0-1\.noarch\.rpm"/ },
    refused: ["..kit-1.0-1.noarch.rpm", "kit..x-1.0-1.noarch.rpm"]
  },
  {
    name: "hostile-out-binary-as-src", cls: "output", modes: BOTH, about: "a binary rpm named kit-1.0-1.src.rpm",
    spec: { install: "cp %{SOURCE10} /result/kit-1.0-1.src.rpm" },
    expect: { closes: false, faultIncludes: ['"kit-1.0-1.src.rpm" is a binary rpm where a source rpm was expected'] },
    refused: ["kit-1.0-1.src.rpm"]
  },
  {
    name: "hostile-out-src-as-binary", cls: "output", modes: BOTH, about: "the staged SRPM copied as kit-src-1.0-1.noarch.rpm",
    spec: { install: "cp /srpm/build.src.rpm /result/kit-src-1.0-1.noarch.rpm" },
    expect: { closes: false, faultIncludes: ['"kit-src-1.0-1.noarch.rpm" is a source rpm where a binary rpm was expected'] },
    refused: ["kit-src-1.0-1.noarch.rpm"]
  },
  {
    name: "hostile-out-foreign-arch", cls: "output", modes: BOTH, about: "an s390x rpm (made by rpmbuild --target s390x) in a noarch build",
    spec: { install: "cp %{SOURCE11} /result/kit-1.0-1.s390x.rpm" },
    expect: { closes: false, faultIncludes: ['"kit-1.0-1.s390x.rpm" is built for "s390x"'] },
    refused: ["kit-1.0-1.s390x.rpm"]
  },
  {
    name: "hostile-out-foreign-nested", cls: "output", modes: BOTH, about: "a nested rpmbuild -bb --target s390x in %install writes its rpm into /result",
    spec: {
      install: "rpmbuild -bb --target s390x --define '_topdir /tmp/nested' --define '_rpmdir /result' %{SOURCE12}\nls -l /result"
    },
    expect: { closes: false, faultIncludes: ['"kit-1.0-1.s390x.rpm" is built for "s390x"'] },
    refused: ["kit-1.0-1.s390x.rpm"]
  },
  {
    name: "hostile-out-foreign-renamed", cls: "output", modes: BOTH, about: "an s390x rpm named kit-x-1.0-1.noarch.rpm",
    spec: { install: "cp %{SOURCE11} /result/kit-x-1.0-1.noarch.rpm" },
    expect: { closes: false, faultIncludes: ['"kit-x-1.0-1.noarch.rpm" is built for "s390x"'] },
    refused: ["kit-x-1.0-1.noarch.rpm"]
  },
  {
    name: "hostile-out-junk", cls: "output", modes: BOTH, about: "random bytes named kit-junk-1.0-1.noarch.rpm",
    spec: { install: "head -c 100000 /dev/urandom > /result/kit-junk-1.0-1.noarch.rpm" },
    expect: { closes: false, faultIncludes: ['"kit-junk-1.0-1.noarch.rpm" is not an rpm'] },
    refused: ["kit-junk-1.0-1.noarch.rpm"]
  },
  {
    name: "hostile-out-bad-header", cls: "output", modes: BOTH, about: "a real rpm whose signature header claims 2^31 index entries",
    // The signature header's index count is at byte 104 (96-byte lead, 8-byte header magic).
    spec: { install: "cp %{SOURCE10} /result/kit-bad-1.0-1.noarch.rpm\nprintf '\\177\\377\\377\\377' | dd of=/result/kit-bad-1.0-1.noarch.rpm bs=1 seek=104 conv=notrunc" },
    expect: { closes: false, faultIncludes: ['"kit-bad-1.0-1.noarch.rpm" is not an rpm'] },
    refused: ["kit-bad-1.0-1.noarch.rpm"]
  },
  {
    name: "hostile-out-directory", cls: "output", modes: BOTH, about: "a directory named kit-dir-1.0-1.noarch.rpm",
    spec: { install: "mkdir /result/kit-dir-1.0-1.noarch.rpm" },
    expect: { closes: false, faultIncludes: ['"kit-dir-1.0-1.noarch.rpm" is not a regular file (a directory)'] },
    refused: ["kit-dir-1.0-1.noarch.rpm"]
  },
  {
    name: "hostile-out-nosrc-symlink", cls: "output", modes: BOTH, about: "the -br round leaves evil.buildreqs.nosrc.rpm → /etc/shadow",
    spec: { generate: inBuildreqsRound("  ln -s /etc/shadow /result/buildreqs/evil.buildreqs.nosrc.rpm") },
    expect: { closes: false, faultIncludes: ['"evil.buildreqs.nosrc.rpm" is not a regular file (a symbolic link)'] }
  },
  {
    name: "hostile-out-buildreqs-link", cls: "output", modes: BOTH, about: "the -br round replaces /result/buildreqs by a link to /etc",
    spec: { generate: inBuildreqsRound("  rmdir /result/buildreqs\n  ln -s /etc /result/buildreqs") },
    expect: { closes: false, faultIncludes: ["replaced /result/buildreqs with something that is not a directory"] }
  },

  // ---- 3. the host's disk ---------------------------------------------------------------------
  {
    name: "hostile-disk-result-2g", cls: "disk", modes: BOTH, about: "dd 2 GiB into /result (task_disk_max is 1 GiB)",
    spec: { build: `dd if=/dev/zero of=/result/fill.bin bs=1M count=2048 || { echo "HOSTILE: dd stopped"; exit 1; }\n${escaped("wrote 2 GiB into /result")}` },
    expect: { closes: false, faultIncludes: ["task_disk_max"] }
  },
  {
    name: "hostile-disk-sparse-rpm", cls: "disk", modes: BOTH, about: "a 1 TB sparse kit-huge-1.0-1.noarch.rpm in /result",
    spec: { install: "truncate -s 1T /result/kit-huge-1.0-1.noarch.rpm" },
    expect: { closes: false, faultIncludes: ['"kit-huge-1.0-1.noarch.rpm"', "result_max_size"] },
    refused: ["kit-huge-1.0-1.noarch.rpm"]
  },
  {
    name: "hostile-disk-sparse-nosrc", cls: "disk", modes: BOTH, about: "the -br round leaves a 1 TB sparse big.buildreqs.nosrc.rpm",
    spec: { generate: inBuildreqsRound("  truncate -s 1T /result/buildreqs/big.buildreqs.nosrc.rpm") },
    expect: { closes: false, faultIncludes: ['"big.buildreqs.nosrc.rpm"', "result_max_size"] }
  },
  {
    name: "hostile-disk-sparse-log", cls: "disk", modes: BOTH, about: "truncate -s 1T /logs/build.log, then go on",
    spec: { build: "truncate -s 1T /logs/build.log\necho \"HOSTILE: tail after the hole\"" },
    expect: { closes: true },
    check: (run, env) => cappedLog(run, env, "build.log", "HOSTILE: tail after the hole")
  },
  {
    name: "hostile-disk-log-flood", cls: "disk", modes: BOTH, about: "400 MB of output into build.log",
    spec: { build: "set +x\nyes 'HOSTILE log flood' | head -c 400000000\necho\necho \"HOSTILE: flood done\"" },
    expect: { closes: true },
    check: (run, env) => cappedLog(run, env, "build.log", "HOSTILE: flood done")
  },
  {
    name: "hostile-disk-tmpfs-2g", cls: "disk", modes: BOTH, about: "dd 2 GiB into /var/tmp (a tmpfs: host memory)",
    spec: { build: `dd if=/dev/zero of=/var/tmp/fill.bin bs=1M count=2048 || { echo "HOSTILE: dd stopped"; exit 1; }\n${escaped("wrote 2 GiB into /var/tmp")}` },
    expect: { closes: false, faultMatches: /rpmbuild exited with status|HOSTILE: dd stopped/ }
  },

  // ---- 4. build ids -----------------------------------------------------------------------------
  {
    name: "hostile-uid-proc", cls: "uids", modes: BOTH, about: "prints its ids and sleeps while the host looks at its processes",
    spec: { build: "echo \"HOSTILE-IDS uid=$(id -u) gid=$(id -g)\"\nsh -c 'sleep 8; : HOSTILE_UID_PROC'" },
    expect: { closes: true },
    check: (run, env) => [
      ...buildProcesses(env, "HOSTILE_UID_PROC"),
      ...((env.read(run, "build.log")?.toString("utf8") ?? "").includes("HOSTILE-IDS uid=1000 gid=1000") ? [] : ["build.log does not show the build user 1000:1000"])
    ]
  },
  {
    name: "hostile-uid-files", cls: "uids", modes: BOTH, about: "leaves files and a directory in /result and sleeps while the host looks at their owners",
    spec: { build: "echo x > /result/uidcase-file\nmkdir /result/uidcase-dir\necho y > /result/uidcase-dir/f\nsh -c 'sleep 6; : HOSTILE_UID_FILES'" },
    expect: { closes: true },
    check: (_run, env) => {
      const mine = env.watch.resultEntries.filter((e) => e.name.startsWith("uidcase-"))
      if (mine.length < 2) return [`the build's files in /result were not seen on its task disk (${mine.length})`]
      return mine.flatMap((e) => [
        ...(env.accounts.uids.has(e.uid) || !env.inRange(e.uid) ? [`${e.path} is owned by host uid ${e.uid}`] : []),
        ...(env.accounts.gids.has(e.gid) || !env.inRange(e.gid) ? [`${e.path} has host gid ${e.gid}`] : [])
      ])
    }
  },

  // ---- regressions: what was already contained --------------------------------------------------
  {
    name: "hostile-reg-network", cls: "regression", modes: BOTH, about: "TCP to 1.1.1.1:53 and to a listener on the host's loopback",
    spec: {
      build: [
        `if bash -c 'exec 3<>/dev/tcp/1.1.1.1/53' 2>/dev/null; then ${escaped("reached 1.1.1.1")}; fi`,
        `if bash -c 'exec 3<>/dev/tcp/127.0.0.1/${inputs.listenerPort}' 2>/dev/null; then ${escaped("reached the host's loopback")}; fi`,
        "echo \"HOSTILE: network blocked\"", "exit 1"
      ].join("\n")
    },
    expect: { closes: false, faultIncludes: ["HOSTILE: network blocked"] },
    check: (_run, env) => (env.listenerConnections() > 0 ? [`the host's loopback listener got ${env.listenerConnections()} connection(s)`] : [])
  },
  {
    name: "hostile-reg-secret", cls: "regression", modes: BOTH, about: "reads a client certificate on the host and looks for the podman socket",
    spec: {
      build: [
        `if cat '${inputs.secretFile}'; then ${escaped("read the host's client certificate")}; fi`,
        `if [ -e '${inputs.podmanSocket}' ] || [ -e /run/podman/podman.sock ]; then ${escaped("sees the podman socket")}; fi`,
        "echo \"HOSTILE: secrets not visible\"", "exit 1"
      ].join("\n")
    },
    expect: { closes: false, faultIncludes: ["HOSTILE: secrets not visible"] }
  },
  {
    name: "hostile-reg-writes", cls: "regression", modes: BOTH, about: "writes sentinels into /, /etc, /usr, /var/lib, /srpm, /logs (and, allowed, /tmp and /result)",
    spec: {
      build: [
        `for d in / /etc /usr /var/lib /srpm /logs /builddir/..; do`,
        `  if (echo x > "$d/${SENTINEL}_write") 2>/dev/null; then ${escaped("wrote into $d")}; fi`,
        "done",
        `echo x > /tmp/${SENTINEL}_tmp`, `echo x > /result/${SENTINEL}_result`,
        "echo \"HOSTILE: writes outside refused\"", "exit 1"
      ].join("\n")
    },
    expect: { closes: false, faultIncludes: ["HOSTILE: writes outside refused"] }
  },
  {
    name: "hostile-reg-forkbomb", cls: "regression", modes: BOTH, about: "3000 background sleeps",
    // set +x: with rpm's xtrace on, each child prints "+ sleep 120" late, pushing the fork error out of the fault's log tail.
    spec: { build: `set +x\ni=0\nwhile [ $i -lt 3000 ]; do sleep 120 & i=$((i+1)); done\n${escaped("forked 3000")}` },
    expect: { closes: false, faultMatches: /Cannot fork|fork|Resource temporarily unavailable/i }
  },
  {
    name: "hostile-reg-memory", cls: "regression", modes: BOTH, about: "perl allocates 3 GiB (container_memory is 1 GiB)",
    spec: { build: `if perl -e '$x = "x" x (3 * 1024 * 1024 * 1024); print length($x), "\\n"'; then ${escaped("allocated 3 GiB")}; fi\necho "HOSTILE: memory refused"\nexit 1` },
    expect: { closes: false, faultMatches: /rpmbuild exited with status/ }
  },
  {
    name: "hostile-reg-background", cls: "regression", modes: BOTH, about: "setsid and nohup sleepers meant to outlive the build",
    spec: {
      build: [
        "setsid sh -c 'sleep 300; : HOSTILE_BG_SETSID' </dev/null >/dev/null 2>&1 &",
        "nohup sh -c 'sleep 300; : HOSTILE_BG_NOHUP' </dev/null >/dev/null 2>&1 &",
        "sleep 3"
      ].join("\n")
    },
    expect: { closes: true },
    check: (run, env) => {
      const seen = env.watch.procs.filter((p) => p.cmdline.includes("HOSTILE_BG_"))
      if (seen.length === 0) return ["the background sleepers were never seen (the watch missed them)"]
      return seen.filter((p) => p.lastSeen > run.endedAt + 3000).map((p) => `${p.cmdline} (pid ${p.pid}) was still running ${p.lastSeen - run.endedAt} ms after the build ended`)
    }
  }
]

/** The text of a case's spec: a noarch package with one file, the kit (its rpms and its spec) as sources, the case's parts. */
export const specText = (c: HostileCase): string => {
  const body = c.spec ?? {}
  return [
    `Name: ${c.name}`, "Version: 1.0", "Release: 1", `Summary: hostile test package (${c.cls})`, "License: MIT", "BuildArch: noarch",
    "Source10: kit-1.0-1.noarch.rpm", "Source11: kit-1.0-1.s390x.rpm", "Source12: kit.spec",
    ...(body.buildRequires ?? []).map((br) => `BuildRequires: ${br}`),
    "%description", `A hostile package: ${c.about.replace(/%/g, "")}`,
    "%prep",
    ...(body.generate === undefined ? [] : ["%generate_buildrequires", body.generate]),
    "%build", body.build ?? "",
    "%install",
    `mkdir -p %{buildroot}/usr/share/${c.name}`, `echo ok > %{buildroot}/usr/share/${c.name}/ok`,
    body.install ?? "",
    "%files", `/usr/share/${c.name}/ok`, ""
  ].join("\n")
}

/** The kit: a tiny package built as noarch and as s390x, the real rpms hostile builds copy. */
export const KIT_SPEC = `Name: kit
Version: 1.0
Release: 1
Summary: a real rpm for hostile builds to misuse
License: MIT
%description
A tiny package.
%install
mkdir -p %{buildroot}/usr/share/kit
echo kit > %{buildroot}/usr/share/kit/kit
%files
/usr/share/kit/kit
`
