/**
 * `--help` for every command, written for an admin (it is the man page's OPTIONS, with kojid's
 * flags in kojid's words). @effect/cli's own help adds type boilerplate to each flag and colours
 * it unconditionally; this is plain text, so it reads the same on a terminal, in a pipe, with
 * NO_COLOR and in the journal. test/cli/help.test.ts checks that every option a command parses
 * is described here and nothing else is.
 */

/** One option's line in the help. */
export interface OptionDoc {
  /** As typed: `-c, --config FILE`. */
  readonly flags: string
  readonly text: string
}

/** One command's help. */
export interface CommandDoc {
  readonly usage: ReadonlyArray<string>
  readonly summary: string
  readonly options: ReadonlyArray<OptionDoc>
  /** Paragraphs after the options. */
  readonly notes?: ReadonlyArray<string>
}

const o = (flags: string, text: string): OptionDoc => ({ flags, text })

const CONFIG = o("-c, --config FILE", "kojid.conf to read (a file, or a directory of *.conf read in name order); default /etc/kojid/kojid.conf")
const VERBOSE = o("-v, --verbose", "log at INFO level (over log_level in kojid.conf)")
const DEBUG = o("-d, --debug", "log at DEBUG level, errors with their stack")

/** The options that override a kojid.conf key (the daemon and check-config take them). */
const CONFIG_FLAGS: ReadonlyArray<OptionDoc> = [
  o("--user USER", "log in to the hub as USER with --password (kojid.conf: user); the host name the containers are labelled with"),
  o("--password PASSWORD", "password for --user (kojid.conf: password); prefer the config file, the command line is visible in ps"),
  o("--maxjobs N", "run at most N tasks at once (kojid.conf: maxjobs, default 10)"),
  o("--minspace MB", "take no task while the workdir or podman's storage has less than MB free (kojid.conf: minspace, default 8192)"),
  o("--sleeptime SECONDS", "pause between two polls of the hub when idle (kojid.conf: sleeptime, default 15)"),
  o("--admin-emails ADDRESSES", "comma-separated addresses kojid sends error notices to (kojid.conf: admin_emails)"),
  o("--topdir DIR", "where koji's files are mounted, read instead of topurl where present (kojid.conf: topdir, default /mnt/koji)"),
  o("--topurl URL", "URL of koji's files, the hub's kojifiles (kojid.conf: topurl; several separated by spaces)"),
  o("--workdir DIR", "where tasks keep their files (kojid.conf: workdir, default /var/tmp/koji)"),
  o("--chroot-tmpdir DIR", "kojid's tmp directory inside a buildroot (kojid.conf: chroot_tmpdir); accepted for compatibility"),
  o("--pluginpath PATH", "kojid's plugin search path (kojid.conf: pluginpath); koji-adjutant's plugins are built in"),
  o("--plugin NAME", "load the builder plugin NAME (repeatable, replaces kojid.conf's plugin list); koji-adjutant has: runroot"),
  o("--mockdir DIR", "the buildroot path kojid's mock used, shown in results (kojid.conf: mockdir)"),
  o("--mockuser USER", "kojid's mock user (kojid.conf: mockuser); builds here run as [adjutant] build_user"),
  o("-s, --server URL", "the hub's XML-RPC URL, e.g. https://koji.example.com/kojihub (kojid.conf: server)")
]

const DAEMON: CommandDoc = {
  usage: ["koji-adjutant [OPTIONS]", "koji-adjutant COMMAND [OPTIONS]   (COMMAND --help for each)"],
  summary:
    "The koji build host daemon: logs in to the koji hub as kojid does, takes the tasks the hub assigns and runs " +
    "each one in ephemeral podman containers. It reads kojid's /etc/kojid/kojid.conf ([kojid] as kojid, [adjutant] " +
    "for what kojid never had) and logs to /var/log/kojid.log.",
  options: [
    CONFIG,
    o("-f, --fg", "run in the foreground: log to stderr too (with the syslog priority prefix when stderr is the journal)"),
    o("--force-lock", "take the host's exclusive session even if another process holds it (the systemd unit passes it)"),
    VERBOSE,
    DEBUG,
    o("--debug-task", "kojid's task debugging switch: log at DEBUG level"),
    o("--debug-xmlrpc", "kojid's XML-RPC debugging switch: log at DEBUG level"),
    o("--debug-mock", "kojid's mock debugging switch: accepted and ignored (there is no mock; build logs go to the hub as root.log and build.log)"),
    o("--skip-main", "read the configuration, then exit without running (kojid's test switch)"),
    ...CONFIG_FLAGS,
    o("-h, --help", "show this help"),
    o("--version", "show the version")
  ],
  notes: [
    "Commands:",
    "  check-config   validate kojid.conf as the daemon would (--probe: try podman, images, topurl, the hub)",
    "  build-local    build an SRPM or SCM URL on this machine as a koji builder would",
    "  status         what the running daemon is doing (its status_listen endpoint)",
    "  cache          list, prune or clear the buildroot cache",
    "  containers     list this host's containers, or reap the ones no running task owns",
    "  images         list, pull or prune the bootstrap images",
    "Signals: SIGTERM stops (running tasks are freed on the hub, containers removed); SIGUSR1 restarts once running " +
      "tasks finish (systemctl reload); SIGHUP reopens the log file.",
    "Exit status: 0 after a clean stop, 1 on a fatal error (one line in the log file and on stderr), 2 for a bad command line."
  ]
}

const CHECK_CONFIG: CommandDoc = {
  usage: ["koji-adjutant check-config [-c FILE] [--probe] [OPTIONS]"],
  summary:
    "Reads kojid.conf as the daemon would, checks what the daemon checks before it starts (unknown keys and " +
    "sections, values, plugins, runroot.conf, the cert and CA files, the build_userns range) and prints every " +
    "effective value, secrets redacted. Exit status 1 when the daemon would refuse to start.",
  options: [
    CONFIG,
    o("--probe", "also try the podman socket, the configured images, topdir, each topurl and an anonymous hub call, and print a checklist"),
    VERBOSE,
    DEBUG,
    ...CONFIG_FLAGS,
    o("-h, --help", "show this help")
  ]
}

const BUILD_LOCAL: CommandDoc = {
  usage: [
    "koji-adjutant build-local (--target TARGET | --tag BUILD_TAG) [OPTIONS] SRPM|SCM-URL",
    "koji-adjutant build-local --repo URL|DIR [OPTIONS] SRPM"
  ],
  summary:
    "Builds an SRPM or an SCM URL on this machine exactly as the builders of a koji hub would (same buildroots, " +
    "containers, cache and isolation as the daemon), reading the hub anonymously; or, with --repo, from a " +
    "koji-style repo without a hub.",
  options: [
    o("--target TARGET", "build for this build target: its build tag is used, as koji build TARGET would"),
    o("--tag BUILD_TAG", "build from this build tag instead of a target's"),
    o("-p, --profile NAME", "koji client profile naming the hub (/etc/koji.conf.d, /etc/koji.conf, ~/.koji; default koji)"),
    o("--koji-config FILE", "koji client config file read instead of ~/.koji/config.d and ~/.koji/config (koji's -c)"),
    o("-s, --server URL", "the hub's URL, over the profile's"),
    o("--topurl URL", "the hub's file URL, over the profile's"),
    o("--repo-id N", "build from this repo of the build tag (READY or EXPIRED) instead of its current one"),
    o("--wait-repo", "wait (up to 2 hours) for a repo newer than the build tag's last change"),
    o("--compare-task ID", "compare the buildroots' packages with those of this koji task or its subtasks"),
    o("--repo URL|DIR", "build without a hub from this koji-style repo: the arch directory holding repodata/, or its URL"),
    o("--arch ARCH", "the arch to build; default this machine's, or noarch"),
    o("--result DIR", "where the packages and logs go (default build-local-result)"),
    o("-c, --config FILE", "kojid.conf to take podman, images, limits, the user namespace, the cache and allowed_scms from (default: kojid's defaults)"),
    o("--podman-socket PATH", "the podman API socket, over [adjutant] podman_socket"),
    o("--cache-dir DIR", "the buildroot cache, over [adjutant] buildroot_cache_dir"),
    o("--image IMAGE", "the bootstrap image, over the daemon's choice"),
    o("--timeout SECONDS", "stop the whole run after this long"),
    o("-h, --help", "show this help")
  ]
}

const STATUS: CommandDoc = {
  usage: ["koji-adjutant status [-c FILE] [--json]"],
  summary:
    "Asks the running daemon what it does, through its [adjutant] status_listen endpoint (GET /status): host, " +
    "version, whether it takes tasks and why not, load, the tasks it runs, the last heartbeat. Exit status 0 when " +
    "the daemon is ready, 1 when it is not, 3 when no daemon answers.",
  options: [CONFIG, o("--json", "print the daemon's JSON as it is"), o("-h, --help", "show this help")]
}

const CACHE: CommandDoc = {
  usage: ["koji-adjutant cache list [-c FILE]", "koji-adjutant cache prune [-c FILE] [--offline]", "koji-adjutant cache clear [-c FILE]"],
  summary:
    "The filled buildroots in [adjutant] buildroot_cache_dir. list: each entry with its repo, tag, arch, group, " +
    "image, age and last use, and whether a task has it mounted now. prune: removes the entries beyond " +
    "buildroot_cache_max (least recently used first) and those whose repo the hub no longer keeps READY. clear: " +
    "removes every entry. Entries a running task has mounted are never removed; clear refuses while there are any.",
  options: [
    CONFIG,
    o("--offline", "prune: do not ask the hub which repos are still current (only the size bound)"),
    o("-h, --help", "show this help")
  ]
}

const CONTAINERS: CommandDoc = {
  usage: ["koji-adjutant containers list [-c FILE]", "koji-adjutant containers reap [-c FILE]"],
  summary:
    "The podman containers labelled with this host. list: name, state, task, role and age. reap: removes the ones " +
    "no running task owns: a task runs when the daemon's /status lists it, or (without status_listen) when the " +
    "hub has it OPEN on this host. Refuses when it can ask neither.",
  options: [CONFIG, o("-h, --help", "show this help")]
}

const IMAGES: CommandDoc = {
  usage: ["koji-adjutant images list [-c FILE]", "koji-adjutant images pull [-c FILE] [IMAGE…]", "koji-adjutant images prune [-c FILE]"],
  summary:
    "The bootstrap images kojid.conf names (bootstrap_image, image_rules). list: each with its local id, size and " +
    "digest, or missing. pull: pulls them (or the ones given) now, as the daemon's pull_policy = always would. " +
    "prune: removes images koji-adjutant pulled or built that no rule names any more; podman keeps an image a " +
    "container uses, so it is safe while the daemon runs.",
  options: [CONFIG, o("-h, --help", "show this help")]
}

/** Help by command name ("" is the daemon). */
export const COMMAND_DOCS: Readonly<Record<string, CommandDoc>> = {
  "": DAEMON,
  "check-config": CHECK_CONFIG,
  "build-local": BUILD_LOCAL,
  status: STATUS,
  cache: CACHE,
  containers: CONTAINERS,
  images: IMAGES
}

/** Wraps `text` at `width` columns, every line after the first indented by `indent`. */
const wrap = (text: string, width: number, indent: string): string => {
  const lines: Array<string> = []
  let line = ""
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line)
      line = word
    } else {
      line = line === "" ? word : `${line} ${word}`
    }
  }
  if (line !== "") lines.push(line)
  return lines.join(`\n${indent}`)
}

/** The help text of a command. */
export const renderHelp = (command: string, width = 100): string => {
  const doc = COMMAND_DOCS[command] ?? DAEMON
  const out: Array<string> = ["Usage:"]
  for (const u of doc.usage) out.push(`  ${u}`)
  out.push("", wrap(doc.summary, width, ""), "", "Options:")
  const column = Math.min(30, Math.max(...doc.options.map((x) => x.flags.length)) + 4)
  for (const opt of doc.options) {
    const head = `  ${opt.flags}`
    const pad = head.length + 2 <= column ? head.padEnd(column) : `${head}\n${" ".repeat(column)}`
    out.push(pad + wrap(opt.text, width - column, " ".repeat(column)))
  }
  for (const n of doc.notes ?? []) out.push("", n.startsWith("  ") ? n : wrap(n, width, ""))
  return out.join("\n") + "\n"
}

/** Options of the daemon that take a value (to find the command word and `-c` in argv). */
const VALUE_OPTIONS = new Set([
  "-c", "--config", "--user", "--password", "--maxjobs", "--minspace", "--sleeptime", "--admin-emails", "--topdir",
  "--topurl", "--workdir", "--chroot-tmpdir", "--pluginpath", "--plugin", "--mockdir", "--mockuser", "-s", "--server"
])

/** What the command line asks for, read before @effect/cli parses it (for --help, the logger and fatal errors). */
export interface Invocation {
  /** "" for the daemon. */
  readonly command: string
  readonly help: boolean
  /** The `-c` value, when given. */
  readonly config: string | undefined
  readonly debug: boolean
  readonly verbose: boolean
}

/** Reads `args` (process.argv without node and the script). */
export const invocationOf = (args: ReadonlyArray<string>): Invocation => {
  let command = ""
  let help = false
  let config: string | undefined
  let debug = false
  let verbose = false
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a === "--") break
    if (a === "-h" || a === "--help") help = true
    else if (a === "-d" || a === "--debug") debug = true
    else if (a === "-v" || a === "--verbose") verbose = true
    else if (a === "-c" || a === "--config") config = args[i + 1]
    else if (a.startsWith("--config=")) config = a.slice("--config=".length)
    if (VALUE_OPTIONS.has(a)) i++
    else if (command === "" && !a.startsWith("-") && a in COMMAND_DOCS) command = a
  }
  return { command, help, config, debug, verbose }
}
