import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import {
  allowedByConfig,
  allowedByPolicyResult,
  buildFromScmPolicyData,
  DEFAULT_SCM_RULES,
  parseAllowedScms
} from "../../src/scm/allowed.js"
import { fnmatch } from "../../src/koji/fnmatch.js"
import {
  checkoutPlan,
  faultCodeFor,
  faultFor,
  isScmUrl,
  maskPassword,
  parseScmUrl,
  ScmError,
  type ScmUrl,
  sourceUrl
} from "../../src/scm/url.js"

// Every expected value below was obtained by running kojid's own koji.daemon.SCM (__init__,
// _parse_url, assert_allowed_by_config, assert_allowed_by_policy, checkout with log_output
// recorded) on the row's input. Where our message deliberately differs (a password is never
// echoed; clearer wording), `contains` holds the part we keep.

type Parsed = Omit<ScmUrl, "url">
type Expect = Parsed | { readonly error: string; readonly contains: string }
interface UrlRow {
  readonly url: string
  readonly isScm: boolean
  readonly strict: Expect
  readonly allowPassword: Expect
}
type Rules = { readonly useCommon: boolean; readonly sourceCmd: ReadonlyArray<string> | null } | { readonly error: string }
interface AllowedRow {
  readonly list: string
  readonly allowed: string
  readonly url: string
  readonly result: Rules
}
interface PolicyRow {
  readonly config: string | null
  readonly answer: string | null
  readonly result: Rules
}
interface PlanRow {
  readonly url: string
  readonly error?: string
  readonly sourcedir?: string
  readonly link?: readonly [string, string]
  readonly calls?: ReadonlyArray<{ readonly argv: ReadonlyArray<string>; readonly cwd: string; readonly env?: Record<string, string> }>
  readonly recovery?: ReadonlyArray<string> | null
}

const URL_ROWS: ReadonlyArray<UrlRow> = [
  { url: "git://pkgs.example.org/rpms/foo#abc", isScm: true, strict: {"scheme": "git://", "user": null, "host": "pkgs.example.org", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"}, allowPassword: {"scheme": "git://", "user": null, "host": "pkgs.example.org", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"} },
  { url: "git+https://user@src.example.org/rpms/foo.git?sub/dir/#abc123", isScm: true, strict: {"scheme": "git+https://", "user": "user", "host": "src.example.org", "repository": "/rpms/foo.git", "module": "sub/dir", "revision": "abc123", "scmtype": "GIT"}, allowPassword: {"scheme": "git+https://", "user": "user", "host": "src.example.org", "repository": "/rpms/foo.git", "module": "sub/dir", "revision": "abc123", "scmtype": "GIT"} },
  { url: "git+http://host:8080/a/b/c/#v1", isScm: true, strict: {"scheme": "git+http://", "user": null, "host": "host:8080", "repository": "/a/b/c", "module": "", "revision": "v1", "scmtype": "GIT"}, allowPassword: {"scheme": "git+http://", "user": null, "host": "host:8080", "repository": "/a/b/c", "module": "", "revision": "v1", "scmtype": "GIT"} },
  { url: "git+rsync://host/x#r", isScm: true, strict: {"scheme": "git+rsync://", "user": null, "host": "host", "repository": "/x", "module": "", "revision": "r", "scmtype": "GIT"}, allowPassword: {"scheme": "git+rsync://", "user": null, "host": "host", "repository": "/x", "module": "", "revision": "r", "scmtype": "GIT"} },
  { url: "git+ssh://git@host/rpms/foo.git#HEAD", isScm: true, strict: {"scheme": "git+ssh://", "user": "git", "host": "host", "repository": "/rpms/foo.git", "module": "", "revision": "HEAD", "scmtype": "GIT+SSH"}, allowPassword: {"scheme": "git+ssh://", "user": "git", "host": "host", "repository": "/rpms/foo.git", "module": "", "revision": "HEAD", "scmtype": "GIT+SSH"} },
  { url: "git+ssh://host/rpms/foo.git#HEAD", isScm: true, strict: {"scheme": "git+ssh://", "user": null, "host": "host", "repository": "/rpms/foo.git", "module": "", "revision": "HEAD", "scmtype": "GIT+SSH"}, allowPassword: {"scheme": "git+ssh://", "user": null, "host": "host", "repository": "/rpms/foo.git", "module": "", "revision": "HEAD", "scmtype": "GIT+SSH"} },
  { url: "git://user:secret@host/rpms/foo#abc", isScm: true, strict: { error: "GenericError", contains: "username:password format not supported: user:***" }, allowPassword: {"scheme": "git://", "user": "user:secret", "host": "host", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"} },
  { url: "git://:secret@host/rpms/foo#abc", isScm: true, strict: { error: "GenericError", contains: "username:password format not supported: None:***" }, allowPassword: {"scheme": "git://", "user": "None:secret", "host": "host", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"} },
  { url: "git://user:@host/rpms/foo#abc", isScm: true, strict: {"scheme": "git://", "user": "user", "host": "host", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"}, allowPassword: {"scheme": "git://", "user": "user", "host": "host", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"} },
  { url: "git://@host/rpms/foo#abc", isScm: true, strict: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"}, allowPassword: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"} },
  { url: "git://a@b@host/rpms/foo#abc", isScm: true, strict: { error: "GenericError", contains: "Invalid username@hostname specified: git://a@b@host/rpms/foo#abc" }, allowPassword: { error: "GenericError", contains: "Invalid username@hostname specified: git://a@b@host/rpms/foo#abc" } },
  { url: "git://host#abc", isScm: true, strict: { error: "GenericError", contains: "Unable to parse SCM URL: git://host#abc . Could not find the path element." }, allowPassword: { error: "GenericError", contains: "Unable to parse SCM URL: git://host#abc . Could not find the path element." } },
  { url: "git://host?mod#abc", isScm: true, strict: { error: "GenericError", contains: "Unable to parse SCM URL: git://host?mod#abc . Could not find the path element." }, allowPassword: { error: "GenericError", contains: "Unable to parse SCM URL: git://host?mod#abc . Could not find the path element." } },
  { url: "git://host/#abc", isScm: true, strict: { error: "GenericError", contains: "Invalid SCM URL. Path should begin with /" }, allowPassword: { error: "GenericError", contains: "Invalid SCM URL. Path should begin with /" } },
  { url: "git://host//#abc", isScm: true, strict: { error: "GenericError", contains: "Invalid SCM URL. Path should begin with /" }, allowPassword: { error: "GenericError", contains: "Invalid SCM URL. Path should begin with /" } },
  { url: "git://host/rpms/foo", isScm: true, strict: { error: "GenericError", contains: "Unable to parse SCM URL: git://host/rpms/foo . Could not find the fragment element" }, allowPassword: { error: "GenericError", contains: "Unable to parse SCM URL: git://host/rpms/foo . Could not find the fragment element" } },
  { url: "git://host/rpms/foo#", isScm: true, strict: { error: "GenericError", contains: "Unable to parse SCM URL: git://host/rpms/foo# . Could not find the fragment element" }, allowPassword: { error: "GenericError", contains: "Unable to parse SCM URL: git://host/rpms/foo# . Could not find the fragment element" } },
  { url: "git://host/rpms/foo;type=x#abc", isScm: true, strict: { error: "GenericError", contains: "Unable to parse SCM URL: git://host/rpms/foo;type=x#abc . Params element type=x should be empty." }, allowPassword: { error: "GenericError", contains: "Unable to parse SCM URL: git://host/rpms/foo;type=x#abc . Params element type=x should be empty." } },
  { url: "git://host/rpms;x/foo#abc", isScm: true, strict: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms;x/foo", "module": "", "revision": "abc", "scmtype": "GIT"}, allowPassword: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms;x/foo", "module": "", "revision": "abc", "scmtype": "GIT"} },
  { url: "git://host/rpms/foo;#abc", isScm: true, strict: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"}, allowPassword: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"} },
  { url: "git://host//rpms//foo/./bar/../baz/#abc", isScm: true, strict: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo/baz", "module": "", "revision": "abc", "scmtype": "GIT"}, allowPassword: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo/baz", "module": "", "revision": "abc", "scmtype": "GIT"} },
  { url: "git://host///rpms/foo#abc", isScm: true, strict: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"}, allowPassword: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"} },
  { url: "git://host/../../etc/passwd#abc", isScm: true, strict: {"scheme": "git://", "user": null, "host": "host", "repository": "/etc/passwd", "module": "", "revision": "abc", "scmtype": "GIT"}, allowPassword: {"scheme": "git://", "user": null, "host": "host", "repository": "/etc/passwd", "module": "", "revision": "abc", "scmtype": "GIT"} },
  { url: "git://host/rpms/foo?../../x#abc", isScm: true, strict: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo", "module": "../../x", "revision": "abc", "scmtype": "GIT"}, allowPassword: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo", "module": "../../x", "revision": "abc", "scmtype": "GIT"} },
  { url: "git://host/rpms/foo#a#b", isScm: true, strict: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo", "module": "", "revision": "a#b", "scmtype": "GIT"}, allowPassword: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo", "module": "", "revision": "a#b", "scmtype": "GIT"} },
  { url: "git://host/rpms/foo?a?b#c", isScm: true, strict: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo", "module": "a?b", "revision": "c", "scmtype": "GIT"}, allowPassword: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo", "module": "a?b", "revision": "c", "scmtype": "GIT"} },
  { url: "git://host/rp\tms/foo#abc", isScm: true, strict: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"}, allowPassword: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"} },
  { url: "git:///rpms/foo#abc", isScm: true, strict: {"scheme": "git://", "user": null, "host": "", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"}, allowPassword: {"scheme": "git://", "user": null, "host": "", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"} },
  { url: "git://host/rpms/foo/.git#origin/main", isScm: true, strict: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo/.git", "module": "", "revision": "origin/main", "scmtype": "GIT"}, allowPassword: {"scheme": "git://", "user": null, "host": "host", "repository": "/rpms/foo/.git", "module": "", "revision": "origin/main", "scmtype": "GIT"} },
  { url: "cvs://cvs.example.org/cvs/dist?rpms/foo/devel#FOO-1_0-1", isScm: true, strict: {"scheme": "cvs://", "user": null, "host": "cvs.example.org", "repository": "/cvs/dist", "module": "rpms/foo/devel", "revision": "FOO-1_0-1", "scmtype": "CVS"}, allowPassword: {"scheme": "cvs://", "user": null, "host": "cvs.example.org", "repository": "/cvs/dist", "module": "rpms/foo/devel", "revision": "FOO-1_0-1", "scmtype": "CVS"} },
  { url: "cvs+ssh://user@cvs.example.org/cvs/dist?rpms/foo#TAG", isScm: true, strict: {"scheme": "cvs+ssh://", "user": "user", "host": "cvs.example.org", "repository": "/cvs/dist", "module": "rpms/foo", "revision": "TAG", "scmtype": "CVS+SSH"}, allowPassword: {"scheme": "cvs+ssh://", "user": "user", "host": "cvs.example.org", "repository": "/cvs/dist", "module": "rpms/foo", "revision": "TAG", "scmtype": "CVS+SSH"} },
  { url: "cvs+ssh://cvs.example.org/cvs/dist?rpms/foo#TAG", isScm: true, strict: {"scheme": "cvs+ssh://", "user": null, "host": "cvs.example.org", "repository": "/cvs/dist", "module": "rpms/foo", "revision": "TAG", "scmtype": "CVS+SSH"}, allowPassword: {"scheme": "cvs+ssh://", "user": null, "host": "cvs.example.org", "repository": "/cvs/dist", "module": "rpms/foo", "revision": "TAG", "scmtype": "CVS+SSH"} },
  { url: "svn://svn.example.org/repos?trunk/foo#1234", isScm: true, strict: {"scheme": "svn://", "user": null, "host": "svn.example.org", "repository": "/repos", "module": "trunk/foo", "revision": "1234", "scmtype": "SVN"}, allowPassword: {"scheme": "svn://", "user": null, "host": "svn.example.org", "repository": "/repos", "module": "trunk/foo", "revision": "1234", "scmtype": "SVN"} },
  { url: "svn+https://svn.example.org/repos?trunk/foo#1234", isScm: true, strict: {"scheme": "svn+https://", "user": null, "host": "svn.example.org", "repository": "/repos", "module": "trunk/foo", "revision": "1234", "scmtype": "SVN"}, allowPassword: {"scheme": "svn+https://", "user": null, "host": "svn.example.org", "repository": "/repos", "module": "trunk/foo", "revision": "1234", "scmtype": "SVN"} },
  { url: "svn+ssh://u@svn.example.org/repos?trunk/foo#1234", isScm: true, strict: {"scheme": "svn+ssh://", "user": "u", "host": "svn.example.org", "repository": "/repos", "module": "trunk/foo", "revision": "1234", "scmtype": "SVN+SSH"}, allowPassword: {"scheme": "svn+ssh://", "user": "u", "host": "svn.example.org", "repository": "/repos", "module": "trunk/foo", "revision": "1234", "scmtype": "SVN+SSH"} },
  { url: "svn+ssh://svn.example.org/repos?trunk/foo#1234", isScm: true, strict: {"scheme": "svn+ssh://", "user": null, "host": "svn.example.org", "repository": "/repos", "module": "trunk/foo", "revision": "1234", "scmtype": "SVN+SSH"}, allowPassword: {"scheme": "svn+ssh://", "user": null, "host": "svn.example.org", "repository": "/repos", "module": "trunk/foo", "revision": "1234", "scmtype": "SVN+SSH"} },
  { url: "http://host/rpms/foo#abc", isScm: false, strict: { error: "GenericError", contains: "Invalid scheme in scm url. Valid schemes are: cvs+ssh:// cvs:// git+http:// git+https:// git+rsync:// git+ssh:// git:// svn+http:// svn+https:// svn+ssh:// svn://" }, allowPassword: { error: "GenericError", contains: "Invalid scheme in scm url. Valid schemes are: cvs+ssh:// cvs:// git+http:// git+https:// git+rsync:// git+ssh:// git:// svn+http:// svn+https:// svn+ssh:// svn://" } },
  { url: "GIT://host/rpms/foo#abc", isScm: false, strict: { error: "GenericError", contains: "Invalid scheme in scm url. Valid schemes are: cvs+ssh:// cvs:// git+http:// git+https:// git+rsync:// git+ssh:// git:// svn+http:// svn+https:// svn+ssh:// svn://" }, allowPassword: { error: "GenericError", contains: "Invalid scheme in scm url. Valid schemes are: cvs+ssh:// cvs:// git+http:// git+https:// git+rsync:// git+ssh:// git:// svn+http:// svn+https:// svn+ssh:// svn://" } },
  { url: "git+file:///tmp/foo#abc", isScm: false, strict: { error: "GenericError", contains: "Invalid scheme in scm url. Valid schemes are: cvs+ssh:// cvs:// git+http:// git+https:// git+rsync:// git+ssh:// git:// svn+http:// svn+https:// svn+ssh:// svn://" }, allowPassword: { error: "GenericError", contains: "Invalid scheme in scm url. Valid schemes are: cvs+ssh:// cvs:// git+http:// git+https:// git+rsync:// git+ssh:// git:// svn+http:// svn+https:// svn+ssh:// svn://" } },
  { url: "ssh://host/foo#abc", isScm: false, strict: { error: "GenericError", contains: "Invalid scheme in scm url. Valid schemes are: cvs+ssh:// cvs:// git+http:// git+https:// git+rsync:// git+ssh:// git:// svn+http:// svn+https:// svn+ssh:// svn://" }, allowPassword: { error: "GenericError", contains: "Invalid scheme in scm url. Valid schemes are: cvs+ssh:// cvs:// git+http:// git+https:// git+rsync:// git+ssh:// git:// svn+http:// svn+https:// svn+ssh:// svn://" } },
  { url: "/mnt/koji/work/foo.src.rpm", isScm: false, strict: { error: "GenericError", contains: "Invalid scheme in scm url. Valid schemes are: cvs+ssh:// cvs:// git+http:// git+https:// git+rsync:// git+ssh:// git:// svn+http:// svn+https:// svn+ssh:// svn://" }, allowPassword: { error: "GenericError", contains: "Invalid scheme in scm url. Valid schemes are: cvs+ssh:// cvs:// git+http:// git+https:// git+rsync:// git+ssh:// git:// svn+http:// svn+https:// svn+ssh:// svn://" } },
  { url: "foo.src.rpm", isScm: false, strict: { error: "GenericError", contains: "Invalid scheme in scm url. Valid schemes are: cvs+ssh:// cvs:// git+http:// git+https:// git+rsync:// git+ssh:// git:// svn+http:// svn+https:// svn+ssh:// svn://" }, allowPassword: { error: "GenericError", contains: "Invalid scheme in scm url. Valid schemes are: cvs+ssh:// cvs:// git+http:// git+https:// git+rsync:// git+ssh:// git:// svn+http:// svn+https:// svn+ssh:// svn://" } },
  { url: "git://[::1]/rpms/foo#abc", isScm: true, strict: {"scheme": "git://", "user": null, "host": "[::1]", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"}, allowPassword: {"scheme": "git://", "user": null, "host": "[::1]", "repository": "/rpms/foo", "module": "", "revision": "abc", "scmtype": "GIT"} },
  { url: "git://[::1/rpms/foo#abc", isScm: true, strict: { error: "GenericError", contains: "Invalid IPv6 URL" }, allowPassword: { error: "GenericError", contains: "Invalid IPv6 URL" } },
]
const PLAN_ROWS: ReadonlyArray<PlanRow> = [
  { url: "git://pkgs.example.org/rpms/foo#abc", sourcedir: "/SCM/foo", link: ["../common", "/SCM/foo/../common"], calls: [{"argv": ["git", "clone", "-n", "git://pkgs.example.org/rpms/foo", "/SCM/foo"], "cwd": "/SCM"}, {"argv": ["git", "fetch", "origin", "abc:KOJI_FETCH_HEAD"], "cwd": "/SCM/foo"}, {"argv": ["git", "reset", "--hard", "KOJI_FETCH_HEAD"], "cwd": "/SCM/foo"}, {"argv": ["git", "clone", "git://pkgs.example.org/rpms/common", "common"], "cwd": "/SCM"}], recovery: ["git", "reset", "--hard", "abc"] },
  { url: "git+https://user@src.example.org/rpms/foo.git?sub/dir/#origin/main", sourcedir: "/SCM/foo/sub/dir", link: ["../../common", "/SCM/foo/sub/dir/../common"], calls: [{"argv": ["git", "clone", "-n", "https://user@src.example.org/rpms/foo.git", "/SCM/foo"], "cwd": "/SCM"}, {"argv": ["git", "fetch", "origin", "main:KOJI_FETCH_HEAD"], "cwd": "/SCM/foo"}, {"argv": ["git", "reset", "--hard", "KOJI_FETCH_HEAD"], "cwd": "/SCM/foo"}, {"argv": ["git", "clone", "https://user@src.example.org/rpms/common.git", "common"], "cwd": "/SCM"}], recovery: ["git", "reset", "--hard", "origin/main"] },
  { url: "git://host/rpms/foo/.git#v1", sourcedir: "/SCM/foo", link: ["../common", "/SCM/foo/../common"], calls: [{"argv": ["git", "clone", "-n", "git://host/rpms/foo/.git", "/SCM/foo"], "cwd": "/SCM"}, {"argv": ["git", "fetch", "origin", "v1:KOJI_FETCH_HEAD"], "cwd": "/SCM/foo"}, {"argv": ["git", "reset", "--hard", "KOJI_FETCH_HEAD"], "cwd": "/SCM/foo"}, {"argv": ["git", "clone", "git://host/rpms/common/.git", "common"], "cwd": "/SCM"}], recovery: ["git", "reset", "--hard", "v1"] },
  { url: "git+ssh://git@host/rpms/foo.git#HEAD", sourcedir: "/SCM/foo", link: ["../common", "/SCM/foo/../common"], calls: [{"argv": ["git", "clone", "-n", "git+ssh://git@host/rpms/foo.git", "/SCM/foo"], "cwd": "/SCM"}, {"argv": ["git", "fetch", "origin", "HEAD:KOJI_FETCH_HEAD"], "cwd": "/SCM/foo"}, {"argv": ["git", "reset", "--hard", "KOJI_FETCH_HEAD"], "cwd": "/SCM/foo"}, {"argv": ["git", "clone", "git+ssh://git@host/rpms/common.git", "common"], "cwd": "/SCM"}], recovery: ["git", "reset", "--hard", "HEAD"] },
  { url: "git+ssh://host/rpms/foo#HEAD", error: "No user specified for repository access scheme: git+ssh://" },
  { url: "git://host/foo#abc", sourcedir: "/SCM/foo", link: ["../common", "/SCM/foo/../common"], calls: [{"argv": ["git", "clone", "-n", "git://host/foo", "/SCM/foo"], "cwd": "/SCM"}, {"argv": ["git", "fetch", "origin", "abc:KOJI_FETCH_HEAD"], "cwd": "/SCM/foo"}, {"argv": ["git", "reset", "--hard", "KOJI_FETCH_HEAD"], "cwd": "/SCM/foo"}, {"argv": ["git", "clone", "git://host/common", "common"], "cwd": "/SCM"}], recovery: ["git", "reset", "--hard", "abc"] },
  { url: "cvs://cvs.example.org/cvs/dist?rpms/foo/devel#FOO-1_0-1", sourcedir: "/SCM/rpms/foo/devel", link: ["../../common", "/SCM/rpms/foo/devel/../common"], calls: [{"argv": ["cvs", "-d", ":pserver:anonymous@cvs.example.org:/cvs/dist", "checkout", "-r", "FOO-1_0-1", "rpms/foo/devel"], "cwd": "/SCM"}, {"argv": ["cvs", "-d", ":pserver:anonymous@cvs.example.org:/cvs/dist", "checkout", "common"], "cwd": "/SCM"}], recovery: null },
  { url: "cvs+ssh://user@cvs.example.org/cvs/dist?rpms/foo#TAG", sourcedir: "/SCM/rpms/foo", link: ["../common", "/SCM/rpms/foo/../common"], calls: [{"argv": ["cvs", "-d", ":ext:user@cvs.example.org:/cvs/dist", "checkout", "-r", "TAG", "rpms/foo"], "cwd": "/SCM", "env": {"CVS_RSH": "ssh"}}, {"argv": ["cvs", "-d", ":ext:user@cvs.example.org:/cvs/dist", "checkout", "common"], "cwd": "/SCM", "env": {"CVS_RSH": "ssh"}}], recovery: null },
  { url: "svn://svn.example.org/repos?trunk/foo#1234", sourcedir: "/SCM/trunk/foo", link: ["../common", "/SCM/trunk/foo/../common"], calls: [{"argv": ["svn", "checkout", "-r", "1234", "svn://svn.example.org/repos/trunk/foo", "trunk/foo"], "cwd": "/SCM"}, {"argv": ["svn", "checkout", "svn://svn.example.org/repos/common"], "cwd": "/SCM"}], recovery: null },
  { url: "svn+https://svn.example.org/repos?trunk/foo#1234", sourcedir: "/SCM/trunk/foo", link: ["../common", "/SCM/trunk/foo/../common"], calls: [{"argv": ["svn", "checkout", "-r", "1234", "https://svn.example.org/repos/trunk/foo", "trunk/foo"], "cwd": "/SCM"}, {"argv": ["svn", "checkout", "https://svn.example.org/repos/common"], "cwd": "/SCM"}], recovery: null },
  { url: "svn+ssh://u@svn.example.org/repos?trunk/foo#1234", sourcedir: "/SCM/trunk/foo", link: ["../common", "/SCM/trunk/foo/../common"], calls: [{"argv": ["svn", "checkout", "-r", "1234", "svn+ssh://u@svn.example.org/repos/trunk/foo", "trunk/foo"], "cwd": "/SCM"}, {"argv": ["svn", "checkout", "svn+ssh://u@svn.example.org/repos/common"], "cwd": "/SCM"}], recovery: null },
  { url: "svn+ssh://svn.example.org/repos?m#1", error: "No user specified for repository access scheme: svn+ssh://" },
]
const ALLOWED_ROWS: ReadonlyArray<AllowedRow> = [
  { list: "empty", allowed: "", url: "git://pkgs.example.org/rpms/foo#1", result: { error: "pkgs.example.org:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "empty", allowed: "", url: "git://pkgs.example.org/rpms/secret-pkg#1", result: { error: "pkgs.example.org:/rpms/secret-pkg is not in the list of allowed SCMs" } },
  { list: "empty", allowed: "", url: "git+https://user@pkgs.example.org/rpms/bar.git#1", result: { error: "pkgs.example.org:/rpms/bar.git is not in the list of allowed SCMs" } },
  { list: "empty", allowed: "", url: "git://other.example.org/rpms/foo#1", result: { error: "other.example.org:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "empty", allowed: "", url: "git://host:9418/rpms/foo#1", result: { error: "host:9418:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "empty", allowed: "", url: "git://pkgs.example.org/other/foo#1", result: { error: "pkgs.example.org:/other/foo is not in the list of allowed SCMs" } },
  { list: "empty", allowed: "", url: "git://pkgs.example.org/rpms/a/b#1", result: { error: "pkgs.example.org:/rpms/a/b is not in the list of allowed SCMs" } },
  { list: "one", allowed: "pkgs.example.org:/rpms/*", url: "git://pkgs.example.org/rpms/foo#1", result: { useCommon: true, sourceCmd: ["make", "sources"] } },
  { list: "one", allowed: "pkgs.example.org:/rpms/*", url: "git://pkgs.example.org/rpms/secret-pkg#1", result: { useCommon: true, sourceCmd: ["make", "sources"] } },
  { list: "one", allowed: "pkgs.example.org:/rpms/*", url: "git+https://user@pkgs.example.org/rpms/bar.git#1", result: { useCommon: true, sourceCmd: ["make", "sources"] } },
  { list: "one", allowed: "pkgs.example.org:/rpms/*", url: "git://other.example.org/rpms/foo#1", result: { error: "other.example.org:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "one", allowed: "pkgs.example.org:/rpms/*", url: "git://host:9418/rpms/foo#1", result: { error: "host:9418:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "one", allowed: "pkgs.example.org:/rpms/*", url: "git://pkgs.example.org/other/foo#1", result: { error: "pkgs.example.org:/other/foo is not in the list of allowed SCMs" } },
  { list: "one", allowed: "pkgs.example.org:/rpms/*", url: "git://pkgs.example.org/rpms/a/b#1", result: { useCommon: true, sourceCmd: ["make", "sources"] } },
  { list: "nocommon", allowed: "pkgs.example.org:/rpms/*:no:fedpkg,sources", url: "git://pkgs.example.org/rpms/foo#1", result: { useCommon: false, sourceCmd: ["fedpkg", "sources"] } },
  { list: "nocommon", allowed: "pkgs.example.org:/rpms/*:no:fedpkg,sources", url: "git://pkgs.example.org/rpms/secret-pkg#1", result: { useCommon: false, sourceCmd: ["fedpkg", "sources"] } },
  { list: "nocommon", allowed: "pkgs.example.org:/rpms/*:no:fedpkg,sources", url: "git+https://user@pkgs.example.org/rpms/bar.git#1", result: { useCommon: false, sourceCmd: ["fedpkg", "sources"] } },
  { list: "nocommon", allowed: "pkgs.example.org:/rpms/*:no:fedpkg,sources", url: "git://other.example.org/rpms/foo#1", result: { error: "other.example.org:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "nocommon", allowed: "pkgs.example.org:/rpms/*:no:fedpkg,sources", url: "git://host:9418/rpms/foo#1", result: { error: "host:9418:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "nocommon", allowed: "pkgs.example.org:/rpms/*:no:fedpkg,sources", url: "git://pkgs.example.org/other/foo#1", result: { error: "pkgs.example.org:/other/foo is not in the list of allowed SCMs" } },
  { list: "nocommon", allowed: "pkgs.example.org:/rpms/*:no:fedpkg,sources", url: "git://pkgs.example.org/rpms/a/b#1", result: { useCommon: false, sourceCmd: ["fedpkg", "sources"] } },
  { list: "deny_first", allowed: "!pkgs.example.org:/rpms/secret* pkgs.example.org:/rpms/*:off", url: "git://pkgs.example.org/rpms/foo#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "deny_first", allowed: "!pkgs.example.org:/rpms/secret* pkgs.example.org:/rpms/*:off", url: "git://pkgs.example.org/rpms/secret-pkg#1", result: { error: "pkgs.example.org:/rpms/secret-pkg is not in the list of allowed SCMs" } },
  { list: "deny_first", allowed: "!pkgs.example.org:/rpms/secret* pkgs.example.org:/rpms/*:off", url: "git+https://user@pkgs.example.org/rpms/bar.git#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "deny_first", allowed: "!pkgs.example.org:/rpms/secret* pkgs.example.org:/rpms/*:off", url: "git://other.example.org/rpms/foo#1", result: { error: "other.example.org:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "deny_first", allowed: "!pkgs.example.org:/rpms/secret* pkgs.example.org:/rpms/*:off", url: "git://host:9418/rpms/foo#1", result: { error: "host:9418:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "deny_first", allowed: "!pkgs.example.org:/rpms/secret* pkgs.example.org:/rpms/*:off", url: "git://pkgs.example.org/other/foo#1", result: { error: "pkgs.example.org:/other/foo is not in the list of allowed SCMs" } },
  { list: "deny_first", allowed: "!pkgs.example.org:/rpms/secret* pkgs.example.org:/rpms/*:off", url: "git://pkgs.example.org/rpms/a/b#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "allow_first", allowed: "pkgs.example.org:/rpms/* !pkgs.example.org:/rpms/secret*", url: "git://pkgs.example.org/rpms/foo#1", result: { useCommon: true, sourceCmd: ["make", "sources"] } },
  { list: "allow_first", allowed: "pkgs.example.org:/rpms/* !pkgs.example.org:/rpms/secret*", url: "git://pkgs.example.org/rpms/secret-pkg#1", result: { useCommon: true, sourceCmd: ["make", "sources"] } },
  { list: "allow_first", allowed: "pkgs.example.org:/rpms/* !pkgs.example.org:/rpms/secret*", url: "git+https://user@pkgs.example.org/rpms/bar.git#1", result: { useCommon: true, sourceCmd: ["make", "sources"] } },
  { list: "allow_first", allowed: "pkgs.example.org:/rpms/* !pkgs.example.org:/rpms/secret*", url: "git://other.example.org/rpms/foo#1", result: { error: "other.example.org:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "allow_first", allowed: "pkgs.example.org:/rpms/* !pkgs.example.org:/rpms/secret*", url: "git://host:9418/rpms/foo#1", result: { error: "host:9418:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "allow_first", allowed: "pkgs.example.org:/rpms/* !pkgs.example.org:/rpms/secret*", url: "git://pkgs.example.org/other/foo#1", result: { error: "pkgs.example.org:/other/foo is not in the list of allowed SCMs" } },
  { list: "allow_first", allowed: "pkgs.example.org:/rpms/* !pkgs.example.org:/rpms/secret*", url: "git://pkgs.example.org/rpms/a/b#1", result: { useCommon: true, sourceCmd: ["make", "sources"] } },
  { list: "emptycmd", allowed: "*:/rpms/*:yes:", url: "git://pkgs.example.org/rpms/foo#1", result: { useCommon: true, sourceCmd: null } },
  { list: "emptycmd", allowed: "*:/rpms/*:yes:", url: "git://pkgs.example.org/rpms/secret-pkg#1", result: { useCommon: true, sourceCmd: null } },
  { list: "emptycmd", allowed: "*:/rpms/*:yes:", url: "git+https://user@pkgs.example.org/rpms/bar.git#1", result: { useCommon: true, sourceCmd: null } },
  { list: "emptycmd", allowed: "*:/rpms/*:yes:", url: "git://other.example.org/rpms/foo#1", result: { useCommon: true, sourceCmd: null } },
  { list: "emptycmd", allowed: "*:/rpms/*:yes:", url: "git://host:9418/rpms/foo#1", result: { useCommon: true, sourceCmd: null } },
  { list: "emptycmd", allowed: "*:/rpms/*:yes:", url: "git://pkgs.example.org/other/foo#1", result: { error: "pkgs.example.org:/other/foo is not in the list of allowed SCMs" } },
  { list: "emptycmd", allowed: "*:/rpms/*:yes:", url: "git://pkgs.example.org/rpms/a/b#1", result: { useCommon: true, sourceCmd: null } },
  { list: "glob_host", allowed: "*.example.org:*:FALSE:make,srpm", url: "git://pkgs.example.org/rpms/foo#1", result: { useCommon: false, sourceCmd: ["make", "srpm"] } },
  { list: "glob_host", allowed: "*.example.org:*:FALSE:make,srpm", url: "git://pkgs.example.org/rpms/secret-pkg#1", result: { useCommon: false, sourceCmd: ["make", "srpm"] } },
  { list: "glob_host", allowed: "*.example.org:*:FALSE:make,srpm", url: "git+https://user@pkgs.example.org/rpms/bar.git#1", result: { useCommon: false, sourceCmd: ["make", "srpm"] } },
  { list: "glob_host", allowed: "*.example.org:*:FALSE:make,srpm", url: "git://other.example.org/rpms/foo#1", result: { useCommon: false, sourceCmd: ["make", "srpm"] } },
  { list: "glob_host", allowed: "*.example.org:*:FALSE:make,srpm", url: "git://host:9418/rpms/foo#1", result: { error: "host:9418:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "glob_host", allowed: "*.example.org:*:FALSE:make,srpm", url: "git://pkgs.example.org/other/foo#1", result: { useCommon: false, sourceCmd: ["make", "srpm"] } },
  { list: "glob_host", allowed: "*.example.org:*:FALSE:make,srpm", url: "git://pkgs.example.org/rpms/a/b#1", result: { useCommon: false, sourceCmd: ["make", "srpm"] } },
  { list: "malformed", allowed: "justahost pkgs.example.org:/rpms/*:0", url: "git://pkgs.example.org/rpms/foo#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "malformed", allowed: "justahost pkgs.example.org:/rpms/*:0", url: "git://pkgs.example.org/rpms/secret-pkg#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "malformed", allowed: "justahost pkgs.example.org:/rpms/*:0", url: "git+https://user@pkgs.example.org/rpms/bar.git#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "malformed", allowed: "justahost pkgs.example.org:/rpms/*:0", url: "git://other.example.org/rpms/foo#1", result: { error: "other.example.org:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "malformed", allowed: "justahost pkgs.example.org:/rpms/*:0", url: "git://host:9418/rpms/foo#1", result: { error: "host:9418:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "malformed", allowed: "justahost pkgs.example.org:/rpms/*:0", url: "git://pkgs.example.org/other/foo#1", result: { error: "pkgs.example.org:/other/foo is not in the list of allowed SCMs" } },
  { list: "malformed", allowed: "justahost pkgs.example.org:/rpms/*:0", url: "git://pkgs.example.org/rpms/a/b#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "newlines", allowed: "\n  bad.example.org:/x/*\n\tpkgs.example.org:/rpms/foo*:1:a,b:c  ", url: "git://pkgs.example.org/rpms/foo#1", result: { useCommon: true, sourceCmd: ["a", "b"] } },
  { list: "newlines", allowed: "\n  bad.example.org:/x/*\n\tpkgs.example.org:/rpms/foo*:1:a,b:c  ", url: "git://pkgs.example.org/rpms/secret-pkg#1", result: { error: "pkgs.example.org:/rpms/secret-pkg is not in the list of allowed SCMs" } },
  { list: "newlines", allowed: "\n  bad.example.org:/x/*\n\tpkgs.example.org:/rpms/foo*:1:a,b:c  ", url: "git+https://user@pkgs.example.org/rpms/bar.git#1", result: { error: "pkgs.example.org:/rpms/bar.git is not in the list of allowed SCMs" } },
  { list: "newlines", allowed: "\n  bad.example.org:/x/*\n\tpkgs.example.org:/rpms/foo*:1:a,b:c  ", url: "git://other.example.org/rpms/foo#1", result: { error: "other.example.org:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "newlines", allowed: "\n  bad.example.org:/x/*\n\tpkgs.example.org:/rpms/foo*:1:a,b:c  ", url: "git://host:9418/rpms/foo#1", result: { error: "host:9418:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "newlines", allowed: "\n  bad.example.org:/x/*\n\tpkgs.example.org:/rpms/foo*:1:a,b:c  ", url: "git://pkgs.example.org/other/foo#1", result: { error: "pkgs.example.org:/other/foo is not in the list of allowed SCMs" } },
  { list: "newlines", allowed: "\n  bad.example.org:/x/*\n\tpkgs.example.org:/rpms/foo*:1:a,b:c  ", url: "git://pkgs.example.org/rpms/a/b#1", result: { error: "pkgs.example.org:/rpms/a/b is not in the list of allowed SCMs" } },
  { list: "invert_noopts", allowed: "!pkgs.example.org:/rpms/foo:no:x", url: "git://pkgs.example.org/rpms/foo#1", result: { error: "pkgs.example.org:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "invert_noopts", allowed: "!pkgs.example.org:/rpms/foo:no:x", url: "git://pkgs.example.org/rpms/secret-pkg#1", result: { error: "pkgs.example.org:/rpms/secret-pkg is not in the list of allowed SCMs" } },
  { list: "invert_noopts", allowed: "!pkgs.example.org:/rpms/foo:no:x", url: "git+https://user@pkgs.example.org/rpms/bar.git#1", result: { error: "pkgs.example.org:/rpms/bar.git is not in the list of allowed SCMs" } },
  { list: "invert_noopts", allowed: "!pkgs.example.org:/rpms/foo:no:x", url: "git://other.example.org/rpms/foo#1", result: { error: "other.example.org:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "invert_noopts", allowed: "!pkgs.example.org:/rpms/foo:no:x", url: "git://host:9418/rpms/foo#1", result: { error: "host:9418:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "invert_noopts", allowed: "!pkgs.example.org:/rpms/foo:no:x", url: "git://pkgs.example.org/other/foo#1", result: { error: "pkgs.example.org:/other/foo is not in the list of allowed SCMs" } },
  { list: "invert_noopts", allowed: "!pkgs.example.org:/rpms/foo:no:x", url: "git://pkgs.example.org/rpms/a/b#1", result: { error: "pkgs.example.org:/rpms/a/b is not in the list of allowed SCMs" } },
  { list: "set", allowed: "pkgs.example.org:/rpms/[a-f]*:no", url: "git://pkgs.example.org/rpms/foo#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "set", allowed: "pkgs.example.org:/rpms/[a-f]*:no", url: "git://pkgs.example.org/rpms/secret-pkg#1", result: { error: "pkgs.example.org:/rpms/secret-pkg is not in the list of allowed SCMs" } },
  { list: "set", allowed: "pkgs.example.org:/rpms/[a-f]*:no", url: "git+https://user@pkgs.example.org/rpms/bar.git#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "set", allowed: "pkgs.example.org:/rpms/[a-f]*:no", url: "git://other.example.org/rpms/foo#1", result: { error: "other.example.org:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "set", allowed: "pkgs.example.org:/rpms/[a-f]*:no", url: "git://host:9418/rpms/foo#1", result: { error: "host:9418:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "set", allowed: "pkgs.example.org:/rpms/[a-f]*:no", url: "git://pkgs.example.org/other/foo#1", result: { error: "pkgs.example.org:/other/foo is not in the list of allowed SCMs" } },
  { list: "set", allowed: "pkgs.example.org:/rpms/[a-f]*:no", url: "git://pkgs.example.org/rpms/a/b#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "port", allowed: "host*:/rpms/*:no", url: "git://pkgs.example.org/rpms/foo#1", result: { error: "pkgs.example.org:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "port", allowed: "host*:/rpms/*:no", url: "git://pkgs.example.org/rpms/secret-pkg#1", result: { error: "pkgs.example.org:/rpms/secret-pkg is not in the list of allowed SCMs" } },
  { list: "port", allowed: "host*:/rpms/*:no", url: "git+https://user@pkgs.example.org/rpms/bar.git#1", result: { error: "pkgs.example.org:/rpms/bar.git is not in the list of allowed SCMs" } },
  { list: "port", allowed: "host*:/rpms/*:no", url: "git://other.example.org/rpms/foo#1", result: { error: "other.example.org:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "port", allowed: "host*:/rpms/*:no", url: "git://host:9418/rpms/foo#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "port", allowed: "host*:/rpms/*:no", url: "git://pkgs.example.org/other/foo#1", result: { error: "pkgs.example.org:/other/foo is not in the list of allowed SCMs" } },
  { list: "port", allowed: "host*:/rpms/*:no", url: "git://pkgs.example.org/rpms/a/b#1", result: { error: "pkgs.example.org:/rpms/a/b is not in the list of allowed SCMs" } },
  { list: "qmark", allowed: "pkgs.example.or?:/rpms/???:no", url: "git://pkgs.example.org/rpms/foo#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "qmark", allowed: "pkgs.example.or?:/rpms/???:no", url: "git://pkgs.example.org/rpms/secret-pkg#1", result: { error: "pkgs.example.org:/rpms/secret-pkg is not in the list of allowed SCMs" } },
  { list: "qmark", allowed: "pkgs.example.or?:/rpms/???:no", url: "git+https://user@pkgs.example.org/rpms/bar.git#1", result: { error: "pkgs.example.org:/rpms/bar.git is not in the list of allowed SCMs" } },
  { list: "qmark", allowed: "pkgs.example.or?:/rpms/???:no", url: "git://other.example.org/rpms/foo#1", result: { error: "other.example.org:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "qmark", allowed: "pkgs.example.or?:/rpms/???:no", url: "git://host:9418/rpms/foo#1", result: { error: "host:9418:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "qmark", allowed: "pkgs.example.or?:/rpms/???:no", url: "git://pkgs.example.org/other/foo#1", result: { error: "pkgs.example.org:/other/foo is not in the list of allowed SCMs" } },
  { list: "qmark", allowed: "pkgs.example.or?:/rpms/???:no", url: "git://pkgs.example.org/rpms/a/b#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "extra_colons", allowed: "pkgs.example.org:/rpms/*:no:make,sources:ignored", url: "git://pkgs.example.org/rpms/foo#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "extra_colons", allowed: "pkgs.example.org:/rpms/*:no:make,sources:ignored", url: "git://pkgs.example.org/rpms/secret-pkg#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "extra_colons", allowed: "pkgs.example.org:/rpms/*:no:make,sources:ignored", url: "git+https://user@pkgs.example.org/rpms/bar.git#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { list: "extra_colons", allowed: "pkgs.example.org:/rpms/*:no:make,sources:ignored", url: "git://other.example.org/rpms/foo#1", result: { error: "other.example.org:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "extra_colons", allowed: "pkgs.example.org:/rpms/*:no:make,sources:ignored", url: "git://host:9418/rpms/foo#1", result: { error: "host:9418:/rpms/foo is not in the list of allowed SCMs" } },
  { list: "extra_colons", allowed: "pkgs.example.org:/rpms/*:no:make,sources:ignored", url: "git://pkgs.example.org/other/foo#1", result: { error: "pkgs.example.org:/other/foo is not in the list of allowed SCMs" } },
  { list: "extra_colons", allowed: "pkgs.example.org:/rpms/*:no:make,sources:ignored", url: "git://pkgs.example.org/rpms/a/b#1", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
]
const POLICY_ROWS: ReadonlyArray<PolicyRow> = [
  { config: null, answer: null, result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: None" } },
  { config: null, answer: "", result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: None" } },
  { config: null, answer: "allow", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { config: null, answer: "ALLOW", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { config: null, answer: "yes", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { config: null, answer: "true", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { config: null, answer: "allowed", result: { useCommon: false, sourceCmd: ["make", "sources"] } },
  { config: null, answer: "deny", result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: None" } },
  { config: null, answer: "deny not today", result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: not today" } },
  { config: null, answer: "allow use_common", result: { useCommon: true, sourceCmd: ["make", "sources"] } },
  { config: null, answer: "allow use_common make sources", result: { useCommon: true, sourceCmd: ["make", "sources"] } },
  { config: null, answer: "allow fedpkg sources", result: { useCommon: false, sourceCmd: ["fedpkg", "sources"] } },
  { config: null, answer: "allow none", result: { useCommon: false, sourceCmd: null } },
  { config: null, answer: "allow NONE extra", result: { useCommon: false, sourceCmd: null } },
  { config: null, answer: "allow use_common none", result: { useCommon: true, sourceCmd: null } },
  { config: null, answer: "nope", result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: None" } },
  { config: null, answer: "allow  USE_COMMON   rhpkg   sources", result: { useCommon: true, sourceCmd: ["rhpkg", "sources"] } },
  { config: null, answer: "allowx", result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: None" } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: null, result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: None" } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "", result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: None" } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "allow", result: { useCommon: false, sourceCmd: ["fedpkg", "sources"] } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "ALLOW", result: { useCommon: false, sourceCmd: ["fedpkg", "sources"] } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "yes", result: { useCommon: false, sourceCmd: ["fedpkg", "sources"] } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "true", result: { useCommon: false, sourceCmd: ["fedpkg", "sources"] } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "allowed", result: { useCommon: false, sourceCmd: ["fedpkg", "sources"] } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "deny", result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: None" } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "deny not today", result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: not today" } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "allow use_common", result: { useCommon: true, sourceCmd: ["fedpkg", "sources"] } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "allow use_common make sources", result: { useCommon: true, sourceCmd: ["make", "sources"] } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "allow fedpkg sources", result: { useCommon: false, sourceCmd: ["fedpkg", "sources"] } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "allow none", result: { useCommon: false, sourceCmd: null } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "allow NONE extra", result: { useCommon: false, sourceCmd: null } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "allow use_common none", result: { useCommon: true, sourceCmd: null } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "nope", result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: None" } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "allow  USE_COMMON   rhpkg   sources", result: { useCommon: true, sourceCmd: ["rhpkg", "sources"] } },
  { config: "pkgs.example.org:/rpms/*:no:fedpkg,sources", answer: "allowx", result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: None" } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: null, result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: None" } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "", result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: None" } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "allow", result: { useCommon: false, sourceCmd: null } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "ALLOW", result: { useCommon: false, sourceCmd: null } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "yes", result: { useCommon: false, sourceCmd: null } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "true", result: { useCommon: false, sourceCmd: null } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "allowed", result: { useCommon: false, sourceCmd: null } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "deny", result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: None" } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "deny not today", result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: not today" } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "allow use_common", result: { useCommon: true, sourceCmd: null } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "allow use_common make sources", result: { useCommon: true, sourceCmd: ["make", "sources"] } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "allow fedpkg sources", result: { useCommon: false, sourceCmd: ["fedpkg", "sources"] } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "allow none", result: { useCommon: false, sourceCmd: null } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "allow NONE extra", result: { useCommon: false, sourceCmd: null } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "allow use_common none", result: { useCommon: true, sourceCmd: null } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "nope", result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: None" } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "allow  USE_COMMON   rhpkg   sources", result: { useCommon: true, sourceCmd: ["rhpkg", "sources"] } },
  { config: "pkgs.example.org:/rpms/*:no:", answer: "allowx", result: { error: "SCM: pkgs.example.org:/rpms/foo is not allowed, reason: None" } },
]
const POLICY_DATA = {"scm_url": "git://u@pkgs.example.org/rpms/foo?m#rev", "scm_scheme": "git://", "scm_user": "u", "scm_host": "pkgs.example.org", "scm_repository": "/rpms/foo", "scm_module": "m", "scm_revision": "rev", "scm_type": "GIT", "user_id": 7, "channel": "default", "scratch": true}

const parsed = (url: string): ScmUrl => Either.getOrThrow(parseScmUrl(url))

const rulesOf = (e: Either.Either<{ useCommon: boolean; sourceCmd: ReadonlyArray<string> | null }, ScmError>): Rules =>
  Either.isRight(e) ? { useCommon: e.right.useCommon, sourceCmd: e.right.sourceCmd } : { error: e.left.message }

describe("SCM URL parsing (koji.daemon.SCM.__init__ / _parse_url)", () => {
  for (const row of URL_ROWS) {
    for (const mode of ["strict", "allowPassword"] as const) {
      it(`${mode === "strict" ? "SCM(url)" : "SCM(url, allow_password=True)"}: ${row.url}`, () => {
        assert.strictEqual(isScmUrl(row.url), row.isScm)
        const got = parseScmUrl(row.url, { allowPassword: mode === "allowPassword" })
        const want = row[mode]
        if ("error" in want) {
          assert.isTrue(Either.isLeft(got), `expected ${want.error}`)
          if (Either.isRight(got)) return
          assert.include(got.left.message, want.contains)
          assert.strictEqual(faultFor(got.left)._tag, want.error)
          assert.strictEqual(faultFor(got.left).faultCode, faultCodeFor(got.left.reason))
          assert.notInclude(got.left.message, "secret", "a password is never echoed")
          assert.notInclude(got.left.url, "secret")
        } else {
          assert.isTrue(Either.isRight(got), Either.isLeft(got) ? got.left.message : "")
          if (Either.isLeft(got)) return
          const { url, ...rest } = got.right
          assert.strictEqual(url, row.url)
          assert.deepStrictEqual(rest, want)
        }
      })
    }
  }

  it("user:password@ is refused with reason password-in-url (GenericError 1000), masked", () => {
    const e = parseScmUrl("git+https://alice:hunter2@src.example.org/rpms/foo.git#abc")
    assert.isTrue(Either.isLeft(e))
    if (Either.isRight(e)) return
    assert.strictEqual(e.left.reason, "password-in-url")
    assert.strictEqual(e.left.url, "git+https://alice:***@src.example.org/rpms/foo.git#abc")
    assert.notInclude(e.left.message, "hunter2")
    assert.strictEqual(faultFor(e.left).faultCode, 1000)
  })

  it("maskPassword only touches the userinfo", () => {
    assert.strictEqual(maskPassword("git://a:b@h/p#r"), "git://a:***@h/p#r")
    assert.strictEqual(maskPassword("git://h/p:x@y#r"), "git://h/p:x@y#r")
    assert.strictEqual(maskPassword("git://u@h/p#r"), "git://u@h/p#r")
  })
})

describe("SCM.get_source (the build's `source`)", () => {
  it("git: user dropped, git+ prefix kept, module kept, commit hash as fragment", () => {
    const scm = parsed("git+https://user@src.example.org/rpms/foo.git?sub/dir/#main")
    assert.strictEqual(sourceUrl(scm, "0123abcd"), "git+https://src.example.org/rpms/foo.git?sub/dir#0123abcd")
    assert.strictEqual(sourceUrl(parsed("git://pkgs.example.org/rpms/foo#v1"), "ff00"), "git://pkgs.example.org/rpms/foo#ff00")
  })
  it("CVS/SVN: the URL as given", () => {
    const url = "svn://svn.example.org/repos?trunk/foo#1234"
    assert.strictEqual(sourceUrl(parsed(url), null), url)
  })
})

describe("SCM.checkout commands per scheme (scmdir /SCM)", () => {
  for (const row of PLAN_ROWS) {
    it(`checkout: ${row.url}`, () => {
      const plan = checkoutPlan(parsed(row.url), "/SCM")
      if (row.error !== undefined) {
        assert.isTrue(Either.isLeft(plan))
        if (Either.isRight(plan)) return
        assert.strictEqual(plan.left.message, row.error)
        assert.strictEqual(plan.left.reason, "no-user")
        assert.strictEqual(faultFor(plan.left)._tag, "BuildError")
        return
      }
      assert.isTrue(Either.isRight(plan))
      if (Either.isLeft(plan)) return
      const p = plan.right
      const calls = [p.checkout, ...p.update, p.common].map((c) => ({ argv: c.argv, cwd: c.cwd, ...(c.env === undefined ? {} : { env: c.env }) }))
      assert.deepStrictEqual(calls, row.calls)
      assert.deepStrictEqual(p.recovery?.argv ?? null, row.recovery)
      assert.strictEqual(p.sourcedir, row.sourcedir)
      assert.deepStrictEqual([p.commonLink.target, p.commonLink.path], row.link)
    })
  }

  it("a module climbing out of scmdir is refused (kojid would read outside its checkout)", () => {
    for (const url of ["git://host/rpms/foo?../../etc#abc", "cvs://h/cvs?../x#T", "svn://h/r?a/../../b#1"]) {
      const plan = checkoutPlan(parsed(url), "/SCM")
      assert.isTrue(Either.isLeft(plan), url)
      if (Either.isLeft(plan)) assert.strictEqual(plan.left.reason, "invalid-url")
    }
    assert.isTrue(Either.isRight(checkoutPlan(parsed("git://host/rpms/foo?a/../b#abc"), "/SCM")))
  })
})

describe("allowed_scms (SCM.assert_allowed_by_config)", () => {
  for (const row of ALLOWED_ROWS) {
    it(`allowed_scms ${row.list}: ${row.url}`, () => {
      const got = rulesOf(allowedByConfig(parsed(row.url), row.allowed))
      if ("error" in row.result) {
        assert.isTrue("error" in got)
        if ("error" in got) assert.isTrue(got.error.startsWith(row.result.error), got.error)
      } else {
        assert.deepStrictEqual(got, row.result)
      }
    })
  }

  it("not allowed → reason not-allowed, BuildError 1005", () => {
    const e = allowedByConfig(parsed("git://evil.example.com/rpms/foo#1"), "pkgs.example.org:/rpms/*")
    assert.isTrue(Either.isLeft(e))
    if (Either.isRight(e)) return
    assert.strictEqual(e.left.reason, "not-allowed")
    assert.strictEqual(faultFor(e.left).faultCode, 1005)
    assert.strictEqual(e.left.message, "evil.example.com:/rpms/foo is not in the list of allowed SCMs")
  })

  it("entries with fewer than two fields are skipped and reported", () => {
    const p = parseAllowedScms("justahost  a:b:c:d:e !x")
    assert.deepStrictEqual(p.ignored, ["justahost", "!x"])
    assert.deepStrictEqual(p.entries.map((e) => [e.hostPattern, e.repositoryPattern, e.useCommon, e.sourceCmd]), [["a", "b", "c", "d"]])
  })

  it("globs are Python fnmatch: * crosses /, [!x] negates, case-sensitive", () => {
    assert.isTrue(fnmatch("/rpms/a/b", "/rpms/*"))
    assert.isFalse(fnmatch("/rpms/x", "/rpms/[!x]"))
    assert.isFalse(fnmatch("PKGS.example.org", "pkgs.*"))
  })
})

describe("build_from_scm policy (SCM.assert_allowed_by_policy, after the config check)", () => {
  for (const row of POLICY_ROWS) {
    it(`config ${row.config === null ? "off" : JSON.stringify(row.config)}, policy → ${JSON.stringify(row.answer)}`, () => {
      const scm = parsed("git://u@pkgs.example.org/rpms/foo?m#rev")
      const first = row.config === null ? Either.right(DEFAULT_SCM_RULES) : allowedByConfig(scm, row.config)
      const got = rulesOf(Either.flatMap(first, (r) => allowedByPolicyResult(scm, row.answer, r)))
      assert.deepStrictEqual(got, row.result)
    })
  }

  it("policy data: get_info keys with the scm_ prefix (scmtype → scm_type), then user_id/channel/scratch", () => {
    const scm = parsed("git://u@pkgs.example.org/rpms/foo?m#rev")
    assert.deepStrictEqual(buildFromScmPolicyData(scm, { user_id: 7, channel: "default", scratch: true }), POLICY_DATA)
  })

  it("denied → reason policy-denied, BuildError 1005", () => {
    const e = allowedByPolicyResult(parsed("git://h/r#1"), "deny only admins")
    assert.isTrue(Either.isLeft(e))
    if (Either.isLeft(e)) {
      assert.strictEqual(e.left.reason, "policy-denied")
      assert.strictEqual(faultFor(e.left).faultCode, 1005)
    }
  })
})
